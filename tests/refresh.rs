//! End to end: `refresh` against the emulator and its simulated clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Operator;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

/// The command under test: `common::bin()` (the built binary, or `EUID_MAP_BIN`).
static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(common::bin);
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/customers.csv");

type Row = BTreeMap<String, Option<String>>;

fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(&*BIN)
        .args(args)
        .env("EUID_API_KEY", common::API_KEY)
        .env("EUID_CLIENT_SECRET", common::SECRET)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("_manifest.json")).unwrap()).unwrap()
}

fn ms(v: &Option<String>) -> i64 {
    v.as_ref().unwrap().parse().unwrap()
}

fn due_unique(rows: &[Row], now: &str) -> usize {
    let now = chrono::DateTime::parse_from_rfc3339(now)
        .unwrap()
        .timestamp_millis();
    rows.iter()
        .filter(|r| r["status"].as_deref() == Some("mapped") && ms(&r["refresh_from"]) <= now)
        .map(|r| (r["identity_type"].clone(), r["identity_hash"].clone()))
        .collect::<HashSet<_>>()
        .len()
}

#[test]
fn refresh_remaps_only_what_is_due_carries_the_rest_and_honours_new_optouts() {
    let tmp = tempfile::tempdir().unwrap();
    let optout = tmp.path().join("optout.txt");
    std::fs::write(&optout, "").unwrap();
    let op = Operator::start(&["--admin", "--optout-file", optout.to_str().unwrap()]);
    let d = |n: &str| tmp.path().join(n);
    let s = |p: &Path| p.to_str().unwrap().to_string();

    ok(&run(&[
        "map",
        FIXTURE,
        "-o",
        &s(&d("day0")),
        "--base-url",
        &op.url,
        "--keep-col",
        "customer_id",
        "-q",
    ]));
    let day0 = common::read_dataset(&d("day0"));

    // Day 10: only identities whose refresh_from has passed are sent.
    let now10 = op.advance(10);
    let before = op.requested();
    ok(&run(&[
        "refresh",
        "--state",
        &s(&d("day0")),
        "-o",
        &s(&d("day10")),
        "--base-url",
        &op.url,
        "--now",
        &now10,
        "-q",
    ]));
    let due = due_unique(&day0, &now10);
    assert!(
        due > 0 && due < 15_000,
        "some but not all identities are due on day 10: {due}"
    );
    assert_eq!(
        op.requested() - before,
        due as f64,
        "the emulator saw exactly the due identities"
    );
    let day10 = common::read_dataset(&d("day10"));
    assert_eq!(day10.len(), day0.len());
    let now10_ms = chrono::DateTime::parse_from_rfc3339(&now10)
        .unwrap()
        .timestamp_millis();
    let mut carried = 0;
    for (a, b) in day0.iter().zip(&day10) {
        let was_due =
            a["status"].as_deref() == Some("mapped") && ms(&a["refresh_from"]) <= now10_ms;
        if !was_due {
            assert_eq!(a, b, "carried rows are identical, mapped_at included");
            // `carried` counts identities written with the state's answer (#25.8: the
            // same in both modes), not invalid or missing cells.
            carried += usize::from(a["identity_hash"].is_some());
        } else {
            assert_eq!(
                (
                    &a["source"],
                    &a["row"],
                    &a["customer_id"],
                    &a["identity_hash"]
                ),
                (
                    &b["source"],
                    &b["row"],
                    &b["customer_id"],
                    &b["identity_hash"]
                )
            );
            assert!(
                ms(&b["refresh_from"]) > now10_ms,
                "a remapped row gets a new refresh time"
            );
        }
    }
    let m = manifest(&d("day10"));
    assert_eq!(m["refresh"]["carried"], carried);
    assert_eq!(m["refresh"]["requests"], m["client"]["requests"]);

    // Day 40, refreshing the refresh: buckets rotated; opt an identity out meanwhile.
    let victim = day10
        .iter()
        .find(|r| {
            r["status"].as_deref() == Some("mapped")
                && r["identity_type"].as_deref() == Some("email")
        })
        .unwrap()
        .clone();
    writeln!(
        std::fs::OpenOptions::new()
            .append(true)
            .open(&optout)
            .unwrap(),
        "{}",
        victim["identity_hash"].as_ref().unwrap()
    )
    .unwrap();
    let now40 = op.advance(30);
    ok(&run(&[
        "refresh",
        "--state",
        &s(&d("day10")),
        "-o",
        &s(&d("day40")),
        "--base-url",
        &op.url,
        "--now",
        &now40,
        "-q",
    ]));
    let day40 = common::read_dataset(&d("day40"));
    ok(&run(&[
        "map",
        FIXTURE,
        "-o",
        &s(&d("fresh40")),
        "--base-url",
        &op.url,
        "--keep-col",
        "customer_id",
        "-q",
    ]));
    let fresh = common::read_dataset(&d("fresh40"));
    let mut rotated = 0;
    for ((old, new), f) in day10.iter().zip(&day40).zip(&fresh) {
        if new["identity_hash"] == victim["identity_hash"]
            && new["identity_type"] == victim["identity_type"]
        {
            assert_eq!(new["status"].as_deref(), Some("optout"));
            assert_eq!(
                new["raw_euid"], None,
                "an opted-out identity loses its raw id"
            );
            continue;
        }
        assert_eq!(
            new["raw_euid"], f["raw_euid"],
            "refresh matches what a fresh map returns"
        );
        assert_eq!(new["status"], f["status"]);
        if old["status"].as_deref() == Some("mapped") && new["raw_euid"] != old["raw_euid"] {
            rotated += 1;
            assert_eq!(
                new["previous_raw_euid"], old["raw_euid"],
                "the old raw id is the previous one"
            );
        }
    }
    assert!(rotated > 0, "some identities rotated within 40 days");
    let m = manifest(&d("day40"));
    assert_eq!(m["refresh"]["changed_ids"], rotated);
    assert_eq!(
        m["refresh"]["newly_opted_out"].as_u64().unwrap() as usize,
        day10
            .iter()
            .filter(|r| r["identity_hash"] == victim["identity_hash"]
                && r["identity_type"] == victim["identity_type"])
            .count()
    );
}

