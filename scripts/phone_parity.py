#!/usr/bin/env python3
"""Phone parity with Google's libphonenumber (the Python port `phonenumbers`, as oracle).

Generates a corpus of at least 20,000 phones across every EU/EEA country, GB, CH and the US:
mobile and fixed-line numbers (from each region's metadata, with randomized subscriber
digits, so some are valid and some are not) written in E.164, international, national,
punctuated (dots, dashes, slashes, no spaces), 00- and 011-prefixed, UK-style `(0)`, digits
only and padded forms, each with the right region, a lower-case one, a wrong one, none or an
unknown one, plus junk. Runs `euid-map hash --phone-region-col` on it twice (without and
with a `--phone-region` fallback) and checks every row against euid-map's documented rule
computed with `phonenumbers`:

  1. `+` and 10-15 ASCII digits: hashed as given;
  2. otherwise parsed with `phonenumbers.parse` in the row's region (its cell, trimmed, any
     case; an empty cell falls back to --phone-region; an unknown code, or a value starting
     with `+`, gives no region);
  3. kept only if `is_valid_number` and its E.164 has 10 to 15 digits;
  4. one deliberate rule on top of libphonenumber's: a value that libphonenumber would read
     letters in (`is_alpha_number` from its first digit or `+` on: `1-800-FLOWERS`, but also
     `01 23 45 home`) is refused, since a word beside a number would become someone else's
     number.

Any disagreement fails the script, except those listed as metadata differences (none today:
euid-map's rlibphonenumber and this script's phonenumbers carry the same metadata release).

    python scripts/phone_parity.py --bin target/release/euid-map [--count 24000]
"""
import argparse
import base64
import csv
import hashlib
import os
import random
import subprocess
import sys
import tempfile

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType
import pyarrow.parquet as pq

EU_EEA = ["AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
          "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
          "IS", "LI", "NO"]
REGIONS = EU_EEA + ["GB", "CH", "US"]
UNKNOWN = ["XX", "UK", "EU", "France", "001", "F", "DEU", "??"]
JUNK = ["n/a", "N/A", "unknown", "-", "0", "+", "++33612345678", "123", "none", "tel:", "x",
        "0000000000", "+0000", "phone", "06 12", "+33", "#", "()", "1-800-FLOWERS",
        "+1 (800) FLOWERS", "+44 20 7946 0958 ext. 12", "0612345678 ext 5", "+33 6 12 34 56 78 #",
        "+٣٣٦١٢٣٤٥٦٧٨", "+33 6 12 34 56 7A", "06-12-34-56-78-90-12", "+999 1234567890",
        "01 23 45 home", "(212) 555 WORK", "06 12 34 56 78 (home)", "Tel: +33 6 12 34 56 78",
        "+49～1512 3456789", "06 12 34 56 78" + " " * 237, "tel:+9991234567890", "0033 1",
        "+49800123456789789", "Mobile 06 12 34 56 78", "06 12 34 56 78 ext 12"]
# Values whose outcome differs between rlibphonenumber's and phonenumbers' metadata releases,
# with the reason. Empty: both carry libphonenumber metadata 9.0.42.
METADATA_DIFFERENCES = {}


def is_e164(v):
    return (len(v) >= 11 and len(v) <= 16 and v[0] == "+"
            and all("0" <= c <= "9" for c in v[1:]))


def b64(s):
    return base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()


def oracle(value, cell, default):
    """The hash euid-map must write for `value` in a row whose region cell is `cell`, or None."""
    if value == "":
        return "missing"
    if is_e164(value):
        return b64(value)
    c = cell.strip()
    if c:
        region = c.upper() if (len(c) == 2 and c.isascii() and c.isalpha()
                               and c.upper() in phonenumbers.SUPPORTED_REGIONS) else None
    else:
        region = default
    first = next((ch for ch in value if ch.isnumeric() or ch in "+\uff0b"), "")
    if first in ("+", "\uff0b"):
        region = None
        tail = value[value.index(first):]
    else:
        tail = value[value.index(first):] if first else ""
    if any("a" <= ch.lower() <= "z" for ch in value) and tail and phonenumbers.is_alpha_number(tail):
        return None
    try:
        n = phonenumbers.parse(value, region)
    except NumberParseException:
        return None
    if not phonenumbers.is_valid_number(n):
        return None
    e = phonenumbers.format_number(n, PhoneNumberFormat.E164)
    if not 10 <= len(e) - 1 <= 15:
        return None
    return b64(e)


def numbers_for(rng, region):
    """A few numbers of the region: its mobile and fixed-line examples, subscriber digits
    randomized (the oracle decides which are valid)."""
    out = []
    for t in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE):
        ex = phonenumbers.example_number_for_type(region, t)
        if ex is None:
            continue
        nsn = str(ex.national_number)
        k = min(len(nsn) - 2, rng.randint(3, 6))
        nsn = nsn[:-k] + "".join(rng.choice("0123456789") for _ in range(k))
        out.append(phonenumbers.PhoneNumber(country_code=ex.country_code, national_number=int(nsn)))
    return out


