//! Issue #25's proof: generated nights of messy exports (customers added, removed, changed,
//! without a usable identity, with null and duplicate keys; keys as text, int64 and
//! decimal), refreshed in both modes, with and without `--keep-missing`, a refused night in
//! the middle and a night killed with SIGKILL and resumed. After every night each customer's
//! rows must equal what a fresh `map` of that night's export gives at the same simulated
//! time (apart from `previous_raw_euid` and `mapped_at`), kept customers appear once each,
//! and the manifest's counts equal counts computed from the rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Operator;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch};

/// The command under test: `common::bin()` (the built binary, or `EUID_MAP_BIN`).
static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(common::bin);

/// A small deterministic generator (xorshift64*): the same nights on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 10_000) as f64 / 10_000.0 < p
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, PartialEq)]
enum KeyType {
    Text,
    Int64,
    Decimal,
}

struct Customer {
    id: u64,
    variant: u32,
    phone: bool,
    unusable: bool,
}

/// One export row: key, email cell, phone cell, secondary email cell (issue #32: a second
/// email column, sometimes holding the same address as the first).
type ExportRow = (Option<u64>, String, String, String);

/// The customers' export for one night.
fn night_rows(rng: &mut Rng, pool: &mut Vec<Customer>, night: u32) -> Vec<ExportRow> {
    let next_id = pool.iter().map(|c| c.id).max().unwrap_or(0) + 1;
    for i in 0..12 {
        pool.push(Customer {
            id: next_id + i,
            variant: 0,
            phone: rng.chance(0.3),
            unusable: false,
        });
    }
    let mut rows = Vec::new();
    for c in pool.iter_mut() {
        if rng.chance(0.08) {
            continue; // absent tonight
        }
        if rng.chance(0.08) {
            c.variant += 1; // a changed email
        }
        if rng.chance(0.06) {
            c.unusable = !c.unusable;
        }
        let (email, phone) = if c.unusable {
            (format!("broken-{}", c.id), String::new())
        } else {
            (
                format!("c{}-{}@example.com", c.id, c.variant),
                if c.phone {
                    format!("+3361{:07}", c.id)
                } else {
                    String::new()
                },
            )
        };
        let secondary = match (c.id + u64::from(c.variant)) % 4 {
            0 => email.clone(),
            1 => format!("alt-{}-{}@example.com", c.id, c.variant / 2),
            _ => String::new(),
        };
        rows.push((Some(c.id), email, phone, secondary));
        if rng.chance(0.05) {
            rows.push((
                Some(c.id),
                format!("second-{}@example.com", c.id),
                String::new(),
                String::new(),
            ));
        }
    }
    for i in 0..3 {
        rows.push((
            None,
            format!("nokey-{night}-{i}@example.com"),
            String::new(),
            String::new(),
        ));
    }
    // A few rows change places.
    for _ in 0..rows.len() / 10 {
        let (a, b) = (
            rng.below(rows.len() as u64) as usize,
            rng.below(rows.len() as u64) as usize,
        );
        rows.swap(a, b);
    }
    rows
}

/// Writes a night's export. Text keys are written as other tools write them, another way
/// each night (issue #32.2): `1234`, pandas' `1234.0`, a quoted `"1234"`.
fn write_export(path: &Path, rows: &[ExportRow], key: KeyType, night: u32) {
    use arrow_array::{Decimal128Array, Int64Array, StringArray};
    if key == KeyType::Text {
        let mut text = String::from("id,email,phone,secondary_email\n");
        for (id, e, p, s2) in rows {
            let id = match (id, night % 3) {
                (None, _) => String::new(),
                (Some(i), 0) => i.to_string(),
                (Some(i), 1) => format!("{i}.0"),
                (Some(i), _) => format!("\"{i}\""),
            };
            text.push_str(&format!("{id},{e},{p},{s2}\n"));
        }
        std::fs::write(path, text).unwrap();
        return;
    }
    let ids: ArrayRef = match key {
        KeyType::Int64 => Arc::new(Int64Array::from_iter(
            rows.iter().map(|r| r.0.map(|i| i as i64)),
        )),
        _ => Arc::new(
            Decimal128Array::from_iter(rows.iter().map(|r| r.0.map(i128::from)))
                .with_precision_and_scale(38, 0)
                .unwrap(),
        ),
    };
    let email: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.1)));
    let phone: ArrayRef = Arc::new(StringArray::from_iter(
        rows.iter()
            .map(|r| (!r.2.is_empty()).then_some(r.2.as_str())),
    ));
    let secondary: ArrayRef = Arc::new(StringArray::from_iter(
        rows.iter()
            .map(|r| (!r.3.is_empty()).then_some(r.3.as_str())),
    ));
    let batch = RecordBatch::try_from_iter([
        ("id", ids),
        ("email", email),
        ("phone", phone),
        ("secondary_email", secondary),
    ])
    .unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// One output row, the columns compared as text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct OutRow {
    id: String,
    kind: String,
    column: Option<String>,
    hash: Option<String>,
    status: String,
    reason: Option<String>,
    raw: Option<String>,
    refresh_from: Option<i64>,
}

