//! The opt-out sweep: before a refresh writes anything, every raw EUID the state would carry
//! (`mapped` and not due) is checked with `POST /v2/optout/status`, so that a person who
//! opted out since their identity was last mapped loses their raw EUID tonight, not when the
//! identity happens to be due (up to a year later). EUID asks advertisers and data
//! providers to monitor opt-out status this way.
//!
//! The state streams (a blocking thread reads it; batches of at most 5,000 raw ids go
//! through a bounded channel); raw ids are deduplicated within a bounded set, so a repeat
//! far away costs a request, never a missed check. Requests go one at a time, as the
//! endpoint's documentation asks (more only for a private operator: `--optout-concurrency`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt;

use super::state::{self, DuePolicy};
use crate::client::Client;
use crate::error::Error;
use crate::record::{MapOutcome, RawId};
use crate::storage::Location;

/// Raw ids per `/v2/optout/status` request (the endpoint's limit).
pub(super) const IDS_PER_REQUEST: usize = 5_000;

/// Distinct raw ids remembered to send each once (held inline, 48 bytes each, in one table
/// allocated once: about 25 MB; a set of 400,000 `String`s, cleared and filled again, took
/// about 36 MiB more peak RSS through the allocator's fragments); past it the set starts again, and a repeat is sent again.
const DEDUPE_IDS: usize = 400_000;

/// Where a refresh keeps its sweep until it publishes, so that a `--resume` uses it again
/// instead of sweeping again (a leftover name: `--restart` discards it, and it never makes
/// a directory a run to resume).
const SAVED: &str = ".optout-sweep.tmp";

/// The sweep an earlier attempt of this very run saved, if any (a resumed run: the caller
/// checked that the directory holds the same job over the same inputs and state).
pub(super) fn saved(out: &Location) -> Option<Swept> {
    let text = out.join(SAVED).read_all().ok()?;
    serde_json::from_slice(&text).ok()
}

/// Saves the sweep for a `--resume` of this run.
///
/// # Errors
/// Writing failed.
pub(super) fn save(out: &Location, swept: &Swept) -> Result<(), Error> {
    Ok(crate::output::write_json(out, SAVED, swept)?)
}

/// Removes the saved sweep once the run is published.
pub(super) fn forget(out: &Location) {
    let _ = out.join(SAVED).delete();
}

/// What the sweep found.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Swept {
    /// Opted-out raw ids, with `opted_out_since` (Unix ms).
    pub opted_out: HashMap<String, i64>,
    /// Raw ids sent (a repeat beyond the dedupe set counts again).
    pub checked: u64,
    /// Requests sent.
    pub requests: u64,
}

/// The raw ids of the state rows a refresh may carry with a raw EUID, in batches.
fn send_batches(
    parts: Vec<Location>,
    policy: DuePolicy,
    tx: tokio::sync::mpsc::Sender<Vec<String>>,
    read: Arc<crate::input::ReadProgress>,
    state_rows: u64,
) -> Result<(), Error> {
    use std::sync::atomic::Ordering;
    let room = usize::try_from(state_rows).map_or(DEDUPE_IDS, |n| n.min(DEDUPE_IDS));
    let mut seen: HashSet<RawId> = HashSet::with_capacity(room);
    let mut batch: Vec<String> = Vec::with_capacity(IDS_PER_REQUEST);
    let mut open = true;
    state::for_each_batch(&parts, |_, b| -> Result<bool, Error> {
        let n = b.num_rows() as u64;
        read.rows.fetch_add(n, Ordering::Relaxed);
        read.bytes.fetch_add(n, Ordering::Relaxed);
        for row in state::decode(&b, &policy) {
            // Carried rows, and due rows' last known id (kept as `stale` if their remap
            // fails, so it must be checked too).
            let id = match (&row.carried, &row.last, row.due) {
                (Some(MapOutcome::Mapped { raw_euid, .. }), _, _) => Some(raw_euid),
                (None, Some(MapOutcome::Mapped { raw_euid, .. }), true) => Some(raw_euid),
                _ => None,
            };
            if let Some(raw_euid) = id {
                if seen.len() >= DEDUPE_IDS {
                    seen.clear();
                }
                if seen.insert(raw_euid.clone()) {
                    batch.push(raw_euid.as_str().to_string());
                }
                if batch.len() == IDS_PER_REQUEST {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(IDS_PER_REQUEST));
                    if tx.blocking_send(full).is_err() {
                        open = false;
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    })?;
    if open && !batch.is_empty() {
        let _ = tx.blocking_send(batch);
    }
    Ok(())
}

/// Runs the sweep over the state's parts with `concurrency` requests in flight (1 unless
/// the operator is a private one).
///
/// # Errors
/// The state cannot be read, or a request failed for good (the run stops: a refresh that
/// could not check opt-outs must not publish raw EUIDs as if it had).
#[allow(clippy::too_many_arguments)]
pub(super) async fn sweep(
    client: &Arc<Client>,
    parts: &[Location],
    state_rows: u64,
    policy: &DuePolicy,
    concurrency: usize,
    interrupt: &crate::interrupt::Interrupt,
    quiet: bool,
) -> Result<Swept, Error> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<String>>(2);
    let (parts, policy) = (parts.to_vec(), policy.clone());
    // The bar: state rows read; the sweep's requests and finds beside them.
    let read = Arc::new(crate::input::ReadProgress::default());
    let (requests, found) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (r, f) = (Arc::clone(&requests), Arc::clone(&found));
    let progress = crate::progress::Progress::start(
        quiet,
        state_rows,
        Arc::clone(&read),
        Some(Box::new(move || {
            format!(
                ", opt-out sweep: {} requests, {} opted out",
                r.load(Ordering::Relaxed),
                f.load(Ordering::Relaxed)
            )
        })),
    );
    let reader =
        tokio::task::spawn_blocking(move || send_batches(parts, policy, tx, read, state_rows));
    let mut swept = Swept::default();
    let mut answers = tokio_stream(rx)
        .map(|ids| {
            let client = Arc::clone(client);
            async move {
                let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                let got = client.optout_status(&refs).await;
                (ids.len(), got)
            }
        })
        .buffered(concurrency.max(1));
    let mut failure = None;
    while let Some((n, got)) = answers.next().await {
        swept.requests += 1;
        swept.checked += n as u64;
        requests.fetch_add(1, Ordering::Relaxed);
        match got {
            Ok(list) => {
                found.fetch_add(list.len() as u64, Ordering::Relaxed);
                swept.opted_out.extend(list);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        if interrupt.is_triggered() {
            break;
        }
    }
    drop(answers);
    progress.finish();
    let read = reader
        .await
        .map_err(|e| Error::Internal(format!("the opt-out sweep's reader: {e}")))?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    if let Some(signal) = interrupt.signal() {
        return Err(Error::Interrupted { signal });
    }
    read?;
    Ok(swept)
}

/// A receiver as a stream (tokio-stream is not a dependency for this one use).
fn tokio_stream<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
