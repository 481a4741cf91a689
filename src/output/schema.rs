//! The output columns. One definition, used by the writer and by the readers of a previous
//! run (`refresh`), so the two cannot drift.

use std::sync::Arc;

use arrow_schema::{DataType, Field, SchemaRef, TimeUnit};

/// Which command writes the dataset; `map` and `refresh` add the mapping columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// `euid-map hash`: hashes only.
    Hash,
    /// `euid-map map` / `refresh`: hashes and raw EUIDs.
    Map,
    /// `map --api v2` / `refresh --api v2`: as `Map`, plus the legacy `bucket_id` column.
    MapV2,
    /// `euid-map optout`: raw EUIDs with their opt-out status (`raw_euid`, `status`,
    /// `reason`, `opted_out_since`).
    Optout,
    /// `map --distinct` (and `refresh` of such a dataset): the lookup table, one row per
    /// distinct identity, without `source`, `row` or kept columns.
    Lookup,
}

/// The Arrow schema of a dataset, and where its columns are.
#[derive(Debug, Clone)]
pub struct Schema {
    /// The Arrow schema of every part.
    pub arrow: SchemaRef,
    /// Hash-only or mapping output.
    pub kind: OutputKind,
    /// Number of kept columns (they follow `source` and `row`).
    pub kept: usize,
}

/// The type of the `row` column: `int64`, which every engine reads as an integer (Spark reads
/// unsigned 64-bit as `decimal(20,0)`, BigQuery as NUMERIC, Athena not at all). States and
/// resumed directories written with `uint64` by earlier versions are still read.
pub const ROW_TYPE: DataType = DataType::Int64;

/// Time zone of every timestamp column.
pub(crate) const UTC: &str = "UTC";

/// The names of the columns the tool writes itself: the one spelling of each, used by the
/// schema, the row codec (`output::rows`) and the readers of a previous run.
pub mod col {
    /// The input file (or state dataset) a row comes from.
    pub const SOURCE: &str = "source";
    /// The row's number in its source.
    pub const ROW: &str = "row";
    /// `email` or `phone`.
    pub const IDENTITY_TYPE: &str = "identity_type";
    /// The input column the identity was read from (`email`, `secondary_email`, `mobile`).
    pub const IDENTITY_COLUMN: &str = "identity_column";
    /// `refresh --keep-missing`: on a row carried for a customer gone from tonight's export,
    /// when that customer was last in an export (null on rows read from tonight's inputs).
    pub const CARRIED_SINCE: &str = "carried_since";
    /// Base64 SHA-256 of the normalized identity.
    pub const IDENTITY_HASH: &str = "identity_hash";
    /// The row's status.
    pub const STATUS: &str = "status";
    /// Why the status, when it needs saying.
    pub const REASON: &str = "reason";
    /// The raw EUID.
    pub const RAW_EUID: &str = "raw_euid";
    /// The raw EUID before the last salt rotation.
    pub const PREVIOUS_RAW_EUID: &str = "previous_raw_euid";
    /// When the identity is due for a remap.
    pub const REFRESH_FROM: &str = "refresh_from";
    /// When the operator answered.
    pub const MAPPED_AT: &str = "mapped_at";
    /// `--api v2` only: the salt bucket.
    pub const BUCKET_ID: &str = "bucket_id";
    /// `optout` only: when the raw EUID opted out.
    pub const OPTED_OUT_SINCE: &str = "opted_out_since";
    /// The time zone of every timestamp column.
    pub const UTC_ZONE: &str = super::UTC;
}

/// Every column the tool writes itself, whatever the command (`bucket_id` with `--api v2`).
pub const OUTPUT_COLUMNS: [&str; 14] = [
    col::SOURCE,
    col::ROW,
    col::IDENTITY_TYPE,
    col::IDENTITY_COLUMN,
    col::CARRIED_SINCE,
    col::IDENTITY_HASH,
    col::STATUS,
    col::REASON,
    col::RAW_EUID,
    col::PREVIOUS_RAW_EUID,
    col::REFRESH_FROM,
    col::MAPPED_AT,
    col::BUCKET_ID,
    col::OPTED_OUT_SINCE,
];

/// The columns of the lookup table (`map --distinct`), which `refresh` also reads as state.
pub const LOOKUP_COLUMNS: [&str; 8] = [
    col::IDENTITY_TYPE,
    col::IDENTITY_HASH,
    col::STATUS,
    col::REASON,
    col::RAW_EUID,
    col::PREVIOUS_RAW_EUID,
    col::REFRESH_FROM,
    col::MAPPED_AT,
];

/// The columns every state dataset of `refresh` has beside its kept columns: the output's,
/// less v2's `bucket_id` and the `optout` command's `opted_out_since`.
pub const STATE_COLUMNS: [&str; 10] = [
    col::SOURCE,
    col::ROW,
    col::IDENTITY_TYPE,
    col::IDENTITY_HASH,
    col::STATUS,
    col::REASON,
    col::RAW_EUID,
    col::PREVIOUS_RAW_EUID,
    col::REFRESH_FROM,
    col::MAPPED_AT,
];

