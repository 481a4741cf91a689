#!/usr/bin/env bash
# The PyPI wheel, end to end (run by .ci/run): build it with maturin from the locked
# dependencies, for glibc 2.28 (manylinux_2_28, linked by zig from the `ziglang` package, so no
# old-glibc machine is needed); check that the tag tells the truth about the binary's highest
# GLIBC_ symbol; install it into a fresh venv with --no-index, on a PATH without cargo or a
# C compiler; run `euid-map --version`, the shim and the README's quick start with the
# installed command. Prints the build time and the wheel's size.
#   bash scripts/test_wheel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=target/wheel-venv
if ! "$TOOLS/bin/python" -c "import ziglang" 2>/dev/null || [ ! -x "$TOOLS/bin/maturin" ]; then
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install --quiet --disable-pip-version-check "maturin==1.16.0" "ziglang==0.17.0"
fi
GLIBC_BASELINE=2.28
rm -rf target/wheels
start=$(date +%s)
PATH="$ROOT/$TOOLS/bin:$PATH" "$TOOLS/bin/maturin" build --release --locked --zig \
  --compatibility "manylinux_${GLIBC_BASELINE/./_}" --out target/wheels 2>&1 | grep -E 'Built wheel|error|warning' || true
built=$(( $(date +%s) - start ))
wheel=$(ls target/wheels/euid_map-*.whl)
echo "test_wheel: built $(basename "$wheel") ($(du -h "$wheel" | cut -f1)) in ${built} s"
case "$(basename "$wheel")" in
  *"-manylinux_${GLIBC_BASELINE/./_}_x86_64.whl") ;;
  *) echo "test_wheel: FAIL: the wheel is not tagged manylinux_${GLIBC_BASELINE/./_}_x86_64" >&2; exit 1 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The binary inside the wheel: its highest GLIBC_ symbol version must not exceed the tag's.
python3 - "$wheel" "$work/euid-map" <<'PYEOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.endswith(".data/scripts/euid-map"))
    open(sys.argv[2], "wb").write(z.read(name))
PYEOF
highest=$(readelf -V --wide "$work/euid-map" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
echo "test_wheel: highest GLIBC_ symbol version in the binary: $highest (tag: $GLIBC_BASELINE)"
if [ "$(printf '%s\n%s\n' "$highest" "$GLIBC_BASELINE" | sort -V | tail -1)" != "$GLIBC_BASELINE" ]; then
  echo "test_wheel: FAIL: the binary needs glibc $highest, above the tag's $GLIBC_BASELINE" >&2
  exit 1
fi

# A fresh venv, the wheel only (no index), and a PATH holding the venv and nothing else.
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check --no-index "$wheel"
clean() { env -i HOME="$work" PATH="$work/venv/bin" "$@"; }
for tool in cargo rustc cc gcc; do
  if PATH="$work/venv/bin" command -v "$tool" >/dev/null 2>&1; then
    echo "test_wheel: FAIL: $tool is on the test PATH" >&2; exit 1
  fi
done
clean euid-map --version
[ "$(clean python -c 'import euid_map; print(euid_map.find_bin())')" = "$work/venv/bin/euid-map" ]
clean python -m euid_map --version >/dev/null
[ -x "$work/venv/bin/euid-map-nightly" ] && cmp -s "$work/venv/bin/euid-map-nightly" scripts/nightly.sh
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
echo "test_wheel: all checks passed"
