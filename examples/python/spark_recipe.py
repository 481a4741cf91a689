"""PySpark: hash where the data lives, map each distinct identity once, join back.

The scan, EUID's normalization and hashing, and DISTINCT run on the executors (mapInArrow,
one Arrow batch at a time, the GIL released while euid_map hashes). The distinct hashes are
written as files; the driver streams them through one euid_map.map_stream (the API budget is
one participant's 20 requests in flight: executors calling the operator would only collect
429s), writes the answers, and Spark joins them back on the hash.

    python examples/python/spark_recipe.py EVENTS.parquet WORK_DIR --env local
Executors need the package too (`pip install euid-map` on the cluster's image, or a venv
shipped with --archives).
"""
import sys

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

import euid_map

HASHED = "event_id long, email_hash string, phone_hash string"


def hash_batches(batches):
    """On the executors: each Arrow batch of events to its hashes (null when invalid)."""
    for b in batches:
        email = euid_map.hash_emails(b.column("email"))
        phone = euid_map.hash_phones(b.column("phone"), region=b.column("country"))
        yield pa.RecordBatch.from_arrays(
            [b.column("event_id"), email.field("identity_hash"), phone.field("identity_hash")],
            names=["event_id", "email_hash", "phone_hash"],
        )


def run(spark, events_path, work_dir, **map_options):
    """Returns the events with `email_raw_euid` and `phone_raw_euid`, and the mapping's
    summary."""
    hashed = spark.read.parquet(events_path).mapInArrow(hash_batches, HASHED)
    hashed.write.mode("overwrite").parquet(f"{work_dir}/hashed")
    hashed = spark.read.parquet(f"{work_dir}/hashed")
    distinct = (
        hashed.select(F.lit("email").alias("identity_type"), F.col("email_hash").alias("identity_hash"))
        .unionAll(hashed.select(F.lit("phone"), F.col("phone_hash")))
        .where("identity_hash IS NOT NULL")
        .distinct()
    )
    distinct.write.mode("overwrite").parquet(f"{work_dir}/distinct")

    # The driver: one stream through the operator, memory bounded however many identities.
    reader = ds.dataset(f"{work_dir}/distinct").scanner(batch_size=65536).to_reader()
    stream = euid_map.map_stream(reader, **map_options)
    with pq.ParquetWriter(f"{work_dir}/mapped.parquet", stream.schema) as out:
        for batch in stream:
            out.write_batch(batch)
    summary = stream.summary()

    mapped = spark.read.parquet(f"{work_dir}/mapped.parquet")
    answers = {
        kind: mapped.where(F.col("identity_type") == kind).select(
            F.col("identity_hash").alias(f"{kind}_hash"), F.col("raw_euid").alias(f"{kind}_raw_euid")
        )
        for kind in ("email", "phone")
    }
    events = (
        hashed.join(answers["email"], "email_hash", "left")
        .join(answers["phone"], "phone_hash", "left")
        .select("event_id", "email_raw_euid", "phone_raw_euid")
    )
    return events, summary


if __name__ == "__main__":
    spark = SparkSession.builder.master("local[2]").getOrCreate()
    env = sys.argv[sys.argv.index("--env") + 1] if "--env" in sys.argv else None
    events, summary = run(spark, sys.argv[1], sys.argv[2], env=env)
    events.write.mode("overwrite").parquet(f"{sys.argv[2]}/events_with_euids")
    print(summary)
