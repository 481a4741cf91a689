//! The row codec: one output row per identity, encoded into a record batch for the writer
//! ([`encode`], [`encode_optout`]) and decoded back from a previous run's dataset for
//! `refresh` ([`RowReader`]). Column names are [`super::schema::col`]'s; a row's status is
//! [`RowStatus::decide`]'s. How the opt-out sweep's time rides in `reason` is here too.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{ArrowError, DataType};

use super::schema::{col, OutputKind, Schema, UTC};
use crate::record::{
    Hashed, IdentityChunk, IdentityKind, InvalidReason, MapOutcome, RawId, RowReason, RowStatus,
    HASH_B64_LEN,
};

/// The `reason` of a row whose raw EUID the opt-out sweep found opted out.
pub(crate) fn swept_reason(since_ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(since_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| since_ms.to_string());
    format!("opted out {t}")
}

/// When the person opted out, read back from a swept row's `reason`.
pub fn swept_since(reason: &str) -> Option<i64> {
    let t = reason.strip_prefix("opted out ")?;
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The type of `carried_since`: UTC milliseconds.
pub(crate) fn carried_since_type() -> DataType {
    DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, Some(UTC.into()))
}

/// A text column from bytes appended as they are, checked as UTF-8 in one pass.
fn text(mut b: BinaryBuilder) -> Result<ArrayRef, ArrowError> {
    Ok(Arc::new(StringArray::try_from_binary(b.finish())?))
}

/// A chunk's output rows as a record batch of `schema` (one row per identity), and their
/// statuses; `source` is the `source` value of the chunk's file (unless the chunk carries
/// its own origin). Takes the answers out of the chunk: each is dropped right after its row
/// is written, while it is in the CPU's cache, instead of in a second pass over megabytes
/// of answers when the chunk is dropped.
///
/// # Errors
/// A column is not valid UTF-8, or the columns do not fit the schema.
pub(crate) fn encode(
    schema: &Schema,
    source: &str,
    r: &mut IdentityChunk,
) -> Result<(RecordBatch, Vec<RowStatus>), ArrowError> {
    let n = r.per_row;
    let rows = r.ids.len();
    let mut src = StringBuilder::with_capacity(rows, rows * source.len());
    let mut row = Int64Builder::with_capacity(rows);
    let mut ty = StringBuilder::with_capacity(rows, rows * 5);
    let mut column = StringBuilder::with_capacity(rows, rows * 8);
    // Base64 and raw ids are appended as bytes and their columns checked as UTF-8 once,
    // in `text`, rather than row by row.
    let mut hash = BinaryBuilder::with_capacity(rows, rows * HASH_B64_LEN);
    let mut status = StringBuilder::with_capacity(rows, rows * 7);
    let mut reason = StringBuilder::new();
    let map = schema.kind != OutputKind::Hash;
    let v2 = schema.kind == OutputKind::MapV2;
    // The lookup table: no `source`, `row` or kept columns.
    let lookup = schema.kind == OutputKind::Lookup;
    let mut bucket = StringBuilder::new();
    let mut u = BinaryBuilder::with_capacity(
        if map { rows } else { 0 },
        if map { rows * HASH_B64_LEN } else { 0 },
    );
    let mut p = BinaryBuilder::new();
    let mut rf = TimestampMillisecondBuilder::with_capacity(if map { rows } else { 0 });
    let mut at = TimestampMillisecondBuilder::with_capacity(if map { rows } else { 0 });
    let mut statuses = Vec::with_capacity(rows);
    let mut b64 = [0u8; HASH_B64_LEN];
    let mut outcomes = r.outcomes.take().map(Vec::into_iter);
    let mut swept = String::new();
    for (i, id) in r.ids.iter().enumerate() {
        if r.origin.is_none() && !lookup {
            src.append_value(source);
            row.append_value((r.first_row + (i / n.max(1)) as u64) as i64);
        }
        ty.append_value(id.kind.as_str());
        if r.origin.is_none() {
            column.append_option(r.slot_name(i));
        }
        let owned = outcomes.as_mut().and_then(|o| o.next().flatten());
        let outcome = owned.as_ref();
        let (st, why) = RowStatus::decide(&id.hashed, outcome, map);
        let why = match why {
            RowReason::None => None,
            RowReason::Text(t) => Some(t),
            RowReason::OptedOutSince(t) => {
                swept.clear();
                swept.push_str(&swept_reason(t));
                Some(swept.as_str())
            }
        };
        // A stale row is written with its last known answer.
        let outcome = match outcome {
            Some(MapOutcome::Stale { last, .. }) => Some(&**last),
            o => o,
        };
        statuses.push(st);
        match &id.hashed {
            Hashed::Ok(h) => {
                h.encode_into(&mut b64);
                hash.append_value(b64);
            }
            _ => hash.append_null(),
        }
        status.append_value(st.as_str());
        reason.append_option(why);
        if map {
            match outcome {
                Some(MapOutcome::Mapped {
                    raw_euid,
                    previous,
                    refresh_from,
                    mapped_at,
                    ..
                }) => {
                    u.append_value(raw_euid.as_bytes());
                    p.append_option(previous.as_deref().map(RawId::as_bytes));
                    rf.append_option(refresh_from.map(|r| r.saturating_mul(1000)));
                    at.append_value(*mapped_at);
                }
                Some(MapOutcome::Optout { mapped_at, .. }) => {
                    u.append_null();
                    p.append_null();
                    rf.append_null();
                    at.append_value(*mapped_at);
                }
                _ => {
                    u.append_null();
                    p.append_null();
                    rf.append_null();
                    at.append_null();
                }
            }
            if v2 {
                bucket.append_option(match outcome {
                    Some(MapOutcome::Mapped { bucket_id, .. }) => bucket_id.as_deref(),
                    _ => None,
                });
            }
        }
    }
    let mut cols: Vec<ArrayRef> = Vec::new();
    if !lookup {
        cols = match &r.origin {
            Some(o) => vec![Arc::clone(&o.source), Arc::clone(&o.row)],
            None => vec![Arc::new(src.finish()), Arc::new(row.finish())],
        };
        if n == 1 {
            cols.extend(r.kept.iter().cloned());
        } else {
            let idx = UInt32Array::from_iter_values((0..rows).map(|i| (i / n.max(1)) as u32));
            for k in &r.kept {
                cols.push(arrow_select::take::take(k.as_ref(), &idx, None)?);
            }
        }
    }
    cols.push(Arc::new(ty.finish()));
    if !lookup {
        cols.push(match &r.origin {
            Some(o) => Arc::clone(&o.identity_column),
            None => Arc::new(column.finish()),
        });
    }
    cols.push(text(hash)?);
    cols.push(Arc::new(status.finish()));
    cols.push(Arc::new(reason.finish()));
    if map {
        cols.push(text(u)?);
        cols.push(text(p)?);
        cols.push(Arc::new(rf.finish().with_timezone(UTC)));
        cols.push(Arc::new(at.finish().with_timezone(UTC)));
        if !lookup {
            cols.push(match &r.origin {
                Some(o) => Arc::clone(&o.carried_since),
                None => arrow_array::new_null_array(&carried_since_type(), rows),
            });
        }
        if v2 {
            cols.push(Arc::new(bucket.finish()));
        }
    }
    Ok((
        RecordBatch::try_new(Arc::clone(&schema.arrow), cols)?,
        statuses,
    ))
}

