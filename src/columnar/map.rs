//! Mapping a stream of record batches of hashes through the same client and mapper as
//! `euid-map map` (adaptive concurrency, retries, rate limit, dedupe, answer checks), with
//! memory bounded however long the stream.
//!
//! ```text
//! caller's reader ──slices of ≤ 32 Ki rows──▶ feeder thread (decode hashes) ──▶ mapper
//!   (tokio) ──answered, in input order──▶ encoder thread ──▶ MapStream::next (caller)
//! ```
//!
//! Each output batch is an input slice with five columns added: `status`, `reason`,
//! `raw_euid`, `previous_raw_euid`, `refresh_from`, decided as the command decides them
//! ([`crate::record::RowStatus::decide`]). Concatenated, the output batches are the input
//! rows in their order.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::{Field, Schema, SchemaRef};

use super::stages::{Driver, Input, Released};
use super::ColumnarError;
use crate::client::ClientConfig;
use crate::error::Error;
use crate::interrupt::{Interrupt, SIGINT};
use crate::mapper::MapperStats;
use crate::output::{col, OutputKind};
use crate::record::{IdentityKind, StatusCounts};

/// The columns a mapped batch adds to its input's, in order.
pub const ADDED_COLUMNS: [&str; 5] = [
    col::STATUS,
    col::REASON,
    col::RAW_EUID,
    col::PREVIOUS_RAW_EUID,
    col::REFRESH_FROM,
];

/// How to map a stream.
#[derive(Debug, Clone)]
pub struct MapStreamConfig {
    /// The operator and how to talk to it (`credentials::resolve` finds where and with what,
    /// as the command does).
    pub client: ClientConfig,
    /// Start the embedded emulator and map against it (`env = "local"`).
    pub embedded_operator: bool,
    /// Identities per request (≤ 5,000).
    pub batch_size: usize,
    /// Memory of the answer cache, bytes (`--dedupe-memory`).
    pub cache_bytes: usize,
    /// The column of hashes (base64 or hex of the SHA-256 of the normalized value).
    pub hash_column: String,
    /// The column saying `email` or `phone` per row, read unless `identity_type` is set.
    pub type_column: String,
    /// Every row's kind, when the batches have no type column.
    pub identity_type: Option<IdentityKind>,
}

/// What a stream has done so far.
#[derive(Debug, Clone, Default)]
pub struct MapSummary {
    /// Rows handed back, per status.
    pub counts: StatusCounts,
    /// Distinct hashes sent to the operator.
    pub sent: u64,
    /// Identities answered from the cache or an in-flight request.
    pub deduplicated: u64,
}

/// What [`MapStream::next_timeout`] found.
#[derive(Debug)]
pub enum Next {
    /// The next mapped batch.
    Batch(RecordBatch),
    /// Nothing yet: the timeout passed (the caller checks for its own interrupts).
    Pending,
    /// The stream ended.
    Done,
}

/// What the stream's threads hand the caller: a batch, the end (`None`), or why it stopped.
pub(super) type Item = Result<Option<RecordBatch>, Error>;

/// A running mapping of a stream of batches; yields the mapped batches in input order.
/// Dropping it (or [`MapStream::cancel`]) stops the mapping: batches in flight are
/// abandoned, and its threads end on their own.
pub struct MapStream {
    rx: Receiver<Item>,
    schema: SchemaRef,
    handle: StreamHandle,
    done: bool,
}

/// What another thread may do with a running stream without waiting for its batches:
/// stop it, read its counts. Cheap to clone.
#[derive(Clone)]
pub struct StreamHandle {
    interrupt: Interrupt,
    counts: Arc<Mutex<StatusCounts>>,
    stats: Arc<MapperStats>,
    released: Arc<Released>,
}

impl std::fmt::Debug for StreamHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHandle").finish_non_exhaustive()
    }
}

impl StreamHandle {
    /// Stops the mapping: no more input is read, and requests in flight are abandoned.
    pub fn cancel(&self) {
        self.interrupt.trigger(SIGINT);
    }

    /// Stops the mapping and waits up to `timeout` until no thread of the stream reads the
    /// caller's input any more (it is dropped): a reader backed by the caller's runtime (a
    /// Python generator) must not be called while that runtime shuts down. Whether it was.
    pub fn cancel_and_wait(&self, timeout: Duration) -> bool {
        self.cancel();
        self.released.wait(timeout)
    }

    /// Rows handed back so far, per status, and what was sent.
    pub fn summary(&self) -> MapSummary {
        use std::sync::atomic::Ordering::Relaxed;
        MapSummary {
            counts: self.counts.lock().expect("counts lock").clone(),
            sent: self.stats.unique_sent.load(Relaxed),
            deduplicated: self.stats.deduplicated.load(Relaxed),
        }
    }
}

