//! End to end, issue #32: CRM shapes and other tools' files. Several identity columns per
//! kind, keys written `1234.0`, rows carried by `--keep-missing`, Parquet in every codec,
//! databases' TSV, and cells that cannot be read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Operator;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};

/// The command under test: `common::bin()` (the built binary, or `EUID_MAP_BIN`).
static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(common::bin);

type Row = BTreeMap<String, Option<String>>;

fn run<S: AsRef<std::ffi::OsStr>>(op: &Operator, args: &[S]) -> Output {
    Command::new(&*BIN)
        .args(args)
        .args(["--base-url", &op.url])
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

fn cell<'a>(r: &'a Row, c: &str) -> Option<&'a str> {
    r.get(c)
        .unwrap_or_else(|| panic!("no column {c}"))
        .as_deref()
}

/// The rows of a dataset by (id, identity_column): status and raw EUID.
fn by_column(rows: &[Row]) -> BTreeMap<(String, String), (String, Option<String>)> {
    rows.iter()
        .map(|r| {
            (
                (
                    cell(r, "id").unwrap_or("<null>").to_string(),
                    cell(r, "identity_column").unwrap().to_string(),
                ),
                (
                    cell(r, "status").unwrap().to_string(),
                    cell(r, "raw_euid").map(str::to_string),
                ),
            )
        })
        .collect()
}

/// Case 1: every identity column of a CRM export is mapped, each into its own row that names
/// its column; the same address in two columns is sent once; a refresh remaps only the
/// column whose value changed.
#[test]
fn every_identity_column_gets_its_own_rows_and_refreshes_on_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&[]);
    std::fs::write(
        d("crm.csv"),
        "id,email,secondary_email,phone,mobile,work_phone\n\
         1,a@example.com,a@example.com,+33612345601,,\n\
         2,b@example.com,b2@example.com,,+33612345602,+33612345612\n\
         3,,c@example.com,+33612345603,+33612345613,\n",
    )
    .unwrap();
    let o = run(
        &op,
        &[
            "map",
            &s(&d("crm.csv")),
            "-o",
            &s(&d("n0")),
            "--keep-col",
            "id",
        ],
    );
    ok(&o);
    let err = common::stderr(&o);
    for c in [
        "secondary_email (email)",
        "mobile (phone)",
        "work_phone (phone)",
    ] {
        assert!(err.contains(c), "detection says {c} on stderr: {err}");
    }
    let rows = common::read_dataset(&d("n0"));
    assert_eq!(
        rows.len(),
        3 * 5,
        "one row per identity column per customer"
    );
    let m = by_column(&rows);
    assert_eq!(m[&("2".into(), "mobile".into())].0, "mapped");
    assert_eq!(m[&("3".into(), "mobile".into())].0, "mapped");
    assert_eq!(m[&("1".into(), "mobile".into())].0, "missing");
    assert_eq!(
        m[&("1".into(), "email".into())].1,
        m[&("1".into(), "secondary_email".into())].1,
        "the same address, the same raw EUID"
    );
    let man = manifest(&d("n0"));
    let cols: Vec<&str> = man["inputs"][0]["identity_columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        cols,
        ["email", "secondary_email", "phone", "mobile", "work_phone"]
    );
    // 10 valid identities, one address twice: 9 distinct hashes sent.
    assert_eq!(op.requested(), 9.0, "a repeated address is sent once");

    // Night 2: customer 2's mobile changed; nothing else did.
    std::fs::write(
        d("crm2.csv"),
        "id,email,secondary_email,phone,mobile,work_phone\n\
         1,a@example.com,a@example.com,+33612345601,,\n\
         2,b@example.com,b2@example.com,,+33612345699,+33612345612\n\
         3,,c@example.com,+33612345603,+33612345613,\n",
    )
    .unwrap();
    let before = op.requested();
    ok(&run(
        &op,
        &[
            "refresh",
            "--state",
            &s(&d("n0")),
            "-o",
            &s(&d("n1")),
            &s(&d("crm2.csv")),
            "--key-col",
            "id",
            "--no-optout-sweep",
            "-q",
        ],
    ));
    assert_eq!(
        op.requested() - before,
        1.0,
        "only the changed mobile is sent"
    );
    let r = manifest(&d("n1"))["refresh"].clone();
    assert_eq!(r["value_changed"], 1, "{r}");
    assert_eq!(r["carried"], 9, "{r}");
    let n1 = by_column(&common::read_dataset(&d("n1")));
    assert_ne!(
        n1[&("2".into(), "mobile".into())].1,
        m[&("2".into(), "mobile".into())].1
    );
    for k in [
        ("2", "work_phone"),
        ("3", "mobile"),
        ("1", "secondary_email"),
    ] {
        let k = (k.0.to_string(), k.1.to_string());
        assert_eq!(n1[&k], m[&k], "{k:?} carried as it was");
    }
}

