#!/usr/bin/env python3
"""Baseline for scripts/bench_hash.sh: the `hash` job written with the official Python SDK
and pyarrow (CSV in, Parquet out), as a user would script it.

    python scripts/baseline_hash_sdk.py INPUT.csv OUT.parquet [--rows N]
"""
import argparse
import csv
import time

import pyarrow as pa
import pyarrow.parquet as pq
from uid2_client import normalize_and_hash_email, normalize_and_hash_phone

BATCH = 100_000


def h(fn, v):
    if not v:
        return None, "missing"
    try:
        return fn(v), "hashed"
    except ValueError:
        return None, "invalid"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--rows", type=int, default=0, help="stop after N rows (0: all)")
    a = ap.parse_args()
    t0 = time.time()
    schema = pa.schema([("row", pa.int64()), ("customer_id", pa.string()), ("identity_type", pa.string()),
                        ("identity_hash", pa.string()), ("status", pa.string())])
    writer = pq.ParquetWriter(a.output, schema)
    cols = {k: [] for k in schema.names}
    n = 0
    with open(a.input, newline="", encoding="utf-8") as f:
        r = csv.reader(f)
        next(r)
        for i, rec in enumerate(r):
            if a.rows and i >= a.rows:
                break
            cid, email, phone = (rec + ["", "", ""])[:3]
            for kind, fn, v in (("email", normalize_and_hash_email, email), ("phone", normalize_and_hash_phone, phone)):
                hv, st = h(fn, v)
                cols["row"].append(i)
                cols["customer_id"].append(cid)
                cols["identity_type"].append(kind)
                cols["identity_hash"].append(hv)
                cols["status"].append(st)
            n += 1
            if len(cols["row"]) >= BATCH:
                writer.write_table(pa.table(cols, schema=schema))
                cols = {k: [] for k in schema.names}
    if cols["row"]:
        writer.write_table(pa.table(cols, schema=schema))
    writer.close()
    dt = time.time() - t0
    print(f"baseline (Python SDK + pyarrow): {n} rows in {dt:.2f} s = {n / dt:,.0f} rows/s")


if __name__ == "__main__":
    main()
