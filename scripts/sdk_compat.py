#!/usr/bin/env python3
"""Drives `euid-map operator` with the official Python SDK (uid2-client), unchanged.

Starts the emulator on a free loopback port with --admin, then checks the v3 client
(IdentityMapV3Client: mixed emails, phones, hashes, opt-out test identities, invalid input),
the v2 client (IdentityMapClient) and get_identity_buckets; then advances the simulated clock
and checks that rotated buckets are reported and that re-mapping a rotated identity returns a
new raw id with the old one as the previous id.

    python scripts/sdk_compat.py --bin target/release/euid-map
"""
import argparse
import base64
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from uid2_client import (IdentityMapClient, IdentityMapInput, IdentityMapV3Client, IdentityMapV3Input,
                         normalize_and_hash_email)
from uid2_client.unmapped_identity_reason import UnmappedIdentityReason

API_KEY = "EUID-C-L-999-compat.test-key-for-sdk-compat-script-only"
SECRET = base64.b64encode(bytes(range(32))).decode()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_up(url, proc):
    for _ in range(200):
        if proc.poll() is not None:
            raise SystemExit("operator exited early")
        try:
            with urllib.request.urlopen(url + "/ops/healthcheck", timeout=1) as r:
                if r.read() == b"OK":
                    return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("operator did not start")


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok  ", what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/euid-map")
    a = ap.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, EUID_API_KEY=API_KEY, EUID_CLIENT_SECRET=SECRET)
    proc = subprocess.Popen([a.bin, "operator", "--listen", f"127.0.0.1:{port}", "--admin", "--seed", "5"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_up(url, proc)
        run(url)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
        check(SECRET.encode() not in err and b"compat.test-key" not in err, "the operator never printed the key or secret")
    print("sdk_compat: all checks passed")


def run(url):
    v3 = IdentityMapV3Client(url, API_KEY, SECRET)
    emails = [f"user{i}@example.com" for i in range(300)] + ["Jane.Doe+promo@GMail.com", "optout@example.com"]
    phones = ["+12345678901", "+441234567890", "+00000000000"]
    hashed = [normalize_and_hash_email("hashed@example.com")]
    inp = IdentityMapV3Input.from_emails(emails).with_phones(phones).with_hashed_emails(hashed).with_hashed_phones(["not-a-valid-hash"])
    resp = v3.generate_identity_map(inp)
    mapped, unmapped = resp.mapped_identities, resp.unmapped_identities
    check(len(mapped) == 300 + 1 + 2 + 1, f"v3 maps every valid identity ({len(mapped)})")
    m = mapped["user0@example.com"]
    check(len(m.current_raw_uid) == 44 and m.refresh_from > dt.datetime.now(dt.timezone.utc), "v3 u is 44 chars and r is in the future")
    check(unmapped["optout@example.com"].reason == UnmappedIdentityReason.OPTOUT, "optout@example.com is opted out")
    check(unmapped["+00000000000"].reason == UnmappedIdentityReason.OPTOUT, "+00000000000 is opted out")
    check(unmapped["not-a-valid-hash"].reason == UnmappedIdentityReason.INVALID_IDENTIFIER, "a bad hash is an invalid identifier")
    again = v3.generate_identity_map(IdentityMapV3Input.from_emails(["user0@example.com"])).mapped_identities
    check(again["user0@example.com"].current_raw_uid == m.current_raw_uid, "mapping is stable")

    v2 = IdentityMapClient(url, API_KEY, SECRET)
    r2 = v2.generate_identity_map(IdentityMapInput.from_emails(emails[:50] + ["optout@example.com"]))
    check(len(r2.mapped_identities) == 50, "v2 maps emails")
    b = r2.mapped_identities["user0@example.com"]
    check(b.get_raw_uid() == m.current_raw_uid and len(b.get_bucket_id()) >= 10, "v2 gives the v3 raw id and a bucket id")
    check(r2.unmapped_identities["optout@example.com"].get_reason() == "optout", "v2 reports opt-out")
    r2p = v2.generate_identity_map(IdentityMapInput.from_phones(["+12345678901"]))
    check(len(r2p.mapped_identities) == 1, "v2 maps phones")

    before = dt.datetime.now(dt.timezone.utc)
    recent = v2.get_identity_buckets(before - dt.timedelta(days=400)).buckets
    check(len(recent) > 1000, f"buckets since 400 days ago lists many buckets ({len(recent)})")

    req = urllib.request.Request(url + "/ops/advance?days=40", method="POST", data=b"")
    with urllib.request.urlopen(req) as r:
        adv = json.loads(r.read())
    check(adv["rotated_buckets"] > 0, f"advancing 40 days rotates buckets ({adv['rotated_buckets']})")
    # The simulated clock is now 40 days ahead; buckets rotated since the old "now" are new.
    rotated = v2.get_identity_buckets(before).buckets
    check(len(rotated) == adv["rotated_buckets"], f"get_identity_buckets reports exactly the rotated buckets ({len(rotated)})")
    rotated_ids = {x.get_bucket_id() for x in rotated}
    old = {e: mapped[e].current_raw_uid for e in emails[:300]}
    v2_after = v2.generate_identity_map(IdentityMapInput.from_emails(emails[:300])).mapped_identities
    after = v3.generate_identity_map(IdentityMapV3Input.from_emails(emails[:300])).mapped_identities
    changed = [e for e in old if after[e].current_raw_uid != old[e]]
    check(len(changed) > 0, f"some identities rotated ({len(changed)} of 300)")
    check(all(after[e].previous_raw_uid == old[e] for e in changed), "every rotated identity returns its old raw id as p")
    check(all(v2_after[e].get_bucket_id() in rotated_ids for e in changed), "rotated identities sit in reported buckets")
    unchanged = [e for e in old if e not in changed]
    check(all(v2_after[e].get_bucket_id() not in rotated_ids for e in unchanged), "unrotated identities sit in other buckets")

    bad = IdentityMapV3Client(url, "wrong-key", SECRET)
    try:
        bad.generate_identity_map(IdentityMapV3Input.from_emails(["a@b.c"]))
        check(False, "a wrong key is refused")
    except urllib.error.HTTPError as e:
        check(e.code == 401 and json.loads(e.read()) == {"status": "unauthorized"}, "a wrong key gets 401 {\"status\":\"unauthorized\"}")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAIL", e)
        sys.exit(1)
