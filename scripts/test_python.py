#!/usr/bin/env python3
"""The Python module against the command it was built with (run by .ci/run, after
scripts/test_wheel.sh installed the wheel into the venv running this script).

1. Parity: a corpus of awkward emails and phones (a region column, many countries, junk)
   hashed through `euid_map.hash_emails`/`hash_phones` equals `euid-map hash` of the same
   file row for row (0 mismatches); the same corpus hashed inside Spark local mode by the
   Spark recipe's executor function too.
2. Speed (figures; `--strict` asserts them): the module's CPU against the command's on the
   same values, and its rate against the SDK's per-row `normalize_and_hash_email` loop.
3. Mapping: a table mapped through `euid_map.map_table` against the embedded emulator equals
   the command's dataset (status, raw ids); a long stream stays within its memory bound; a
   SIGINT mid-stream raises KeyboardInterrupt without a hang.
4. The recipes of examples/python (README "Spark, DuckDB, Polars"): each one's raw EUIDs per
   event equal a plain `euid-map map` of the same rows, and the Spark recipe, run against a
   standalone `euid-map operator`, sends each distinct identity once (the operator's counter).
   README's code blocks are these files, byte for byte.

    python scripts/test_python.py --bin PATH/TO/euid-map [--rows 1000000] [--stream-rows 10000000] [--strict]
"""
import argparse
import base64
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

import euid_map

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "examples", "python"))

import parity_sdk  # noqa: E402  (the awkward emails)
import phone_parity  # noqa: E402  (the awkward phones of many regions)

API_KEY = "EUID-C-L-1-test.key"
SECRET = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def cpu_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def corpus(rows, seed=35):
    rng = random.Random(seed)
    phones = phone_parity.corpus(rng, rows)[:rows]
    emails = [parity_sdk.awkward_email(rng) for _ in range(rows)]
    return pa.table({
        "event_id": pa.array(range(rows), pa.int64()),
        "email": pa.array(emails, pa.string()),
        "phone": pa.array([p for p, _ in phones], pa.string()),
        "country": pa.array([c for _, c in phones], pa.string()),
    })


def cli_hash(binary, path, out):
    before = cpu_children()
    subprocess.run([binary, "hash", path, "-o", out, "-q", "--email-col", "email",
                    "--phone-col", "phone", "--phone-region-col", "country"], check=True)
    cpu = cpu_children() - before
    t = pq.read_table(out, columns=["row", "identity_column", "identity_hash", "status", "reason"])
    return t, cpu


def parity_and_speed(binary, rows, tmp, strict):
    t = corpus(rows)
    path = os.path.join(tmp, "corpus.parquet")
    pq.write_table(t, path)
    cli, cli_cpu = cli_hash(binary, path, os.path.join(tmp, "hashed"))
    best = None
    for _ in range(3):
        before, start = cpu_self(), time.perf_counter()
        e = euid_map.hash_emails(t.column("email"))
        p = euid_map.hash_phones(t.column("phone"), region=t.column("country"))
        took = (cpu_self() - before, time.perf_counter() - start)
        best = took if best is None or took[0] < best[0] else best
    py_cpu, py_wall = best
    by_key = {}
    cols = {c: cli.column(c).to_pylist() for c in cli.column_names}
    for i in range(cli.num_rows):
        by_key[(cols["row"][i], cols["identity_column"][i])] = (
            cols["identity_hash"][i], cols["status"][i], cols["reason"][i])
    mismatches = 0
    first = min(cols["row"])  # the command's number of the file's first row
    assert len(by_key) == 2 * rows, (len(by_key), rows)
    for col, got in (("email", e), ("phone", p)):
        h, s, r = (got.field(f).to_pylist() for f in ("identity_hash", "status", "reason"))
        for i in range(rows):
            want = by_key.get((first + i, col))
            if want != (h[i], s[i], r[i]):
                mismatches += 1
                if mismatches <= 5:
                    print(f"  mismatch {col} row {i}: module {(h[i], s[i], r[i])} command {want}")
    print(f"parity: {2 * rows:,} values hashed by the module and by `euid-map hash`: {mismatches} mismatches")
    assert mismatches == 0

    # The SDK's per-row loop on a sample of the same emails.
    try:
        from uid2_client import normalize_and_hash_email
    except ImportError:
        normalize_and_hash_email = None
    ratio = None
    if normalize_and_hash_email is not None:
        sample = t.column("email").to_pylist()[: min(rows, 200_000)]
        start = time.perf_counter()
        for v in sample:
            try:
                normalize_and_hash_email(v)
            except Exception:  # the SDK raises on invalid values
                pass
        sdk_rate = len(sample) / (time.perf_counter() - start)
        start = time.perf_counter()
        euid_map.hash_emails(t.column("email"))
        mod_rate = rows / (time.perf_counter() - start)
        ratio = mod_rate / sdk_rate
        print(f"speed: emails/s: module {mod_rate:,.0f}, SDK loop {sdk_rate:,.0f} ({ratio:.0f}x)")
    print(f"speed: CPU for {2 * rows:,} values: module {py_cpu:.2f} s ({py_wall:.2f} s wall), "
          f"`euid-map hash` {cli_cpu:.2f} s (reads and writes files too): {py_cpu / cli_cpu:.2f}x")
    if strict:
        assert py_cpu <= 1.25 * cli_cpu, (py_cpu, cli_cpu)
        assert ratio is None or ratio >= 20, ratio
    return path, by_key, first


