"""pandas, through Arrow: hash columns, drop duplicates, map once, merge.

    python examples/python/pandas_recipe.py EVENTS.parquet --env local
"""
import sys

import pandas as pd
import pyarrow as pa

import euid_map


def run(events: pd.DataFrame, **map_options) -> pd.DataFrame:
    hashed = pd.DataFrame({
        "event_id": events["event_id"],
        "email_hash": euid_map.hash_emails(events["email"]).field("identity_hash").to_pandas(),
        "phone_hash": euid_map.hash_phones(events["phone"], region=events["country"])
        .field("identity_hash").to_pandas(),
    })
    distinct = pd.concat([
        pd.DataFrame({"identity_type": "email", "identity_hash": hashed["email_hash"]}),
        pd.DataFrame({"identity_type": "phone", "identity_hash": hashed["phone_hash"]}),
    ]).dropna().drop_duplicates()
    table = pa.Table.from_pandas(distinct, preserve_index=False)
    mapped = euid_map.map_table(table, **map_options).to_pandas()
    for kind in ("email", "phone"):
        answers = mapped[mapped["identity_type"] == kind][["identity_hash", "raw_euid"]]
        answers = answers.rename(columns={"identity_hash": f"{kind}_hash", "raw_euid": f"{kind}_raw_euid"})
        hashed = hashed.merge(answers, on=f"{kind}_hash", how="left")
    return hashed[["event_id", "email_raw_euid", "phone_raw_euid"]].sort_values("event_id")


if __name__ == "__main__":
    env = sys.argv[sys.argv.index("--env") + 1] if "--env" in sys.argv else None
    print(run(pd.read_parquet(sys.argv[1]), env=env).head())