#[test]
fn refresh_with_todays_export_maps_new_and_changed_customers_and_drops_gone_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let op = Operator::start(&["--admin"]);
    let d = |n: &str| tmp.path().join(n);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let yesterday = d("yesterday.csv");
    let today = d("today.csv");
    std::fs::write(
        &yesterday,
        "customer_id,email\n1,a@example.com\n2,b@example.com\n3,c@example.com\n4,d@example.com\n",
    )
    .unwrap();
    std::fs::write(&today, "customer_id,email\n2,b@example.com\n3,c.new@example.com\n1,a@example.com\n5,e@example.com\n").unwrap();
    ok(&run(&[
        "map",
        &s(&yesterday),
        "-o",
        &s(&d("s0")),
        "--base-url",
        &op.url,
        "--keep-col",
        "customer_id",
        "-q",
    ]));
    let now = op.advance(0);
    // Issue #9.6: dropping a quarter of the customers is refused by default.
    let refused = run(&[
        "refresh",
        "--state",
        &s(&d("s0")),
        "-o",
        &s(&d("s1-refused")),
        &s(&today),
        "--key-col",
        "customer_id",
        "--base-url",
        &op.url,
        "--now",
        &now,
        "-q",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--max-drop-fraction"));
    assert!(!d("s1-refused").join("_SUCCESS").exists());
    let before = op.requested();
    ok(&run(&[
        "refresh",
        "--state",
        &s(&d("s0")),
        "-o",
        &s(&d("s1")),
        &s(&today),
        "--key-col",
        "customer_id",
        "--max-drop-fraction",
        "0.5",
        "--base-url",
        &op.url,
        "--now",
        &now,
        "-q",
    ]));
    assert_eq!(
        op.requested() - before,
        2.0,
        "only the changed (3) and new (5) customers are sent"
    );
    let s0: HashMap<String, Row> = common::read_dataset(&d("s0"))
        .into_iter()
        .map(|r| (r["customer_id"].clone().unwrap(), r))
        .collect();
    let s1 = common::read_dataset(&d("s1"));
    let ids: Vec<&str> = s1
        .iter()
        .map(|r| r["customer_id"].as_deref().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["2", "3", "1", "5"],
        "today's order; customer 4 dropped"
    );
    assert_eq!(s1[0]["raw_euid"], s0["2"]["raw_euid"]);
    assert_eq!(
        s1[0]["mapped_at"], s0["2"]["mapped_at"],
        "carried, not remapped"
    );
    assert_ne!(s1[1]["identity_hash"], s0["3"]["identity_hash"]);
    assert!(s1.iter().all(|r| r["status"].as_deref() == Some("mapped")));
    let m = manifest(&d("s1"))["refresh"].clone();
    assert_eq!(
        (
            m["carried"].as_u64(),
            m["value_changed"].as_u64(),
            m["new"].as_u64(),
            m["dropped"].as_u64()
        ),
        (Some(2), Some(1), Some(1), Some(1))
    );

    ok(&run(&[
        "refresh",
        "--state",
        &s(&d("s0")),
        "-o",
        &s(&d("s2")),
        &s(&today),
        "--key-col",
        "customer_id",
        "--keep-missing",
        "--base-url",
        &op.url,
        "--now",
        &now,
        "-q",
    ]));
    let s2 = common::read_dataset(&d("s2"));
    let ids: Vec<&str> = s2
        .iter()
        .map(|r| r["customer_id"].as_deref().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["2", "3", "1", "5", "4"],
        "--keep-missing keeps customer 4 at the end"
    );
    // Issue #32.3: kept as it was, but for its position: tonight's export has no row of it.
    let mut kept = s2[4].clone();
    assert_eq!(
        (
            kept.get_mut("source").unwrap().take(),
            kept.get_mut("row").unwrap().take()
        ),
        (None, None),
        "a carried row has no source or row"
    );
    assert!(
        kept.get_mut("carried_since").unwrap().take().is_some(),
        "and says since when"
    );
    let mut was = s0["4"].clone();
    was.insert("source".into(), None);
    was.insert("row".into(), None);
    assert_eq!(kept, was, "kept as it was");

    let o = run(&[
        "refresh",
        "--state",
        &s(&d("s0")),
        "-o",
        &s(&d("s3")),
        &s(&today),
        "--base-url",
        &op.url,
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--key-col"));
}

#[test]
fn legacy_v2_map_stores_bucket_ids_and_refresh_remaps_only_rotated_buckets() {
    let tmp = tempfile::tempdir().unwrap();
    let op = Operator::start(&["--admin"]);
    let d = |n: &str| tmp.path().join(n);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    ok(&run(&[
        "map",
        FIXTURE,
        "-o",
        &s(&d("v2day0")),
        "--base-url",
        &op.url,
        "--api",
        "v2",
        "--keep-col",
        "customer_id",
        "-q",
    ]));
    let day0 = common::read_dataset(&d("v2day0"));
    let mapped: Vec<&Row> = day0
        .iter()
        .filter(|r| r["status"].as_deref() == Some("mapped"))
        .collect();
    assert!(mapped.len() > 15_000);
    assert!(mapped
        .iter()
        .all(|r| r["bucket_id"].as_ref().is_some_and(|b| b.len() >= 10)
            && r["refresh_from"].is_none()));
    assert_eq!(
        day0.iter()
            .filter(|r| r["status"].as_deref() == Some("optout"))
            .count(),
        8
    );

    let now = op.advance(40);
    ok(&run(&[
        "map",
        FIXTURE,
        "-o",
        &s(&d("v2fresh")),
        "--base-url",
        &op.url,
        "--api",
        "v2",
        "--keep-col",
        "customer_id",
        "-q",
    ]));
    let fresh = common::read_dataset(&d("v2fresh"));
    let rotated: HashSet<(Option<String>, Option<String>)> = day0
        .iter()
        .zip(&fresh)
        .filter(|(a, b)| a["status"].as_deref() == Some("mapped") && a["raw_euid"] != b["raw_euid"])
        .map(|(a, _)| (a["identity_type"].clone(), a["identity_hash"].clone()))
        .collect();
    assert!(!rotated.is_empty());
    let before = op.requested();
    ok(&run(&[
        "refresh",
        "--state",
        &s(&d("v2day0")),
        "-o",
        &s(&d("v2day40")),
        "--base-url",
        &op.url,
        "--api",
        "v2",
        "--now",
        &now,
        "-q",
    ]));

    assert_eq!(
        op.requested() - before,
        rotated.len() as f64,
        "only identities in rotated buckets are remapped"
    );
    let day40 = common::read_dataset(&d("v2day40"));
    for ((old, new), f) in day0.iter().zip(&day40).zip(&fresh) {
        assert_eq!(new["raw_euid"], f["raw_euid"], "matches a fresh v2 map");
        assert_eq!(new["bucket_id"], f["bucket_id"]);
        if !rotated.contains(&(old["identity_type"].clone(), old["identity_hash"].clone())) {
            assert_eq!(old, new, "rows in unrotated buckets are carried unchanged");
        }
    }
    let o = run(&[
        "refresh",
        "--state",
        &s(&d("day-none")),
        "-o",
        &s(&d("x")),
        "--base-url",
        &op.url,
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn an_interrupted_refresh_resumes_to_the_rows_of_a_clean_one() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let input = d("big.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    writeln!(f, "customer_id,email,phone").unwrap();
    for i in 0..70_000u64 {
        writeln!(f, "{i},person{i}@example.com,+33{:010}", i * 7919).unwrap();
    }
    drop(f);
    // Two emulators with the same seed and start time answer identically; the first stops
    // accepting the key after 240 requests (the map takes 140).
    let start = ["--admin", "--start-time", "2026-06-01T12:00:00Z"];
    let a = Operator::start(&[&start[..], &["--expire-after", "240"]].concat());
    let b = Operator::start(&start);
    let args = |state: &Path, out: &Path, url: &str, now: &str| -> Vec<String> {
        [
            "refresh",
            "--state",
            &s(state),
            "-o",
            &s(out),
            "--base-url",
            url,
            "--now",
            now,
            "--batch-size",
            "1000",
            "--concurrency",
            "1",
            "--part-rows",
            "30000",
            "-q",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    ok(&run(&[
        "map",
        &s(&input),
        "-o",
        &s(&d("s0")),
        "--base-url",
        &a.url,
        "--batch-size",
        "1000",
        "--keep-col",
        "customer_id",
        "-q",
    ]));
    let _ = a.advance(40);
    let now = b.advance(40);
    let o = run(&args(&d("s0"), &d("r1"), &a.url, &now));
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !euid_map::output::committed_parts(&euid_map::storage::Location::Local(d("r1")))
            .unwrap()
            .is_empty(),
        "parts were committed before the key expired"
    );
    let mut resumed = args(&d("s0"), &d("r1"), &b.url, &now);
    resumed.push("--resume".into());
    ok(&run(&resumed));
    ok(&run(&args(&d("s0"), &d("r2"), &b.url, &now)));
    let strip = |rows: Vec<Row>| -> Vec<Row> {
        rows.into_iter()
            .map(|mut r| {
                r.remove("mapped_at");
                r
            })
            .collect()
    };
    let (r1, r2) = (
        strip(common::read_dataset(&d("r1"))),
        strip(common::read_dataset(&d("r2"))),
    );
    assert_eq!(r2.len(), 140_000);
    assert!(r1 == r2, "same rows, no duplicates, no gaps");
}

#[test]
fn the_partitioned_join_gives_the_same_rows_as_a_single_partition() {
    let tmp = tempfile::tempdir().unwrap();
    let op = Operator::start(&["--admin"]);
    let d = |n: &str| tmp.path().join(n);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    // Yesterday's export is the fixture; today's drops every 7th customer, changes the email of
    // every 11th and adds new ones.
    let text = std::fs::read_to_string(FIXTURE).unwrap();
    let mut today = String::from("customer_id,email,phone\n");
    for (i, line) in text.lines().skip(1).enumerate() {
        if i % 7 == 3 {
            continue;
        }
        if i % 11 == 5 {
            let id = line.split(',').next().unwrap();
            today.push_str(&format!("{id},changed{i}@example.com,\n"));
        } else {
            today.push_str(line);
            today.push('\n');
        }
    }
    for i in 0..500 {
        today.push_str(&format!("new{i},new{i}@example.com,+4420{i:07}\n"));
    }
    std::fs::write(d("today.csv"), today).unwrap();
    ok(&run(&[
        "map",
        FIXTURE,
        "-o",
        &s(&d("s0")),
        "--base-url",
        &op.url,
        "--keep-col",
        "customer_id",
        "-q",
    ]));
    let now = op.advance(3);
    let refresh = |out: &str, partition_rows: &str| {
        ok(&run(&[
            "refresh",
            "--state",
            &s(&d("s0")),
            "-o",
            &s(&d(out)),
            &s(&d("today.csv")),
            "--key-col",
            "customer_id",
            "--keep-missing",
            "--base-url",
            &op.url,
            "--now",
            &now,
            "--partition-rows",
            partition_rows,
            "-q",
        ]));
        let rows: Vec<Row> = common::read_dataset(&d(out))
            .into_iter()
            .map(|mut r| {
                r.remove("mapped_at");
                r
            })
            .collect();
        (rows, manifest(&d(out))["refresh"].clone())
    };
    let (one, m1) = refresh("one", "1000000");
    let (many, m2) = refresh("many", "700");
    assert_eq!(one.len(), many.len());
    assert!(one == many, "same rows whatever the number of partitions");
    for k in ["carried", "due", "value_changed", "new", "dropped"] {
        assert_eq!(m1[k], m2[k], "{k}");
    }
    assert!(
        m1["value_changed"].as_u64().unwrap() > 0
            && m1["new"].as_u64().unwrap() >= 500
            && m1["carried"].as_u64().unwrap() > 0
    );
    assert!(
        !d("many").join(".refresh-tmp").exists(),
        "the temporary partitions are removed"
    );
}
