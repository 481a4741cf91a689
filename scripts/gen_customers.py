#!/usr/bin/env python3
"""Generate a realistic customer export (customer_id,email,phone) for demos and benchmarks.

Deterministic for a given --seed. A share of rows repeat an earlier identity (duplicates), a
few carry the EUID opt-out test identities, some cells are blank or broken, and a few rows
are malformed (wrong field count), as real exports are.

    python3 scripts/gen_customers.py --rows 10000 > fixtures/customers.csv
    python3 scripts/gen_customers.py --rows 1000000 --dup 0.2 --clean > big.csv
"""
import argparse
import random
import sys

FIRST = ["anna", "ben", "chloe", "david", "emma", "felix", "greta", "hugo", "ines", "jan", "karla",
         "luca", "marie", "noah", "olga", "paul", "quinn", "rosa", "sven", "tina", "uwe", "vera",
         "wim", "xenia", "yann", "zoe", "élise", "jörg", "søren", "łukasz"]
LAST = ["müller", "schmidt", "dubois", "rossi", "garcia", "jansen", "nowak", "silva", "martin",
        "bernard", "novak", "horvat", "kowalski", "lindqvist", "o'brien", "van dijk"]
DOMAINS = ["gmail.com", "GMail.com", "web.de", "gmx.de", "orange.fr", "libero.it", "outlook.com",
           "yahoo.co.uk", "googlemail.com", "example.eu", "t-online.de", "proton.me"]
PREFIXES = ["+49", "+33", "+39", "+34", "+31", "+48", "+44", "+46", "+353"]


def email(rng):
    f, l = rng.choice(FIRST), rng.choice(LAST).replace(" ", "").replace("'", "")
    local = rng.choice([f"{f}.{l}", f"{f}{l}", f"{f}_{l}{rng.randint(1, 99)}", f"{f}.{l}+news"])
    if rng.random() < 0.15:
        local = local.capitalize()
    e = f"{local}@{rng.choice(DOMAINS)}"
    if rng.random() < 0.05:
        e = f"  {e} "
    return e


def phone(rng):
    return rng.choice(PREFIXES) + "".join(str(rng.randint(0, 9)) for _ in range(rng.randint(9, 11)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--dup", type=float, default=0.2, help="share of rows repeating an earlier identity")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--clean", action="store_true", help="no blank, broken or malformed rows (benchmarks)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    out = sys.stdout
    out.write("customer_id,email,phone\n")
    seen = []
    for i in range(a.rows):
        cid = 100000 + i
        if seen and rng.random() < a.dup:
            e, p = rng.choice(seen)
        else:
            e, p = email(rng), phone(rng)
            if len(seen) < 200000:
                seen.append((e, p))
            else:
                seen[rng.randrange(len(seen))] = (e, p)
        if not a.clean:
            r = rng.random()
            if r < 0.03:
                e = ""
            elif r < 0.06:
                p = ""
            elif r < 0.07:
                e = rng.choice(["not-an-email", "a@b@c.com", "@example.com", "user@"])
            elif r < 0.08:
                p = rng.choice(["030 1234567", "+49 30 1234567", "12345", "+4930123456789012"])
            if i % 2500 == 17:
                e, p = "optout@example.com", "+00000000000"
            if i % 3333 == 99:
                out.write(f'{cid},"{e}",{p},unexpected-extra-field\n')
                continue
        q = '"' + e.replace('"', '""') + '"' if ("," in e or " " in e) else e
        out.write(f"{cid},{q},{p}\n")


if __name__ == "__main__":
    main()