def email_table(rows, seed=7):
    rng = random.Random(seed)
    pool = [f"person{i}@example.com" for i in range(rows * 3 // 4)]
    return pa.table({"email": pa.array([rng.choice(pool) for _ in range(rows)], pa.string())})


def mapping_equals_command(binary, rows, tmp):
    t = email_table(rows)
    path = os.path.join(tmp, "emails.parquet")
    pq.write_table(t, path)
    out = os.path.join(tmp, "mapped")
    subprocess.run([binary, "map", path, "-o", out, "--env", "local", "-q"], check=True)
    cli = pq.read_table(out, columns=["row", "status", "raw_euid", "previous_raw_euid"]).sort_by("row")
    hashed = euid_map.hash_emails(t.column("email"))
    ids = pa.table({"identity_type": pa.array(["email"] * rows), "identity_hash": hashed.field("identity_hash")})
    mapped = euid_map.map_table(ids, env="local")
    for c in ("status", "raw_euid", "previous_raw_euid"):
        a, b = mapped.column(c).to_pylist(), cli.column(c).to_pylist()
        diff = sum(1 for x, y in zip(a, b) if x != y)
        assert len(a) == len(b) == rows and diff == 0, (c, len(a), len(b), diff)
    print(f"map: {rows:,} rows through euid_map.map_table equal `euid-map map` (status, raw_euid, previous_raw_euid)")


STREAM_CHILD = r"""
import base64, hashlib, sys, pyarrow as pa, euid_map
rows, batch = int(sys.argv[1]), 100_000
opts = dict(env="local") if len(sys.argv) < 3 else dict(base_url=sys.argv[2], api_key=sys.argv[3], client_secret=sys.argv[4])
def hwm():  # peak RSS of this process, MiB (ru_maxrss would include the parent's: it survives exec)
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) // 1024
def batches(n):
    for start in range(0, n, batch):
        h = [base64.b64encode(hashlib.sha256(b"%d" % i).digest()).decode() for i in range(start, min(n, start + batch))]
        yield pa.record_batch({"identity_hash": pa.array(h)})
# The caller's own batches: what producing and reading a few of them costs without mapping.
for _ in pa.RecordBatchReader.from_batches(next(batches(1)).schema, batches(4 * batch)):
    pass
base = hwm()
stream = euid_map.map_stream(batches(rows), identity_type="email", **opts)
print("started", flush=True)
n = 0
for b in stream:
    n += b.num_rows
peak = hwm()
s = stream.summary()
print(n, s["sent"], base, peak, flush=True)
"""


def long_stream(binary, stream_rows):
    """A long stream against a standalone operator (as in production: the operator's memory
    is not the caller's)."""
    op = Operator(binary)
    start = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-c", STREAM_CHILD, str(stream_rows), op.url, API_KEY, SECRET],
                             capture_output=True, text=True, check=True).stdout.split()
    finally:
        op.stop()
    n, sent, base, peak = (int(x) for x in out[1:5])
    assert n == stream_rows and sent == stream_rows, (n, sent)
    print(f"stream: {stream_rows:,} hashes mapped as a stream in {time.perf_counter() - start:.0f} s: "
          f"peak RSS {peak} MiB, {peak - base} MiB above the caller's own batches")
    assert peak - base <= 256, (peak, base)


def sigint_mid_stream():
    child = subprocess.Popen([sys.executable, "-c", STREAM_CHILD, "50000000"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "started"
    child.send_signal(signal.SIGINT)
    try:
        _, err = child.communicate(timeout=120)  # a hang guard, not a timing assert
    except subprocess.TimeoutExpired:
        child.kill()
        raise AssertionError("a SIGINT mid-stream did not stop it")
    assert "KeyboardInterrupt" in err, err[-2000:]
    print(f"sigint: KeyboardInterrupt mid-stream stopped it (exit {child.returncode})")


def events(rows, seed=11):
    """Events with repeats, national-format phones and a country column."""
    rng = random.Random(seed)
    people = []
    for i in range(max(rows // 4, 1)):
        country = rng.choice(["FR", "DE", "GB", "US", "ES"])
        n = phone_parity.numbers_for(rng, country)
        national = phone_parity.phonenumbers.format_number(n[0], phone_parity.PhoneNumberFormat.NATIONAL) if n else ""
        people.append((f"Customer.{i}+shop@GMAIL.com " if i % 3 == 0 else f"c{i}@example.org",
                       national, rng.choice([country, country.lower(), ""])))
    rows_ = [rng.choice(people) for _ in range(rows)]
    return pa.table({
        "event_id": pa.array(range(rows), pa.int64()),
        "email": pa.array([r[0] for r in rows_]),
        "phone": pa.array([r[1] for r in rows_]),
        "country": pa.array([r[2] for r in rows_]),
    })


def command_answers(binary, path, out, extra):
    subprocess.run([binary, "map", path, "-o", out, "-q", "--email-col", "email", "--phone-col", "phone",
                    "--phone-region-col", "country", "--keep-col", "event_id", *extra], check=True)
    t = pq.read_table(out, columns=["event_id", "identity_column", "raw_euid"]).to_pylist()
    return {(r["event_id"], r["identity_column"]): r["raw_euid"] for r in t}


def compare(name, table, want):
    rows = table.to_pylist() if hasattr(table, "to_pylist") else table
    bad = 0
    for r in rows:
        for col in ("email", "phone"):
            got = r[f"{col}_raw_euid"]
            got = got if isinstance(got, str) else None  # pandas writes a missing one as NaN
            if got != want.get((r["event_id"], col)):
                bad += 1
    n = len(rows)
    assert n * 2 == len(want) and bad == 0, (name, n, len(want), bad)
    print(f"recipe {name}: {n:,} events, every raw EUID equals `euid-map map` of the same rows")


class Operator:
    """A standalone `euid-map operator` on a free loopback port, with the test key."""

    def __init__(self, binary):
        env = dict(os.environ, EUID_API_KEY=API_KEY, EUID_CLIENT_SECRET=SECRET)
        self.p = subprocess.Popen([binary, "operator", "--listen", "127.0.0.1:0"], env=env,
                                  stderr=subprocess.PIPE, text=True)
        for line in self.p.stderr:
            if "listening on " in line:
                self.url = line.split("listening on ")[1].strip()
                break

    def identities(self):
        import urllib.request
        text = urllib.request.urlopen(self.url + "/metrics").read().decode()
        return sum(float(v) for v in re.findall(r"^euid_emulator_identities_total\{[^}]*\} (\S+)$", text, re.M))

    def stop(self):
        self.p.terminate()
        self.p.wait()


_SPARK = []


def spark_session():
    """PySpark in local mode (one session for the run)."""
    if not _SPARK:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # The Python workers import the recipe's functions by module name, as a cluster's
        # would from its image.
        recipes_dir = os.path.join(ROOT, "examples", "python")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [recipes_dir, os.environ.get("PYTHONPATH")]))
        from pyspark.sql import SparkSession
        spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
                 .config("spark.sql.shuffle.partitions", "2").config("spark.ui.showConsoleProgress", "false")
                 .config("spark.driver.memory", "2g").getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        _SPARK.append(spark)
    return _SPARK[0]


def spark_parity(path, by_key, first, rows):
    """The parity corpus hashed inside Spark by the recipe's executor function."""
    import spark_recipe
    spark = spark_session()
    got = (spark.read.parquet(path).mapInArrow(spark_recipe.hash_batches, spark_recipe.HASHED)
           .toArrow().sort_by("event_id").to_pydict())
    mismatches = 0
    for col in ("email", "phone"):
        hashes = got[f"{col}_hash"]
        for i, event in enumerate(got["event_id"]):
            if hashes[i] != by_key[(first + event, col)][0]:
                mismatches += 1
    assert len(got["event_id"]) == rows and mismatches == 0, (len(got["event_id"]), mismatches)
    print(f"parity in Spark: {2 * rows:,} values hashed on the executors by the recipe's mapInArrow "
          f"function equal `euid-map hash`: 0 mismatches")


def recipes(binary, rows, tmp):
    quick = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "python", "quickstart.py")],
                           capture_output=True, text=True, check=True).stdout
    assert "'mapped'" in quick and "'sent': 3" in quick, quick
    print("recipe quickstart: ran, three identities mapped")
    t = events(rows)
    path = os.path.join(tmp, "events.parquet")
    pq.write_table(t, path)
    want_local = command_answers(binary, path, os.path.join(tmp, "cli-local"), ["--env", "local"])

    import duckdb
    import duckdb_recipe
    compare("duckdb", duckdb_recipe.run(duckdb.connect(), path, env="local"), want_local)
    import polars as pl
    import polars_recipe
    compare("polars", polars_recipe.run(pl.scan_parquet(path), env="local").to_dicts(), want_local)
    import pandas as pd
    import pandas_recipe
    compare("pandas", pandas_recipe.run(pd.read_parquet(path), env="local").to_dict("records"), want_local)

    import spark_recipe
    spark = spark_session()
    op = Operator(binary)
    try:
        creds = dict(base_url=op.url, api_key=API_KEY, client_secret=SECRET)
        before = op.identities()
        result, summary = spark_recipe.run(spark, path, os.path.join(tmp, "spark"), **creds)
        sent = op.identities() - before
        got = result.toArrow().to_pylist()
        distinct = summary["rows"]
        assert sent == distinct == summary["sent"], (sent, distinct, summary)
        print(f"recipe spark: the operator answered {int(sent):,} identities for {distinct:,} distinct ones: each sent once")
        want = command_answers(binary, path, os.path.join(tmp, "cli-op"),
                               ["--base-url", op.url, "--api-key", API_KEY, "--client-secret", SECRET])
        compare("spark", got, want)
    finally:
        op.stop()


