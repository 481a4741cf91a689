#!/bin/sh
# The nightly job behind every recipe in the README (cron, systemd, Kubernetes CronJob):
#
#   nightly.sh ROOT EXPORT KEY_COL [euid-map flags...]
#
# writes tonight's dataset to ROOT/YYYY-MM-DD (UTC). ROOT must exist (make it once, as a volume
# is mounted): a ROOT that is not there is an error (exit 1), never a first night. The state is the newest night under
# ROOT that finished (`euid-map latest`: a failed or interrupted night is never taken); the
# first night, with no state yet, is a plain `map`. Every run passes --resume, so the same
# command run again after a SIGTERM, a crash or a failure continues tonight's run, and on a
# night that already finished it sends nothing and exits as that night did (0, or 2 while it
# holds failed or stale identities) without counting as a new success. With
# --restart-if-changed, a retry after tonight's export was rewritten (the failed attempt read
# another version) discards that attempt's parts and starts tonight over by itself.
# Flags after KEY_COL go to euid-map (credentials, --env, metrics, tuning).
#
# Environment:
#   EUID_MAP          the binary (default: euid-map on the PATH)
#   EUID_MAP_DAY      tonight's folder name (default: today, UTC, YYYY-MM-DD)
#   EUID_MAP_NOW      refresh --now (default: now; tests set the emulator's simulated time)
#
# Exit codes: those of euid-map (0 done, 2 some identities failed or stale, 1 fatal, or ROOT
# missing or unreadable, 64 usage, 143 SIGTERM).
set -eu
if [ $# -lt 3 ]; then
  echo "usage: nightly.sh ROOT EXPORT KEY_COL [euid-map flags...]" >&2
  exit 64
fi
root=${1%/}
export_path=$2
key=$3
shift 3
bin=${EUID_MAP:-euid-map}
day=${EUID_MAP_DAY:-$(date -u +%F)}
out="$root/$day"
# `latest` exits 3 when no night has finished yet (the first night: map), 1 when ROOT or a
# night's metadata cannot be read (stop: never start afresh on a storage error).
set +e
prev=$("$bin" latest "$root" --before "$day")
found=$?
set -e
if [ "$found" -ne 0 ] && [ "$found" -ne 3 ]; then
  echo "nightly: cannot tell the last finished night under $root (exit $found)" >&2
  exit "$found"
fi
if [ "$found" -eq 0 ]; then
  echo "nightly: refresh of $prev into $out" >&2
  if [ -n "${EUID_MAP_NOW:-}" ]; then
    exec "$bin" refresh --state "$prev" -o "$out" --resume --restart-if-changed "$export_path" \
      --key-col "$key" --now "$EUID_MAP_NOW" "$@"
  fi
  exec "$bin" refresh --state "$prev" -o "$out" --resume --restart-if-changed "$export_path" \
    --key-col "$key" "$@"
fi
echo "nightly: no finished night under $root yet: first map into $out" >&2
# The first night is a `map`: the flags only `refresh` takes are left out of it.
n=$#
while [ "$n" -gt 0 ]; do
  a=$1; shift; n=$((n - 1))
  case $a in
    --no-optout-sweep|--keep-missing|--allow-schema-change) ;;
    --optout-concurrency|--max-drop-fraction|--partition-rows|--now)
      if [ "$n" -gt 0 ]; then shift; n=$((n - 1)); fi ;;
    --optout-concurrency=*|--max-drop-fraction=*|--partition-rows=*|--now=*) ;;
    *) set -- "$@" "$a" ;;
  esac
done
exec "$bin" map "$export_path" -o "$out" --resume --restart-if-changed --keep-col "$key" "$@"
