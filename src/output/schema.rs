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

/// The type of the `row` column.
pub const ROW_TYPE: DataType = DataType::UInt64;

/// Time zone of every timestamp column.
pub(crate) const UTC: &str = "UTC";

impl Schema {
    /// Builds the schema: `source`, `row`, the kept columns, `identity_type`, `identity_hash`,
    /// `status`, `reason`, then for `map` `raw_euid`, `previous_raw_euid`, `refresh_from`,
    /// `mapped_at`. Both timestamps are UTC milliseconds (Parquet has no seconds unit);
    /// `refresh_from` always holds whole seconds, as the operator's `r` does.
    pub fn new(kind: OutputKind, kept: &[(String, DataType)]) -> Schema {
        let mut fields = vec![
            Field::new("source", DataType::Utf8, false),
            Field::new("row", ROW_TYPE, false),
        ];
        fields.extend(kept.iter().map(|(n, t)| Field::new(n, t.clone(), true)));
        fields.extend([
            Field::new("identity_type", DataType::Utf8, false),
            Field::new("identity_hash", DataType::Utf8, true),
            Field::new("status", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, true),
        ]);
        if kind != OutputKind::Hash {
            fields.extend([
                Field::new("raw_euid", DataType::Utf8, true),
                Field::new("previous_raw_euid", DataType::Utf8, true),
                Field::new(
                    "refresh_from",
                    DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())),
                    true,
                ),
                Field::new(
                    "mapped_at",
                    DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())),
                    true,
                ),
            ]);
        }
        if kind == OutputKind::MapV2 {
            fields.push(Field::new("bucket_id", DataType::Utf8, true));
        }
        Schema {
            arrow: Arc::new(arrow_schema::Schema::new(fields)),
            kind,
            kept: kept.len(),
        }
    }
}
