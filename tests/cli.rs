//! End to end: the real binary on real files, against the emulator (embedded, or as a child
//! process on a free port). Each test works in its own temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Operator;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The command under test: `common::bin()` (the built binary, or `EUID_MAP_BIN`).
static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(common::bin);
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/customers.csv");

use common::{creds, run_bin as run, stderr};

fn input_rows(path: &str) -> usize {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .unwrap();
    r.records().count()
}

fn counts(rows: &[BTreeMap<String, Option<String>>]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r["status"].clone().unwrap()).or_default() += 1;
    }
    m
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("_manifest.json")).unwrap()).unwrap()
}

#[test]
fn hash_writes_one_row_per_identity_in_input_order_and_no_raw_pii() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("hashed");
    let o = run(
        &[
            "hash",
            FIXTURE,
            "-o",
            out.to_str().unwrap(),
            "--keep-col",
            "customer_id",
            "-q",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("_SUCCESS").exists());
    let rows = common::read_dataset(&out);
    let n = input_rows(FIXTURE);
    assert_eq!(
        rows.len(),
        2 * n,
        "one row per (input row, identity column)"
    );
    for (i, pair) in rows.chunks(2).enumerate() {
        assert_eq!(pair[0]["row"].as_deref(), Some(i.to_string().as_str()));
        assert_eq!(
            (
                pair[0]["identity_type"].as_deref(),
                pair[1]["identity_type"].as_deref()
            ),
            (Some("email"), Some("phone"))
        );
    }
    let c = counts(&rows);
    assert!(
        c["hashed"] > 15_000 && c["invalid"] > 0 && c["missing"] > 0,
        "{c:?}"
    );
    assert!(rows
        .iter()
        .any(|r| r["reason"].as_deref() == Some("malformed row")));
    let m = manifest(&out);
    assert_eq!(m["input_rows"], n as u64);
    assert_eq!(m["counts"]["hashed"], c["hashed"] as u64);
    // No raw email or phone of the input appears in any output file.
    let text = std::fs::read_to_string(FIXTURE).unwrap();
    let sample: Vec<&str> = text
        .lines()
        .skip(1)
        .take(200)
        .flat_map(|l| l.split(',').skip(1))
        .filter(|v| v.len() > 8)
        .collect();
    for f in std::fs::read_dir(&out).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        for s in &sample {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "raw value leaked into output"
            );
        }
    }
}

