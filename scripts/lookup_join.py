#!/usr/bin/env python3
"""The warehouse recipe of README's "Backfills", run in DuckDB (issue #27).

A 100,000-row event table holds hashed emails (base64 SHA-256, as adtech tables do) and raw
E.164 phones, with repeats, invalid values and empty cells. `euid-map map --distinct` writes
the lookup table; DuckDB joins it back to the events on identity_hash (the phone's hash is
computed in SQL), and every event must get the raw EUID a plain `euid-map map` gives its row.
Both runs use the embedded emulator (--env local; the same seed, so the same answers).

    target/py-venv/bin/python scripts/lookup_join.py --bin target/release/euid-map
"""
import argparse
import base64
import hashlib
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb


def b64_sha(s: str) -> str:
    return base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()


def corpus(path: Path, rows: int) -> None:
    rng = random.Random(27)
    people = [(f"user{i}@example.com", f"+4915{rng.randrange(10**8, 10**9)}") for i in range(rows // 3)]
    with path.open("w") as f:
        f.write("event_id,email_hash,phone\n")
        for i in range(rows):
            email, phone = rng.choice(people)
            r = rng.random()
            h = b64_sha(email)
            if r < 0.03:
                h = ""
            elif r < 0.05:
                h = "not-a-hash"
            if 0.05 <= r < 0.08:
                phone = ""
            elif 0.08 <= r < 0.10:
                phone = "12345"
            f.write(f"{i},{h},{phone}\n")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/euid-map")
    ap.add_argument("--rows", type=int, default=100_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        events = d / "events.csv"
        corpus(events, a.rows)
        common = ["--env", "local", "--email-hash-col", "email_hash", "--phone-col", "phone", "-q"]
        subprocess.run([a.bin, "map", events, "-o", d / "plain", "--keep-col", "event_id", *common], check=True)
        subprocess.run([a.bin, "map", events, "-o", d / "lookup", "--distinct", *common], check=True)
        db = duckdb.connect()
        db.execute(f"CREATE VIEW events AS SELECT * FROM read_csv('{events}', header=true, all_varchar=true)")
        db.execute(f"CREATE VIEW lookup AS SELECT * FROM read_parquet('{d}/lookup/part-*.parquet')")
        db.execute(f"CREATE VIEW plain AS SELECT * FROM read_parquet('{d}/plain/part-*.parquet')")
        rows, distinct = db.execute(
            "SELECT count(*), count(DISTINCT (identity_type, identity_hash)) FROM lookup").fetchone()
        valid = db.execute(
            "SELECT count(DISTINCT (identity_type, identity_hash)) FROM plain WHERE identity_hash IS NOT NULL").fetchone()[0]
        print(f"lookup table: {rows} rows, {distinct} distinct identities; the plain run has {valid}")
        if not (rows == distinct == valid):
            print("lookup_join: the table must hold each distinct valid identity exactly once")
            return 1
        # The recipe: the events joined to the lookup table on identity_hash.
        joined = """
            SELECT e.event_id, 'email' AS identity_type, l.raw_euid, l.status
              FROM events e LEFT JOIN lookup l
                ON l.identity_type = 'email' AND l.identity_hash = e.email_hash
            UNION ALL
            SELECT e.event_id, 'phone', l.raw_euid, l.status
              FROM events e LEFT JOIN lookup l
                ON l.identity_type = 'phone'
               AND l.identity_hash = to_base64(unhex(sha256(e.phone)))
        """
        checked, mismatched = db.execute(f"""
            WITH j AS ({joined})
            SELECT count(*), count(*) FILTER (WHERE j.raw_euid IS DISTINCT FROM p.raw_euid
                                           OR (p.identity_hash IS NOT NULL AND j.status IS DISTINCT FROM p.status))
              FROM plain p JOIN j ON j.event_id = p.event_id AND j.identity_type = p.identity_type
        """).fetchone()
        with_id = db.execute("SELECT count(*) FROM plain WHERE raw_euid IS NOT NULL").fetchone()[0]
        print(f"joined back: {checked} event identities compared with the plain run "
              f"({with_id} with a raw EUID), {mismatched} mismatches")
        if checked != 2 * a.rows or mismatched or with_id == 0:
            print("lookup_join: the join does not give the plain run's raw EUIDs")
            return 1
    print("lookup_join: the DuckDB join of the lookup table gives the plain map's raw EUIDs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
