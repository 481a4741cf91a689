//! End to end, issue #21: phones as CRM exports hold them (national formats with a country
//! column, punctuation, `00` prefixes) mapped, counted, resumed and refreshed with the real
//! binary against the emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::Operator;

type Row = BTreeMap<String, Option<String>>;

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn run(args: &[String]) -> std::process::Output {
    common::run_bin(args, &common::creds())
}

/// `CMD INPUT -o OUT -q` and `extra`.
fn job(cmd: &str, input: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = vec![cmd.to_string(), s(input), "-o".into(), s(out), "-q".into()];
    a.extend(extra.iter().map(|e| e.to_string()));
    a
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", common::stderr(o));
}

fn b64_sha(s: &str) -> String {
    euid_map::normalize::sha256(s.as_bytes()).to_base64()
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("_manifest.json")).unwrap()).unwrap()
}

fn by_id(rows: Vec<Row>) -> BTreeMap<String, Row> {
    rows.into_iter()
        .map(|r| (r["id"].clone().unwrap(), r))
        .collect()
}

const CRM: &str = "id,phone,country\n\
1,06 12 34 56 78,FR\n\
2,+44 (0)20 7946 0958,\n\
3,0049-30-1234567,de\n\
4,+33 6 12 34 56 78,US\n\
5, +31612345678 ,\n\
6,+33612345678,\n\
7,06 12 34 56 78,\n\
8,06 12 34 56 78,XX\n\
9,hello,FR\n\
10,06 12 34 56 7A,FR\n\
11,,FR\n";

/// `map` reads every spelling of one French mobile as the same identity, keeps refusing what
/// it cannot read with a reason, and counts both in the manifest.
#[test]
fn national_and_punctuated_phones_map_as_their_e164() {
    let op = Operator::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("crm.csv");
    std::fs::write(&input, CRM).unwrap();
    let out = tmp.path().join("out");
    ok(&run(&job(
        "map",
        &input,
        &out,
        &[
            "--base-url",
            &op.url,
            "--keep-col",
            "id",
            "--phone-region-col",
            "country",
        ],
    )));
    let rows = by_id(common::read_dataset(&out));
    let fr = b64_sha("+33612345678");
    for id in ["1", "4", "6"] {
        assert_eq!(
            rows[id]["identity_hash"].as_deref(),
            Some(fr.as_str()),
            "row {id}"
        );
        assert_eq!(rows[id]["status"].as_deref(), Some("mapped"), "row {id}");
    }
    assert_eq!(
        rows["1"]["raw_euid"], rows["6"]["raw_euid"],
        "one person, one raw EUID"
    );
    assert_eq!(rows["2"]["identity_hash"], Some(b64_sha("+442079460958")));
    assert_eq!(rows["3"]["identity_hash"], Some(b64_sha("+49301234567")));
    assert_eq!(rows["5"]["identity_hash"], Some(b64_sha("+31612345678")));
    let reason = |id: &str| rows[id]["reason"].clone().unwrap_or_default();
    assert_eq!(
        reason("7"),
        "phone: national format needs --phone-region or --phone-region-col"
    );
    assert_eq!(reason("8"), "phone: unknown region \"XX\"");
    assert_eq!(reason("9"), "phone: not a number");
    assert_eq!(reason("10"), "phone: not a valid number for +33");
    assert_eq!(rows["11"]["status"].as_deref(), Some("missing"));
    let phones = &manifest(&out)["phones"];
    assert_eq!(phones["as_given"], 1, "{phones}");
    assert_eq!(phones["reformatted"], 5, "{phones}");
    assert_eq!(phones["refused"]["phone: not a number"], 1, "{phones}");
    assert_eq!(phones["refused"].as_object().unwrap().len(), 4, "{phones}");
}

