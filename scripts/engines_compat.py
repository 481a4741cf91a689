#!/usr/bin/env python3
"""Files written as other engines write them, through euid-map, read back by pyarrow.

Issue #26: pandas `category` (dictionary) identity columns, `large_string` and `string_view`
(Polars) kept columns beside plain strings, Spark's INT96 timestamps after 2262 (the usual
9999-12-31 "valid until"), `date64` kept columns, and the output's `row` column as int64.
Issue #32: Parquet written by Polars and DuckDB themselves in their default codecs (Polars:
zstd), pyarrow in every codec, a state compacted by Polars, and a CSV whose integer keys
with gaps Polars wrote as `1234.0`, refreshed without a customer dropped or duplicated.
Each check prints one line; the script exits 1 when one fails.

    python scripts/engines_compat.py --bin target/release/euid-map
"""
import argparse
import datetime
import os
import subprocess
import sys
import tempfile

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

failures = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{(': ' + detail) if detail and not ok else ''}")
    if not ok:
        failures.append(name)


def run(binary, args):
    p = subprocess.run([binary, *args], capture_output=True, text=True)
    return p.returncode, p.stderr


def read(out):
    return ds.dataset(out, format="parquet").to_table()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="euid-engines-") as tmp:
        return checks(a.bin, tmp)


def checks(binary, tmp):
    """Every check, in `tmp` (removed afterwards: it holds hashed identities)."""
    emails = [f"person{i}@example.com" for i in range(6)]

    # pandas: a `category` identity column is a dictionary of strings.
    p = os.path.join(tmp, "pandas.parquet")
    pq.write_table(pa.table({
        "id": pa.array(range(6), pa.int64()),
        "email": pa.array(emails).dictionary_encode(),
    }), p)
    out = os.path.join(tmp, "out-pandas")
    rc, err = run(binary, ["map", p, "-o", out, "--env", "local", "--keep-col", "id", "-q"])
    check("pandas category identity column is mapped", rc == 0, err.strip())
    if rc == 0:
        t = read(out)
        check("every category row is mapped", t.column("status").to_pylist() == ["mapped"] * 6)
        check("row column is int64", t.schema.field("row").type == pa.int64(), str(t.schema.field("row").type))

    # The same customers as plain strings give the same hashes.
    plain = os.path.join(tmp, "plain.parquet")
    pq.write_table(pa.table({"id": pa.array(range(6), pa.int64()), "email": emails}), plain)
    out_plain = os.path.join(tmp, "out-plain")
    rc, err = run(binary, ["map", plain, "-o", out_plain, "--env", "local", "-q"])
    if rc == 0 and os.path.exists(os.path.join(out, "_SUCCESS")):
        check("category and plain strings hash alike",
              read(out).column("identity_hash").to_pylist() == read(out_plain).column("identity_hash").to_pylist())

    # Polars and pyarrow beside each other: kept string columns of three flavours unify.
    files = []
    for i, typ in enumerate([pa.string(), pa.large_string(), pa.string_view()]):
        f = os.path.join(tmp, f"flavour{i}.parquet")
        pq.write_table(pa.table({
            "cid": pa.array([f"c{i}"], typ),
            "email": pa.array([emails[i]], typ),
        }), f)
        files.append(f)
    out = os.path.join(tmp, "out-flavours")
    rc, err = run(binary, ["map", *files, "-o", out, "--env", "local", "--keep-col", "cid", "-q"])
    check("string, large_string and string_view kept columns unify", rc == 0, err.strip())
    if rc == 0:
        t = read(out)
        check("kept values survive", sorted(t.column("cid").to_pylist()) == ["c0", "c1", "c2"])
        check("kept column is a plain string", t.schema.field("cid").type == pa.string(), str(t.schema.field("cid").type))

    # Spark: INT96 timestamps, one of them the 9999-12-31 placeholder; and a date64.
    spark = os.path.join(tmp, "spark.parquet")
    valid_until = [datetime.datetime(9999, 12, 31), datetime.datetime(2026, 11, 30, 12, 0, 0)]
    pq.write_table(pa.table({
        "email": emails[:2],
        "valid_until": pa.array(valid_until, pa.timestamp("us")),
    }), spark, use_deprecated_int96_timestamps=True, store_schema=False)  # Spark stores no Arrow schema
    check("the test file really holds INT96",
          pq.ParquetFile(spark).schema.column(1).physical_type == "INT96")
    out = os.path.join(tmp, "out-spark")
    rc, err = run(binary, ["map", spark, "-o", out, "--env", "local", "--keep-col", "valid_until", "-q"])
    check("INT96 kept columns are accepted", rc == 0, err.strip())
    if rc == 0:
        t = read(out)
        try:
            got = [v.replace(tzinfo=None) if v else v for v in t.column("valid_until").to_pylist()]
        except (ValueError, OverflowError) as e:  # an overflowed nanosecond value
            got = f"unreadable: {e}"
        check("INT96 9999-12-31 survives", got == valid_until, str(got))

    # pyarrow's own date64 (its Arrow schema in the footer says date64).
    dates = os.path.join(tmp, "date64.parquet")
    pq.write_table(pa.table({
        "email": emails[:2],
        "born": pa.array([datetime.date(1990, 1, 2), datetime.date(2000, 3, 4)], pa.date64()),
    }), dates)
    out = os.path.join(tmp, "out-date64")
    rc, err = run(binary, ["map", dates, "-o", out, "--env", "local", "--keep-col", "born", "-q"])
    check("date64 kept columns are accepted", rc == 0, err.strip())
    if rc == 0:
        t = read(out)
        born_type = pq.ParquetFile(os.path.join(out, "part-00000.parquet")).schema.column(
            t.schema.get_field_index("born")).logical_type
        check("date64 is written as a Parquet DATE", str(born_type) == "Date", str(born_type))
        check("date64 values survive",
              [str(d)[:10] for d in t.column("born").to_pylist()] == ["1990-01-02", "2000-03-04"])

    other_tools(binary, tmp, emails)

    print(f"engines_compat: {len(failures)} failed" if failures else "engines_compat: all checks passed")
    return 1 if failures else 0


