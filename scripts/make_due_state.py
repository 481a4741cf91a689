#!/usr/bin/env python3
"""Rewrites a map/refresh output dataset so that a given fraction of its mapped rows is due:
those rows get a refresh_from one day before NOW, all others one year after. Part metadata
(euid-map's resume information) is kept. For scripts/bench_refresh.sh.

    python scripts/make_due_state.py STATE_DIR NOW_RFC3339 [--fraction 0.00274] [--seed 7]
"""
import argparse
import datetime as dt
import glob
import os
import random

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("state")
    ap.add_argument("now")
    ap.add_argument("--fraction", type=float, default=1 / 365)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    now = dt.datetime.fromisoformat(a.now.replace("Z", "+00:00"))
    past = pa.scalar(now - dt.timedelta(days=1), pa.timestamp("ms", tz="UTC"))
    future = pa.scalar(now + dt.timedelta(days=365), pa.timestamp("ms", tz="UTC"))
    due = total = 0
    for path in sorted(glob.glob(os.path.join(a.state, "part-*.parquet"))):
        kv = pq.ParquetFile(path).metadata.metadata or {}
        t = pq.read_table(path)
        mapped = pc.equal(t["status"], "mapped").to_pylist()
        pick = [m and rng.random() < a.fraction for m in mapped]
        due += sum(pick)
        total += len(mapped)
        rf = [past.as_py() if p else (future.as_py() if m else None) for p, m in zip(pick, mapped)]
        col = pa.array(rf, type=pa.timestamp("ms", tz="UTC"))
        t = t.set_column(t.schema.get_field_index("refresh_from"), t.schema.field("refresh_from"), col)
        # Keep euid-map's part metadata (resume information), which read_table drops.
        t = t.replace_schema_metadata({k: v for k, v in kv.items() if k != b"ARROW:schema"})
        pq.write_table(t, path + ".tmp", compression="snappy")
        os.replace(path + ".tmp", path)
    print(f"made {due} of {total} rows due ({100 * due / max(total, 1):.3f}%)")


if __name__ == "__main__":
    main()
