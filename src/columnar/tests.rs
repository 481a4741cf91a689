//! The columnar API against the embedded emulator.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Array, Int64Array, RecordBatch, RecordBatchIterator, StringArray};
use arrow_schema::{DataType, Field, Schema};

use super::*;
use crate::record::{IdentityKind, RowStatus};

fn config() -> MapStreamConfig {
    let t = crate::credentials::resolve(&crate::credentials::TargetRequest {
        env: Some("local".into()),
        ..Default::default()
    })
    .expect("local target");
    MapStreamConfig {
        client: crate::client::ClientConfig {
            base_url: t.base_url,
            api_key: t.credentials.api_key,
            secret: t.secret,
            concurrency: 8,
            rps: None,
            timeout: Duration::from_secs(30),
            api: crate::client::Api::V3,
            retry: crate::client::RetryPolicy::default(),
        },
        embedded_operator: true,
        batch_size: 5000,
        cache_bytes: 1 << 20,
        hash_column: "identity_hash".into(),
        type_column: "identity_type".into(),
        identity_type: None,
    }
}

/// `rows` rows: id, identity_type, identity_hash; one in three repeats an earlier hash, and
/// rows 5, 6, 7 are a bad hash, a null and an unknown type.
fn input(rows: usize, batch: usize) -> (Arc<Schema>, Vec<RecordBatch>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("identity_type", DataType::Utf8, true),
        Field::new("identity_hash", DataType::Utf8, true),
    ]));
    let mut batches = Vec::new();
    for start in (0..rows).step_by(batch) {
        let end = (start + batch).min(rows);
        let ids = Int64Array::from_iter_values((start..end).map(|i| i as i64));
        let types = StringArray::from_iter((start..end).map(|i| {
            Some(match i {
                7 => "fax",
                i if i % 2 == 0 => "email",
                _ => "phone",
            })
        }));
        let hashes = StringArray::from_iter((start..end).map(|i| match i {
            5 => Some("not a hash".to_string()),
            6 => None,
            i => {
                let key = if i % 3 == 2 { i - 2 } else { i };
                Some(crate::normalize::sha256(format!("u{key}").as_bytes()).to_base64())
            }
        }));
        let cols: Vec<Arc<dyn Array>> = vec![Arc::new(ids), Arc::new(types), Arc::new(hashes)];
        batches.push(RecordBatch::try_new(Arc::clone(&schema), cols).expect("batch"));
    }
    (schema, batches)
}

fn reader(rows: usize, batch: usize) -> Box<dyn arrow_array::RecordBatchReader + Send> {
    let (schema, batches) = input(rows, batch);
    Box::new(RecordBatchIterator::new(
        batches.into_iter().map(Ok),
        schema,
    ))
}

#[test]
fn a_stream_comes_back_whole_in_order_with_each_identity_sent_once() {
    let rows = 100_000;
    // Batches larger than a chunk, so that they are cut and put back in order.
    let stream = MapStream::start(config(), reader(rows, 70_000)).expect("starts");
    assert_eq!(stream.schema().fields().len(), 3 + ADDED_COLUMNS.len());
    let mut stream = stream;
    let mut seen = 0usize;
    let mut by_hash = std::collections::HashMap::new();
    for b in stream.by_ref() {
        let b = b.expect("a mapped batch");
        let id = b
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("ids");
        let hash = b
            .column(2)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("hashes");
        let status = b
            .column(3)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("status");
        let reason = b
            .column(4)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("reason");
        let raw = b
            .column(5)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("raw");
        for i in 0..b.num_rows() {
            assert_eq!(id.value(i), (seen + i) as i64, "rows in input order");
            match id.value(i) {
                5 => assert_eq!(
                    (status.value(i), reason.value(i)),
                    ("invalid", "bad hash length")
                ),
                6 => assert_eq!(status.value(i), "missing"),
                7 => assert_eq!(
                    (status.value(i), reason.value(i)),
                    ("invalid", UNKNOWN_TYPE)
                ),
                _ => {
                    assert!(
                        matches!(status.value(i), "mapped" | "optout"),
                        "row {}: {}",
                        id.value(i),
                        status.value(i)
                    );
                    let raw = raw.is_valid(i).then(|| raw.value(i).to_string());
                    let first = by_hash
                        .entry(hash.value(i).to_string())
                        .or_insert(raw.clone());
                    assert_eq!(*first, raw, "a repeat gets its first row's answer");
                }
            }
        }
        seen += b.num_rows();
    }
    assert_eq!(seen, rows, "every input row comes back");
    let s = stream.summary();
    assert_eq!(s.counts.total(), rows as u64);
    assert_eq!(s.counts.get(RowStatus::Invalid), 2);
    assert_eq!(s.counts.get(RowStatus::Missing), 1);
    // Valid rows 0..rows minus 5, 6, 7; one in three repeats the row two before it.
    let distinct = (0..rows)
        .filter(|i| !(5..=7).contains(i))
        .map(|i| if i % 3 == 2 { i - 2 } else { i })
        .collect::<std::collections::HashSet<_>>()
        .len() as u64;
    assert_eq!(s.sent, distinct, "each distinct identity sent once");
}

