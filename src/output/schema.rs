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

/// Every column the tool writes itself, whatever the command (`bucket_id` with `--api v2`).
pub const OUTPUT_COLUMNS: [&str; 12] = [
    "source",
    "row",
    "identity_type",
    "identity_hash",
    "status",
    "reason",
    "raw_euid",
    "previous_raw_euid",
    "refresh_from",
    "mapped_at",
    "bucket_id",
    "opted_out_since",
];

impl Schema {
    /// The kept columns, with their types, in the output's order.
    pub fn kept_columns(&self) -> Vec<(String, DataType)> {
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
        if kind == OutputKind::Optout {
            fields.extend([
                Field::new("raw_euid", DataType::Utf8, true),
                Field::new("status", DataType::Utf8, false),
                Field::new("reason", DataType::Utf8, true),
                Field::new(
                    "opted_out_since",
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
