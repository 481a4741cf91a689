#!/usr/bin/env bash
# The PyPI wheel, end to end (run by .ci/run): one abi3 wheel with the `euid_map` module and
# the `euid-map` command.
#  1. the native binary for glibc 2.28 (cargo-zigbuild, linked by zig from the `ziglang`
#     package, so no old-glibc machine is needed), copied into python/euid_map/bin/;
#  2. the pyo3 module and the package around it (maturin, from the locked dependencies);
#  3. the tag tells the truth: cp39-abi3, manylinux_2_28, no GLIBC_ symbol above 2.28 in the
#     binary or the module;
#  4. installed into a fresh venv with --no-index (pyarrow from a local wheelhouse), on a PATH
#     without cargo or a C compiler: `euid-map --version`, the module, `python -m euid_map`,
#     the nightly script, the README's quick start with the installed command, and the same
#     exit codes, stdout and broken-pipe behaviour as the native binary;
#  5. the CLI end-to-end checks (exit codes 0/1/2/64, SIGTERM draining → 143, resume) run
#     against the installed command (EUID_MAP_BIN).
# Prints the build times and the wheel's size. Leaves the wheel in target/wheels.
#   bash scripts/test_wheel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=target/wheel-venv
if ! "$TOOLS/bin/python" -c "import ziglang" 2>/dev/null || [ ! -x "$TOOLS/bin/maturin" ] \
  || [ ! -x "$TOOLS/bin/cargo-zigbuild" ]; then
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install --quiet --disable-pip-version-check "maturin==1.16.0" "ziglang==0.17.0" "cargo-zigbuild==0.24.0"
fi
export PATH="$ROOT/$TOOLS/bin:$PATH"
GLIBC_BASELINE=2.28
TAG="manylinux_${GLIBC_BASELINE/./_}"

start=$(date +%s)
CARGO_PROFILE_RELEASE_STRIP=symbols cargo zigbuild --release --locked --quiet \
  --target "x86_64-unknown-linux-gnu.$GLIBC_BASELINE" --bin euid-map
mkdir -p python/euid_map/bin
install -m 755 target/x86_64-unknown-linux-gnu/release/euid-map python/euid_map/bin/euid-map
bin_built=$(( $(date +%s) - start ))

rm -rf target/wheels python/euid_map/_native*.so
start=$(date +%s)
maturin build --release --locked --zig --compatibility "$TAG" --out target/wheels 2>&1 \
  | grep -E 'Built wheel|error|warning' || true
built=$(( $(date +%s) - start ))
wheel=$(ls target/wheels/euid_map-*.whl)
echo "test_wheel: built $(basename "$wheel") ($(du -h "$wheel" | cut -f1)): binary ${bin_built} s, module and wheel ${built} s"
case "$(basename "$wheel")" in
  *"-cp39-abi3-${TAG}_x86_64.whl") ;;
  *) echo "test_wheel: FAIL: the wheel is not tagged cp39-abi3-${TAG}_x86_64" >&2; exit 1 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The binary and the module inside the wheel: their highest GLIBC_ symbol version must not
# exceed the tag's.
python3 - "$wheel" "$work" <<'PYEOF'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = z.namelist()
    for want, out in (("euid_map/bin/euid-map", "euid-map"), ("euid_map/_native.abi3.so", "_native.so")):
        assert want in names, f"{want} is not in the wheel: {names}"
        open(os.path.join(sys.argv[2], out), "wb").write(z.read(want))
        mode = z.getinfo(want).external_attr >> 16
        assert want.endswith(".so") or mode & 0o111, f"{want} is not executable in the wheel"
