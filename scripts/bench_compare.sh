#!/usr/bin/env bash
# Regressions seen before they land: the same jobs with two builds, interleaved, on the same
# inputs against the same emulator (loopback), printing wall time, CPU time and peak RSS side
# by side (medians over REPS runs of each).
#
#   scripts/bench_compare.sh BASE [NEW]
#
# BASE is a binary or a git revision (built once, in target/bench-base, with its own target
# directory); NEW defaults to target/release/euid-map (built). Jobs:
#   map         `map` with the defaults, ROWS rows, one in four repeating an earlier one
#   map-window  the same with --dedupe window
#   map-exact   the same with --dedupe exact
#   map-250ms   `map` of SLOW_ROWS all-distinct emails, every answer 250 ms after its request
#               (the API sets the pace: 20 requests in flight of 5,000 every 250 ms is the
#               ceiling, 400,000 identities a second)
#   backfill-250ms-window, backfill-250ms-exact
#               `map` of a BACKFILL_ROWS backfill (one row in four repeating an earlier
#               customer at random, `gen_customers.py --seed 27`: window re-sends about a
#               fifth of its identities) against the 250 ms operator, each dedupe mode (exact
#               must finish no later than window: it sends fewer requests)
#   hash-odd    `hash` of HASH_ROWS awkward values: phones of every region in national format
#               with a country column, junk that is no phone, odd emails
#   hash-national `hash` of HASH_ROWS national-format mobiles of 12 European regions with a
#               country column (the issue's bar: 1M phones a second)
#   refresh     a refresh night: the map-window dataset as state, tonight's export with some
#               customers gone, some new, some changed
# SMALL=1 runs every job once on small inputs (CI: the script keeps working). JOBS="hash-odd
# refresh" runs only those (refresh reads map-window's datasets of an earlier run).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_ARG=${1:?usage: bench_compare.sh BASE_BIN_OR_REV [NEW_BIN]}
NEW=${2:-}
DIR=${DIR:-target/bench-compare}
mkdir -p "$DIR"
if [ "${SMALL:-0}" = 1 ]; then
  ROWS=${ROWS:-20000}; SLOW_ROWS=${SLOW_ROWS:-5000}; HASH_ROWS=${HASH_ROWS:-20000}; REPS=${REPS:-1}
  BACKFILL_ROWS=${BACKFILL_ROWS:-20000}
else
  ROWS=${ROWS:-5000000}; SLOW_ROWS=${SLOW_ROWS:-400000}; HASH_ROWS=${HASH_ROWS:-1000000}; REPS=${REPS:-3}
  BACKFILL_ROWS=${BACKFILL_ROWS:-3000000}
fi
if [ -z "$NEW" ]; then
  cargo build --release --quiet
  NEW=target/release/euid-map
fi
if [ -x "$BASE_ARG" ]; then
  BASE=$BASE_ARG
else
  rev=$(git rev-parse --verify "$BASE_ARG^{commit}")
  BASE="target/bench-base/euid-map-${rev:0:12}"
  if [ ! -x "$BASE" ]; then
    rm -rf target/bench-base/src
    git worktree add --force --detach target/bench-base/src "$rev" >/dev/null
    (cd target/bench-base/src && CARGO_TARGET_DIR=../target cargo build --release --quiet)
    cp target/bench-base/target/release/euid-map "$BASE"
    git worktree remove --force target/bench-base/src
  fi
