#!/usr/bin/env bash
# End-to-end benchmark of `euid-map map` against `euid-map operator` on loopback (release
# builds, same machine): rows/s and peak RSS on generated inputs with 20% duplicate
# identities, the rate achieved under --rps 20, the operator's identities per CPU-second,
# and the Python SDK (sequential and 8 threads) as the baseline.
#   scripts/bench_map.sh                 # 1M and 10M rows
#   SIZES="1000000" scripts/bench_map.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000000 10000000"}
BASE_ROWS=${BASE_ROWS:-200000}
DIR=target/bench
mkdir -p "$DIR"
cargo build --release --quiet
PY=$(bash scripts/setup_venv.sh)
. scripts/start_operator.sh
op_cpu() { awk '{print $14 + $15}' "/proc/$OP/stat"; }
served() { curl -fs "$URL/metrics" | awk '/^euid_emulator_identity_map_inputs_sum/ {print $2}'; }
TICK=$(getconf CLK_TCK)
echo "machine: $(nproc) cores; operator at $URL"

for ROWS in $SIZES; do
  IN="$DIR/customers_${ROWS}.csv"
  [ -f "$IN" ] || python3 scripts/gen_customers.py --rows "$ROWS" --dup 0.2 > "$IN"
  rm -rf "$DIR/map_out"
  c0=$(op_cpu); s0=$(served)
  /usr/bin/time -v "$BIN" map "$IN" -o "$DIR/map_out" --base-url "$URL" --keep-col customer_id -q 2> "$DIR/map_time.txt" || true
  c1=$(op_cpu); s1=$(served)
  python3 - "$DIR/map_out/_manifest.json" "$ROWS" <<PYEOF
import json, sys
m = json.load(open(sys.argv[1])); rows = int(sys.argv[2])
print(f"euid-map map: {rows} rows in {m['elapsed_s']} s = {rows / m['elapsed_s']:,.0f} rows/s; "
      f"{m['unique_hashes_sent']} unique hashes in {m['client']['requests']} requests; counts {m['counts']}")
PYEOF
  echo "  peak RSS $(( $(grep 'Maximum resident' "$DIR/map_time.txt" | awk '{print $6}') / 1024 )) MiB"
  python3 -c "print(f'  operator: {($s1-$s0):,.0f} identities in {($c1-$c0)/$TICK:.2f} CPU-s = {($s1-$s0)/max(($c1-$c0)/$TICK,1e-9):,.0f} identities per CPU-second')"
done

IN="$DIR/customers_1000000.csv"
[ -f "$IN" ] || python3 scripts/gen_customers.py --rows 1000000 --dup 0.2 > "$IN"
rm -rf "$DIR/map_rps"
"$BIN" map "$IN" -o "$DIR/map_rps" --base-url "$URL" --rps 20 -q
python3 -c "
import json; m = json.load(open('$DIR/map_rps/_manifest.json'))
r = m['client']['requests'] / m['elapsed_s']
print(f'--rps 20: {m[\"client\"][\"requests\"]} requests in {m[\"elapsed_s\"]} s = {r:.2f} requests/s ({100*r/20:.1f}% of the limit)')"

head -n $((BASE_ROWS + 1)) "$IN" > "$DIR/base_map_in.csv"
"$PY" scripts/baseline_map_sdk.py "$URL" "$DIR/base_map_in.csv"
"$PY" scripts/baseline_map_sdk.py "$URL" "$DIR/base_map_in.csv" --threads 8