/// `--phone-region` is the fallback for rows whose cell is empty, never for an unknown code.
#[test]
fn the_run_region_fills_only_empty_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("crm.csv");
    std::fs::write(&input, CRM).unwrap();
    let out = tmp.path().join("out");
    ok(&run(&job(
        "hash",
        &input,
        &out,
        &[
            "--keep-col",
            "id",
            "--phone-region-col",
            "country",
            "--phone-region",
            "fr",
        ],
    )));
    let rows = by_id(common::read_dataset(&out));
    assert_eq!(rows["7"]["identity_hash"], Some(b64_sha("+33612345678")));
    assert_eq!(
        rows["8"]["reason"].as_deref(),
        Some("phone: unknown region \"XX\"")
    );
    // A bad --phone-region is a usage error naming the flag.
    let o = run(&[
        "hash".into(),
        s(&input),
        "-o".into(),
        s(&tmp.path().join("bad")),
        "--phone-region".into(),
        "UK".into(),
    ]);
    assert_eq!(o.status.code(), Some(64));
    assert!(
        common::stderr(&o).contains("--phone-region"),
        "{}",
        common::stderr(&o)
    );
}

/// The phone settings are part of the job: a `--resume` with other settings is refused
/// rather than hashing half the dataset one way and half the other.
#[test]
fn resume_refuses_other_phone_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("crm.csv");
    let mut text = String::from("id,phone\n");
    for i in 0..300 {
        text.push_str(&format!("{i},06 12 34 {:02} {:02}\n", i / 100, i % 100));
    }
    std::fs::write(&input, text).unwrap();
    let out = tmp.path().join("out");
    let args = |region: &str| -> Vec<String> {
        vec![
            "hash".into(),
            s(&input),
            "-o".into(),
            s(&out),
            "--part-rows".into(),
            "100".into(),
            "--phone-region".into(),
            region.into(),
            "-q".into(),
        ]
    };
    ok(&run(&args("FR")));
    // Pretend the run stopped after its first part.
    for p in [
        "part-00001.parquet",
        "part-00002.parquet",
        "_SUCCESS",
        "_manifest.json",
    ] {
        let _ = std::fs::remove_file(out.join(p));
    }
    let mut resume = args("BE");
    resume.push("--resume".into());
    let o = run(&resume);
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    assert!(!out.join("_SUCCESS").exists());
    let mut resume = args("FR");
    resume.push("--resume".into());
    ok(&run(&resume));
    let rows = common::read_dataset(&out);
    assert_eq!(rows.len(), 300);
    assert!(rows
        .iter()
        .all(|r| r["status"].as_deref() == Some("hashed")));
    assert_eq!(
        manifest(&out)["phones"]["reformatted"],
        300,
        "resumed parts counted"
    );
}

/// Night 2's export writes the same phones another way: nothing is remapped, because the
/// identity is the E.164, not the spelling.
#[test]
fn refresh_carries_a_phone_written_another_way() {
    let op = Operator::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let night1 = tmp.path().join("n1.csv");
    std::fs::write(
        &night1,
        "id,phone,country\n1,+33612345678,FR\n2,0151 23456789,DE\n",
    )
    .unwrap();
    let s1 = tmp.path().join("s1");
    let base = |extra: Vec<String>| {
        let mut a = vec!["--base-url".to_string(), op.url.clone(), "-q".into()];
        a.extend(extra);
        a.extend([
            "--keep-col".to_string(),
            "id".into(),
            "--phone-region-col".into(),
            "country".into(),
        ]);
        a
    };
    let mut a = vec!["map".to_string(), s(&night1), "-o".into(), s(&s1)];
    a.extend(base(vec![]));
    ok(&run(&a));
    let night2 = tmp.path().join("n2.csv");
    std::fs::write(
        &night2,
        "id,phone,country\n1,06 12 34 56 78,fr\n2,+49 151 23456789,\n",
    )
    .unwrap();
    let s2 = tmp.path().join("s2");
    let mut a = vec![
        "refresh".to_string(),
        "--state".into(),
        s(&s1),
        "-o".into(),
        s(&s2),
        s(&night2),
        "--key-col".into(),
        "id".into(),
    ];
    a.extend(base(vec![]));
    ok(&run(&a));
    let r = &manifest(&s2)["refresh"];
    assert_eq!(r["carried"], 2, "{r}");
    assert_eq!(r["value_changed"], 0, "{r}");
    let before = by_id(common::read_dataset(&s1));
    let after = by_id(common::read_dataset(&s2));
    for id in ["1", "2"] {
        assert_eq!(after[id]["raw_euid"], before[id]["raw_euid"], "row {id}");
        assert!(after[id]["raw_euid"].is_some());
    }
}

