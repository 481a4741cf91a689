//! The library's columnar API: hashing Arrow arrays with EUID's rules ([`hash_array`]) and
//! mapping a stream of record batches of hashes ([`MapStream`]). What the Python module
//! binds and what engines (Spark, DuckDB, Polars) call per batch: the rules stay in
//! [`crate::normalize`], the statuses in [`crate::record::RowStatus::decide`], the mapping in
//! [`crate::mapper`]; this module only moves values between Arrow arrays and them.

mod hash;
mod map;
mod stages;

pub use hash::{hash_array, HashedColumns, Regions};
pub use map::{MapStream, MapStreamConfig, MapSummary, Next, StreamHandle, ADDED_COLUMNS};
pub use stages::UNKNOWN_TYPE;

#[cfg(test)]
mod tests;

/// Why a columnar call cannot run. Row-level problems are statuses, never errors.
#[derive(Debug, thiserror::Error)]
pub enum ColumnarError {
    /// The values (or regions) are not a string array.
    #[error(
        "{what} must be strings (utf8, large_utf8, utf8_view or a dictionary of them), not {found}"
    )]
    NotText {
        /// Which argument.
        what: &'static str,
        /// Its Arrow type.
        found: String,
    },
    /// The region array's length differs from the values'.
    #[error("the region array has {regions} values for {values} phones")]
    LengthMismatch {
        /// Values.
        values: usize,
        /// Regions.
        regions: usize,
    },
    /// A region scalar the phone metadata does not know.
    #[error(
        "region {0:?} is no ISO 3166-1 alpha-2 code the phone metadata knows (for the UK, GB)"
    )]
    UnknownRegion(String),
    /// An input batch lacks a column, or has one the output adds.
    #[error("{0}")]
    Columns(String),
}