#[test]
fn the_same_hash_gets_the_same_raw_id_as_the_command_would() {
    // The embedded emulator is deterministic (seed 1): a hash maps to the same raw id in
    // every run, so the stream's answer can be compared with a second, single-row stream.
    let mut cfg = config();
    cfg.identity_type = Some(IdentityKind::Email);
    let mapped: Vec<RecordBatch> = MapStream::start(cfg.clone(), reader(10, 10))
        .expect("starts")
        .collect::<Result<_, _>>()
        .expect("maps");
    let raw = mapped[0]
        .column(5)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("raw");
    let again: Vec<RecordBatch> = MapStream::start(cfg, reader(1, 1))
        .expect("starts")
        .collect::<Result<_, _>>()
        .expect("maps");
    let raw1 = again[0]
        .column(5)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("raw");
    assert!(!raw1.is_null(0));
    assert_eq!(raw.value(0), raw1.value(0));
}

#[test]
fn missing_and_clashing_columns_are_refused_before_anything_is_sent() {
    let mut cfg = config();
    cfg.hash_column = "email_hash".into();
    let e = MapStream::start(cfg, reader(3, 3)).expect_err("no such column");
    assert!(e.to_string().contains("no column \"email_hash\""), "{e}");
    let schema = Arc::new(Schema::new(vec![
        Field::new("identity_hash", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, true),
    ]));
    let r = RecordBatchIterator::new(Vec::<Result<RecordBatch, _>>::new(), schema);
    let mut cfg = config();
    cfg.identity_type = Some(IdentityKind::Phone);
    let e = MapStream::start(cfg, Box::new(r)).expect_err("clash");
    assert!(
        e.to_string().contains("already have a column \"status\""),
        "{e}"
    );
}

#[test]
fn a_cancelled_stream_ends_without_reading_the_rest() {
    let mut stream = MapStream::start(config(), reader(2_000_000, 50_000)).expect("starts");
    let first = loop {
        match stream
            .next_timeout(Duration::from_millis(100))
            .expect("no error")
        {
            Next::Batch(b) => break b,
            Next::Pending => continue,
            Next::Done => panic!("ended before its first batch"),
        }
    };
    assert!(first.num_rows() > 0);
    stream.cancel();
    let mut after = 0usize;
    loop {
        match stream.next_timeout(Duration::from_millis(100)) {
            Ok(Next::Batch(b)) => after += b.num_rows(),
            Ok(Next::Pending) => continue,
            Ok(Next::Done) | Err(_) => break,
        }
    }
    assert!(
        after < 2_000_000 - first.num_rows(),
        "the stream stopped early"
    );
}

/// A reader that yields one batch, then waits until the test says so: a producer slower
/// than the mapping (a Python generator, a paused export).
struct Paused {
    first: Option<RecordBatch>,
    gate: std::sync::mpsc::Receiver<()>,
    schema: Arc<Schema>,
}

impl Iterator for Paused {
    type Item = Result<RecordBatch, arrow_schema::ArrowError>;
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(b) = self.first.take() {
            return Some(Ok(b));
        }
        let _ = self.gate.recv(); // then the end of the input
        None
    }
}

impl arrow_array::RecordBatchReader for Paused {
    fn schema(&self) -> arrow_schema::SchemaRef {
        Arc::clone(&self.schema)
    }
}

#[test]
fn a_paused_producer_gets_its_answers_before_it_resumes() {
    let (schema, mut batches) = input(100, 100);
    let (open_gate, gate) = std::sync::mpsc::channel();
    let reader = Paused {
        first: batches.pop(),
        gate,
        schema,
    };
    let mut stream = MapStream::start(config(), Box::new(reader)).expect("starts");
    // The 100 identities are fewer than a batch, and the input has not ended: they go out
    // once the input is idle. A hang guard, not a timing assert: 10 minutes of polls.
    let mut first = None;
    for _ in 0..6000 {
        match stream
            .next_timeout(Duration::from_millis(100))
            .expect("no error")
        {
            Next::Batch(b) => {
                first = Some(b);
                break;
            }
            Next::Pending => continue,
            Next::Done => panic!("ended while its input was open"),
        }
    }
    let first = first.expect("the first batch came back while the producer was paused");
    assert_eq!(first.num_rows(), 100);
    open_gate.send(()).expect("the reader waits");
    assert!(stream.next().is_none(), "then the stream ends");
}

#[test]
fn a_hash_column_that_is_not_text_is_refused() {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "identity_hash",
        DataType::Int64,
        true,
    )]));
    let r = RecordBatchIterator::new(Vec::<Result<RecordBatch, _>>::new(), schema);
    let mut cfg = config();
    cfg.identity_type = Some(IdentityKind::Email);
    let e = MapStream::start(cfg, Box::new(r)).expect_err("not text");
    assert!(e.to_string().contains("not text"), "{e}");
}

#[test]
fn a_failing_producer_ends_the_stream_with_its_error_not_short() {
    let (schema, batches) = input(20_000, 5_000);
    let items = batches
        .into_iter()
        .take(2)
        .map(Ok)
        .chain(std::iter::once(Err(
            arrow_schema::ArrowError::ExternalError("the producer failed".into()),
        )));
    let stream = MapStream::start(config(), Box::new(RecordBatchIterator::new(items, schema)))
        .expect("starts");
    let results: Vec<_> = stream.collect();
    let (ok, err): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!(err.len(), 1, "one error, at the end");
    let e = err.into_iter().next().expect("one").expect_err("an error");
    assert!(e.to_string().contains("the producer failed"), "{e}");
    let rows: usize = ok.into_iter().map(|b| b.expect("ok").num_rows()).sum();
    assert!(rows <= 10_000, "{rows}");
}
