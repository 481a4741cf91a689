//! End to end, issue #25: `refresh` on exports shaped like real ones (customers without a
//! usable identity, decimal and null keys, a state missing a part, an export replaced while
//! it runs, a failing operator, the state's schema, counts after `--resume`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Operator;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};

/// The command under test: `common::bin()` (the built binary, or `EUID_MAP_BIN`).
static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(common::bin);

type Row = BTreeMap<String, Option<String>>;

fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(&*BIN)
        .args(args)
        .env("EUID_API_KEY", common::API_KEY)
        .env("EUID_CLIENT_SECRET", common::SECRET)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", common::stderr(o));
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("_manifest.json")).unwrap()).unwrap()
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// Writes a one-row-group Parquet file of `columns`.
fn parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn emails(n: usize) -> ArrayRef {
    Arc::new(arrow_array::StringArray::from_iter_values(
        (0..n).map(|i| format!("user{i}@example.com")),
    ))
}

/// `map` of `input` into `out` with `--keep-col` for each of `keep`.
fn map(op: &Operator, input: &Path, out: &Path, keep: &[&str]) {
    let mut args = vec![
        "map".to_string(),
        s(input),
        "-o".into(),
        s(out),
        "--base-url".into(),
        op.url.clone(),
        "-q".into(),
    ];
    for k in keep {
        args.extend(["--keep-col".to_string(), k.to_string()]);
    }
    ok(&run(&args));
}

/// `refresh --state STATE -o OUT INPUT --key-col id`, plus `extra`.
fn refresh(
    op: &Operator,
    state: &Path,
    out: &Path,
    input: Option<&Path>,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "refresh".to_string(),
        "--state".into(),
        s(state),
        "-o".into(),
        s(out),
        "--base-url".into(),
        op.url.clone(),
        "-q".into(),
    ];
    if let Some(i) = input {
        args.extend([s(i), "--key-col".into(), "id".into()]);
    }
    args.extend(extra.iter().map(|e| e.to_string()));
    run(&args)
}

fn ids(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .map(|r| r["id"].clone().unwrap_or_else(|| "<null>".into()))
        .collect()
}

/// Case 1: a customer whose identities are all invalid or empty is present, not gone.
#[test]
fn customers_without_a_usable_identity_are_present_and_never_duplicated() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&[]);
    std::fs::write(
        d("e.csv"),
        "id,email,phone\n1,a@example.com,\n2,not-an-email,\n3,,\n4,d@example.com,+33612345678\n5,,bad\n",
    )
    .unwrap();
    map(&op, &d("e.csv"), &d("s0"), &["id"]);
    let state = common::read_dataset(&d("s0"));
    // The unchanged export: nobody is missing, the guard does not fire.
    ok(&refresh(&op, &d("s0"), &d("s1"), Some(&d("e.csv")), &[]));
    let r = manifest(&d("s1"))["refresh"].clone();
    assert_eq!(r["missing_customers"], 0, "{r}");
    assert_eq!(r["state_customers"], 5, "{r}");
    assert_eq!(r["dropped"], 0, "{r}");
    // --keep-missing writes each customer once: no copy of those without an identity.
    ok(&refresh(
        &op,
        &d("s1"),
        &d("s2"),
        Some(&d("e.csv")),
        &["--keep-missing"],
    ));
    let s2 = common::read_dataset(&d("s2"));
    assert_eq!(ids(&s2), ids(&state), "the same rows, once each");
    assert_eq!(manifest(&d("s2"))["output_rows"], state.len());
}

