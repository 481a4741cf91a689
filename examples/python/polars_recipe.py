"""Polars: EUID hashing in expressions (map_batches on Arrow), unique, one mapping stream, a
join.

    python examples/python/polars_recipe.py EVENTS.parquet --env local
"""
import sys

import polars as pl

import euid_map

HASHED = pl.Struct({"identity_hash": pl.String, "status": pl.String, "reason": pl.String})


def email_hash(col):
    return col.map_batches(lambda s: pl.from_arrow(euid_map.hash_emails(s)), return_dtype=HASHED)


def phone_hash(phone, region):
    return pl.struct(phone, region).map_batches(
        lambda s: pl.from_arrow(
            euid_map.hash_phones(s.struct.field(phone), region=s.struct.field(region))
        ),
        return_dtype=HASHED,
    )


def run(events: pl.LazyFrame, **map_options) -> pl.DataFrame:
    hashed = events.select(
        "event_id",
        email_hash(pl.col("email")).struct.field("identity_hash").alias("email_hash"),
        phone_hash("phone", "country").struct.field("identity_hash").alias("phone_hash"),
    ).collect()
    distinct = pl.concat(
        [
            hashed.select(identity_type=pl.lit("email"), identity_hash="email_hash"),
            hashed.select(identity_type=pl.lit("phone"), identity_hash="phone_hash"),
        ]
    ).drop_nulls().unique()
    mapped = pl.from_arrow(euid_map.map_table(distinct, **map_options))
    answers = mapped.select("identity_type", "identity_hash", "raw_euid")
    email = answers.filter(identity_type="email").select(email_hash="identity_hash", email_raw_euid="raw_euid")
    phone = answers.filter(identity_type="phone").select(phone_hash="identity_hash", phone_raw_euid="raw_euid")
    return (
        hashed.join(email, on="email_hash", how="left")
        .join(phone, on="phone_hash", how="left")
        .select("event_id", "email_raw_euid", "phone_raw_euid")
        .sort("event_id")
    )


if __name__ == "__main__":
    env = sys.argv[sys.argv.index("--env") + 1] if "--env" in sys.argv else None
    print(run(pl.scan_parquet(sys.argv[1]), env=env).head())
