#!/usr/bin/env bash
# Adaptive concurrency with default flags (issue #13, goal 1), release builds on loopback:
#  1. every answer 250 ms after its request arrived (the emulator's "slow" fault, its own work
#     included, as a real operator's latency includes its work): throughput against the
#     20-in-flight ceiling
#     (20 × 5,000 / 0.25 s = 400,000 identities/s), on 3M unique emails;
#  2. the same behind an operator that answers 429 beyond 6 in flight: the share of requests
#     429'd and the throughput against that lower ceiling (6 × 5,000 / 0.25 s = 120,000/s).
#   scripts/bench_concurrency.sh            # ROWS=3000000 by default
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-3000000}
DIR=target/bench
mkdir -p "$DIR"
cargo build --release --quiet
IN="$DIR/emails_${ROWS}.csv"
[ -f "$IN" ] || python3 -c "
import sys
w = sys.stdout.write
w('email\n')
for i in range($ROWS):
    w(f'user{i}@example.com\n')" > "$IN"

run() { # $1 label, $2 ceiling identities/s, rest: operator flags
  local label=$1 ceiling=$2; shift 2
  OP_ARGS="$*" . scripts/start_operator.sh
  rm -rf "$DIR/conc_out"
  "$BIN" map "$IN" -o "$DIR/conc_out" --base-url "$URL" -q
  kill "$OP" 2>/dev/null || true
  python3 - "$DIR/conc_out/_manifest.json" "$label" "$ceiling" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1])); label, ceiling = sys.argv[2], float(sys.argv[3])
ids = m['hashes_sent']; c = m["client"]
rate = ids / m["elapsed_s"]
print(f"{label}: {ids:,} identities in {m['elapsed_s']} s = {rate:,.0f}/s = {100 * rate / ceiling:.1f}% of the ceiling "
      f"({ceiling:,.0f}/s); {c['requests']} requests, {c['http_429']} × 429 = {100 * c['http_429'] / max(c['requests'], 1):.2f}%; "
      f"peak in flight {m['peak_in_flight']}")
PYEOF
}

run "250 ms answers" 400000 --faults slow=1.0 --slow-ms 250
run "250 ms answers, 429 beyond 6 in flight" 120000 --faults slow=1.0 --slow-ms 250 --max-in-flight 6