/// The rows of the `optout` command (one per input row): `source`, `row`, the kept columns
/// but the first (`ids`, written as `raw_euid`), the raw id as stored, and what `check`
/// says of it: status, reason, opted out since (Unix ms).
///
/// # Errors
/// The columns do not fit the schema.
pub(crate) fn encode_optout(
    arrow: &arrow_schema::SchemaRef,
    source: &str,
    first_row: u64,
    ids: &ArrayRef,
    rest: &[ArrayRef],
    check: impl Fn(Option<&str>) -> (RowStatus, Option<&'static str>, Option<i64>),
) -> Result<(RecordBatch, Vec<RowStatus>), ArrowError> {
    let n = ids.len();
    let mut src = StringBuilder::with_capacity(n, n * 16);
    let mut row = Int64Builder::with_capacity(n);
    let mut raw = StringBuilder::with_capacity(n, n * 44);
    let mut status = StringBuilder::with_capacity(n, n * 6);
    let mut reason = StringBuilder::new();
    let mut since = TimestampMillisecondBuilder::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    for i in 0..n {
        src.append_value(source);
        row.append_value((first_row + i as u64) as i64);
        let id = crate::text::at(ids.as_ref(), i);
        raw.append_option(id);
        let (st, why, t) = check(id);
        status.append_value(st.as_str());
        reason.append_option(why);
        since.append_option(t);
        statuses.push(st);
    }
    let mut cols: Vec<ArrayRef> = vec![Arc::new(src.finish()), Arc::new(row.finish())];
    cols.extend(rest.iter().cloned());
    cols.push(Arc::new(raw.finish()));
    cols.push(Arc::new(status.finish()));
    cols.push(Arc::new(reason.finish()));
    cols.push(Arc::new(since.finish().with_timezone(UTC)));
    Ok((RecordBatch::try_new(Arc::clone(arrow), cols)?, statuses))
}

/// One output row read back: what `encode` wrote, cell by cell.
#[derive(Debug, Clone)]
pub struct DecodedRow<'a> {
    /// `identity_type` (email unless it says `phone`).
    pub kind: IdentityKind,
    /// The hash, or why there is none (`missing`, or the row's reason).
    pub hashed: Hashed,
    /// `status`, when it is one this version knows.
    pub status: Option<RowStatus>,
    /// `reason`.
    pub reason: Option<&'a str>,
    /// The answer the row holds, for a `mapped` or `stale` row with a raw EUID.
    pub last: Option<MapOutcome>,
    /// `mapped_at`, Unix ms (0 when null).
    pub mapped_at: i64,
    /// `refresh_from`, Unix ms.
    pub refresh_from_ms: Option<i64>,
    /// `bucket_id` (v2).
    pub bucket_id: Option<Arc<str>>,
    /// `identity_column` (null in datasets written before it existed).
    pub column: Option<&'a str>,
    /// `carried_since`, Unix ms.
    pub carried_since_ms: Option<i64>,
}