/// Case 3: keys are compared by value whatever their type; an empty export cannot wipe a
/// state whose keys are decimals; a key type that cannot be compared is refused.
#[test]
fn keys_of_every_numeric_type_are_read_and_compared_by_value() {
    use arrow_array::{
        BooleanArray, Decimal128Array, Float64Array, Int8Array, StringArray, UInt16Array,
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&[]);
    let n = 20;
    let decimal: ArrayRef = Arc::new(
        Decimal128Array::from_iter_values(0..n as i128)
            .with_precision_and_scale(38, 0)
            .unwrap(),
    );
    let kinds: Vec<(&str, ArrayRef)> = vec![
        ("decimal", decimal),
        ("int8", Arc::new(Int8Array::from_iter_values(0..n as i8))),
        (
            "uint16",
            Arc::new(UInt16Array::from_iter_values(0..n as u16)),
        ),
        (
            "float",
            Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64))),
        ),
    ];
    for (name, keys) in kinds {
        let export = d(&format!("{name}.parquet"));
        parquet(&export, vec![("id", keys), ("email", emails(n))]);
        let s0 = d(&format!("{name}-0"));
        map(&op, &export, &s0, &["id"]);
        let s1 = d(&format!("{name}-1"));
        ok(&refresh(&op, &s0, &s1, Some(&export), &[]));
        let r = manifest(&s1)["refresh"].clone();
        assert_eq!(
            (r["carried"].as_u64(), r["new"].as_u64()),
            (Some(n as u64), Some(0)),
            "{name}: every customer matched: {r}"
        );
        assert_eq!(r["state_customers"], n, "{name}");
        // A CSV of the same customers (keys as text) matches a numeric state by value.
        if name == "decimal" {
            let csv = d("same.csv");
            let text: String = (0..n)
                .map(|i| format!("{i},user{i}@example.com\n"))
                .collect();
            std::fs::write(&csv, format!("id,email\n{text}")).unwrap();
            let out = d("decimal-csv");
            ok(&refresh(
                &op,
                &s0,
                &out,
                Some(&csv),
                &["--allow-schema-change"],
            ));
            assert_eq!(manifest(&out)["refresh"]["carried"], n, "42 = \"42\"");
            // A zero-row export would drop every customer: refused, not an empty state.
            let empty = d("empty.csv");
            std::fs::write(&empty, "id,email\n").unwrap();
            let out = d("decimal-empty");
            let o = refresh(&op, &s0, &out, Some(&empty), &["--allow-schema-change"]);
            assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
            assert!(common::stderr(&o).contains("refusing to drop 20"));
            assert!(!out.join("_SUCCESS").exists());
        }
    }
    // A key that cannot be compared by value is refused, naming the column and its type.
    let export = d("bool.parquet");
    parquet(
        &export,
        vec![
            ("id", Arc::new(BooleanArray::from(vec![true, false]))),
            ("email", emails(2)),
        ],
    );
    map(&op, &export, &d("bool-0"), &["id"]);
    let o = refresh(&op, &d("bool-0"), &d("bool-1"), Some(&export), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::stderr(&o).contains("key column \"id\" is Boolean"),
        "{}",
        common::stderr(&o)
    );
    // A state whose keys are all null is refused.
    let export = d("nulls.parquet");
    parquet(
        &export,
        vec![
            ("id", Arc::new(StringArray::from(vec![None::<&str>, None]))),
            ("email", emails(2)),
        ],
    );
    map(&op, &export, &d("nulls-0"), &["id"]);
    let o = refresh(&op, &d("nulls-0"), &d("nulls-1"), Some(&export), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::stderr(&o).contains("null \"id\""),
        "{}",
        common::stderr(&o)
    );
}

/// Case 4: rows with a null key are never kept, so they do not multiply night after night.
#[test]
fn null_key_rows_do_not_multiply_under_keep_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&[]);
    std::fs::write(
        d("e.csv"),
        "id,email\n1,a@example.com\n,blank@example.com\n2,b@example.com\n",
    )
    .unwrap();
    map(&op, &d("e.csv"), &d("n0"), &["id"]);
    for night in 1..=3 {
        let (prev, out) = (d(&format!("n{}", night - 1)), d(&format!("n{night}")));
        ok(&refresh(
            &op,
            &prev,
            &out,
            Some(&d("e.csv")),
            &["--keep-missing"],
        ));
        let rows = common::read_dataset(&out);
        assert_eq!(ids(&rows), vec!["1", "<null>", "2"], "night {night}");
        let r = manifest(&out)["refresh"].clone();
        assert_eq!(r["state_null_key_rows"], 1, "night {night}: {r}");
        assert_eq!(r["dropped"], 1, "the state's null-key row is not kept: {r}");
        assert_eq!(
            r["new"], 1,
            "the export's null-key row is mapped afresh: {r}"
        );
    }
}