/// Case 1: a header naming a read column twice is refused, naming it; `--phone-col` may be
/// given twice.
#[test]
fn a_column_named_twice_is_an_error_and_flags_repeat() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&[]);
    std::fs::write(
        d("dup.csv"),
        "id,phone,phone\n1,+33612345601,+33612345602\n",
    )
    .unwrap();
    let o = run(&op, &["map", &s(&d("dup.csv")), "-o", &s(&d("o1")), "-q"]);
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("column \"phone\" is named twice"),
        "{}",
        common::stderr(&o)
    );
    assert!(!d("o1").join("_SUCCESS").exists());
    std::fs::write(
        d("two.csv"),
        "id,tel_a,tel_b,country\n1,06 12 34 56 01,+33612345602,FR\n",
    )
    .unwrap();
    ok(&run(
        &op,
        &[
            "map",
            &s(&d("two.csv")),
            "-o",
            &s(&d("o2")),
            "--phone-col",
            "tel_a",
            "--phone-col",
            "tel_b",
            "--phone-region-col",
            "country",
            "-q",
        ],
    ));
    let rows = common::read_dataset(&d("o2"));
    let got: Vec<(Option<&str>, Option<&str>)> = rows
        .iter()
        .map(|r| (cell(r, "identity_column"), cell(r, "status")))
        .collect();
    assert_eq!(
        got,
        [
            (Some("tel_a"), Some("mapped")),
            (Some("tel_b"), Some("mapped"))
        ]
    );
}