PYEOF
for f in euid-map _native.so; do
  highest=$(readelf -V --wide "$work/$f" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
  echo "test_wheel: highest GLIBC_ symbol version in $f: $highest (tag: $GLIBC_BASELINE)"
  if [ "$(printf '%s\n%s\n' "$highest" "$GLIBC_BASELINE" | sort -V | tail -1)" != "$GLIBC_BASELINE" ]; then
    echo "test_wheel: FAIL: $f needs glibc $highest, above the tag's $GLIBC_BASELINE" >&2
    exit 1
  fi
done

# pyarrow, the module's one dependency, from a local wheelhouse (downloaded once).
HOUSE=target/wheelhouse
if ! ls "$HOUSE"/pyarrow-*.whl >/dev/null 2>&1; then
  python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: -d "$HOUSE" "pyarrow>=14"
fi
# A fresh venv, the wheel only (no index), and a PATH holding the venv and nothing else.
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check --no-index --find-links "$HOUSE" "$wheel"
clean() { env -i HOME="$work" PATH="$work/venv/bin" "$@"; }
for tool in cargo rustc cc gcc; do
  if PATH="$work/venv/bin" command -v "$tool" >/dev/null 2>&1; then
    echo "test_wheel: FAIL: $tool is on the test PATH" >&2; exit 1
  fi
done
CMD="$work/venv/bin/euid-map"
NATIVE="$ROOT/python/euid_map/bin/euid-map"
clean euid-map --version
[ "$(clean python -c 'import euid_map; print(euid_map.find_bin())')" = "$work/venv/lib/$(ls "$work/venv/lib")/site-packages/euid_map/bin/euid-map" ]
clean python -m euid_map --version >/dev/null
[ -x "$work/venv/bin/euid-map-nightly" ] && cmp -s "$work/venv/bin/euid-map-nightly" scripts/nightly.sh
# The module: a hash equal to the command's, and a mapping against the embedded emulator.
clean python - <<'PYEOF'
import subprocess, pyarrow as pa, euid_map
h = euid_map.hash_emails(pa.array(["Jane.Doe+News@GMAIL.com", "not-an-email"]))
cli = subprocess.run([euid_map.find_bin(), "normalize", "--email", "Jane.Doe+News@GMAIL.com"],
                     capture_output=True, text=True, check=True).stdout
assert h.field("identity_hash")[0].as_py() in cli, (h, cli)
assert h.field("status").to_pylist() == ["hashed", "invalid"], h
t = pa.table({"identity_type": ["email"], "identity_hash": h.field("identity_hash").slice(0, 1)})
out = euid_map.map_table(t, env="local")
assert out.column("status").to_pylist() == ["mapped"], out
print("test_wheel: the installed module hashes as the command does and maps against the embedded emulator")
PYEOF
# The installed command behaves as the binary: same stdout, stderr and exit code.
same() {
  local a b
  a=$(clean "$CMD" "$@" 2>&1; echo "exit $?")
  b=$(clean "$NATIVE" "$@" 2>&1; echo "exit $?")
  [ "$a" = "$b" ] || { echo "test_wheel: FAIL: euid-map $* differs from the binary:" >&2; diff <(echo "$a") <(echo "$b") >&2; exit 1; }
}
same --version
same normalize --email " USER@example.com" --phone "06 12 34 56 78" --region FR
same map --no-such-flag
same map "$work/missing.csv" -o "$work/never" --env local
mkdir "$work/nights"
same latest "$work/nights"   # exit 3: no finished night yet
code=0; clean "$CMD" latest "$work/nights" >/dev/null 2>&1 || code=$?
[ "$code" = 3 ] || { echo "test_wheel: FAIL: latest on an empty ROOT exited $code, not 3" >&2; exit 1; }
# A reader that stops early (`| head`) is no error for the command, as for the binary.
for c in "$CMD" "$NATIVE"; do
  set +o pipefail
  clean "$c" completions bash | head -c 10 >/dev/null
  status=${PIPESTATUS[0]}
  set -o pipefail
  [ "$status" = 0 ] || { echo "test_wheel: FAIL: $c completions | head exited $status" >&2; exit 1; }
done
# README's quick start, with the installed command.
(cd "$work" && clean euid-map map "$ROOT/fixtures/customers.csv" -o out/customers --env local \
  --keep-col customer_id -q)
[ -f "$work/out/customers/_SUCCESS" ]
python3 - "$work/out/customers/_manifest.json" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
assert m["input_rows"] == 10000, m["input_rows"]
assert m["counts"]["mapped"] > 9000, m["counts"]
assert m["schema_version"] == 1, m.get("schema_version")
print(f"test_wheel: the installed euid-map mapped the quick start: {m['counts']['mapped']} mapped of {m['output_rows']} rows")
PYEOF
# The CLI end-to-end checks against the installed command: exit codes (0, 1, 2, 64; 3 above), SIGTERM
# draining (143) and --resume, credentials, and the operator it serves itself.
EUID_MAP_BIN="$CMD" cargo test --quiet --test trust --test cli --test credentials 2>&1 | grep -E '^test result|FAILED|panicked' \
  | tee "$work/e2e.txt"
! grep -qE 'FAILED|panicked' "$work/e2e.txt"
[ "$(grep -c '^test result: ok' "$work/e2e.txt")" = 3 ]
echo "test_wheel: all checks passed"