/// Case 5: a state with a part missing is refused; one without euid-map's metadata (another
/// engine's copy) is read as data.
#[test]
fn a_state_missing_a_part_is_refused_and_a_foreign_copy_is_read_as_data() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&[]);
    let text: String = (0..1000)
        .map(|i| format!("{i},user{i}@example.com\n"))
        .collect();
    std::fs::write(d("e.csv"), format!("id,email\n{text}")).unwrap();
    let mut args: Vec<String> = ["map", &s(&d("e.csv")), "-o", &s(&d("s0")), "--base-url"]
        .iter()
        .map(|x| x.to_string())
        .collect();
    args.extend([op.url.clone(), "--keep-col".into(), "id".into()]);
    args.extend(["--part-rows".into(), "200".into(), "-q".into()]);
    ok(&run(&args));
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    };
    for (gone, why) in [
        ("part-00002.parquet", "part-00002.parquet is missing"),
        (
            "part-00004.parquet",
            "parts hold 800 rows but its _manifest.json says 1000",
        ),
    ] {
        let st = d(&format!("without-{gone}"));
        copy(&d("s0"), &st);
        std::fs::remove_file(st.join(gone)).unwrap();
        let out = d(&format!("out-{gone}"));
        let o = refresh(&op, &st, &out, None, &[]);
        assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
        assert!(common::stderr(&o).contains(why), "{}", common::stderr(&o));
        assert!(!out.join("_SUCCESS").exists());
    }
    // The same parts without _job.json and _manifest.json: euid-map's own parts (their
    // footers say so) whose metadata is gone cannot be checked, so they are refused.
    let stripped = d("stripped");
    copy(&d("s0"), &stripped);
    for f in ["_job.json", "_manifest.json"] {
        std::fs::remove_file(stripped.join(f)).unwrap();
    }
    let o = refresh(&op, &stripped, &d("out-stripped"), None, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("_manifest.json is missing"),
        "{}",
        common::stderr(&o)
    );
    // Another engine's compaction (one file, no euid-map footer): read as data, warned.
    let foreign = d("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    {
        let mut parts: Vec<_> = std::fs::read_dir(d("s0"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect();
        parts.sort();
        let mut w: Option<parquet::arrow::ArrowWriter<std::fs::File>> = None;
        for p in parts {
            let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(p).unwrap(),
            )
            .unwrap()
            .build()
            .unwrap();
            for b in r {
                let b = b.unwrap();
                let w = w.get_or_insert_with(|| {
                    let f = std::fs::File::create(foreign.join("compacted.parquet")).unwrap();
                    parquet::arrow::ArrowWriter::try_new(f, b.schema(), None).unwrap()
                });
                w.write(&b).unwrap();
            }
        }
        w.unwrap().close().unwrap();
    }
    let o = Command::new(&*BIN)
        .args([
            "refresh",
            "--state",
            &s(&foreign),
            "-o",
            &s(&d("out-foreign-2")),
        ])
        .args(["--base-url", &op.url])
        .env("EUID_API_KEY", common::API_KEY)
        .env("EUID_CLIENT_SECRET", common::SECRET)
        .output()
        .unwrap();
    ok(&o);
    assert!(
        common::stderr(&o).contains("has no _manifest.json"),
        "{}",
        common::stderr(&o)
    );
    assert_eq!(manifest(&d("out-foreign-2"))["output_rows"], 1000);
}

/// Case 6: a due row whose remap fails keeps its last known raw EUID, as `stale`; the next
/// night retries it.
#[test]
fn a_due_row_whose_remap_fails_keeps_its_last_raw_euid_as_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let good = Operator::start(&[]);
    std::fs::write(
        d("e.csv"),
        "id,email\n1,a@example.com\n2,b@example.com\n3,not-an-email\n",
    )
    .unwrap();
    map(&good, &d("e.csv"), &d("s0"), &["id"]);
    let s0 = common::read_dataset(&d("s0"));
    let failing = Operator::start(&["--faults", "500=1"]);
    // Far enough ahead that every mapped row is due. No opt-out sweep: it would check the
    // due rows' last ids, and against this operator it would stop the run, as a sweep that
    // cannot finish must (tests/optout.rs).
    let later = "2099-01-01T00:00:00Z";
    let no_sweep = ["--now", later, "--no-optout-sweep"];
    let o = refresh(&failing, &d("s0"), &d("s1"), None, &no_sweep);
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    assert!(common::stderr(&o).contains("stale"));
    let s1 = common::read_dataset(&d("s1"));
    for (old, new) in s0.iter().zip(&s1) {
        if old["status"].as_deref() == Some("mapped") {
            assert_eq!(new["status"].as_deref(), Some("stale"));
            assert_eq!(
                new["raw_euid"], old["raw_euid"],
                "the last known id is kept"
            );
            assert_eq!(new["refresh_from"], old["refresh_from"]);
            assert!(new["reason"]
                .as_deref()
                .is_some_and(|r| r.starts_with("refresh failed, last known raw EUID kept")));
        } else {
            assert_eq!(new, old, "rows without an id are carried as they were");
        }
    }
    assert_eq!(manifest(&d("s1"))["refresh"]["stale"], 2);
    assert_eq!(manifest(&d("s1"))["counts"]["stale"], 2);
    // The next night, with the operator back, the stale rows are remapped.
    ok(&refresh(&good, &d("s1"), &d("s2"), None, &[]));
    let s2 = common::read_dataset(&d("s2"));
    let statuses: Vec<_> = s2.iter().map(|r| r["status"].clone().unwrap()).collect();
    assert_eq!(statuses, vec!["mapped", "mapped", "invalid"]);
    assert_eq!(manifest(&d("s2"))["refresh"]["due"], 2);
    // A stale row that fails again stays stale with the same id.
    let o = refresh(&failing, &d("s1"), &d("s3"), None, &no_sweep);
    assert_eq!(o.status.code(), Some(2));
    let s3 = common::read_dataset(&d("s3"));
    assert_eq!(s3[0]["raw_euid"], s0[0]["raw_euid"]);
    assert_eq!(s3[0]["status"].as_deref(), Some("stale"));
}

