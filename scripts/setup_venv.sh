#!/usr/bin/env bash
# Creates (once) the Python venv the compatibility scripts, baselines and object-store tests
# use, under the build directory: target/py-venv with the official SDK (uid2-client),
# pyarrow, moto's S3 server (moto[server]) and phonenumbers (Google's libphonenumber for Python,
# the oracle of scripts/phone_parity.py: the release whose metadata euid-map's rlibphonenumber
# carries), DuckDB (scripts/lookup_join.py joins the lookup table in it) and Polars
# (scripts/engines_compat.py reads files Polars and DuckDB wrote themselves), and for the
# Python module's checks and recipes (scripts/test_python.py) pandas and PySpark (local mode;
# Java from Debian, scripts/install_ci_deps.sh). Prints its python.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/py-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import uid2_client, pyarrow, moto, phonenumbers, duckdb, polars, pandas, pyspark" 2>/dev/null \
  || [ ! -x "$VENV/bin/moto_server" ]; then
  mkdir -p target
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "uid2-client==2.9.0" "pyarrow>=14" "moto[server]>=5,<6" "phonenumbers==9.0.42" "duckdb==2.0.1" "polars==2.1.0" \
    "pandas>=2,<3" "pyspark==4.3.0" >&2
fi
echo "$VENV/bin/python"
