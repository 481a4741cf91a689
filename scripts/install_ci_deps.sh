#!/usr/bin/env bash
# Installs the servers and tools the tests use, from Debian's packages, when they are
# missing: the Prometheus Pushgateway and promtool (package prometheus). Idempotent; needs
# root (CI runs as root).
set -euo pipefail
missing=()
command -v prometheus-pushgateway >/dev/null 2>&1 || missing+=(prometheus-pushgateway)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The packages start their daemons where an init system runs; the tests start their own
  # on free loopback ports, so stop the ones this install brought up.
  pkill -x prometheus 2>/dev/null || true
  pkill -x prometheus-pushgateway 2>/dev/null || true
fi