impl std::fmt::Debug for MapStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapStream")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl MapStream {
    /// Starts mapping `input`'s batches.
    ///
    /// # Errors
    /// The input lacks the hash or type column, or already has a column the output adds.
    pub fn start(
        cfg: MapStreamConfig,
        input: Box<dyn RecordBatchReader + Send>,
    ) -> Result<MapStream, ColumnarError> {
        let in_schema = input.schema();
        let find = |name: &str| in_schema.index_of(name).ok();
        let columns = ColumnarError::Columns;
        let hash_at = find(&cfg.hash_column).ok_or_else(|| {
            columns(format!(
                "the batches have no column {:?} (columns: {})",
                cfg.hash_column,
                names(&in_schema)
            ))
        })?;
        let type_at = match cfg.identity_type {
            Some(_) => None,
            None => Some(find(&cfg.type_column).ok_or_else(|| {
                columns(format!(
                    "the batches have no column {:?}: name each row's kind (email or phone) there, or give one identity type for all",
                    cfg.type_column
                ))
            })?),
        };
        for (at, what) in [
            (Some(hash_at), &cfg.hash_column),
            (type_at, &cfg.type_column),
        ] {
            let Some(at) = at else { continue };
            let t = in_schema.field(at).data_type();
            if !crate::text::is_text(t) {
                return Err(columns(format!(
                    "column {what:?} holds {t}, not text: hashes are base64 or hex strings, types `email` or `phone`"
                )));
            }
        }
        if let Some(clash) = ADDED_COLUMNS.iter().find(|c| find(c).is_some()) {
            return Err(columns(format!(
                "the batches already have a column {clash:?}, which the mapping adds: select the hash and type columns (and any key) first"
            )));
        }
        let added = crate::output::Schema::new(OutputKind::Lookup, &[]);
        let mut fields: Vec<Field> = in_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for name in ADDED_COLUMNS {
            let f = added.arrow.field_with_name(name).expect("a lookup column");
            fields.push(f.clone());
        }
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let (tx, rx) = std::sync::mpsc::sync_channel::<Item>(1);
        let interrupt = Interrupt::default();
        let counts = Arc::new(Mutex::new(StatusCounts::default()));
        let stats = Arc::new(MapperStats::default());
        let released = Arc::new(Released::default());
        let driver = Driver {
            cfg,
            input: Input {
                reader: Some(input),
                released: Arc::clone(&released),
            },
            hash_at,
            type_at,
            schema: Arc::clone(&schema),
            tx,
            interrupt: interrupt.clone(),
            counts: Arc::clone(&counts),
            stats: Arc::clone(&stats),
        };
        std::thread::Builder::new()
            .name("euid-map-stream".into())
            .spawn(move || driver.run())
            .map_err(|e| ColumnarError::Columns(format!("cannot start the mapping thread: {e}")))?;
        Ok(MapStream {
            rx,
            schema,
            handle: StreamHandle {
                interrupt,
                counts,
                stats,
                released,
            },
            done: false,
        })
    }

    /// The schema of the mapped batches: the input's columns, then [`ADDED_COLUMNS`].
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Waits up to `timeout` for the next mapped batch.
    ///
    /// # Errors
    /// The run-level failure that ended the stream (the operator refused the credentials,
    /// the input could not be read): the command's message. A stream whose threads ended
    /// without saying it was complete is an error too, never a short stream.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Next, Error> {
        if self.done {
            return Ok(Next::Done);
        }
        let got = self.rx.recv_timeout(timeout);
        if !matches!(got, Ok(Ok(Some(_))) | Err(RecvTimeoutError::Timeout)) {
            self.done = true;
        }
        match got {
            Ok(Ok(Some(b))) => Ok(Next::Batch(b)),
            Ok(Ok(None)) => Ok(Next::Done),
            Ok(Err(e)) => Err(e),
            Err(RecvTimeoutError::Timeout) => Ok(Next::Pending),
            Err(RecvTimeoutError::Disconnected) if self.handle.interrupt.is_triggered() => {
                Ok(Next::Done)
            }
            Err(RecvTimeoutError::Disconnected) => Err(Error::Internal(
                "the mapping stopped before its end (a thread of it panicked)".into(),
            )),
        }
    }

    /// A handle to stop the stream or read its counts from another thread.
    pub fn handle(&self) -> StreamHandle {
        self.handle.clone()
    }

    /// Stops the mapping: no more input is read, and requests in flight are abandoned.
    pub fn cancel(&self) {
        self.handle.cancel();
    }

    /// See [`StreamHandle::cancel_and_wait`].
    pub fn cancel_and_wait(&self, timeout: Duration) -> bool {
        self.handle.cancel_and_wait(timeout)
    }

    /// Rows handed back so far, per status, and what was sent.
    pub fn summary(&self) -> MapSummary {
        self.handle.summary()
    }
}

impl Iterator for MapStream {
    type Item = Result<RecordBatch, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_timeout(Duration::from_secs(3600)) {
                Ok(Next::Batch(b)) => return Some(Ok(b)),
                Ok(Next::Pending) => continue,
                Ok(Next::Done) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl Drop for MapStream {
    fn drop(&mut self) {
        self.cancel();
    }
}

fn names(schema: &Schema) -> String {
    let v: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    v.join(", ")
}