fn cell(a: &dyn Array, i: usize) -> Option<String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Decimal128Type, Int64Type, TimestampMillisecondType};
    use arrow_schema::DataType;
    if a.is_null(i) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().value(i).to_string(),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::Decimal128(_, _) => a.as_primitive::<Decimal128Type>().value(i).to_string(),
        DataType::Timestamp(_, _) => a
            .as_primitive::<TimestampMillisecondType>()
            .value(i)
            .to_string(),
        other => panic!("unexpected column type {other}"),
    })
}

/// The customer key as `refresh` compares it: text keys written `1234.0` are `1234`.
fn canonical_key(id: String) -> String {
    match id.strip_suffix(".0") {
        Some(whole) if whole.bytes().all(|b| b.is_ascii_digit()) => whole.to_string(),
        _ => id,
    }
}

/// Each row's `source`, `row` and `carried_since`, in the order of [`read`].
fn origins(dir: &Path) -> Vec<(Option<String>, Option<String>, Option<String>)> {
    let mut out = Vec::new();
    for r in common::read_dataset(dir) {
        out.push((
            r["source"].clone(),
            r["row"].clone(),
            r["carried_since"].clone(),
        ));
    }
    out
}

fn read(dir: &Path) -> Vec<OutRow> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .collect();
    parts.sort();
    let mut out = Vec::new();
    for p in parts {
        let f = std::fs::File::open(&p).unwrap();
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap();
        for b in r {
            let b = b.unwrap();
            let col = |n: &str| b.column_by_name(n).unwrap().clone();
            let (id, ty, h, st, re, raw, rf, ic) = (
                col("id"),
                col("identity_type"),
                col("identity_hash"),
                col("status"),
                col("reason"),
                col("raw_euid"),
                col("refresh_from"),
                col("identity_column"),
            );
            for i in 0..b.num_rows() {
                out.push(OutRow {
                    id: canonical_key(cell(id.as_ref(), i).unwrap_or_else(|| "<null>".into())),
                    kind: cell(ty.as_ref(), i).unwrap(),
                    column: cell(ic.as_ref(), i),
                    hash: cell(h.as_ref(), i),
                    status: cell(st.as_ref(), i).unwrap(),
                    reason: cell(re.as_ref(), i),
                    raw: cell(raw.as_ref(), i),
                    refresh_from: cell(rf.as_ref(), i).map(|v| v.parse().unwrap()),
                });
            }
        }
    }
    out
}

fn cmd(op: &Operator, args: &[String]) -> Command {
    let mut c = Command::new(&*BIN);
    c.args(args)
        .args(["--base-url", &op.url, "-q"])
        .env("EUID_API_KEY", common::API_KEY)
        .env("EUID_CLIENT_SECRET", common::SECRET)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null());
    c
}

fn run(op: &Operator, args: &[String]) -> Output {
    cmd(op, args).output().unwrap()
}

fn ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what}: {}", common::stderr(o));
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("_manifest.json")).unwrap()).unwrap()
}

fn by_key(rows: &[OutRow]) -> BTreeMap<String, Vec<OutRow>> {
    let mut m: BTreeMap<String, Vec<OutRow>> = BTreeMap::new();
    for r in rows {
        m.entry(r.id.clone()).or_default().push(r.clone());
    }
    for v in m.values_mut() {
        v.sort();
    }
    m
}

/// The manifest's counts equal those computed from the rows.
fn check_counts(dir: &Path, rows: &[OutRow], what: &str) {
    let m = manifest(dir);
    assert_eq!(m["output_rows"], rows.len(), "{what}");
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for r in rows {
        *counts.entry(r.status.clone()).or_default() += 1;
    }
    for (st, n) in m["counts"].as_object().unwrap() {
        assert_eq!(
            n.as_u64().unwrap(),
            counts.get(st).copied().unwrap_or(0),
            "{what}: count of {st}"
        );
    }
    let r = &m["refresh"];
    let decided = ["carried", "due", "value_changed", "new"]
        .iter()
        .map(|k| r[*k].as_u64().unwrap())
        .sum::<u64>();
    let hashed = rows.iter().filter(|r| r.hash.is_some()).count() as u64;
    assert_eq!(
        decided, hashed,
        "{what}: every hashed identity decided once: {r}"
    );
    assert_eq!(
        r["remapped"].as_u64().unwrap(),
        decided - r["carried"].as_u64().unwrap(),
        "{what}"
    );
}