def credentials(binary, tmp):
    """The module finds credentials as the command does, and raises the command's messages."""
    op = Operator(binary)
    t = pa.table({"identity_hash": euid_map.hash_emails(pa.array(["a@example.com"])).field("identity_hash")})
    ok = lambda **kw: euid_map.map_table(t, identity_type="email", **kw).column("status").to_pylist() == ["mapped"]
    saved = {k: os.environ.pop(k, None) for k in ("EUID_API_KEY", "EUID_CLIENT_SECRET", "EUID_CREDENTIALS_FILE")}
    try:
        profiles = os.path.join(tmp, "credentials.toml")
        with open(profiles, "w") as f:
            f.write(f'[emulator]\napi_key = "{API_KEY}"\nclient_secret = "{SECRET}"\nbase_url = "{op.url}"\n')
        os.chmod(profiles, 0o600)
        os.environ["EUID_CREDENTIALS_FILE"] = profiles
        assert ok(profile="emulator")
        command = f"printf '%s' '{{\"api_key\": \"{API_KEY}\", \"client_secret\": \"{SECRET}\"}}'"
        assert ok(base_url=op.url, credentials_command=command)
        os.environ.update(EUID_API_KEY=API_KEY, EUID_CLIENT_SECRET=SECRET)
        assert ok(base_url=op.url)
        os.chmod(profiles, 0o644)
        try:
            euid_map.map_table(t, identity_type="email", profile="emulator")
            raise AssertionError("a profiles file readable by others was accepted")
        except euid_map.EuidMapError as e:
            assert "chmod 600" in str(e), e
        wrong = base64.b64encode(bytes(32)).decode()
        try:
            euid_map.map_table(t, identity_type="email", base_url=op.url, api_key=API_KEY, client_secret=wrong)
            raise AssertionError("a wrong secret mapped")
        except euid_map.EuidMapError as e:
            assert wrong not in str(e) and API_KEY not in str(e), e
            print(f"credentials: profile, credentials command and environment found as the command finds them; a wrong secret raises: {e}")
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v
        op.stop()


