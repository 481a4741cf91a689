#!/usr/bin/env python3
"""Baseline for scripts/bench_map.sh: the `map` job done with the official Python SDK's
IdentityMapV3Client in batches of 5,000, sequentially as its docs show, or with N threads.

    EUID_API_KEY=... EUID_CLIENT_SECRET=... python scripts/baseline_map_sdk.py URL INPUT.csv [--threads 8] [--rows N]
"""
import argparse
import csv
import os
import time
from concurrent.futures import ThreadPoolExecutor

from uid2_client import IdentityMapV3Client, IdentityMapV3Input

BATCH = 5000


def batches(path, rows):
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.reader(f)
        next(r)
        emails, phones, n = [], [], 0
        for i, rec in enumerate(r):
            if rows and i >= rows:
                break
            n += 1
            e, p = (rec + ["", "", ""])[1:3]
            emails.append(e)
            phones.append(p)
            if len(emails) >= BATCH // 2:
                yield emails, phones
                emails, phones = [], []
        if emails:
            yield emails, phones


def map_batch(client, emails, phones):
    inp = IdentityMapV3Input()
    for e in emails:
        try:
            inp.with_email(e)
        except ValueError:
            pass
    for p in phones:
        try:
            inp.with_phone(p)
        except ValueError:
            pass
    resp = client.generate_identity_map(inp)
    return len(emails), len(resp.mapped_identities)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("input")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", type=int, default=0)
    a = ap.parse_args()
    client = IdentityMapV3Client(a.url, os.environ["EUID_API_KEY"], os.environ["EUID_CLIENT_SECRET"])
    t0 = time.time()
    n = 0
    if a.threads == 1:
        for e, p in batches(a.input, a.rows):
            n += map_batch(client, e, p)[0]
    else:
        with ThreadPoolExecutor(a.threads) as ex:
            for rows, _ in ex.map(lambda b: map_batch(client, *b), batches(a.input, a.rows)):
                n += rows
    dt = time.time() - t0
    mode = "sequential" if a.threads == 1 else f"{a.threads} threads"
    print(f"baseline (Python SDK IdentityMapV3Client, {mode}): {n} rows in {dt:.2f} s = {n / dt:,.0f} rows/s")


if __name__ == "__main__":
    main()
