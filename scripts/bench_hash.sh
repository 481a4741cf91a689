#!/usr/bin/env bash
# End-to-end benchmark of `euid-map hash` on a generated CSV (id,email,phone), with peak RSS,
# against the same job written with the Python SDK and pyarrow.
#   scripts/bench_hash.sh            # 10M rows (baseline on the first 1M rows)
#   ROWS=1000000 scripts/bench_hash.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-10000000}
BASE_ROWS=${BASE_ROWS:-1000000}
DIR=target/bench
mkdir -p "$DIR"
cargo build --release --quiet
PY=$(bash scripts/setup_venv.sh)
IN="$DIR/customers_${ROWS}.csv"
[ -f "$IN" ] || python3 scripts/gen_customers.py --rows "$ROWS" --dup 0.2 > "$IN"
echo "input: $IN ($(du -h "$IN" | cut -f1), $ROWS rows), $(nproc) cores"

rm -rf "$DIR/hash_out"
/usr/bin/time -v target/release/euid-map hash "$IN" -o "$DIR/hash_out" --keep-col customer_id -q 2> "$DIR/hash_time.txt"
secs=$(python3 -c "import json;print(json.load(open('$DIR/hash_out/_manifest.json'))['elapsed_s'])")
rss=$(grep "Maximum resident" "$DIR/hash_time.txt" | awk '{print $6}')
echo "euid-map hash: $ROWS rows in ${secs} s = $(python3 -c "print(f'{$ROWS/$secs:,.0f}')") rows/s, peak RSS $((rss / 1024)) MiB"

head -n $((BASE_ROWS + 1)) "$IN" > "$DIR/base_in.csv"
"$PY" scripts/baseline_hash_sdk.py "$DIR/base_in.csv" "$DIR/base_out.parquet"
# The SDK's normalize_and_hash_email alone, over the same emails (no CSV or Parquet work).
"$PY" - "$DIR/base_in.csv" <<'PYEOF'
import csv, sys, time
from uid2_client import normalize_and_hash_email
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    r = csv.reader(f); next(r)
    emails = [rec[1] for rec in r if len(rec) > 1 and rec[1]]
t0 = time.time(); ok = 0
for e in emails:
    try:
        normalize_and_hash_email(e); ok += 1
    except ValueError:
        pass
dt = time.time() - t0
print(f"baseline (uid2_client.normalize_and_hash_email alone): {len(emails)} emails in {dt:.2f} s = {len(emails) / dt:,.0f} emails/s")
PYEOF
