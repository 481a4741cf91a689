#!/usr/bin/env bash
# Installs the servers and tools the tests use when they are missing. Idempotent; needs root
# for apt (CI runs as root).
# - Debian: the Prometheus Pushgateway and promtool (package prometheus); Java
#   (default-jre-headless) for PySpark.
# - PyPI, into target/py-venv (scripts/setup_venv.sh): uid2-client, pyarrow, and moto's S3
#   server (moto[server], started by tests/object_store.rs as `moto_server`).
# - npm, into target/node: Azurite, Azure's blob emulator (`azurite-blob`).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v prometheus-pushgateway >/dev/null 2>&1 || missing+=(prometheus-pushgateway)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# Java for PySpark's local mode (scripts/test_python.py runs the Spark recipe).
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The packages would start their daemons where an init system runs; the tests start
  # their own on free loopback ports with private state. Keep the daemons from starting,
  # the Debian way for containers and CI (invoke-rc.d asks policy-rc.d; 101 = not allowed),
  # instead of ending processes by name afterwards, which could end someone else's.
  policy=/usr/sbin/policy-rc.d
  if [ -e "$policy" ]; then
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f "$policy"
    trap - EXIT
  fi
fi
# Python venv (SDK, pyarrow, moto).
bash scripts/setup_venv.sh >/dev/null
# Azurite.
if [ ! -x target/node/node_modules/.bin/azurite-blob ]; then
  echo "installing azurite (npm)" >&2
  mkdir -p target/node
  npm install --prefix target/node --no-audit --no-fund --silent "azurite@3" >&2
fi