def codecs(path):
    """The codecs of a Parquet file's column chunks."""
    md = pq.ParquetFile(path).metadata
    return {md.row_group(g).column(c).compression
            for g in range(md.num_row_groups) for c in range(md.num_columns)}


def other_tools(binary, tmp, emails):
    """Issue #32: files Polars and DuckDB write themselves, and pyarrow in every codec."""
    import duckdb
    import polars as pl

    n = 200
    ids = list(range(1, n + 1))
    mails = [f"customer{i}@example.com" for i in ids]
    reference = None

    def mapped(path, name):
        out = os.path.join(tmp, f"out-{name}")
        rc, err = run(binary, ["map", path, "-o", out, "--env", "local", "--keep-col", "id", "-q"])
        check(f"{name} ({'/'.join(sorted(codecs(path)))}) is read", rc == 0, err.strip())
        if rc != 0:
            return None
        t = read(out)
        return sorted(zip(t.column("identity_hash").to_pylist(), t.column("status").to_pylist()))

    p = os.path.join(tmp, "polars.parquet")
    pl.DataFrame({"id": ids, "email": mails}).write_parquet(p)  # Polars' default: zstd
    check("Polars wrote zstd by default", codecs(p) == {"ZSTD"}, str(codecs(p)))
    reference = mapped(p, "polars")
    check("Polars' rows are all mapped", reference is not None and all(s == "mapped" for _, s in reference))

    p = os.path.join(tmp, "duckdb.parquet")
    con = duckdb.connect()
    con.execute(f"COPY (SELECT range + 1 AS id, 'customer' || (range + 1) || '@example.com' AS email "
                f"FROM range({n})) TO '{p}' (FORMAT parquet)")
    check("DuckDB's default codec is read, the same rows", mapped(p, "duckdb") == reference)
    p = os.path.join(tmp, "duckdb-zstd.parquet")
    con.execute(f"COPY (SELECT * FROM '{os.path.join(tmp, 'duckdb.parquet')}') TO '{p}' "
                "(FORMAT parquet, COMPRESSION zstd)")
    check("DuckDB zstd, the same rows", mapped(p, "duckdb-zstd") == reference)

    table = pa.table({"id": pa.array(ids, pa.int64()), "email": mails})
    for codec in ["zstd", "gzip", "brotli", "lz4", "snappy", "none"]:
        p = os.path.join(tmp, f"pyarrow-{codec}.parquet")
        pq.write_table(table, p, compression=codec)
        check(f"pyarrow {codec}, the same rows", mapped(p, f"pyarrow-{codec}") == reference)

    # A CSV night, its dataset compacted by Polars (zstd, one file, no manifest) as the state.
    night0 = os.path.join(tmp, "export0.csv")
    pl.DataFrame({"id": ids, "email": mails}).write_csv(night0)
    rc, err = run(binary, ["map", night0, "-o", os.path.join(tmp, "night0"), "--env", "local",
                           "--keep-col", "id", "-q"])
    check("the CSV night is mapped", rc == 0, err.strip())
    state = os.path.join(tmp, "state-polars")
    os.makedirs(state)
    pl.read_parquet(os.path.join(tmp, "night0", "*.parquet")).write_parquet(
        os.path.join(state, "compacted.parquet"))
    # Tonight's export as Polars writes an integer key column with gaps: floats, `1234.0`.
    export = os.path.join(tmp, "export.csv")
    pl.DataFrame({"id": [float(i) for i in ids] + [None], "email": mails + ["nokey@example.com"]}).write_csv(export)
    with open(export) as f:
        check("Polars wrote the keys as 1.0, 2.0, …", "\n1.0," in f.read())
    night = os.path.join(tmp, "night-polars")
    rc, err = run(binary, ["refresh", "--state", state, "-o", night, export, "--key-col", "id",
                           "--keep-missing", "--env", "local", "-q"])
    check("refresh of a Polars-compacted zstd state with 1234.0 keys", rc == 0, err.strip())
    if rc == 0:
        t = read(night)
        keys = [k for k in t.column("id").to_pylist()]
        check("no customer duplicated or dropped by --keep-missing", len(t) == n + 1, f"{len(t)} rows")
        with open(os.path.join(night, "_manifest.json")) as f:
            import json
            r = json.load(f)["refresh"]
        check("every key met the state", r["missing_customers"] == 0 and r["new"] == 1, str(r))
        check("keys kept as tonight's export wrote them", "1.0" in keys, str(keys[:3]))


if __name__ == "__main__":
    sys.exit(main())
