#!/usr/bin/env bash
# Benchmark of phone normalization: `euid-map hash` on ROWS national-format phones with a
# per-row country column (--phone-region-col), against the same numbers already in E.164,
# with wall time, phones/s and peak RSS. BASE_BIN (a build of an earlier commit) adds its E.164
# figure, to show the E.164 fast path is as fast as before.
#   scripts/bench_phones.sh                  # 10M rows
#   ROWS=1000000 BASE_BIN=/tmp/base/euid-map scripts/bench_phones.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-10000000}
DIR=target/bench
mkdir -p "$DIR"
cargo build --release --quiet
PY=$(bash scripts/setup_venv.sh)
NAT="$DIR/phones_national_v3_${ROWS}.csv"
E164="$DIR/phones_e164_v3_${ROWS}.csv"
if [ ! -f "$NAT" ] || [ ! -f "$E164" ]; then
  # Templates from each region's metadata (mobile and fixed line, national format and E.164);
  # rows change the last six digits (mostly distinct numbers, as in a real export; the
  # metadata decides which are valid), so the national and E.164 files hold the same numbers.
  "$PY" - "$ROWS" "$NAT" "$E164" <<'PYEOF'
import random, sys
import phonenumbers as p
from phonenumbers import PhoneNumberFormat as F, PhoneNumberType as T
rows, nat_path, e164_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
regions = ["AT","BE","BG","HR","CY","CZ","DK","EE","FI","FR","DE","GR","HU","IE","IT","LV","LT",
           "LU","MT","NL","PL","PT","RO","SK","SI","ES","SE","IS","LI","NO","GB","CH","US"]
templates = []
for r in regions:
    for t in (T.MOBILE, T.FIXED_LINE):
        n = p.example_number_for_type(r, t)
        # Numbers the operator takes as E.164 (10 digits or more), so that the E.164 file is
        # all fast path.
        if n is not None and len(p.format_number(n, F.E164)) >= 11:
            nat = p.format_number(n, F.NATIONAL)
            # the positions of the national format's last six digits
            pos = [i for i, c in enumerate(nat) if c.isdigit()][-6:]
            templates.append((r, nat, pos, p.format_number(n, F.E164)[:-6]))
rng = random.Random(7)
with open(nat_path, "w") as fn, open(e164_path, "w") as fe:
    fn.write("id,phone,country\n"); fe.write("id,phone,country\n")
    for i in range(rows):
        r, nat, pos, e = templates[rng.randrange(len(templates))]
        d = "%06d" % rng.randrange(1000000)
        s = list(nat)
        for k, j in enumerate(pos):
            s[j] = d[k]
        fn.write(f"{i},{''.join(s)},{r}\n")
        fe.write(f"{i},{e}{d},{r}\n")
PYEOF
fi
echo "inputs: $NAT, $E164 ($ROWS rows each), $(nproc) cores"

run() { # label binary input extra-flags...
  local label=$1 bin=$2 in=$3; shift 3
  rm -rf "$DIR/phones_out"
  /usr/bin/time -v "$bin" hash "$in" -o "$DIR/phones_out" --phone-col phone --keep-col id -q "$@" \
    2> "$DIR/phones_time.txt"
  local secs rss
  secs=$(python3 -c "import json;print(json.load(open('$DIR/phones_out/_manifest.json'))['elapsed_s'])")
  rss=$(grep "Maximum resident" "$DIR/phones_time.txt" | awk '{print $6}')
  echo "$label: $ROWS phones in ${secs} s = $(python3 -c "print(f'{$ROWS/$secs:,.0f}')") phones/s, peak RSS $((rss / 1024)) MiB"
  python3 -c "import json;print('  phones:', json.load(open('$DIR/phones_out/_manifest.json')).get('phones'))"
}
run "national + --phone-region-col" target/release/euid-map "$NAT" --phone-region-col country
for _ in 1 2; do
  run "E.164" target/release/euid-map "$E164"
  if [ -n "${BASE_BIN:-}" ]; then
    run "E.164, $BASE_BIN" "$BASE_BIN" "$E164"
  fi
done