def spellings(rng, n, region):
    """How CRM exports write the number `n` of `region`."""
    intl = phonenumbers.format_number(n, PhoneNumberFormat.INTERNATIONAL)
    nat = phonenumbers.format_number(n, PhoneNumberFormat.NATIONAL)
    e164 = phonenumbers.format_number(n, PhoneNumberFormat.E164)
    other = rng.choice([r for r in REGIONS if r != region])
    out = [
        e164,
        intl,
        nat,
        intl.replace(" ", "-"),
        intl.replace(" ", "."),
        intl.replace(" ", ""),
        nat.replace(" ", "."),
        nat.replace(" ", "-"),
        nat.replace(" ", "/"),
        "".join(c for c in nat if c.isdigit()),
        phonenumbers.format_out_of_country_calling_number(n, other),
        "00" + e164[1:],
        "00 " + intl[1:],
        "011 " + intl[1:],
        " " + e164 + " ",
        "\t" + intl,
        "(" + nat[:3] + ") " + nat[3:],
        e164[1:],
    ]
    if nat.startswith("0"):
        cc = str(n.country_code)
        out.append("+" + cc + " (0)" + intl[len(cc) + 2:])
        out.append("+" + cc + " 0" + intl[len(cc) + 2:])
    return out


def region_cells(rng, region):
    other = rng.choice([r for r in REGIONS if r != region])
    return [region, region.lower(), " " + region + " ", other, "", rng.choice(UNKNOWN)]


def corpus(rng, count):
    rows = []
    while len(rows) < count:
        region = rng.choice(REGIONS)
        for n in numbers_for(rng, region):
            for s in spellings(rng, n, region):
                rows.append((s, rng.choice(region_cells(rng, region))))
        if rng.random() < 0.2:
            rows.append((rng.choice(JUNK), rng.choice(region_cells(rng, region))))
    return rows


def run(binary, path, out, extra):
    # Two phone columns, each read in its own region column (issue #32: paired in order).
    subprocess.run([binary, "hash", path, "-o", out, "-q",
                    "--phone-col", "phone", "--phone-col", "mobile",
                    "--phone-region-col", "country", "--phone-region-col", "mobile_country",
                    *extra], check=True)
    t = pq.read_table(out, columns=["row", "identity_column", "identity_hash", "status", "reason"]).to_pylist()
    return {(r["row"], r["identity_column"]): r for r in t}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/euid-map")
    ap.add_argument("--count", type=int, default=24_000)
    ap.add_argument("--seed", type=int, default=20261201)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    rows = corpus(rng, a.count)
    assert len(rows) >= 20_000
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "phones.csv")
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n")
            # `mobile` holds the next row's value and region: every value is checked twice,
            # in each column with its own region column.
            w.writerow(["phone", "country", "mobile", "mobile_country"])
            w.writerows(r + rows[(i + 1) % len(rows)] for i, r in enumerate(rows))
        for default in (None, "DE"):
            extra = ["--phone-region", default] if default else []
            ours = run(a.bin, path, os.path.join(tmp, f"out-{default}"), extra)
            assert len(ours) == 2 * len(rows), f"{len(rows)} rows in, {len(ours)} out (two columns)"
            agree = {"valid": 0, "invalid": 0, "missing": 0}
            given = reformatted = 0
            mismatches, known = [], 0
            checks = [(i, "phone", v, c) for i, (v, c) in enumerate(rows)]
            checks += [(i, "mobile", *rows[(i + 1) % len(rows)]) for i in range(len(rows))]
            for i, column, value, cell in checks:
                want = oracle(value, cell, default)
                r = ours[(i, column)]
                if want == "missing":
                    ok = r["status"] == "missing"
                    kind = "missing"
                elif want is None:
                    ok = r["status"] == "invalid" and (r["reason"] or "").startswith("phone:")
                    kind = "invalid"
                else:
                    ok = r["status"] == "hashed" and r["identity_hash"] == want
                    kind = "valid"
                    if is_e164(value):
                        given += 1
                    else:
                        reformatted += 1
                if ok:
                    agree[kind] += 1
                elif (value, cell) in METADATA_DIFFERENCES:
                    known += 1
                else:
                    mismatches.append((i, column, value, cell, want, r["status"], r["reason"]))
            label = f"--phone-region {default}" if default else "no --phone-region"
            print(f"phone_parity ({label}): {len(checks)} phones in two columns, {agree['valid']} identical E.164 hashes "
                  f"({given} as given, {reformatted} reformatted), {agree['invalid']} identical refusals, "
                  f"{agree['missing']} missing, {known} metadata differences, {len(mismatches)} disagreements")
            for m in mismatches[:25]:
                print("  DISAGREE", repr(m))
            failures += len(mismatches)
    print(f"phonenumbers {phonenumbers.__version__} as oracle")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