/// Cases 2 and 3: keys written `1234`, then `1234.0`, then `"1234"` are one customer each
/// night: nothing dropped, nothing duplicated with `--keep-missing`, and rows carried for a
/// customer gone from the export have no `source` or `row` to meet tonight's rows.
#[test]
fn keys_written_another_way_each_night_stay_one_customer() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&[]);
    let export = |night: usize, ids: &[u32]| -> String {
        let mut t = String::from("id,email\n");
        for i in ids {
            let id = match night {
                0 => i.to_string(),
                1 => format!("{i}.0"),
                _ => format!("\"{i}\""),
            };
            t.push_str(&format!("{id},c{i}@example.com\n"));
        }
        let p = d(&format!("e{night}.csv"));
        std::fs::write(&p, t).unwrap();
        s(&p)
    };
    let all: Vec<u32> = (1..=40).collect();
    ok(&run(
        &op,
        &[
            "map",
            &export(0, &all),
            "-o",
            &s(&d("n0")),
            "--keep-col",
            "id",
            "-q",
        ],
    ));
    // Night 1: keys as pandas writes them, customer 40 gone; kept with --keep-missing.
    ok(&run(
        &op,
        &[
            "refresh",
            "--state",
            &s(&d("n0")),
            "-o",
            &s(&d("n1")),
            &export(1, &all[..39]),
            "--key-col",
            "id",
            "--keep-missing",
            "--no-optout-sweep",
            "-q",
        ],
    ));
    let n1 = common::read_dataset(&d("n1"));
    assert_eq!(n1.len(), 40, "each customer once");
    let r = manifest(&d("n1"))["refresh"].clone();
    assert_eq!(
        (r["missing_customers"].as_u64(), r["new"].as_u64()),
        (Some(1), Some(0)),
        "{r}"
    );
    let carried: Vec<&Row> = n1.iter().filter(|r| cell(r, "id") == Some("40")).collect();
    assert_eq!(carried.len(), 1);
    assert_eq!(cell(carried[0], "source"), None, "carried: no source");
    assert_eq!(cell(carried[0], "row"), None, "carried: no row");
    assert!(cell(carried[0], "carried_since").is_some());
    // No (source, row) is shared by two customers.
    let mut seen = std::collections::HashSet::new();
    for r in &n1 {
        if let (Some(src), Some(row)) = (cell(r, "source"), cell(r, "row")) {
            assert!(seen.insert((src.to_string(), row.to_string())), "{r:?}");
        }
    }
    // Night 2: quoted keys, everyone back; without --keep-missing.
    ok(&run(
        &op,
        &[
            "refresh",
            "--state",
            &s(&d("n1")),
            "-o",
            &s(&d("n2")),
            &export(2, &all),
            "--key-col",
            "id",
            "--no-optout-sweep",
            "-q",
        ],
    ));
    let r = manifest(&d("n2"))["refresh"].clone();
    assert_eq!(
        (r["missing_customers"].as_u64(), r["new"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );
    assert_eq!(common::read_dataset(&d("n2")).len(), 40);
}

/// Case 2: keys of tonight's export that never meet the state's are refused with the likely
/// cause, with or without `--keep-missing`.
#[test]
fn keys_that_never_meet_the_state_are_refused_with_the_likely_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&[]);
    std::fs::write(d("e0.csv"), "id,email\n1,a@example.com\n2,b@example.com\n").unwrap();
    std::fs::write(
        d("e1.csv"),
        "id,email\nC-1,a@example.com\nC-2,b@example.com\n",
    )
    .unwrap();
    ok(&run(
        &op,
        &[
            "map",
            &s(&d("e0.csv")),
            "-o",
            &s(&d("n0")),
            "--keep-col",
            "id",
            "-q",
        ],
    ));
    for extra in [None, Some("--keep-missing")] {
        let mut args = vec![
            "refresh".to_string(),
            "--state".into(),
            s(&d("n0")),
            "-o".into(),
            s(&d("n1")),
            s(&d("e1.csv")),
            "--key-col".into(),
            "id".into(),
            "-q".into(),
        ];
        args.extend(extra.map(str::to_string));
        let o = run(&op, &args);
        assert_eq!(o.status.code(), Some(1), "{extra:?}");
        let err = common::stderr(&o);
        assert!(
            err.contains("no key of tonight's export matches the state"),
            "{extra:?}: {err}"
        );
        assert!(!d("n1").join("_SUCCESS").exists());
    }
}

/// Writes `batch` as Parquet with `codec`.
fn parquet_with(path: &Path, batch: &RecordBatch, codec: parquet::basic::Compression) {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(codec)
        .build();
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// The codec of every column chunk of a Parquet file.
fn codecs(path: &Path) -> std::collections::BTreeSet<String> {
    let f = std::fs::File::open(path).unwrap();
    let r = parquet::file::reader::SerializedFileReader::new(f).unwrap();
    use parquet::file::reader::FileReader;
    let mut out = std::collections::BTreeSet::new();
    for g in r.metadata().row_groups() {
        for c in g.columns() {
            out.insert(format!("{:?}", c.compression()));
        }
    }
    out
}

/// Case 4: inputs and states in every common codec are read; `--compression` writes the
/// output in the one asked for.
#[test]
fn parquet_in_every_codec_is_read_and_written() {
    use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&[]);
    let ids: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..50).map(|i| i.to_string()),
    ));
    let emails: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..50).map(|i| format!("u{i}@example.com")),
    ));
    let batch = RecordBatch::try_from_iter([("id", ids), ("email", emails)]).unwrap();
    let mut reference: Option<Vec<Row>> = None;
    for (name, codec) in [
        ("zstd", Compression::ZSTD(ZstdLevel::default())),
        ("gzip", Compression::GZIP(GzipLevel::default())),
        ("brotli", Compression::BROTLI(BrotliLevel::default())),
        ("lz4", Compression::LZ4),
        ("lz4_raw", Compression::LZ4_RAW),
        ("snappy", Compression::SNAPPY),
        ("none", Compression::UNCOMPRESSED),
    ] {
        let input = d(&format!("in-{name}.parquet"));
        parquet_with(&input, &batch, codec);
        let out = d(&format!("out-{name}"));
        ok(&run(
            &op,
            &["map", &s(&input), "-o", &s(&out), "--keep-col", "id", "-q"],
        ));
        let rows: Vec<Row> = common::read_dataset(&out)
            .into_iter()
            .map(|mut r| {
                r.remove("source");
                r.remove("mapped_at");
                r
            })
            .collect();
        assert_eq!(rows.len(), 50, "{name}");
        match &reference {
            None => reference = Some(rows),
            Some(r) => assert_eq!(&rows, r, "{name}: the same rows"),
        }
        // The dataset rewritten by another engine in this codec is read back as state.
        let state = d(&format!("state-{name}"));
        std::fs::create_dir(&state).unwrap();
        let f = std::fs::File::open(out.join("part-00000.parquet")).unwrap();
        let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        parquet_with(&state.join("compacted.parquet"), &b, codec);
        ok(&run(
            &op,
            &[
                "refresh",
                "--state",
                &s(&state),
                "-o",
                &s(&d(&format!("night-{name}"))),
                "--no-optout-sweep",
                "-q",
            ],
        ));
        assert_eq!(common::read_dataset(&d(&format!("night-{name}"))).len(), 50);
    }
    let out = d("zstd-out");
    ok(&run(
        &op,
        &[
            "map",
            &s(&d("in-snappy.parquet")),
            "-o",
            &s(&out),
            "--compression",
            "zstd",
            "-q",
        ],
    ));
    let used = codecs(&out.join("part-00000.parquet"));
    assert!(used.iter().any(|c| c.starts_with("ZSTD")), "{used:?}");
    assert!(!used.iter().any(|c| c.starts_with("SNAPPY")), "{used:?}");
}