struct Nights<'a> {
    op: &'a Operator,
    dir: PathBuf,
    key: KeyType,
    rng: Rng,
    pool: Vec<Customer>,
    state: PathBuf,
    night: u32,
}

impl Nights<'_> {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn export(&mut self, keep_fraction: f64) -> PathBuf {
        let mut rows = night_rows(&mut self.rng, &mut self.pool, self.night);
        if keep_fraction < 1.0 {
            rows.truncate((rows.len() as f64 * keep_fraction) as usize);
        }
        let ext = if self.key == KeyType::Text {
            "csv"
        } else {
            "parquet"
        };
        let p = self.path(&format!("export-{}.{ext}", self.night));
        write_export(&p, &rows, self.key, self.night);
        p
    }

    /// A fresh `map` of `export` now.
    fn fresh(&self, export: &Path) -> Vec<OutRow> {
        let out = self.path(&format!("fresh-{}", self.night));
        let args = vec![
            "map".into(),
            export.to_str().unwrap().into(),
            "-o".into(),
            out.to_str().unwrap().into(),
            "--keep-col".into(),
            "id".into(),
        ];
        ok(&run(self.op, &args), "fresh map");
        read(&out)
    }

    fn refresh_args(
        &self,
        out: &Path,
        export: Option<&Path>,
        keep_missing: bool,
        now: &str,
    ) -> Vec<String> {
        let mut a = strs(&["refresh", "--state"]);
        a.push(self.state.to_str().unwrap().into());
        a.extend([
            "-o".into(),
            out.to_str().unwrap().into(),
            "--now".into(),
            now.into(),
        ]);
        if let Some(e) = export {
            a.extend([e.to_str().unwrap().into(), "--key-col".into(), "id".into()]);
            a.extend(["--max-drop-fraction".into(), "0.3".into()]);
        }
        if keep_missing {
            a.push("--keep-missing".into());
        }
        a.extend([
            "--batch-size".into(),
            "50".into(),
            "--part-rows".into(),
            "100".into(),
        ]);
        a
    }

    /// One export-mode night; with `kill`, the run is killed once a request is held, then
    /// resumed.
    fn export_night(&mut self, days: u32, keep_missing: bool, kill: bool) {
        self.night += 1;
        let what = format!("{:?} night {}", self.key as u8, self.night);
        let now = self.op.advance(days);
        let export = self.export(1.0);
        let out = self.path(&format!("night-{}", self.night));
        let args = self.refresh_args(&out, Some(&export), keep_missing, &now);
        if kill {
            self.op.http(true, "/ops/hold?after=1");
            let mut child = cmd(self.op, &args)
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            common::wait_until("a held request", || self.op.held() > 0.0);
            child.kill().unwrap();
            child.wait().unwrap();
            self.op.release();
            assert!(!out.join("_SUCCESS").exists(), "{what}: killed mid-way");
            let listing: Vec<String> = std::fs::read_dir(&out)
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().to_string_lossy().into())
                        .collect()
                })
                .unwrap_or_default();
            let mut resume = args.clone();
            resume.push("--resume".into());
            let what = format!("{what} (left by the killed run: {listing:?})");
            ok(&run(self.op, &resume), &what);
        } else {
            ok(&run(self.op, &args), &what);
        }
        let state = read(&self.state);
        let got = read(&out);
        let fresh = self.fresh(&export);
        // Export order first, the same identities as a fresh map.
        let ident = |r: &OutRow| (r.id.clone(), r.kind.clone(), r.hash.clone());
        let head: Vec<_> = got.iter().take(fresh.len()).map(ident).collect();
        assert_eq!(
            head,
            fresh.iter().map(ident).collect::<Vec<_>>(),
            "{what}: order"
        );
        let (got_k, fresh_k, state_k) = (by_key(&got), by_key(&fresh), by_key(&state));
        for (k, rows) in &fresh_k {
            assert_eq!(got_k.get(k), Some(rows), "{what}: customer {k}");
        }
        let extra: BTreeSet<&String> = got_k.keys().filter(|k| !fresh_k.contains_key(*k)).collect();
        if keep_missing {
            let now_ms = chrono::DateTime::parse_from_rfc3339(&now)
                .unwrap()
                .timestamp_millis();
            // Issue #32.3: carried rows say so: no `source` or `row` that a join on
            // tonight's export could meet, and when their customer was last seen.
            for (r, (source, row, since)) in got.iter().zip(origins(&out)) {
                if extra.contains(&r.id) {
                    assert_eq!((source, row), (None, None), "{what}: carried {}", r.id);
                    assert!(since.is_some(), "{what}: carried {} says since when", r.id);
                } else {
                    assert!(source.is_some() && row.is_some(), "{what}: read tonight");
                    assert_eq!(since, None, "{what}: read tonight, not carried");
                }
            }
            for k in &extra {
                assert_ne!(k.as_str(), "<null>", "{what}: null keys are never kept");
                let (kept, was) = (&got_k[*k], &state_k[*k]);
                assert_eq!(kept.len(), was.len(), "{what}: kept customer {k} once");
                for (a, b) in kept.iter().zip(was) {
                    assert_eq!((&a.kind, &a.hash), (&b.kind, &b.hash), "{what}: {k}");
                    if b.refresh_from.is_some_and(|r| r > now_ms) {
                        assert_eq!(a, b, "{what}: kept customer {k} carried as it was");
                    }
                }
            }
        } else {
            assert!(
                extra.is_empty(),
                "{what}: customers gone from the export: {extra:?}"
            );
        }
        check_counts(&out, &got, &what);
        self.state = out;
    }

    /// A night whose export is truncated: refused, and the state stays the last good night.
    fn refused_night(&mut self) {
        self.night += 1;
        let now = self.op.advance(1);
        let export = self.export(0.2);
        let out = self.path(&format!("night-{}", self.night));
        let o = run(
            self.op,
            &self.refresh_args(&out, Some(&export), false, &now),
        );
        assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
        assert!(!out.join("_SUCCESS").exists());
    }

    /// A state-only night: the state's rows in its order, the due ones remapped.
    fn state_night(&mut self, days: u32) {
        self.night += 1;
        let what = format!("{:?} state night {}", self.key as u8, self.night);
        let now = self.op.advance(days);
        let now_ms = chrono::DateTime::parse_from_rfc3339(&now)
            .unwrap()
            .timestamp_millis();
        let out = self.path(&format!("night-{}", self.night));
        ok(
            &run(self.op, &self.refresh_args(&out, None, false, &now)),
            &what,
        );
        let (state, got) = (read(&self.state), read(&out));
        assert_eq!(state.len(), got.len(), "{what}");
        let mut remapped = 0;
        for (a, b) in got.iter().zip(&state) {
            assert_eq!(
                (&a.id, &a.kind, &a.hash),
                (&b.id, &b.kind, &b.hash),
                "{what}"
            );
            if b.status == "mapped" && b.refresh_from.is_some_and(|r| r <= now_ms) {
                remapped += 1;
                assert_eq!(a.status, "mapped", "{what}");
                assert!(a.refresh_from.unwrap() > now_ms, "{what}: remapped");
            } else if b.status != "mapped" && b.hash.is_some() && b.status != "optout" {
                assert_ne!(a.status, "failed", "{what}");
            } else {
                assert_eq!(a, b, "{what}: carried");
            }
        }
        assert_eq!(manifest(&out)["refresh"]["due"], remapped, "{what}");
        check_counts(&out, &got, &what);
        self.state = out;
    }
}

