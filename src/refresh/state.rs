//! Reading a previous output dataset (of `map` or `refresh`) as state: part by part, record
//! batch by record batch, so a state larger than memory streams through.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;

use crate::input::CHUNK_ROWS;
use crate::output::OutputError;
use crate::record::{Hashed, Identity, IdentityKind, InvalidReason, MapOutcome, RawId};
use crate::storage::{Location, ParquetFile};

/// Columns every state dataset has, after `source`, `row` and the kept columns.
const FIXED: [&str; 8] = [
    "identity_type",
    "identity_hash",
    "status",
    "reason",
    "raw_euid",
    "previous_raw_euid",
    "refresh_from",
    "mapped_at",
];

fn bad(path: &Location, why: impl Into<String>) -> OutputError {
    OutputError::CannotResume {
        path: path.url(),
        why: why.into(),
    }
}

/// The committed parts of a dataset, in order; errors if it is not a finished dataset.
///
/// # Errors
/// The directory is missing, unfinished (no `_SUCCESS`) or not an euid-map dataset.
pub(super) fn parts(dir: &Location) -> Result<Vec<Location>, OutputError> {
    if !dir.join(crate::output::SUCCESS_FILE).exists()? {
        return Err(bad(
            dir,
            "the state is not a finished run (no _SUCCESS); finish it with --resume first",
        ));
    }
    let infos = crate::output::committed_parts(dir)?;
    Ok(infos
        .iter()
        .map(|p| dir.join(&crate::output::part_name(p.part)))
        .collect())
}

/// The kept columns of a state dataset (between `row` and `identity_type`), with types.
///
/// # Errors
/// The dataset lacks the mapping columns.
pub(super) fn kept_columns(
    dir: &Location,
    parts: &[Location],
) -> Result<Vec<(String, DataType)>, OutputError> {
    let Some(first) = parts.first() else {
        return Ok(Vec::new());
    };
    let b = ParquetFile::open(first).map_err(|e| bad(first, e))?;
    let names: Vec<(String, DataType)> = b
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    for col in FIXED.iter().chain(["source", "row"].iter()) {
        if !names.iter().any(|(n, _)| n == col) {
            return Err(bad(
                dir,
                format!("column {col:?} is missing: --state must be the output of map or refresh"),
            ));
        }
    }
    let start = 2;
    let end = names
        .iter()
        .position(|(n, _)| n == "identity_type")
        .unwrap_or(start);
    Ok(names[start..end.max(start)].to_vec())
}

/// Calls `f` with every record batch of the dataset, in order, with the index of its first
/// row over the whole dataset.
///
/// # Errors
/// A part cannot be read, or `f` failed.
pub(super) fn for_each_batch<E: From<OutputError>>(
    parts: &[Location],
    mut f: impl FnMut(u64, RecordBatch) -> Result<bool, E>,
) -> Result<(), E> {
    let mut row = 0u64;
    for p in parts {
        let reader = ParquetFile::open(p)
            .and_then(|b| b.batches(None, CHUNK_ROWS, 0))
            .map_err(|e| bad(p, e))?;
        for batch in reader {
            let batch = batch.map_err(|e| bad(p, e))?;
            let n = batch.num_rows() as u64;
            if !f(row, batch)? {
                return Ok(());
            }
            row += n;
        }
    }
    Ok(())
}

/// One state row, decoded.
#[derive(Debug, Clone)]
pub struct StateRow {
    /// The identity and its hash (or why there is none).
    pub identity: Identity,
    /// The previous answer, when the row is carried as is.
    pub carried: Option<MapOutcome>,
    /// Whether the identity must be mapped again (refresh time passed, failed, unmapped…).
    pub due: bool,
    /// The previous raw EUID, if any.
    pub old_raw: Option<Arc<str>>,
}

fn text(batch: &RecordBatch, name: &str) -> Option<ArrayRef> {
    batch.column_by_name(name).cloned()
}

