//! The threads of a [`super::MapStream`]: the driver (runtime, client, mapper), the feeder
//! (the caller's batches into chunks) and the encoder (answered chunks into batches).

use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::{ArrayRef, RecordBatch, RecordBatchReader};
use arrow_schema::{ArrowError, SchemaRef};

use super::map::{Item, MapStreamConfig, ADDED_COLUMNS};
use crate::client::Client;
use crate::error::Error;
use crate::interrupt::Interrupt;
use crate::mapper::{Mapper, MapperStats};
use crate::output::OutputKind;
use crate::record::{IdentityChunk, IdentityForm, IdentityKind, InvalidReason, StatusCounts};

/// Set once the caller's reader is dropped: no thread of the stream reads it (or calls into
/// the caller's runtime through it) any more.
#[derive(Debug, Default)]
pub(super) struct Released {
    done: Mutex<bool>,
    cv: std::sync::Condvar,
}

impl Released {
    pub(super) fn set(&self) {
        *self.done.lock().expect("released lock") = true;
        self.cv.notify_all();
    }

    pub(super) fn wait(&self, timeout: Duration) -> bool {
        let done = self.done.lock().expect("released lock");
        let (done, _) = self
            .cv
            .wait_timeout_while(done, timeout, |d| !*d)
            .expect("released lock");
        *done
    }
}

/// The caller's reader, which says so when it is dropped, wherever that happens.
pub(super) struct Input {
    pub(super) reader: Option<Box<dyn RecordBatchReader + Send>>,
    pub(super) released: Arc<Released>,
}

impl Drop for Input {
    fn drop(&mut self) {
        drop(self.reader.take());
        self.released.set();
    }
}

/// The stream's thread: the runtime, the client, the mapper, and the two threads beside it.
pub(super) struct Driver {
    pub(super) cfg: MapStreamConfig,
    pub(super) input: Input,
    pub(super) hash_at: usize,
    pub(super) type_at: Option<usize>,
    pub(super) schema: SchemaRef,
    pub(super) tx: SyncSender<Item>,
    pub(super) interrupt: Interrupt,
    pub(super) counts: Arc<Mutex<StatusCounts>>,
    pub(super) stats: Arc<MapperStats>,
}

impl Driver {
    pub(super) fn run(self) {
        let tx = self.tx.clone();
        let result = crate::pipeline::block_on(self.map());
        // The encoder has ended: this comes after every batch it handed back.
        let _ = tx.send(result.map(|()| None));
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
        let encoded = encoder.join();
        if let Some(op) = local {
            op.stop().await;
        }
        encoded.map_err(|_| Error::Internal("the encoder panicked".into()))?;
        mapped?;
        fed.map_err(|e| Error::Batches(e.to_string()))
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
                RecordBatch::try_new(Arc::clone(schema), cols).map(Some)
            })
            .map_err(|e| Error::Internal(format!("encoding a mapped batch: {e}")));
        let failed = item.is_err();
        if tx.send(item).is_err() || failed {
            return; // the caller has gone (or was told why it stops)
        }
    }
}