/// Case 5: a TSV as PostgreSQL's `COPY … TO` writes it (no quoting, `\N` for null) is read
/// with `--quote none`; a quote closed on its own line is no stray quote in either mode.
#[test]
fn database_tsv_is_read_as_databases_write_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&[]);
    std::fs::write(
        d("copy.tsv"),
        "id\temail\tcompany\n1\ta@example.com\t\"Acme\" GmbH\n2\t\\N\tSay \"hi\n3\tc@example.com\tback\\\\slash\n\
         4\td@example.com\tAcme\\\tGmbH\n5\te@example.com\tline1\\\nline2\n",
    )
    .unwrap();
    ok(&run(
        &op,
        &[
            "map",
            &s(&d("copy.tsv")),
            "-o",
            &s(&d("o1")),
            "--quote",
            "none",
            "--keep-col",
            "company",
            "-q",
        ],
    ));
    let rows = common::read_dataset(&d("o1"));
    let got: Vec<(Option<&str>, Option<&str>)> = rows
        .iter()
        .map(|r| (cell(r, "status"), cell(r, "company")))
        .collect();
    assert_eq!(
        got,
        [
            (Some("mapped"), Some("\"Acme\" GmbH")),
            (Some("missing"), Some("Say \"hi")),
            (Some("mapped"), Some("back\\slash")),
            // MySQL's INTO OUTFILE escapes the delimiter and the line end themselves.
            (Some("mapped"), Some("Acme\tGmbH")),
            (Some("mapped"), Some("line1\nline2")),
        ]
    );
    // Default quoting: `"Acme" GmbH` closes on its own line, so it is read, not refused.
    std::fs::write(
        d("sloppy.tsv"),
        "id\temail\tcompany\n1\ta@example.com\t\"Acme\" GmbH\n2\tb@example.com\tx\n",
    )
    .unwrap();
    ok(&run(
        &op,
        &["map", &s(&d("sloppy.tsv")), "-o", &s(&d("o2")), "-q"],
    ));
    assert_eq!(common::read_dataset(&d("o2")).len(), 2);
    // A quote that swallows rows is still refused, and the message names the option.
    std::fs::write(
        d("stray.tsv"),
        "id\temail\tcompany\n1\ta@example.com\t\"Say hi\n2\tb@example.com\tx\n",
    )
    .unwrap();
    let o = run(&op, &["map", &s(&d("stray.tsv")), "-o", &s(&d("o3")), "-q"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::stderr(&o).contains("--quote none"),
        "{}",
        common::stderr(&o)
    );
}

