#!/usr/bin/env bash
# Benchmark of the nightly job: `euid-map refresh` over a large state where about 1/365 of
# the rows are due (release build, against `euid-map operator` on loopback). Reports the
# refresh's wall time, requests spent, rows due and carried, and peak RSS.
#   scripts/bench_refresh.sh                 # 10M-row input (20M identity rows of state)
#   ROWS=1000000 scripts/bench_refresh.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-10000000}
DIR=target/bench
mkdir -p "$DIR"
cargo build --release --quiet
. scripts/start_operator.sh
IN="$DIR/customers_${ROWS}.csv"
[ -f "$IN" ] || python3 scripts/gen_customers.py --rows "$ROWS" --dup 0.2 > "$IN"
rm -rf "$DIR/state" "$DIR/refreshed"
"$BIN" map "$IN" -o "$DIR/state" --base-url "$URL" --keep-col customer_id -q
# Refresh times are UTC midnights (the operator's rule), so a real nightly run finds about
# 1/30 of the rows due; the issue's scenario is 1/365: rewrite refresh_from to make exactly
# that share due (part metadata kept), then refresh at NOW.
PY=$(bash scripts/setup_venv.sh)
NOW=$(python3 -c "import datetime as d;print((d.datetime.now(d.timezone.utc)+d.timedelta(hours=1)).isoformat())")
"$PY" scripts/make_due_state.py "$DIR/state" "$NOW" --fraction "${FRACTION:-0.0027397}"
/usr/bin/time -v "$BIN" refresh --state "$DIR/state" -o "$DIR/refreshed" --base-url "$URL" --now "$NOW" -q 2> "$DIR/refresh_time.txt"
python3 - "$DIR/refreshed/_manifest.json" "$DIR/state/_manifest.json" <<PYEOF
import json, sys
m = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2])); r = m["refresh"]
print(f"state: {m['output_rows']:,} identity rows (map took {s['elapsed_s']} s, {s['client']['requests']} requests)")
print(f"refresh: {m['elapsed_s']} s, {r['requests']} requests; due {r['due']:,} ({100 * r['due'] / m['output_rows']:.2f}% of rows), "
      f"carried {r['carried']:,}, raw ids changed {r['changed_ids']:,}")
PYEOF
echo "  peak RSS $(( $(grep 'Maximum resident' "$DIR/refresh_time.txt" | awk '{print $6}') / 1024 )) MiB"
