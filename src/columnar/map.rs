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

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::{ArrayRef, RecordBatch, RecordBatchReader};
use arrow_schema::{ArrowError, Field, Schema, SchemaRef};

use super::ColumnarError;
use crate::client::{Client, ClientConfig};
use crate::error::Error;
use crate::interrupt::{Interrupt, SIGINT};
use crate::mapper::{Mapper, MapperStats};
use crate::output::{col, OutputKind};
use crate::record::{IdentityChunk, IdentityForm, IdentityKind, InvalidReason, StatusCounts};

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

type Item = Result<RecordBatch, Error>;

/// Set once the caller's reader is dropped: no thread of the stream reads it (or calls into
/// the caller's runtime through it) any more.
#[derive(Debug, Default)]
struct Released {
    done: Mutex<bool>,
    cv: std::sync::Condvar,
}

impl Released {
    fn set(&self) {
        *self.done.lock().expect("released lock") = true;
        self.cv.notify_all();
    }

    fn wait(&self, timeout: Duration) -> bool {
        let done = self.done.lock().expect("released lock");
        let (done, _) = self
            .cv
            .wait_timeout_while(done, timeout, |d| !*d)
            .expect("released lock");
        *done
    }
}

/// The caller's reader, which says so when it is dropped, wherever that happens.
struct Input {
    reader: Option<Box<dyn RecordBatchReader + Send>>,
    released: Arc<Released>,
}

impl Drop for Input {
    fn drop(&mut self) {
        drop(self.reader.take());
        self.released.set();
    }
}

/// A running mapping of a stream of batches; yields the mapped batches in input order.
/// Dropping it (or [`MapStream::cancel`]) stops the mapping: batches in flight are
/// abandoned, and its threads end on their own.
pub struct MapStream {
    rx: Receiver<Item>,
    schema: SchemaRef,
    interrupt: Interrupt,
    counts: Arc<Mutex<StatusCounts>>,
    stats: Arc<MapperStats>,
    released: Arc<Released>,
    done: bool,
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
            interrupt,
            counts,
            stats,
            released,
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
    /// the input could not be read): the command's message.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Next, Error> {
        if self.done {
            return Ok(Next::Done);
        }
        match self.rx.recv_timeout(timeout) {
            Ok(Ok(b)) => Ok(Next::Batch(b)),
            Ok(Err(e)) => {
                self.done = true;
                Err(e)
            }
            Err(RecvTimeoutError::Timeout) => Ok(Next::Pending),
            Err(RecvTimeoutError::Disconnected) => {
                self.done = true;
                Ok(Next::Done)
            }
        }
    }

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

/// The stream's thread: the runtime, the client, the mapper, and the two threads beside it.
struct Driver {
    cfg: MapStreamConfig,
    input: Input,
    hash_at: usize,
    type_at: Option<usize>,
    schema: SchemaRef,
    tx: SyncSender<Item>,
    interrupt: Interrupt,
    counts: Arc<Mutex<StatusCounts>>,
    stats: Arc<MapperStats>,
}

impl Driver {
    fn run(self) {
        let tx = self.tx.clone();
        let result = crate::pipeline::block_on(self.map());
        if let Err(e) = result {
            // The encoder has ended: this comes after every batch it handed back.
            let _ = tx.send(Err(e));
        }
    }

    async fn map(self) -> Result<(), Error> {
        let Driver {
            mut cfg,
            input,
            hash_at,
            type_at,
            schema,
            tx,
            interrupt,
            counts,
            stats,
        } = self;
        let local = if cfg.embedded_operator {
            Some(crate::pipeline::start_embedded(&mut cfg.client).await?)
        } else {
            None
        };
        let client = Arc::new(Client::new(&cfg.client)?);
        let (to_mapper, from_feeder) =
            tokio::sync::mpsc::channel(crate::pipeline::CHUNKS_IN_FLIGHT);
        let (to_encoder, from_mapper) =
            tokio::sync::mpsc::channel(crate::pipeline::MAPPED_CHUNKS_QUEUED);
        let kind = cfg.identity_type;
        let stop = interrupt.clone();
        let rt = tokio::runtime::Handle::current();
        let feeder = std::thread::Builder::new()
            .name("euid-map-feeder".into())
            .spawn(move || feed(input, hash_at, type_at, kind, &to_mapper, &stop, &rt))
            .map_err(|e| Error::Internal(format!("cannot start the feeder: {e}")))?;
        let encoder = std::thread::Builder::new()
            .name("euid-map-encoder".into())
            .spawn(move || encode(from_mapper, &schema, &tx, &counts))
            .map_err(|e| Error::Internal(format!("cannot start the encoder: {e}")))?;
        let mapper = Mapper::new(cfg.batch_size, cfg.cache_bytes, stats);
        let mapped = crate::mapper::run(client, from_feeder, to_encoder, mapper, interrupt).await;
        let fed = feeder
            .join()
            .map_err(|_| Error::Internal("the feeder panicked".into()))?;
        let _ = encoder.join();
        if let Some(op) = local {
            op.stop().await;
        }
        mapped?;
        fed.map_err(|e| Error::Internal(format!("reading the input batches: {e}")))
    }
}

