"""The module in a minute, against the embedded emulator (env="local": demo ids)."""
import pyarrow as pa

import euid_map

h = euid_map.hash_emails(pa.array(["Jane.Doe+News@GMAIL.com", "not-an-email", None]))
print(h.field("identity_hash"))  # base64 SHA-256, as `euid-map hash` writes it; null unless hashed
print(h.field("status"))  # hashed, invalid, missing
print(h.field("reason"))  # invalid email, ...

phones = euid_map.hash_phones(pa.array(["06 12 34 56 78", "020 7946 0000"]), region=pa.array(["FR", "GB"]))
print(euid_map.hash_prehashed(h.field("identity_hash"), identity_type="email").field("status"))

ids = pa.table({
    "identity_type": ["email", "phone", "phone"],
    "identity_hash": pa.concat_arrays([h.field("identity_hash").slice(0, 1), phones.field("identity_hash")]),
})
# Real runs: profile="prod", or env=/base_url= with the credentials the command would find.
with euid_map.map_stream(ids, env="local") as stream:
    for batch in stream:
        print(batch.select(["identity_type", "status", "raw_euid"]).to_pylist())
    print(stream.summary())