/// Case 6: a cell that is not UTF-8 belongs to the identity that reads it: a Latin-1 region
/// cell refuses only the national-format phone read in it (naming the column), a Latin-1
/// kept cell is written null and counted.
#[test]
fn an_unreadable_cell_stays_with_the_identity_that_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&[]);
    let mut data = b"id,email,phone,country,name\n".to_vec();
    data.extend_from_slice(b"1,a@example.com,06 12 34 56 78,C\xf4te d'Ivoire,Ren\xe9\n");
    data.extend_from_slice(b"2,b@example.com,+33612345679,C\xf4te,Bob\n");
    data.extend_from_slice(b"3,c@exa\xe9mple.com,06 12 34 56 80,FR,Ann\n");
    std::fs::write(d("latin1.csv"), data).unwrap();
    ok(&run(
        &op,
        &[
            "map",
            &s(&d("latin1.csv")),
            "-o",
            &s(&d("o")),
            "--phone-region-col",
            "country",
            "--keep-col",
            "id",
            "--keep-col",
            "name",
            "-q",
        ],
    ));
    let rows = common::read_dataset(&d("o"));
    let got: Vec<(&str, &str, &str, Option<&str>)> = rows
        .iter()
        .map(|r| {
            (
                cell(r, "id").unwrap(),
                cell(r, "identity_type").unwrap(),
                cell(r, "status").unwrap(),
                cell(r, "reason"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("1", "email", "mapped", None),
            (
                "1",
                "phone",
                "invalid",
                Some("phone: the region cell of column \"country\" is not UTF-8")
            ),
            ("2", "email", "mapped", None),
            ("2", "phone", "mapped", None),
            ("3", "email", "invalid", Some("invalid utf-8")),
            ("3", "phone", "mapped", None),
        ]
    );
    assert_eq!(
        cell(&rows[0], "name"),
        None,
        "an unreadable kept cell is null"
    );
    assert_eq!(cell(&rows[2], "name"), Some("Bob"));
    assert_eq!(manifest(&d("o"))["unreadable_kept_cells"], 1);
}

/// A key cell that cannot be read is refused, never taken for a null key (its customer
/// would be dropped, or written twice with `--keep-missing`).
#[test]
fn an_unreadable_key_stops_the_refresh() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&[]);
    std::fs::write(d("e0.csv"), "id,email\n1,a@example.com\n2,b@example.com\n").unwrap();
    ok(&run(
        &op,
        &[
            "map",
            &s(&d("e0.csv")),
            "-o",
            &s(&d("n0")),
            "--keep-col",
            "id",
            "-q",
        ],
    ));
    std::fs::write(
        d("e1.csv"),
        b"id,email\n1,a@example.com\n2\xe9,b@example.com\n",
    )
    .unwrap();
    let o = run(
        &op,
        &[
            "refresh",
            "--state",
            &s(&d("n0")),
            "-o",
            &s(&d("n1")),
            &s(&d("e1.csv")),
            "--key-col",
            "id",
            "--keep-missing",
            "-q",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = common::stderr(&o);
    assert!(
        err.contains("data row 2") && err.contains("\"id\""),
        "{err}"
    );
    assert!(!d("n1").join("_SUCCESS").exists());
}

/// With `--keep-missing`, part of the export writing its keys another way (zero-padded) is
/// refused: those customers would be written twice.
#[test]
fn keys_padded_on_part_of_the_export_are_refused_with_keep_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let op = Operator::start(&[]);
    let export = |name: &str, pad: bool| {
        let mut t = String::from("id,email\n");
        for i in 1..=20 {
            let id = if pad && i % 2 == 0 {
                format!("000{i}")
            } else {
                i.to_string()
            };
            t.push_str(&format!("{id},c{i}@example.com\n"));
        }
        std::fs::write(d(name), t).unwrap();
        s(&d(name))
    };
    ok(&run(
        &op,
        &[
            "map",
            &export("e0.csv", false),
            "-o",
            &s(&d("n0")),
            "--keep-col",
            "id",
            "-q",
        ],
    ));
    let o = run(
        &op,
        &[
            "refresh",
            "--state",
            &s(&d("n0")),
            "-o",
            &s(&d("n1")),
            &export("e1.csv", true),
            "--key-col",
            "id",
            "--keep-missing",
            "-q",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("would be written twice"),
        "{}",
        common::stderr(&o)
    );
    assert!(!d("n1").join("_SUCCESS").exists());
}