/// Case 7: a refresh keeps the state's kept columns; another set is refused unless asked.
#[test]
fn a_refresh_keeps_the_states_columns_unless_told_otherwise() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&[]);
    std::fs::write(
        d("e.csv"),
        "id,email,country\n1,a@example.com,FR\n2,b@example.com,DE\n",
    )
    .unwrap();
    map(&op, &d("e.csv"), &d("s0"), &["id", "country"]);
    ok(&refresh(&op, &d("s0"), &d("s1"), Some(&d("e.csv")), &[]));
    let s1 = common::read_dataset(&d("s1"));
    assert_eq!(
        s1[1]["country"].as_deref(),
        Some("DE"),
        "kept without --keep-col"
    );
    assert_eq!(
        manifest(&d("s1"))["kept_columns"],
        serde_json::json!(["id", "country"])
    );
    // The same set in another order is the state's schema.
    ok(&refresh(
        &op,
        &d("s1"),
        &d("s2"),
        Some(&d("e.csv")),
        &["--keep-col", "country", "--keep-col", "id"],
    ));
    assert_eq!(
        manifest(&d("s2"))["kept_columns"],
        serde_json::json!(["id", "country"])
    );
    let o = refresh(
        &op,
        &d("s1"),
        &d("s3"),
        Some(&d("e.csv")),
        &["--keep-col", "id"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::stderr(&o).contains("--allow-schema-change"),
        "{}",
        common::stderr(&o)
    );
    assert!(!d("s3").join("_SUCCESS").exists());
    ok(&refresh(
        &op,
        &d("s1"),
        &d("s4"),
        Some(&d("e.csv")),
        &["--keep-col", "id", "--allow-schema-change"],
    ));
    assert!(!common::read_dataset(&d("s4"))[0].contains_key("country"));
    // State only: the state's columns, key included, are in the manifest.
    ok(&refresh(&op, &d("s1"), &d("s5"), None, &[]));
    let m = manifest(&d("s5"));
    assert_eq!(m["kept_columns"], serde_json::json!(["id", "country"]));
    assert_eq!(m["input_rows"], 2, "input rows, not identity rows");
}

/// Case 8: rows that only change order are carried, not changed.
#[test]
fn duplicate_keys_whose_rows_change_order_are_carried() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&[]);
    std::fs::write(
        d("a.csv"),
        "id,email\n1,a@example.com\n1,b@example.com\n2,c@example.com\n",
    )
    .unwrap();
    std::fs::write(
        d("b.csv"),
        "id,email\n1,b@example.com\n2,c@example.com\n1,a@example.com\n",
    )
    .unwrap();
    map(&op, &d("a.csv"), &d("s0"), &["id"]);
    let before = op.requested();
    ok(&refresh(&op, &d("s0"), &d("s1"), Some(&d("b.csv")), &[]));
    let r = manifest(&d("s1"))["refresh"].clone();
    assert_eq!(
        (r["carried"].as_u64(), r["value_changed"].as_u64()),
        (Some(3), Some(0)),
        "{r}"
    );
    assert_eq!(op.requested(), before, "nothing sent");
}

fn big_export(path: &Path, n: usize, prefix: &str) {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(w, "id,email").unwrap();
    for i in 0..n {
        writeln!(w, "{i},{prefix}{i:07}@example.com").unwrap();
    }
}