fn str_at(a: &Option<ArrayRef>, i: usize) -> Option<&str> {
    let a = a.as_ref()?;
    if a.is_null(i) {
        return None;
    }
    match a.data_type() {
        DataType::Utf8 => Some(a.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Some(a.as_string::<i64>().value(i)),
        _ => None,
    }
}

fn ms_at(a: &Option<ArrayRef>, i: usize) -> Option<i64> {
    let a = a.as_ref()?;
    if a.is_null(i) {
        return None;
    }
    match a.data_type() {
        DataType::Timestamp(_, _) => a
            .as_primitive_opt::<TimestampMillisecondType>()
            .map(|p| p.value(i)),
        _ => None,
    }
}

/// What makes a mapped row due.
#[derive(Debug, Clone)]
pub(super) struct DuePolicy {
    /// v3: rows whose `refresh_from` is at or before this time (Unix ms).
    pub now_ms: i64,
    /// v2: buckets rotated since the state was mapped, with their rotation time (Unix ms);
    /// a row is due when its bucket rotated after it was mapped.
    pub rotated: Option<Arc<std::collections::HashMap<String, i64>>>,
}

/// The earliest `mapped_at` of a dataset (Unix ms): the "previous run's time" for v2.
///
/// # Errors
/// A part cannot be read.
pub(super) fn earliest_mapping(parts: &[Location]) -> Result<Option<i64>, OutputError> {
    let mut min: Option<i64> = None;
    for_each_batch(parts, |_, batch| -> Result<bool, OutputError> {
        let at = text(&batch, "mapped_at");
        for i in 0..batch.num_rows() {
            if let Some(t) = ms_at(&at, i) {
                min = Some(min.map_or(t, |m| m.min(t)));
            }
        }
        Ok(true)
    })?;
    Ok(min)
}

/// Whether the dataset has the legacy v2 `bucket_id` column.
pub(super) fn has_bucket_ids(parts: &[Location]) -> bool {
    parts
        .first()
        .and_then(|p| ParquetFile::open(p).ok())
        .is_some_and(|b| b.schema().field_with_name("bucket_id").is_ok())
}

/// Decodes every row of a state batch; `policy` decides what is due.
pub(super) fn decode(batch: &RecordBatch, policy: &DuePolicy) -> Vec<StateRow> {
    let now_ms = policy.now_ms;
    let bucket = text(batch, "bucket_id");
    let ty = text(batch, "identity_type");
    let hash = text(batch, "identity_hash");
    let status = text(batch, "status");
    let reason = text(batch, "reason");
    let raw = text(batch, "raw_euid");
    let prev = text(batch, "previous_raw_euid");
    let rf = text(batch, "refresh_from");
    let at = text(batch, "mapped_at");
    (0..batch.num_rows())
        .map(|i| {
            let kind = if str_at(&ty, i) == Some("phone") {
                IdentityKind::Phone
            } else {
                IdentityKind::Email
            };
            let status = str_at(&status, i).unwrap_or("");
            let hashed = match str_at(&hash, i).map(crate::normalize::decode_prehashed) {
                Some(Ok(h)) => Hashed::Ok(h),
                _ if status == "missing" => Hashed::Missing,
                _ => Hashed::Invalid(InvalidReason::Recorded(Arc::from(
                    str_at(&reason, i).unwrap_or("invalid"),
                ))),
            };
            let old_raw = str_at(&raw, i).map(Arc::from);
            let mapped_at = ms_at(&at, i).unwrap_or(0);
            let bucket_id = str_at(&bucket, i).map(Arc::from);
            let refresh = ms_at(&rf, i);
            let fresh = match &policy.rotated {
                None => refresh.is_some_and(|r| r > now_ms),
                Some(rotated) => bucket_id.as_deref().is_some_and(|b: &str| {
                    rotated.get(b).is_none_or(|changed| *changed <= mapped_at)
                }),
            };
            let (carried, due) = match (&hashed, status) {
                (Hashed::Ok(_), "mapped") => match &old_raw {
                    Some(u) if fresh => (
                        Some(MapOutcome::Mapped {
                            raw_euid: RawId::new(u),
                            previous: str_at(&prev, i).map(|p| std::sync::Arc::new(RawId::new(p))),
                            refresh_from: refresh.map(|r| r.div_euclid(1000)),
                            bucket_id,
                            mapped_at,
                        }),
                        false,
                    ),
                    _ => (None, true),
                },
                (Hashed::Ok(_), "optout") => (Some(MapOutcome::Optout { mapped_at }), false),
                (Hashed::Ok(_), "invalid") => (Some(MapOutcome::Invalid), false),
                // failed, unmapped, or hashed (a `hash` output used as state): map them.
                (Hashed::Ok(_), _) => (None, true),
                _ => (None, false),
            };
            StateRow {
                identity: Identity { kind, hashed },
                carried,
                due,
                old_raw,
            }
        })
        .collect()
}

/// The value of a key column as text, for joining state and input by key.
pub(super) fn key_at(a: &ArrayRef, i: usize) -> Option<String> {
    use arrow_array::types::{Int32Type, Int64Type, UInt32Type, UInt64Type};
    if a.is_null(i) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().value(i).to_string(),
        DataType::LargeUtf8 => a.as_string::<i64>().value(i).to_string(),
        DataType::Utf8View => a.as_string_view().value(i).to_string(),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::Int32 => a.as_primitive::<Int32Type>().value(i).to_string(),
        DataType::UInt64 => a.as_primitive::<UInt64Type>().value(i).to_string(),
        DataType::UInt32 => a.as_primitive::<UInt32Type>().value(i).to_string(),
        _ => return None,
    })
}