/// Reads a dataset's record batch row by row (columns by name, any string or timestamp
/// flavour another engine may have rewritten them with).
pub struct RowReader {
    ty: Option<ArrayRef>,
    hash: Option<ArrayRef>,
    status: Option<ArrayRef>,
    reason: Option<ArrayRef>,
    raw: Option<ArrayRef>,
    prev: Option<ArrayRef>,
    rf: Option<ArrayRef>,
    at: Option<ArrayRef>,
    bucket: Option<ArrayRef>,
    column: Option<ArrayRef>,
    carried: Option<ArrayRef>,
}

impl RowReader {
    /// The columns of `batch`.
    pub fn new(batch: &RecordBatch) -> RowReader {
        let c = |name: &str| batch.column_by_name(name).cloned();
        RowReader {
            ty: c(col::IDENTITY_TYPE),
            hash: c(col::IDENTITY_HASH),
            status: c(col::STATUS),
            reason: c(col::REASON),
            raw: c(col::RAW_EUID),
            prev: c(col::PREVIOUS_RAW_EUID),
            rf: c(col::REFRESH_FROM),
            at: c(col::MAPPED_AT),
            bucket: c(col::BUCKET_ID),
            column: c(col::IDENTITY_COLUMN),
            carried: c(col::CARRIED_SINCE),
        }
    }

    /// Row `i`, decoded.
    pub fn row(&self, i: usize) -> DecodedRow<'_> {
        let kind = if str_at(&self.ty, i) == Some(IdentityKind::Phone.as_str()) {
            IdentityKind::Phone
        } else {
            IdentityKind::Email
        };
        let status = str_at(&self.status, i).and_then(RowStatus::parse);
        let reason = str_at(&self.reason, i);
        let hashed = match str_at(&self.hash, i).map(crate::normalize::decode_prehashed) {
            Some(Ok(h)) => Hashed::Ok(h),
            _ if status == Some(RowStatus::Missing) => Hashed::Missing,
            _ => Hashed::Invalid(InvalidReason::Recorded(Arc::from(
                reason.unwrap_or("invalid"),
            ))),
        };
        let mapped_at = ms_at(&self.at, i).unwrap_or(0);
        let bucket_id = str_at(&self.bucket, i).map(Arc::from);
        let refresh_from_ms = ms_at(&self.rf, i);
        let last = match (&hashed, status, str_at(&self.raw, i)) {
            (Hashed::Ok(_), Some(RowStatus::Mapped | RowStatus::Stale), Some(u)) => {
                Some(MapOutcome::Mapped {
                    raw_euid: RawId::new(u),
                    previous: str_at(&self.prev, i).map(|p| Arc::new(RawId::new(p))),
                    // `encode` wrote the operator's seconds as ms.
                    refresh_from: refresh_from_ms.map(|r| r.div_euclid(1000)),
                    bucket_id: bucket_id.clone(),
                    mapped_at,
                })
            }
            _ => None,
        };
        DecodedRow {
            kind,
            hashed,
            status,
            reason,
            last,
            mapped_at,
            refresh_from_ms,
            bucket_id,
            column: str_at(&self.column, i),
            carried_since_ms: ms_at(&self.carried, i),
        }
    }

    /// `mapped_at` of row `i`, Unix ms.
    pub fn mapped_at(&self, i: usize) -> Option<i64> {
        ms_at(&self.at, i)
    }
}

fn str_at(a: &Option<ArrayRef>, i: usize) -> Option<&str> {
    crate::text::at(a.as_ref()?.as_ref(), i)
}

/// A timestamp cell in Unix ms, whatever its unit (another engine may have rewritten the
/// state with micro- or nanoseconds).
fn ms_at(a: &Option<ArrayRef>, i: usize) -> Option<i64> {
    use arrow_array::types::{
        TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
        TimestampSecondType,
    };
    use arrow_schema::TimeUnit;
    let a = a.as_ref()?;
    if a.is_null(i) {
        return None;
    }
    match a.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, _) => a
            .as_primitive_opt::<TimestampMillisecondType>()
            .map(|p| p.value(i)),
        DataType::Timestamp(TimeUnit::Microsecond, _) => a
            .as_primitive_opt::<TimestampMicrosecondType>()
            .map(|p| p.value(i).div_euclid(1000)),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => a
            .as_primitive_opt::<TimestampNanosecondType>()
            .map(|p| p.value(i).div_euclid(1_000_000)),
        DataType::Timestamp(TimeUnit::Second, _) => a
            .as_primitive_opt::<TimestampSecondType>()
            .map(|p| p.value(i).saturating_mul(1000)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_swept_reason_reads_back() {
        let r = super::swept_reason(1_764_511_331_000);
        assert_eq!(r, "opted out 2025-11-30T14:02:11Z");
        assert_eq!(super::swept_since(&r), Some(1_764_511_331_000));
        assert_eq!(super::swept_since("invalid email"), None);
    }
}
