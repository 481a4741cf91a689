#!/usr/bin/env bash
# Backfill benchmark (issue #27): a generated export where one row in four repeats an earlier
# customer at random (scripts/gen_customers.py --dup 0.25), mapped against the release
# emulator on loopback with --dedupe window (today's behaviour) and --dedupe exact: wall
# time, peak RSS, identities sent against distinct identities, scratch space; then the two
# datasets compared row for row in DuckDB (all columns but mapped_at), and --distinct.
#   scripts/bench_backfill.sh                # 15M rows
#   ROWS=1000000 scripts/bench_backfill.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-15000000}
DIR=target/bench
mkdir -p "$DIR"
[ -n "${BIN:-}" ] || cargo build --release --quiet
PY=$(bash scripts/setup_venv.sh)
. scripts/start_operator.sh
IN="$DIR/backfill_${ROWS}.csv"
[ -f "$IN" ] || python3 scripts/gen_customers.py --rows "$ROWS" --dup 0.25 --clean --seed 27 > "$IN"
echo "machine: $(nproc) cores; input $IN ($(du -h "$IN" | cut -f1), $ROWS rows)"
rss_of() { awk '/Maximum resident/ {printf "%d", $6 / 1024}' "$1"; }
wall_of() { awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$1"; }
for mode in window exact distinct; do
  out="$DIR/backfill_$mode"
  rm -rf "$out"
  flag=(--dedupe "$mode"); [ "$mode" = distinct ] && flag=(--distinct)
  keep=(--keep-col customer_id); [ "$mode" = distinct ] && keep=()
  # Sample the scratch folder's size while the run goes (its peak is what a user must have).
  ( peak=0; while [ ! -f "$out/_SUCCESS" ]; do
      s=$(du -sb "$out/.dedupe.tmp" 2>/dev/null | cut -f1 || echo 0); [ "${s:-0}" -gt "$peak" ] && peak=$s
      python3 -c "import time; time.sleep(0.5)"; done; echo "$peak" > "$DIR/backfill_${mode}_scratch.txt" ) &
  sampler=$!
  /usr/bin/time -v "$BIN" map "$IN" -o "$out" --base-url "$URL" "${keep[@]}" "${flag[@]}" -q 2> "$DIR/backfill_${mode}_time.txt"
  wait $sampler
  python3 - "$out/_manifest.json" "$mode" "$(wall_of "$DIR/backfill_${mode}_time.txt")" "$(rss_of "$DIR/backfill_${mode}_time.txt")" "$(cat "$DIR/backfill_${mode}_scratch.txt")" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1])); mode, wall, rss, scratch = sys.argv[2:6]
print(f"{mode:8}: {m['input_rows']:,} rows in {wall} (elapsed_s {m['elapsed_s']}), peak RSS {rss} MiB, "
      f"{m['hashes_sent']:,} identities sent in {m['client']['requests']:,} requests, output rows {m['output_rows']:,}, "
      f"scratch peak {int(scratch) / 2**20:,.0f} MiB (manifest: {m.get('dedupe_scratch_bytes', 0) / 2**20:,.0f} MiB), dedupe {m.get('dedupe')}")
PYEOF
done
"$PY" - "$DIR" <<'PYEOF'
import json, sys
import duckdb
d = sys.argv[1]
w, e = json.load(open(f"{d}/backfill_window/_manifest.json")), json.load(open(f"{d}/backfill_exact/_manifest.json"))
distinct = e["hashes_sent"]
print(f"window sent {w['hashes_sent']:,} for {distinct:,} distinct identities: {w['hashes_sent'] - distinct:,} re-sent "
      f"({100 * (w['hashes_sent'] - distinct) / w['hashes_sent']:.1f}% of its requests' identities); exact re-sent 0")
db = duckdb.connect()
cols = "source, row, customer_id, identity_type, identity_hash, status, reason, raw_euid, previous_raw_euid, refresh_from"
diff = db.execute(f"""
  SELECT count(*) FROM (
    (SELECT {cols} FROM read_parquet('{d}/backfill_window/part-*.parquet')
     EXCEPT ALL SELECT {cols} FROM read_parquet('{d}/backfill_exact/part-*.parquet'))
    UNION ALL
    (SELECT {cols} FROM read_parquet('{d}/backfill_exact/part-*.parquet')
     EXCEPT ALL SELECT {cols} FROM read_parquet('{d}/backfill_window/part-*.parquet')))""").fetchone()[0]
print(f"rows differing between window and exact (all columns but mapped_at): {diff}")
lk = db.execute(f"SELECT count(*) FROM read_parquet('{d}/backfill_distinct/part-*.parquet')").fetchone()[0]
print(f"--distinct: {lk:,} lookup rows for {distinct:,} distinct identities")
sys.exit(1 if diff or lk != distinct else 0)
PYEOF
