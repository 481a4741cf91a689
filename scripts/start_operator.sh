# Sourced by the bench scripts: starts the release `euid-map operator` on a free loopback port
# with a bench key, waits until it answers, and stops it when the script exits.
# Sets BIN, URL, OP (its pid), EUID_API_KEY and EUID_CLIENT_SECRET. Expects DIR; OP_ARGS adds
# operator flags (faults, limits).
BIN=${BIN:-target/release/euid-map}
export EUID_API_KEY="bench-key"
EUID_CLIENT_SECRET=$(python3 -c "import base64;print(base64.b64encode(bytes(range(32))).decode())")
export EUID_CLIENT_SECRET
PORT=$(python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
URL="http://127.0.0.1:$PORT"
"$BIN" operator --listen "127.0.0.1:$PORT" ${OP_ARGS:-} 2> "$DIR/operator.log" &
OP=$!
trap 'kill $OP 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs "$URL/ops/healthcheck" >/dev/null 2>&1 && break; python3 -c "import time;time.sleep(0.05)"; done
