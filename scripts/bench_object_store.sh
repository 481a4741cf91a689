#!/usr/bin/env bash
# Object storage against local files: the same `euid-map map` (and `hash`) from and to moto's
# S3 server on loopback, and from and to local files, against `euid-map operator` (release
# builds, same machine). Prints wall time, throughput and peak RSS of each, and the ratios
# the object-storage issue asks for (throughput >= 80% of local, RSS within 64 MiB).
#   scripts/bench_object_store.sh                  # 1M and 5M rows, moto's S3 server
#   SIZES="1000000" scripts/bench_object_store.sh
#   S3S_FS=/path/to/s3s-fs scripts/bench_object_store.sh
#     the same against s3s-fs, a Rust S3 server over a directory (cargo install
#     s3s-fs@0.14.1 --features binary): much lighter than moto, which on 2 shared cores
#     takes about as much CPU as the client.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000000 5000000"}
DIR=target/bench
mkdir -p "$DIR"
cargo build --release --quiet
bash scripts/setup_venv.sh >/dev/null
. scripts/start_operator.sh
S3PORT=$(python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
ROOT="$DIR/s3s-root"
if [ -n "${S3S_FS:-}" ]; then
  SERVER=s3s-fs
  rm -rf "$ROOT" && mkdir -p "$ROOT/bench/in"
  "$S3S_FS" --host 127.0.0.1 --port "$S3PORT" --access-key bench --secret-key bench-secret "$ROOT" > "$DIR/s3s.log" 2>&1 &
else
  SERVER=moto
  target/py-venv/bin/moto_server -H 127.0.0.1 -p "$S3PORT" > "$DIR/moto.log" 2>&1 &
fi
MOTO=$!
trap 'kill $OP $MOTO 2>/dev/null || true' EXIT
for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$S3PORT/" && break; python3 -c "import time;time.sleep(0.05)"; done
# moto checks no signature but takes the principal from the Authorization header.
AUTH="Authorization: AWS4-HMAC-SHA256 Credential=bench/20261127/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00"
[ "$SERVER" = moto ] && curl -fs -X PUT -H "$AUTH" "http://127.0.0.1:$S3PORT/bench" -o /dev/null
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$S3PORT" AWS_ALLOW_HTTP=true
echo "machine: $(nproc) cores; operator at $URL; $SERVER S3 at $AWS_ENDPOINT_URL"

TICK=$(getconf CLK_TCK)
moto_cpu() { awk '{print $14 + $15}' "/proc/$MOTO/stat"; }
measure() { # label, then the command; prints wall s, peak RSS MiB, client CPU s, moto CPU s
  local label=$1; shift
  local m0; m0=$(moto_cpu)
  /usr/bin/time -f "%e %M %U %S" -o "$DIR/os_time.txt" "$@"
  local m1; m1=$(moto_cpu)
  read -r wall rss usr sys < "$DIR/os_time.txt"
  echo "$label $wall $((rss / 1024)) $(python3 -c "print($usr + $sys)") $(python3 -c "print(($m1 - $m0) / $TICK)")"
}

for ROWS in $SIZES; do
  IN="$DIR/customers_${ROWS}.csv"
  [ -f "$IN" ] || python3 scripts/gen_customers.py --rows "$ROWS" --dup 0.2 > "$IN"
  if [ "$SERVER" = moto ]; then
    curl -fs -X PUT -H "$AUTH" -H "Content-Type: application/octet-stream" -H "Expect:" \
      --data-binary @"$IN" "http://127.0.0.1:$S3PORT/bench/in/customers_${ROWS}.csv" -o /dev/null
  else
    cp "$IN" "$ROOT/bench/in/customers_${ROWS}.csv" # s3s-fs serves the directory as is
  fi
  for job in map hash; do
    extra=(--keep-col customer_id -q)
    [ "$job" = map ] && extra+=(--base-url "$URL")
    rm -rf "$DIR/os_local"
    L=$(measure local "$BIN" "$job" "$IN" -o "$DIR/os_local" "${extra[@]}")
    R=$(measure s3 "$BIN" "$job" "s3://bench/in/customers_${ROWS}.csv" -o "s3://bench/out/$job-$ROWS" "${extra[@]}")
    python3 - "$ROWS" "$job" "$L" "$R" <<'PYEOF'
import sys
rows, job = int(sys.argv[1]), sys.argv[2]
_, lw, lr, lc, _ = sys.argv[3].split(); _, rw, rr, rc, mc = sys.argv[4].split()
lw, rw, lr, rr, lc, rc, mc = float(lw), float(rw), int(lr), int(rr), float(lc), float(rc), float(mc)
print(f"{job} {rows:>9,} rows: local {lw:6.2f} s = {rows/lw:>9,.0f} rows/s, {lr} MiB, {lc:.2f} CPU-s | "
      f"s3 {rw:6.2f} s = {rows/rw:>9,.0f} rows/s, {rr} MiB, {rc:.2f} CPU-s (S3 server: {mc:.2f} CPU-s) | "
      f"s3/local throughput {100*lw/rw:.0f}%, RSS {rr-lr:+d} MiB")
PYEOF
  done
done