#[test]
fn generated_nights_give_every_customer_the_rows_of_a_fresh_map() {
    let op = Operator::start(&["--admin"]);
    for (seed, key) in [
        (7u64, KeyType::Text),
        (11, KeyType::Int64),
        (13, KeyType::Decimal),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut rng = Rng(seed);
        let mut pool: Vec<Customer> = (1..=250)
            .map(|id| Customer {
                id,
                variant: 0,
                phone: rng.chance(0.3),
                unusable: rng.chance(0.1),
            })
            .collect();
        let rows = night_rows(&mut rng, &mut pool, 0);
        let ext = if key == KeyType::Text {
            "csv"
        } else {
            "parquet"
        };
        let first = tmp.path().join(format!("export-0.{ext}"));
        write_export(&first, &rows, key, 0);
        let s0 = tmp.path().join("night-0");
        let args = vec![
            "map".to_string(),
            first.to_str().unwrap().into(),
            "-o".into(),
            s0.to_str().unwrap().into(),
            "--keep-col".into(),
            "id".into(),
        ];
        ok(&run(&op, &args), "night 0");
        let mut n = Nights {
            op: &op,
            dir: tmp.path().to_path_buf(),
            key,
            rng,
            pool,
            state: s0,
            night: 0,
        };
        n.export_night(20, false, false);
        n.refused_night();
        n.export_night(40, true, true);
        n.state_night(200);
        n.export_night(30, true, false);
        n.export_night(100, false, key == KeyType::Decimal);
    }
}