/// Case 2: an export rewritten while refresh reads it is refused, never given another
/// identity's answers.
#[test]
fn an_export_rewritten_during_the_run_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let good = Operator::start(&[]);
    let n = 700_000;
    big_export(&d("export.csv"), n, "u");
    big_export(&d("other.csv"), n, "v"); // same size, other people
    std::fs::write(d("tiny.csv"), "id,email\n0,u0000000@example.com\n").unwrap();
    map(&good, &d("tiny.csv"), &d("s0"), &["id"]);
    let held = Operator::start(&["--admin", "--hold-after", "1"]);
    let child = Command::new(&*BIN)
        .args(["refresh", "--state", &s(&d("s0")), "-o", &s(&d("s1"))])
        .args([&s(&d("export.csv")), "--key-col", "id", "-q"])
        .args(["--base-url", &held.url])
        .env("EUID_API_KEY", common::API_KEY)
        .env("EUID_CLIENT_SECRET", common::SECRET)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The second read is under way and stopped behind the held answers: the reader is at
    // most a few hundred thousand rows in, bounded by the queues.
    common::wait_until("a held request", || held.held() > 0.0);
    // Overwrite in place (no truncation): the rows the reader has not reached change.
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(d("export.csv"))
            .unwrap();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.write_all(&std::fs::read(d("other.csv")).unwrap())
            .unwrap();
    }
    held.release();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("changed while refresh was reading it"),
        "{}",
        common::stderr(&o)
    );
    assert!(!d("s1").join("_SUCCESS").exists());
}

/// Case 8: after kill -9 and `--resume`, every count in the manifest covers the whole
/// dataset and equals a clean run's.
#[test]
fn counts_after_a_resumed_refresh_equal_a_clean_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let good = Operator::start(&["--admin"]);
    let n = 60_000;
    big_export(&d("night0.csv"), n, "u");
    // Tonight: the first half unchanged, the second half new people.
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(d("night1.csv")).unwrap());
        writeln!(w, "id,email").unwrap();
        for i in 0..n {
            let p = if i < n / 2 { "u" } else { "w" };
            writeln!(w, "{i},{p}{i:07}@example.com").unwrap();
        }
    }
    map(&good, &d("night0.csv"), &d("s0"), &["id"]);
    let now = good.advance(0);
    let base = |out: &Path, op: &Operator| -> Vec<String> {
        vec![
            "refresh".into(),
            "--state".into(),
            s(&d("s0")),
            "-o".into(),
            s(out),
            s(&d("night1.csv")),
            "--key-col".into(),
            "id".into(),
            "--base-url".into(),
            op.url.clone(),
            "--now".into(),
            now.clone(),
            "--part-rows".into(),
            "5000".into(),
            // One request at a time, so the hold below stops the run after the first
            // chunk's answer, never before it; no opt-out sweep, whose requests would come
            // first (tests/optout.rs kills a run during its sweep).
            "--concurrency".into(),
            "1".into(),
            "--no-optout-sweep".into(),
            "-q".into(),
        ]
    };
    ok(&run(&base(&d("clean"), &good)));
    let held = Operator::start(&["--admin", "--hold-after", "3"]);
    let log = std::fs::File::create(d("held.log")).unwrap();
    let mut child = Command::new(&*BIN)
        .args(base(&d("resumed"), &held))
        .env("EUID_API_KEY", common::API_KEY)
        .env("EUID_CLIENT_SECRET", common::SECRET)
        .stderr(log)
        .spawn()
        .unwrap();
    // Held mid-run (the first chunk's parts are usually committed by then); a run that
    // ended instead fails the test at once with what it said.
    common::wait_until("a held request", || {
        held.held() > 0.0 || child.try_wait().unwrap().is_some()
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before the kill: {}",
        std::fs::read_to_string(d("held.log")).unwrap_or_default()
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!d("resumed").join("_SUCCESS").exists(), "killed mid-way");
    let mut args = base(&d("resumed"), &good);
    args.push("--resume".into());
    ok(&run(&args));
    let (clean, resumed) = (manifest(&d("clean")), manifest(&d("resumed")));
    let mut a = clean["refresh"].clone();
    let mut b = resumed["refresh"].clone();
    a["requests"] = 0.into();
    b["requests"] = 0.into();
    assert_eq!(a, b, "refresh counts over the whole dataset");
    assert_eq!(clean["counts"], resumed["counts"]);
    assert_eq!(clean["input_rows"], resumed["input_rows"]);
    assert_eq!(a["carried"], n / 2, "{a}");
    assert_eq!(a["value_changed"], n / 2, "{a}");
    let strip = |rows: Vec<Row>| -> Vec<Row> {
        rows.into_iter()
            .map(|mut r| {
                r.remove("mapped_at");
                r
            })
            .collect()
    };
    assert_eq!(
        strip(common::read_dataset(&d("clean"))),
        strip(common::read_dataset(&d("resumed")))
    );
}
