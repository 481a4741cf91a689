#!/usr/bin/env bash
# End-to-end benchmark of `euid-map map` against `euid-map operator` on loopback (release
# builds, same machine): rows/s, peak RSS and client CPU (against `hash` on the same input)
# on generated inputs where one row in five repeats an earlier identity, the rate achieved
# under --rps 20, the operator's identities per CPU-second, and the Python SDK (sequential
# and 8 threads) as the baseline, with the speed-up over it. `--dedupe window` (one read, the
# answer cache), as before exact dedupe existed: scripts/bench_backfill.sh measures `exact`.
#   scripts/bench_map.sh                 # 1M and 10M rows
#   SIZES="1000000" scripts/bench_map.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000000 10000000"}
BASE_ROWS=${BASE_ROWS:-200000}
DIR=target/bench
mkdir -p "$DIR"
[ -n "${BIN:-}" ] || cargo build --release --quiet
PY=$(bash scripts/setup_venv.sh)
. scripts/start_operator.sh
op_cpu() { awk '{print $14 + $15}' "/proc/$OP/stat"; }
served() { curl -fs "$URL/metrics" | awk '/^euid_emulator_identity_map_inputs_sum/ {print $2}'; }
TICK=$(getconf CLK_TCK)
echo "machine: $(nproc) cores; operator at $URL"

cpu_of() { awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.2f", u + s}' "$1"; }
rss_of() { awk '/Maximum resident/ {printf "%d", $6 / 1024}' "$1"; }

for ROWS in $SIZES; do
  IN="$DIR/customers_${ROWS}.csv"
  [ -f "$IN" ] || python3 scripts/gen_customers.py --rows "$ROWS" --dup 0.2 > "$IN"
  rm -rf "$DIR/map_out" "$DIR/map_hash_out"
  c0=$(op_cpu); s0=$(served)
  /usr/bin/time -v "$BIN" map "$IN" -o "$DIR/map_out" --base-url "$URL" --keep-col customer_id --dedupe window -q 2> "$DIR/map_time.txt" || true
  c1=$(op_cpu); s1=$(served)
  # The same input through `hash` (read, normalize, SHA-256, write): what `map` adds on top
  # of it is dedupe, requests, answers and their columns (issue #13: at most 2.5×).
  /usr/bin/time -v "$BIN" hash "$IN" -o "$DIR/map_hash_out" --keep-col customer_id -q 2> "$DIR/map_hash_time.txt"
  python3 - "$DIR/map_out/_manifest.json" "$ROWS" <<PYEOF
import json, sys
m = json.load(open(sys.argv[1])); rows = int(sys.argv[2])
print(f"euid-map map: {rows} rows in {m['elapsed_s']} s = {rows / m['elapsed_s']:,.0f} rows/s; "
      f"{m['hashes_sent']} hashes sent in {m['client']['requests']} requests; counts {m['counts']}")
open("$DIR/map_rate_$ROWS.txt", "w").write(str(rows / m['elapsed_s']))
PYEOF
  mc=$(cpu_of "$DIR/map_time.txt"); hc=$(cpu_of "$DIR/map_hash_time.txt")
  echo "  peak RSS $(rss_of "$DIR/map_time.txt") MiB (hash: $(rss_of "$DIR/map_hash_time.txt") MiB)"
  python3 -c "print(f'  client CPU: map {$mc:.2f} s, hash {$hc:.2f} s on the same input: map = {$mc / $hc:.2f}x hash')"
  python3 -c "print(f'  operator: {($s1-$s0):,.0f} identities in {($c1-$c0)/$TICK:.2f} CPU-s = {($s1-$s0)/max(($c1-$c0)/$TICK,1e-9):,.0f} identities per CPU-second')"
done

IN="$DIR/customers_1000000.csv"
[ -f "$IN" ] || python3 scripts/gen_customers.py --rows 1000000 --dup 0.2 > "$IN"
rm -rf "$DIR/map_rps"
"$BIN" map "$IN" -o "$DIR/map_rps" --base-url "$URL" --rps 20 --dedupe window -q
python3 -c "
import json; m = json.load(open('$DIR/map_rps/_manifest.json'))
r = m['client']['requests'] / m['elapsed_s']
print(f'--rps 20: {m[\"client\"][\"requests\"]} requests in {m[\"elapsed_s\"]} s = {r:.2f} requests/s ({100*r/20:.1f}% of the limit)')"

# The SDK baseline on the first BASE_ROWS rows of the same corpus, against the same operator.
head -n $((BASE_ROWS + 1)) "$IN" > "$DIR/base_map_in.csv"
for threads in 1 8; do
  "$PY" scripts/baseline_map_sdk.py "$URL" "$DIR/base_map_in.csv" --threads $threads | tee "$DIR/sdk_$threads.txt"
done
FIRST=$(echo "$SIZES" | awk '{print $1}')
python3 - "$DIR" "$FIRST" <<'PYEOF'
import re, sys
d, rows = sys.argv[1], sys.argv[2]
ours = float(open(f"{d}/map_rate_{rows}.txt").read())
for t, label in ((1, "sequential"), (8, "8 threads")):
    sdk = float(re.search(r"= ([\d,]+) rows/s", open(f"{d}/sdk_{t}.txt").read()).group(1).replace(",", ""))
    print(f"euid-map map ({int(rows):,} rows) against the SDK, {label}: {ours:,.0f} / {sdk:,.0f} rows/s = {ours / sdk:.1f}x")
PYEOF