/// `euid-map normalize` answers a support question without a dataset.
#[test]
fn normalize_prints_the_e164_and_its_hash() {
    let o = run(&[
        "normalize".into(),
        "--phone".into(),
        "06 12 34 56 78".into(),
        "--phone-region".into(),
        "FR".into(),
    ]);
    ok(&o);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("+33612345678"), "{text}");
    assert!(text.contains(&b64_sha("+33612345678")), "{text}");
    let o = run(&[
        "normalize".into(),
        "--phone".into(),
        "06 12 34 56 78".into(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("needs --phone-region"));
}

/// A night whose export is read without its region (the flag forgotten, the column
/// emptied) would turn every national-format phone invalid and drop its raw EUID with exit
/// 0; the refresh refuses instead, and names the likely cause.
#[test]
fn a_refresh_that_would_lose_the_phones_raw_euids_is_refused() {
    let op = Operator::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("crm.csv");
    let mut text = String::from("id,email,phone,country\n");
    for i in 0..50 {
        text.push_str(&format!(
            "{i},u{i}@example.com,06 12 34 {:02} {:02},FR\n",
            i / 10,
            i % 10
        ));
    }
    std::fs::write(&export, text).unwrap();
    let s1 = tmp.path().join("s1");
    let common = |a: &mut Vec<String>| {
        a.extend(
            ["--base-url", &op.url, "-q", "--keep-col", "id"]
                .iter()
                .map(|s| s.to_string()),
        )
    };
    let mut a = vec!["map".to_string(), s(&export), "-o".into(), s(&s1)];
    common(&mut a);
    a.extend(["--phone-region-col".to_string(), "country".into()]);
    ok(&run(&a));
    let s2 = tmp.path().join("s2");
    let mut a = vec![
        "refresh".to_string(),
        "--state".into(),
        s(&s1),
        "-o".into(),
        s(&s2),
        s(&export),
        "--key-col".into(),
        "id".into(),
    ];
    common(&mut a);
    let o = run(&a);
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    let e = common::stderr(&o);
    assert!(
        e.contains("50 of the 100 mapped identities") && e.contains("--phone-region"),
        "{e}"
    );
    assert!(!s2.join("_SUCCESS").exists());
    // With the region again, the night carries everyone.
    a.extend(["--phone-region-col".to_string(), "country".into()]);
    ok(&run(&a));
    assert_eq!(manifest(&s2)["refresh"]["carried"], 100);
    assert_eq!(manifest(&s2)["refresh"]["lost_ids"], 0);
}

/// A file without a header row has phones where the names should be: errors must not
/// print them.
#[test]
fn errors_never_echo_header_cells_that_are_phones_or_emails() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("nohdr.csv");
    std::fs::write(
        &input,
        "1,+33699887766,a@b.example\n2,0611223344,c@d.example\n",
    )
    .unwrap();
    for extra in [vec!["--phone-col", "phone"], vec![]] {
        let mut a = vec![
            "hash".to_string(),
            s(&input),
            "-o".into(),
            s(&tmp.path().join("o")),
            "-q".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        let o = run(&a);
        assert_eq!(o.status.code(), Some(1));
        let e = common::stderr(&o);
        assert!(!e.contains("699887766") && !e.contains("a@b"), "{e}");
        assert!(e.contains("header row missing"), "{e}");
    }
    std::fs::write(&input, "1;+33699887766;FR\n").unwrap();
    let o = run(&[
        "hash".into(),
        s(&input),
        "-o".into(),
        s(&tmp.path().join("p")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        !common::stderr(&o).contains("699887766"),
        "{}",
        common::stderr(&o)
    );
}