impl Schema {
    /// The kept columns, with their types, in the output's order.
    pub fn kept_columns(&self) -> Vec<(String, DataType)> {
        if self.kind == OutputKind::Lookup {
            return Vec::new();
        }
        self.arrow.fields()[2..2 + self.kept]
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect()
    }

    /// Refuses kept columns named like an output column or like each other, compared
    /// case-insensitively as warehouses compare them.
    ///
    /// # Errors
    /// [`super::OutputError::KeptNameClash`].
    pub fn check_kept_names(kept: &[(String, DataType)]) -> Result<(), super::OutputError> {
        for (i, (name, _)) in kept.iter().enumerate() {
            if let Some(c) = OUTPUT_COLUMNS.iter().find(|c| c.eq_ignore_ascii_case(name)) {
                return Err(super::OutputError::KeptNameClash {
                    column: name.clone(),
                    why: format!("is named like the output column {c:?}"),
                });
            }
            if let Some((other, _)) = kept[..i].iter().find(|(o, _)| o.eq_ignore_ascii_case(name)) {
                return Err(super::OutputError::KeptNameClash {
                    column: name.clone(),
                    why: format!("is kept twice (also as {other:?})"),
                });
            }
        }
        Ok(())
    }

    /// Builds the schema: `source`, `row`, the kept columns, `identity_type`,
    /// `identity_column`, `identity_hash`, `status`, `reason`, then for `map` `raw_euid`,
    /// `previous_raw_euid`, `refresh_from`, `mapped_at`, `carried_since`. The timestamps are
    /// UTC milliseconds (Parquet has no seconds unit); `refresh_from` always holds whole
    /// seconds, as the operator's `r` does. `source` and `row` are null only on rows carried
    /// for a customer gone from tonight's export (`refresh --keep-missing`).
    pub fn new(kind: OutputKind, kept: &[(String, DataType)]) -> Schema {
        if kind == OutputKind::Lookup {
            let mut s = Schema::new(OutputKind::Map, &[]);
            let fields: Vec<Field> = s
                .arrow
                .fields()
                .iter()
                .filter(|f| LOOKUP_COLUMNS.contains(&f.name().as_str()))
                .map(|f| f.as_ref().clone())
                .collect();
            s.arrow = Arc::new(arrow_schema::Schema::new(fields));
            s.kind = kind;
            return s;
        }
        let mut fields = vec![
            Field::new(col::SOURCE, DataType::Utf8, true),
            Field::new(col::ROW, ROW_TYPE, true),
        ];
        fields.extend(kept.iter().map(|(n, t)| Field::new(n, t.clone(), true)));
        if kind == OutputKind::Optout {
            fields.extend([
                Field::new(col::RAW_EUID, DataType::Utf8, true),
                Field::new(col::STATUS, DataType::Utf8, false),
                Field::new(col::REASON, DataType::Utf8, true),
                Field::new(
                    col::OPTED_OUT_SINCE,
                    DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())),
                    true,
                ),
            ]);
            return Schema {
                arrow: Arc::new(arrow_schema::Schema::new(fields)),
                kind,
                kept: kept.len(),
            };
        }
        fields.extend([
            Field::new(col::IDENTITY_TYPE, DataType::Utf8, false),
            Field::new(col::IDENTITY_COLUMN, DataType::Utf8, true),
            Field::new(col::IDENTITY_HASH, DataType::Utf8, true),
            Field::new(col::STATUS, DataType::Utf8, false),
            Field::new(col::REASON, DataType::Utf8, true),
        ]);
        if kind != OutputKind::Hash {
            fields.extend([
                Field::new(col::RAW_EUID, DataType::Utf8, true),
                Field::new(col::PREVIOUS_RAW_EUID, DataType::Utf8, true),
                Field::new(
                    col::REFRESH_FROM,
                    DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())),
                    true,
                ),
                Field::new(
                    col::MAPPED_AT,
                    DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())),
                    true,
                ),
                Field::new(
                    col::CARRIED_SINCE,
                    DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())),
                    true,
                ),
            ]);
        }
        if kind == OutputKind::MapV2 {
            fields.push(Field::new(col::BUCKET_ID, DataType::Utf8, true));
        }
        Schema {
            arrow: Arc::new(arrow_schema::Schema::new(fields)),
            kind,
            kept: kept.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #26.3: kept columns named like output columns, or twice, are refused.
    #[test]
    fn kept_columns_named_like_output_columns_are_refused() {
        let k = |names: &[&str]| -> Vec<(String, DataType)> {
            names
                .iter()
                .map(|n| (n.to_string(), DataType::Utf8))
                .collect()
        };
        for bad in [
            k(&["status"]),
            k(&["Status"]),
            k(&["id", "SOURCE"]),
            k(&["raw_euid"]),
            k(&["bucket_id"]),
            k(&["id", "ID"]),
        ] {
            assert!(Schema::check_kept_names(&bad).is_err(), "{bad:?}");
        }
        assert!(Schema::check_kept_names(&k(&["id", "crm_status", "country"])).is_ok());
    }
}
