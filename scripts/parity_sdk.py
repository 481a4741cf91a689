#!/usr/bin/env python3
"""Normalization parity with the official Python SDK (uid2-client).

Generates at least 100,000 awkward emails and phones (mixed case, spaces, tabs, gmail dots and
plus tags, unicode, several @, empty, non-E.164 phones), hashes them with `euid-map hash` and
with `uid2_client.normalize_and_hash_email` / `normalize_and_hash_phone`, and asserts an
identical hash or an identical rejection for every one. Two documented differences are
counted, not failed: the SDK accepting non-ASCII digits in phones (the operator does not), and
euid-map making punctuated or padded international phones (`+44 20-7946 0958`, ` +316… `) E.164
by libphonenumber's rules where the SDK refuses them; each of those must hash the E.164 that
Google's libphonenumber (`phonenumbers`) gives for the value.

The file is a CRM export's shape (issue #32): `email`, `secondary_email`, `phone` and `mobile`,
all four found by euid-map's auto-detection, each value compared in its own column (the
second columns hold other rows' values, a tenth of them the same row's).

    python scripts/parity_sdk.py --bin target/release/euid-map [--count 100000]
"""
import argparse
import csv
import os
import random
import subprocess
import sys
import tempfile

import base64
import hashlib

import phonenumbers
import pyarrow.parquet as pq
from uid2_client import normalize_and_hash_email, normalize_and_hash_phone

LOCALS = ["jane.doe", "JANE.DOE", "j.a.n.e", "jane+promo", "Jane.Doe+x+y", "a", "+", ".", "..",
          "user name", "ünïcødé", "ÉLISE", "😊", "test\t", "\ttest", "a.b.c.d", "x+", "+x", "Z"]
DOMAINS = ["gmail.com", "GMAIL.COM", "GMail.Com", "googlemail.com", "gmail.com.", "example.com",
           "exa mple.com", "b", "😊test.com", "ΕΛΛΑΣ.gr", "gmail.co", "mail.gmail.com", ""]
SPACES = ["", " ", "  ", "\t", "\u00a0", "\u2003", " \t "]
DIGITS_NON_ASCII = "١٢٣٤٥٦٧٨٩٠"


def awkward_email(rng):
    r = rng.random()
    if r < 0.03:
        return ""
    if r < 0.08:
        return "".join(rng.choice("aA@.+ \t😊é_-") for _ in range(rng.randint(1, 12)))
    local = rng.choice(LOCALS)
    if rng.random() < 0.3:
        local = "".join(c.upper() if rng.random() < 0.5 else c for c in local)
    if rng.random() < 0.2:
        local = local.replace(".", rng.choice([". ", " .", ".."]))
    at = "@" if rng.random() < 0.93 else rng.choice(["@@", "", " @", "@ "])
    email = rng.choice(SPACES) + local + at + rng.choice(DOMAINS) + rng.choice(SPACES)
    if rng.random() < 0.03:
        email += "@x.com"
    return email


def awkward_phone(rng):
    r = rng.random()
    if r < 0.03:
        return ""
    n = rng.randint(6, 18)
    digits = "".join(rng.choice("0123456789") for _ in range(n))
    if r < 0.55:
        return "+" + digits
    if r < 0.65:
        return digits
    if r < 0.75:
        return "+" + digits[:3] + rng.choice([" ", "-", "(", ")", ".", "\t"]) + digits[3:]
    if r < 0.8:
        return "+" + "".join(rng.choice(DIGITS_NON_ASCII) for _ in range(rng.randint(10, 12)))
    if r < 0.9:
        return rng.choice(SPACES) + "+" + digits + rng.choice(SPACES)
    return "+" + digits[: rng.randint(0, n)] + rng.choice(["A", "+", "#", "٣", "½"]) + digits


def libphonenumber_hash(value):
    """The hash of the E.164 Google's libphonenumber gives for an international value, if valid."""
    first = next((ch for ch in value if ch.isnumeric() or ch in "+\uff0b"), "")
    if first and phonenumbers.is_alpha_number(value[value.index(first):]):
        return None
    try:
        n = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(n):
        return None
    e164 = phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)
    if len(e164) < 11:
        return None
    return base64.b64encode(hashlib.sha256(e164.encode()).digest()).decode()


def sdk(fn, value):
    try:
        return fn(value)
    except ValueError:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/euid-map")
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=20261127)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    pairs = [(awkward_email(rng), awkward_phone(rng)) for _ in range(a.count)]
    other = lambda i: i if rng.random() < 0.1 else rng.randrange(a.count)
    rows = [(e, pairs[other(i)][0], p, pairs[other(i)][1]) for i, (e, p) in enumerate(pairs)]
    columns = ["email", "secondary_email", "phone", "mobile"]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "awkward.csv")
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n")
            w.writerow(columns)
            w.writerows(rows)
        out = os.path.join(tmp, "out")
        subprocess.run([a.bin, "hash", path, "-o", out, "-q"], check=True)
        t = pq.read_table(out, columns=["row", "identity_column", "identity_hash", "status"]).to_pylist()
    ours = {(r["row"], r["identity_column"]): r["identity_hash"] for r in t}
    n = len(columns) * a.count
    assert len(ours) == n, f"expected {n} output rows (one per row and column), got {len(ours)}"
    mismatches, documented, reformatted, accepted, rejected = [], 0, 0, 0, 0
    for i, values in enumerate(rows):
        for column, value in zip(columns, values):
            kind = "phone" if column in ("phone", "mobile") else "email"
            fn = normalize_and_hash_phone if kind == "phone" else normalize_and_hash_email
            theirs = sdk(fn, value)
            mine = ours[(i, column)]
            if theirs == mine:
                accepted += theirs is not None
                rejected += theirs is None
            elif (kind == "phone" and any(c.isdigit() and not c.isascii() for c in value)
                  and (mine is None or mine == libphonenumber_hash(value))):
                documented += 1
            elif kind == "phone" and theirs is None and mine is not None and mine == libphonenumber_hash(value):
                reformatted += 1
            else:
                mismatches.append((i, column, value, theirs, mine))
    print(f"parity: {n} inputs in {len(columns)} columns, {accepted} identical hashes, {rejected} identical rejections, "
          f"{documented} non-ASCII-digit phones and {reformatted} phones made E.164 by libphonenumber's rules "
          f"(documented differences), {len(mismatches)} mismatches")
    for m in mismatches[:20]:
        print("  MISMATCH", repr(m))
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