/// Reads the caller's batches, cuts them into chunks the mapper's window bounds, decodes
/// their hashes. Stops at the first read error (returned), or when the stream is stopped.
fn feed(
    mut input: Input,
    hash_at: usize,
    type_at: Option<usize>,
    kind: Option<IdentityKind>,
    out: &tokio::sync::mpsc::Sender<IdentityChunk>,
    stop: &Interrupt,
    rt: &tokio::runtime::Handle,
) -> Result<(), ArrowError> {
    let mut first_row = 0u64;
    let reader = input.reader.as_mut().expect("read once");
    while !stop.is_triggered() {
        let Some(batch) = reader.next().transpose()? else {
            return Ok(());
        };
        let mut at = 0;
        while at < batch.num_rows() {
            let len = crate::input::CHUNK_ROWS.min(batch.num_rows() - at);
            let slice = batch.slice(at, len);
            let chunk = chunk_of(&slice, hash_at, type_at, kind, first_row);
            first_row += len as u64;
            at += len;
            // A stop does not wait for the mapper to take the chunk: the input is let go of
            // at once (`MapStream::cancel_and_wait`).
            let sent = rt.block_on(async {
                tokio::select! {
                    r = out.send(chunk) => r.is_ok(),
                    () = stop.triggered() => false,
                }
            });
            if !sent {
                return Ok(()); // stopped, or the mapper has (it says why)
            }
        }
    }
    Ok(())
}

/// One slice as a chunk: one identity per row, the slice's columns kept beside it.
fn chunk_of(
    slice: &RecordBatch,
    hash_at: usize,
    type_at: Option<usize>,
    kind: Option<IdentityKind>,
    first_row: u64,
) -> IdentityChunk {
    let hashes = slice.column(hash_at).as_ref();
    let types = type_at.map(|i| slice.column(i).as_ref());
    let ids = (0..slice.num_rows())
        .map(|i| {
            let k = match (kind, types) {
                (Some(k), _) => Ok(k),
                (None, Some(t)) => match crate::text::at(t, i) {
                    Some("email") => Ok(IdentityKind::Email),
                    Some("phone") => Ok(IdentityKind::Phone),
                    _ => Err(()),
                },
                (None, None) => Err(()),
            };
            let cell = crate::text::at(hashes, i);
            match k {
                Ok(k) => crate::normalize::identity_in(
                    k,
                    IdentityForm::Hashed,
                    cell,
                    crate::normalize::RowRegion::None,
                ),
                Err(()) => crate::record::Identity {
                    kind: IdentityKind::Email,
                    hashed: crate::record::Hashed::Invalid(InvalidReason::Recorded(Arc::from(
                        UNKNOWN_TYPE,
                    ))),
                    phone_form: crate::record::PhoneForm::NotRawPhone,
                },
            }
        })
        .collect();
    IdentityChunk::new(
        0,
        first_row,
        slice.num_rows(),
        1,
        slice.columns().to_vec(),
        ids,
    )
}

/// The reason of a row whose type cell is neither `email` nor `phone`.
pub const UNKNOWN_TYPE: &str = "identity_type must be email or phone";

/// Turns answered chunks into output batches, in order, and hands them to the caller.
fn encode(
    mut from_mapper: tokio::sync::mpsc::Receiver<IdentityChunk>,
    schema: &SchemaRef,
    tx: &SyncSender<Item>,
    counts: &Mutex<StatusCounts>,
) {
    let lookup = crate::output::Schema::new(OutputKind::Lookup, &[]);
    while let Some(mut chunk) = from_mapper.blocking_recv() {
        let kept = std::mem::take(&mut chunk.kept);
        let item = crate::output::encode_rows(&lookup, "", &mut chunk)
            .and_then(|(answered, statuses)| {
                let mut cols: Vec<ArrayRef> = kept;
                for name in ADDED_COLUMNS {
                    let i = lookup.arrow.index_of(name)?;
                    cols.push(Arc::clone(answered.column(i)));
                }
                let mut c = counts.lock().expect("counts lock");
                for s in statuses {
                    c.add(s);
                }
                RecordBatch::try_new(Arc::clone(schema), cols)
            })
            .map_err(|e| Error::Internal(format!("encoding a mapped batch: {e}")));
        let failed = item.is_err();
        if tx.send(item).is_err() || failed {
            return; // the caller has gone (or was told why it stops)
        }
    }
}