#[test]
fn map_with_the_embedded_operator_reconciles_with_the_input() {
    let tmp = tempfile::tempdir().unwrap();
    let hashed = tmp.path().join("h");
    let mapped = tmp.path().join("m");
    assert!(run(
        &["hash", FIXTURE, "-o", hashed.to_str().unwrap(), "-q"],
        &[]
    )
    .status
    .success());
    let o = run(
        &[
            "map",
            FIXTURE,
            "-o",
            mapped.to_str().unwrap(),
            "--env",
            "local",
            "--keep-col",
            "customer_id",
            "-q",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let h = common::read_dataset(&hashed);
    let m = common::read_dataset(&mapped);
    assert_eq!(h.len(), m.len());
    for (a, b) in h.iter().zip(&m) {
        assert_eq!(a["identity_hash"], b["identity_hash"]);
        match a["status"].as_deref().unwrap() {
            "hashed" => assert!(matches!(b["status"].as_deref(), Some("mapped" | "optout"))),
            s => assert_eq!(b["status"].as_deref(), Some(s)),
        }
        if b["status"].as_deref() == Some("mapped") {
            assert_eq!(b["raw_euid"].as_ref().map(String::len), Some(44));
            assert!(b["refresh_from"].is_some() && b["mapped_at"].is_some());
        } else {
            assert!(b["raw_euid"].is_none());
        }
    }
    let c = counts(&m);
    assert_eq!(c["optout"], 8, "the fixture's opt-out test identities");
    let man = manifest(&mapped);
    assert_eq!(man["environment"], "local");
    assert!(
        man["unique_hashes_sent"].as_u64().unwrap() < c["mapped"] as u64,
        "duplicates were not re-sent"
    );
}

fn dup_file(dir: &Path) -> PathBuf {
    let input = dir.join("dups.csv");
    let mut f = std::fs::File::create(&input).unwrap();
    writeln!(f, "id,email").unwrap();
    for i in 0..6000 {
        writeln!(f, "{i},user{}@example.com", i % 1500).unwrap();
    }
    input
}

fn raw_ids(rows: &[BTreeMap<String, Option<String>>]) -> Vec<Option<String>> {
    rows.iter().map(|r| r["raw_euid"].clone()).collect()
}

#[test]
fn a_duplicate_heavy_file_sends_each_unique_hash_once() {
    let tmp = tempfile::tempdir().unwrap();
    let input = dup_file(tmp.path());
    let op = Operator::start(&[]);
    let out = tmp.path().join("o");
    let o = run(
        &[
            "map",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--base-url",
            &op.url,
            "--batch-size",
            "200",
            "-q",
        ],
        &creds(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = common::read_dataset(&out);
    assert_eq!(rows.len(), 6000);
    assert!(rows
        .iter()
        .all(|r| r["status"].as_deref() == Some("mapped")));
    let mut by_hash: BTreeMap<String, String> = BTreeMap::new();
    for r in &rows {
        if let Some(p) = by_hash.insert(
            r["identity_hash"].clone().unwrap(),
            r["raw_euid"].clone().unwrap(),
        ) {
            assert_eq!(
                Some(&p),
                r["raw_euid"].as_ref(),
                "every copy of a hash gets the same answer"
            );
        }
    }
    assert_eq!(by_hash.len(), 1500);
    assert_eq!(
        op.metric("euid_emulator_identity_map_inputs_sum"),
        1500.0,
        "each unique hash was sent once"
    );
    assert_eq!(manifest(&out)["unique_hashes_sent"], 1500);
}

#[test]
fn injected_faults_lose_nothing_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let input = dup_file(tmp.path());
    let clean = Operator::start(&[]);
    let faulty = Operator::start(&[
        "--faults",
        "429=0.1,500=0.1,503=0.1,reset=0.05,slow=0.05,text=0.1,nonce=0.1",
        "--slow-ms",
        "20",
    ]);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for (op, out) in [(&clean, &a), (&faulty, &b)] {
        let o = run(
            &[
                "map",
                input.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--base-url",
                &op.url,
                "--batch-size",
                "100",
                "--max-retries",
                "40",
                "-q",
            ],
            &creds(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (ra, rb) = (common::read_dataset(&a), common::read_dataset(&b));
    assert_eq!(rb.len(), 6000);
    assert_eq!(counts(&rb).get("mapped"), Some(&6000));
    assert_eq!(
        raw_ids(&ra),
        raw_ids(&rb),
        "the same answers as without faults, on the same rows"
    );
    assert!(manifest(&b)["client"]["retries"].as_u64().unwrap() > 0);
    assert_eq!(
        faulty.metric("euid_emulator_nonce_reuse_total"),
        0.0,
        "every retry used a fresh envelope"
    );
}

/// 100,000 rows of distinct identities: several input chunks, so parts commit mid-run.
fn big_file(dir: &Path) -> PathBuf {
    let input = dir.join("big.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    writeln!(f, "customer_id,email,phone").unwrap();
    for i in 0..100_000u64 {
        writeln!(f, "{i},person{i}@example.com,+49{:010}", i * 7919).unwrap();
    }
    input
}

fn map_args<'a>(input: &'a str, out: &'a str, url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "map",
        input,
        "-o",
        out,
        "--base-url",
        url,
        "--batch-size",
        "1000",
        "--concurrency",
        "1",
        "--part-rows",
        "30000",
        "--keep-col",
        "customer_id",
        "-q",
    ];
    a.extend_from_slice(extra);
    a
}

fn without_time(
    rows: Vec<BTreeMap<String, Option<String>>>,
) -> Vec<BTreeMap<String, Option<String>>> {
    rows.into_iter()
        .map(|mut r| {
            r.remove("mapped_at");
            r
        })
        .collect()
}

#[test]
fn credentials_expiring_mid_run_then_resume_gives_the_rows_of_a_clean_run() {
    let tmp = tempfile::tempdir().unwrap();
    let input = big_file(tmp.path());
    let input = input.to_str().unwrap();
    let clean_op = Operator::start(&[]);
    let clean = tmp.path().join("clean");
    let o = run(
        &map_args(input, clean.to_str().unwrap(), &clean_op.url, &[]),
        &creds(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let clean_requests = clean_op.metric("euid_emulator_identity_map_inputs_count");
    assert_eq!(clean_requests, 200.0);

    let expiring = Operator::start(&["--expire-after", "150"]);
    let out = tmp.path().join("resumed");
    let o = run(
        &map_args(input, out.to_str().unwrap(), &expiring.url, &[]),
        &creds(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("401"));
    assert!(!out.join("_SUCCESS").exists());
    let parts = euid_map::output::committed_parts(&euid_map::storage::Location::Local(out.clone()))
        .unwrap();
    assert!(
        !parts.is_empty(),
        "parts were committed before the credentials expired"
    );

    let o = run(
        &map_args(input, out.to_str().unwrap(), &clean_op.url, &[]),
        &creds(),
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "an existing output needs --resume"
    );
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
    let o = run(
        &map_args(input, out.to_str().unwrap(), &clean_op.url, &["--resume"]),
        &creds(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let resumed_requests =
        clean_op.metric("euid_emulator_identity_map_inputs_count") - clean_requests;
    let done_rows = parts.last().unwrap().end.row as f64;
    assert!(
        resumed_requests <= 200.0 - (done_rows * 2.0 / 1000.0).floor() + 1.0,
        "committed rows were not re-mapped: {resumed_requests} requests after {done_rows} rows were done"
    );
    let (c, r) = (
        without_time(common::read_dataset(&clean)),
        without_time(common::read_dataset(&out)),
    );
    assert_eq!(c.len(), 200_000);
    assert!(c == r, "same rows, no duplicates, no gaps");
    assert_eq!(manifest(&out)["input_rows"], 100_000);
}

#[test]
fn kill_9_mid_run_then_resume_gives_the_rows_of_a_clean_run() {
    let tmp = tempfile::tempdir().unwrap();
    let input = big_file(tmp.path());
    let input = input.to_str().unwrap();
    // The run needs about 200 requests; the emulator holds every one after the 130th, by
    // when the first chunk (66 requests, some of which may go out a few places late as
    // batch tasks race for a request slot) is answered and its parts committed: the kill
    // lands mid-run, certainly.
    let op = Operator::start(&["--admin", "--hold-after", "130"]);
    let out = tmp.path().join("killed");
    let mut child = Command::new(&*BIN)
        .args(map_args(input, out.to_str().unwrap(), &op.url, &[]))
        .envs(creds())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let committed = || {
        euid_map::output::committed_parts(&euid_map::storage::Location::Local(out.clone()))
            .map(|p| !p.is_empty())
            .unwrap_or(false)
    };
    common::wait_until("a committed part and a held request", || {
        committed() && op.held() > 0.0
    });
    assert!(child.try_wait().unwrap().is_none(), "held mid-run");
    let _ = child.kill();
    child.wait().unwrap();
    assert!(!out.join("_SUCCESS").exists());
    op.release();
    let o = run(
        &map_args(input, out.to_str().unwrap(), &op.url, &["--resume"]),
        &creds(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("_SUCCESS").exists());
    let clean = tmp.path().join("clean");
    let o = run(
        &map_args(input, clean.to_str().unwrap(), &op.url, &[]),
        &creds(),
    );
    assert!(o.status.success());
    let (c, r) = (
        without_time(common::read_dataset(&clean)),
        without_time(common::read_dataset(&out)),
    );
    assert_eq!(c.len(), 200_000);
    assert!(c == r, "same rows, no duplicates, no gaps");
    let tmp_files = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    assert_eq!(tmp_files, 0, "no half-written part is left visible");
}

#[test]
fn a_bad_credential_exits_1_quickly_with_a_clear_message_and_no_success() {
    let tmp = tempfile::tempdir().unwrap();
    let op = Operator::start(&[]);
    let out = tmp.path().join("o");
    let secret = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=";
    let o = run(
        &[
            "map",
            FIXTURE,
            "-o",
            out.to_str().unwrap(),
            "--base-url",
            &op.url,
            "-vv",
        ],
        &[
            ("EUID_API_KEY", "wrong-key-XYZ"),
            ("EUID_CLIENT_SECRET", secret),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("401") && err.contains("API key"), "{err}");
    assert!(!out.join("_SUCCESS").exists());
    for s in [secret, "wrong-key-XYZ"] {
        assert!(
            !err.contains(s) && !String::from_utf8_lossy(&o.stdout).contains(s),
            "secret leaked"
        );
    }
    let o = run(
        &[
            "map",
            FIXTURE,
            "-o",
            tmp.path().join("p").to_str().unwrap(),
            "--base-url",
            &op.url,
        ],
        &[("EUID_API_KEY", "k"), ("EUID_CLIENT_SECRET", "c2hvcnQ=")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("32 bytes"), "{}", stderr(&o));
    let o = run(
        &[
            "map",
            FIXTURE,
            "-o",
            tmp.path().join("q").to_str().unwrap(),
            "--base-url",
            "http://example.com",
        ],
        &creds(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("refusing plain http://"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_secret_never_reaches_output_files_or_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let op = Operator::start(&[]);
    let out = tmp.path().join("o");
    let o = run(
        &[
            "map",
            FIXTURE,
            "-o",
            out.to_str().unwrap(),
            "--base-url",
            &op.url,
            "-vv",
        ],
        &creds(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut all = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
    for f in std::fs::read_dir(&out).unwrap() {
        all.push_str(&String::from_utf8_lossy(
            &std::fs::read(f.unwrap().path()).unwrap(),
        ));
    }
    assert!(!all.contains(common::SECRET) && !all.contains(common::API_KEY));
}

#[test]
fn batches_failing_after_retries_exit_2_with_complete_marked_output() {
    let tmp = tempfile::tempdir().unwrap();
    let op = Operator::start(&["--faults", "503=1.0"]);
    let out = tmp.path().join("o");
    let o = run(
        &[
            "map",
            FIXTURE,
            "-o",
            out.to_str().unwrap(),
            "--base-url",
            &op.url,
            "--max-retries",
            "1",
            "-q",
        ],
        &creds(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(out.join("_SUCCESS").exists(), "the output is complete");
    let rows = common::read_dataset(&out);
    assert_eq!(rows.len(), 2 * input_rows(FIXTURE));
    let c = counts(&rows);
    assert!(c["failed"] > 15_000 && !c.contains_key("mapped"), "{c:?}");
}

#[test]
fn bad_inputs_are_clear_errors_naming_file_and_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("noid.csv");
    std::fs::write(&p, "id,name\n1,x\n").unwrap();
    let o = run(
        &[
            "hash",
            p.to_str().unwrap(),
            "-o",
            tmp.path().join("o").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("noid.csv") && e.contains("id, name"), "{e}");
    let o = run(
        &[
            "hash",
            "does-not-exist.csv",
            "-o",
            tmp.path().join("o2").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does-not-exist.csv"));
    let o = run(
        &[
            "hash",
            FIXTURE,
            "-o",
            tmp.path().join("o3").to_str().unwrap(),
            "--keep-col",
            "nope",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("\"nope\"") && stderr(&o).contains("customer_id"));
    assert!(!tmp.path().join("o3").join("_SUCCESS").exists());
}

fn write_parquet(path: &PathBuf) {
    use arrow_array::{Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let schema = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("cust", arrow_schema::DataType::Int64, false),
        arrow_schema::Field::new("email_hash", arrow_schema::DataType::Utf8, true),
    ]));
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, schema.clone(), None).unwrap();
    let hex = "0C7E6A405862E402EB76A70F8A26FC732D07C32931E9FAE9AB1582911D2E8A3B";
    let b64hex =
        "MEM3RTZBNDA1ODYyRTQwMkVCNzZBNzBGOEEyNkZDNzMyRDA3QzMyOTMxRTlGQUU5QUIxNTgyOTExRDJFOEEzQg==";
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![7, 8, 9, 10])),
            Arc::new(StringArray::from(vec![
                Some("DH5qQFhi5ALrdqcPiib8cy0Hwykx6frpqxWCkR0uijs="),
                Some(hex),
                Some(b64hex),
                None,
            ])),
        ],
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn parquet_input_keeps_column_types_and_reads_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("in.parquet");
    write_parquet(&p);
    let out = tmp.path().join("o");
    let o = run(
        &[
            "hash",
            p.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--keep-col",
            "cust",
            "-q",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let part = std::fs::File::open(out.join("part-00000.parquet")).unwrap();
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(part).unwrap();
    assert_eq!(
        b.schema().field_with_name("cust").unwrap().data_type(),
        &arrow_schema::DataType::Int64
    );
    let rows = common::read_dataset(&out);
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r["cust"].clone().unwrap(),
                r["status"].clone().unwrap(),
                r["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(got[0], ("7".into(), "hashed".into(), None));
    assert_eq!(
        rows[1]["identity_hash"].as_deref(),
        Some("DH5qQFhi5ALrdqcPiib8cy0Hwykx6frpqxWCkR0uijs="),
        "hex is converted"
    );
    assert_eq!(
        got[2],
        (
            "9".into(),
            "invalid".into(),
            Some("hex hash encoded as base64".into())
        )
    );
    assert_eq!(got[3].1, "missing");
}

#[test]
fn tsv_gzip_bom_and_several_inputs_in_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let tsv = tmp.path().join("a.tsv");
    std::fs::write(&tsv, "\u{feff}Email\tid\nUSER@example.com\t1\n").unwrap();
    let gz = tmp.path().join("b.csv.gz");
    let mut e = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    e.write_all(b"email,id\n\"x@y.z\",2\n\xff\xfe,3\n").unwrap();
    e.finish().unwrap();
    let out = tmp.path().join("o");
    let o = run(
        &[
            "hash",
            tsv.to_str().unwrap(),
            gz.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--keep-col",
            "id",
            "-q",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = common::read_dataset(&out);
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r["source"].clone().unwrap(),
                r["row"].clone().unwrap(),
                r["status"].clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(got.len(), 3);
    assert!(got[0].0.ends_with("a.tsv") && got[0].2 == "hashed");
    assert_eq!(
        rows[0]["identity_hash"].as_deref(),
        Some("tMmiiTI7IaAcPpQPFQ65uMVCWH8av9jw4cwf/F5HVRQ=")
    );
    assert!(got[1].0.ends_with("b.csv.gz") && got[1].1 == "0");
    assert_eq!(rows[2]["reason"].as_deref(), Some("invalid utf-8"));
    let sources: HashSet<_> = got.iter().map(|g| g.0.clone()).collect();
    assert_eq!(sources.len(), 2);
}

#[test]
fn a_header_only_export_gives_an_empty_dataset_that_still_has_its_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("empty.csv");
    std::fs::write(&p, "customer_id,email\r\n").unwrap();
    let out = tmp.path().join("o");
    let o = run(
        &[
            "map",
            p.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--env",
            "local",
            "--keep-col",
            "customer_id",
            "-q",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("_SUCCESS").exists());
    let part = std::fs::File::open(out.join("part-00000.parquet")).unwrap();
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(part).unwrap();
    assert_eq!(b.metadata().file_metadata().num_rows(), 0);
    assert!(
        b.schema().field_with_name("raw_euid").is_ok()
            && b.schema().field_with_name("customer_id").is_ok()
    );
    assert_eq!(manifest(&out)["input_rows"], 0);
}
