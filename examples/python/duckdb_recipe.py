"""DuckDB: EUID hashing as SQL functions (Python UDFs on Arrow), DISTINCT in SQL, one
mapping stream, a join.

    python examples/python/duckdb_recipe.py EVENTS.parquet --env local
"""
import sys

import duckdb
import pyarrow as pa

import euid_map

HASHED = duckdb.struct_type({"identity_hash": "VARCHAR", "status": "VARCHAR", "reason": "VARCHAR"})


def register(con):
    """`euid_email(email)` and `euid_phone(phone, region)`: struct(identity_hash, status, reason)."""
    con.create_function("euid_email", euid_map.hash_emails, ["VARCHAR"], HASHED, type="arrow")
    con.create_function(
        "euid_phone",
        lambda phone, region: euid_map.hash_phones(phone, region=region),
        ["VARCHAR", "VARCHAR"],
        HASHED,
        type="arrow",
    )


def run(con, events_path, **map_options):
    register(con)
    con.execute(f"""
        CREATE OR REPLACE TABLE hashed AS
        SELECT event_id, euid_email(email).identity_hash AS email_hash,
               euid_phone(phone, country).identity_hash AS phone_hash
        FROM read_parquet('{events_path}')""")
    distinct = con.sql("""
        SELECT DISTINCT 'email' AS identity_type, email_hash AS identity_hash FROM hashed WHERE email_hash IS NOT NULL
        UNION
        SELECT DISTINCT 'phone', phone_hash FROM hashed WHERE phone_hash IS NOT NULL""")
    stream = euid_map.map_stream(distinct.fetch_record_batch(65536), **map_options)
    mapped = pa.RecordBatchReader.from_batches(stream.schema, stream)
    con.register("mapped", mapped.read_all())
    return con.sql("""
        SELECT h.event_id, e.raw_euid AS email_raw_euid, p.raw_euid AS phone_raw_euid
        FROM hashed h
        LEFT JOIN mapped e ON e.identity_type = 'email' AND e.identity_hash = h.email_hash
        LEFT JOIN mapped p ON p.identity_type = 'phone' AND p.identity_hash = h.phone_hash
        ORDER BY h.event_id""").to_arrow_table()


if __name__ == "__main__":
    env = sys.argv[sys.argv.index("--env") + 1] if "--env" in sys.argv else None
    print(run(duckdb.connect(), sys.argv[1], env=env).slice(0, 5))