def readme_blocks():
    """README's recipe blocks are the files run here."""
    text = open(os.path.join(ROOT, "README.md")).read()
    blocks = re.findall(r"<!-- recipe: (\S+) -->\n```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 5, f"README has {len(blocks)} recipe blocks"
    for path, body in blocks:
        assert open(os.path.join(ROOT, path)).read() == body, f"README's block differs from {path}"
    print(f"readme: {len(blocks)} recipe blocks are the files CI runs")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--stream-rows", type=int, default=10_000_000)
    ap.add_argument("--event-rows", type=int, default=20_000)
    ap.add_argument("--strict", action="store_true", help="assert the speed figures too")
    ap.add_argument("--skip", default="", help="comma-separated: parity,spark,map,credentials,stream,sigint,recipes,readme")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    with tempfile.TemporaryDirectory() as tmp:
        if "readme" not in skip:
            readme_blocks()
        if "parity" not in skip:
            path, by_key, first = parity_and_speed(a.bin, a.rows, tmp, a.strict)
            if "spark" not in skip:
                spark_parity(path, by_key, first, a.rows)
        if "map" not in skip:
            mapping_equals_command(a.bin, a.rows, tmp)
        if "credentials" not in skip:
            credentials(a.bin, tmp)
        if "stream" not in skip:
            long_stream(a.bin, a.stream_rows)
        if "sigint" not in skip:
            sigint_mid_stream()
        if "recipes" not in skip:
            recipes(a.bin, a.event_rows, tmp)
    if _SPARK:
        _SPARK[0].stop()
    print("test_python: all checks passed")


if __name__ == "__main__":
    main()