fi
PY=$(bash scripts/setup_venv.sh)
BIN=$NEW
. scripts/start_operator.sh
SLOW_PORT=$(python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
"$NEW" operator --listen "127.0.0.1:$SLOW_PORT" --faults slow=1.0 --slow-ms 250 2> "$DIR/slow-operator.log" &
SLOW=$!
trap 'kill $OP $SLOW 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$SLOW_PORT/ops/healthcheck" >/dev/null 2>&1 && break; python3 -c "import time;time.sleep(0.05)"; done
SLOW_URL="http://127.0.0.1:$SLOW_PORT"

# Inputs (kept between runs of the script: generated once per size).
IN="$DIR/customers_$ROWS.csv"
[ -f "$IN" ] || python3 scripts/gen_customers.py --rows "$ROWS" --dup 0.25 --clean > "$IN"
# Every email distinct (gen_customers.py draws names from short lists: its "--dup 0" file of
# 3M rows holds about 600,000 distinct emails, and its run is bound by the CPU, not the API).
DISTINCT="$DIR/all-distinct_$SLOW_ROWS.csv"
[ -f "$DISTINCT" ] || python3 -c "
import sys
w = sys.stdout.write
w('customer_id,email\n')
for i in range(int(sys.argv[1])):
    w(f'{i},person.{i:x}.{i * 7919 % 1000003}@example.eu\n')
" "$SLOW_ROWS" > "$DISTINCT"
BACKFILL="$DIR/backfill_$BACKFILL_ROWS.csv"
[ -f "$BACKFILL" ] || python3 scripts/gen_customers.py --rows "$BACKFILL_ROWS" --dup 0.25 --clean --seed 27 > "$BACKFILL"
TONIGHT="$DIR/tonight_$ROWS.csv"
[ -f "$TONIGHT" ] || python3 - "$IN" "$TONIGHT" <<'PYEOF'
import random, sys
rng = random.Random(5)
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as out:
    out.write(next(f))
    for line in f:
        if rng.random() < 0.03:
            continue
        if rng.random() < 0.05:
            cid, _, rest = line.split(",", 2)
            line = f"{cid},changed.{cid}@example.eu,{rest}"
        out.write(line)
    for i in range(2000):
        out.write(f"new-{i},new.{i}@example.eu,\n")
PYEOF
ODD="$DIR/odd_$HASH_ROWS.csv"
[ -f "$ODD" ] || "$PY" - "$HASH_ROWS" "$ODD" <<'PYEOF'
import random, sys
import phonenumbers as p
from phonenumbers import PhoneNumberFormat as F
rows, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(3)
regions = sorted(p.SUPPORTED_REGIONS)
examples = []
for r in regions:
    n = p.example_number(r)
    if n is not None:
        examples.append((r, p.format_number(n, F.NATIONAL)))
junk = ["n/a", "-", "none", "0", "+", "call me", "1234", "x" * 40, "+999 1", "00000000000000000000"]
with open(path, "w") as f:
    f.write("id,email,phone,country\n")
    for i in range(rows):
        r, nat = examples[rng.randrange(len(examples))]
        digits = [j for j, c in enumerate(nat) if c.isdigit()][-4:]
        s = list(nat)
        for j in digits:
            s[j] = str(rng.randrange(10))
        phone = "".join(s) if rng.random() < 0.8 else rng.choice(junk)
        email = rng.choice([f"U{i}.x+y@GMAIL.com", f" u{i}@example.eu ", f"u{i}@@bad", ""])
        f.write(f"{i},{email},\"{phone}\",{r}\n")
PYEOF

NATIONAL="$DIR/national_$HASH_ROWS.csv"
[ -f "$NATIONAL" ] || "$PY" - "$HASH_ROWS" "$NATIONAL" <<'PYEOF'
import random, sys
import phonenumbers as p
from phonenumbers import PhoneNumberFormat as F
rows, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(1)
regions = ["DE", "FR", "GB", "IT", "ES", "PL", "NL", "SE", "IE", "AT", "BE", "PT"]
examples = [(r, p.format_number(p.example_number_for_type(r, p.PhoneNumberType.MOBILE), F.NATIONAL))
            for r in regions]
with open(path, "w") as f:
    f.write("id,phone,country\n")
    for i in range(rows):
        r, nat = examples[i % len(examples)]
        s = list(nat)
        for j in [j for j, c in enumerate(s) if c.isdigit()][-5:]:
            s[j] = str(rng.randrange(10))
        f.write(f"{i},{''.join(s)},{r}\n")
PYEOF

# One timed run: prints "wall cpu rss_mib".
timed() {
  local log=$DIR/time.txt
  /usr/bin/time -f "%e %U %S %M" -o "$log" "$@" >/dev/null 2>"$DIR/stderr.txt" || {
    echo "failed: $*" >&2; cat "$DIR/stderr.txt" >&2; return 1; }
  awk '{printf "%.2f %.2f %d\n", $1, $2 + $3, $4 / 1024}' "$log"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

job() {
  local name=$1; shift
  if [ -n "${JOBS:-}" ] && ! printf ' %s ' "$JOBS" | grep -q " $name "; then return 0; fi
  for build in base new; do : > "$DIR/$name.$build"; done
  for _ in $(seq "$REPS"); do
    for build in base new; do
      local bin=$BASE; [ "$build" = new ] && bin=$NEW
      local out="$DIR/out-$name-$build"
      rm -rf "$out"
      local args=("$@")
      args=("${args[@]//@OUT@/$out}")
      args=("${args[@]//@BUILD@/$build}")
      timed "$bin" "${args[@]}" >> "$DIR/$name.$build"
    done
  done
  local line="$name"
  for col in 1 2 3; do
    for build in base new; do
      line="$line $(cut -d' ' -f$col "$DIR/$name.$build" | median)"
    done
  done
  echo "$line" >> "$DIR/table.txt"
}

: > "$DIR/table.txt"
job map map "$IN" -o @OUT@ --base-url "$URL" --keep-col customer_id -q
job map-window map "$IN" -o @OUT@ --base-url "$URL" --keep-col customer_id --dedupe window -q
job map-exact map "$IN" -o @OUT@ --base-url "$URL" --keep-col customer_id --dedupe exact -q
job map-250ms map "$DISTINCT" -o @OUT@ --base-url "$SLOW_URL" -q
job backfill-250ms-window map "$BACKFILL" -o @OUT@ --base-url "$SLOW_URL" --keep-col customer_id --dedupe window -q
job backfill-250ms-exact map "$BACKFILL" -o @OUT@ --base-url "$SLOW_URL" --keep-col customer_id --dedupe exact -q
job hash-odd hash "$ODD" -o @OUT@ --phone-region-col country -q
job hash-national hash "$NATIONAL" -o @OUT@ --phone-region-col country -q
job refresh refresh --state "$DIR/out-map-window-@BUILD@" -o @OUT@ "$TONIGHT" --key-col customer_id --base-url "$URL" --max-drop-fraction 0.5 -q

echo "base: $BASE"
echo "new:  $NEW"
echo "rows: map $ROWS (1 in 4 repeats), map-250ms $SLOW_ROWS distinct, backfill-250ms $BACKFILL_ROWS, hash-odd and hash-national $HASH_ROWS; medians of $REPS interleaved runs"
{
  echo "job wall-base wall-new cpu-base cpu-new rss-base-MiB rss-new-MiB"
  cat "$DIR/table.txt"
} | column -t
