//! State rows as chunks to map: each state batch becomes an [`IdentityChunk`] with the carried
//! answers filled in and the due ones left empty, sent to the mapper beside its plans.

use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use arrow_array::{new_null_array, ArrayRef};
use arrow_schema::DataType;

use super::plan::{Plan, Plans};
use super::state::{self, DuePolicy};
use crate::error::Error;
use crate::record::{Hashed, IdentityChunk, Origin};

/// Where a producer sends chunks, and beside them (same order) their plans for the tally.
pub(super) struct Sinks {
    pub(super) chunks: tokio::sync::mpsc::Sender<IdentityChunk>,
    pub(super) plans: SyncSender<Plans>,
    pub(super) interrupt: crate::interrupt::Interrupt,
}

impl Sinks {
    /// Sends one chunk; `false` when the consumer is gone or the run is interrupted.
    pub(super) fn send(&self, r: IdentityChunk, plans: Plans) -> bool {
        !self.interrupt.is_triggered()
            && self.plans.send(plans).is_ok()
            && self.chunks.blocking_send(r).is_ok()
    }
}

/// Which state rows are written, and how.
#[derive(Clone, Copy)]
pub(super) enum StateRows<'a> {
    /// As they are (`refresh` without an export): `source`, `row`, `identity_column` and
    /// `carried_since` kept from the state.
    AsTheyAre,
    /// Carried for customers gone from tonight's export (`--keep-missing`): only the rows
    /// `only` accepts, `source` and `row` null, `carried_since` kept, or else the state's
    /// night (`seen_ms`), when known.
    Carried {
        /// When the state's night ran (Unix ms).
        seen_ms: Option<i64>,
        /// Which state rows (by index) are carried.
        only: &'a dyn Fn(u64) -> bool,
    },
}

/// The `carried_since` of state rows written as `how` says.
fn carried_since(rows: &[state::StateRow], how: StateRows<'_>) -> ArrayRef {
    let b = arrow_array::TimestampMillisecondArray::from_iter(rows.iter().map(|r| match how {
        StateRows::AsTheyAre => r.carried_since_ms,
        StateRows::Carried { seen_ms, .. } => r.carried_since_ms.or(seen_ms),
    }));
    Arc::new(b.with_timezone(crate::output::col::UTC_ZONE))
}

/// Turns a state batch into a chunk to map: carried answers filled in, due ones left empty,
/// the origin columns as `how` says. `kept` names the output's kept columns, in the
/// output's order: they are taken from the state by name, never by position.
fn state_chunk(
    file: usize,
    first_row: u64,
    batch: &arrow_array::RecordBatch,
    kept: &[String],
    policy: &DuePolicy,
    how: StateRows<'_>,
) -> (IdentityChunk, Plans) {
    let rows = state::decode(batch, policy);
    let since = carried_since(&rows, how);
    // The state's own column, as it is (null in states written before it existed).
    let columns: ArrayRef = match batch.column_by_name(crate::output::col::IDENTITY_COLUMN) {
        Some(c) => crate::text::to_utf8(c),
        None => new_null_array(&DataType::Utf8, batch.num_rows()),
    };
    let mut ids = Vec::with_capacity(rows.len());
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut plans = Vec::with_capacity(rows.len());
    for r in rows {
        // Every row of the state that is not due is written as it was, invalid and missing
        // ones too; only identities with an answer count as carried.
        plans.push(match (&r.identity.hashed, r.due) {
            (Hashed::Ok(_), true) => Plan::Due(r.last.clone().map(Box::new)),
            (Hashed::Ok(_), false) => Plan::Carried(()),
            _ => Plan::Local,
        });
        ids.push(r.identity);
        outcomes.push(r.carried);
    }
    let col = |n: &str| {
        crate::text::to_utf8(
            batch
                .column_by_name(n)
                .expect("checked by state::kept_columns and check_kept_match"),
        )
    };
    let mut chunk = IdentityChunk::new(
        file,
        first_row,
        batch.num_rows(),
        1,
        kept.iter().map(|n| col(n)).collect(),
        ids,
    );
    chunk.outcomes = Some(outcomes);
    // A lookup table has no `source` or `row`, and keeps none.
    if batch.column_by_name(crate::output::col::SOURCE).is_some() {
        let n = batch.num_rows();
        let (source, row) = match how {
            StateRows::AsTheyAre => (
                state::origin_source(&col(crate::output::col::SOURCE)),
                state::origin_row(&col(crate::output::col::ROW)),
            ),
            StateRows::Carried { .. } => (
                new_null_array(&DataType::Utf8, n),
                new_null_array(&crate::output::ROW_TYPE, n),
            ),
        };
        chunk.origin = Some(Origin {
            source,
            row,
            identity_column: columns,
            carried_since: since,
        });
    }
    (chunk, plans)
}

/// Streams state rows from `skip` on (those `how` takes) as chunks.
pub(super) fn send_state(
    parts: &[crate::storage::Location],
    file: usize,
    skip: u64,
    kept: &[String],
    policy: &DuePolicy,
    how: StateRows<'_>,
    sinks: &Sinks,
) -> Result<(), Error> {
    let keep = |row: u64| match how {
        StateRows::AsTheyAre => true,
        StateRows::Carried { only, .. } => only(row),
    };
    let mut out_row = 0u64; // position among the rows this pass emits
    state::for_each_batch(parts, |state_row, batch| -> Result<bool, Error> {
        let mask: Vec<usize> = (0..batch.num_rows())
            .filter(|&i| keep(state_row + i as u64))
            .collect();
        let batch = if mask.len() == batch.num_rows() {
            batch
        } else {
            let idx = arrow_array::UInt32Array::from_iter_values(mask.iter().map(|&i| i as u32));
            let cols = batch
                .columns()
                .iter()
                .map(|c| arrow_select::take::take(c.as_ref(), &idx, None))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Internal(e.to_string()))?;
            arrow_array::RecordBatch::try_new(batch.schema(), cols)
                .map_err(|e| Error::Internal(e.to_string()))?
        };
        let n = batch.num_rows() as u64;
        let first = out_row;
        out_row += n;
        if out_row <= skip || n == 0 {
            return Ok(true);
        }
        let batch = if first < skip {
            batch.slice((skip - first) as usize, (out_row - skip) as usize)
        } else {
            batch
        };
        let first = first.max(skip);
        let (resolved, plans) = state_chunk(file, first, &batch, kept, policy, how);
        Ok(sinks.send(resolved, plans))
    })
}
