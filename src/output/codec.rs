//! How parts are compressed (`--compression`), and the Parquet writer properties every part
//! is written with.

use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::schema::col;

/// Columns of random base64 text (no repeats to exploit).
const RANDOM_COLUMNS: [&str; 3] = [col::IDENTITY_HASH, col::RAW_EUID, col::PREVIOUS_RAW_EUID];
/// Numbers that hardly repeat within a row group: a dictionary would hash every value and
/// then be abandoned, or be as large as the values.
const UNIQUE_NUMBER_COLUMNS: [&str; 2] = [col::ROW, col::REFRESH_FROM];
/// Rows per Parquet row group: bounds the writer's buffered memory (a few tens of MiB).
pub(super) const ROW_GROUP_ROWS: usize = 64 * 1024;

/// The codec of the output's parts (`--compression`). Every engine reads each of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    /// Snappy: fast, the default of Spark and pyarrow.
    #[default]
    Snappy,
    /// Zstandard (level 3): smaller parts for a little more CPU; the default of Polars and
    /// DuckDB.
    Zstd,
    /// Gzip (level 6), for readers that know nothing newer.
    Gzip,
    /// No compression.
    None,
}

impl Codec {
    /// Parses `--compression`'s value (`snappy`, `zstd`, `gzip`, `none`), any case.
    pub fn parse(s: &str) -> Option<Codec> {
        match s.to_ascii_lowercase().as_str() {
            "snappy" => Some(Codec::Snappy),
            "zstd" => Some(Codec::Zstd),
            "gzip" => Some(Codec::Gzip),
            "none" | "uncompressed" => Some(Codec::None),
            _ => None,
        }
    }

    /// The name `--compression` takes and the manifest shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Snappy => "snappy",
            Codec::Zstd => "zstd",
            Codec::Gzip => "gzip",
            Codec::None => "none",
        }
    }

    fn parquet(self) -> Compression {
        match self {
            Codec::Snappy => Compression::SNAPPY,
            Codec::Zstd => Compression::ZSTD(ZstdLevel::default()),
            Codec::Gzip => Compression::GZIP(Default::default()),
            Codec::None => Compression::UNCOMPRESSED,
        }
    }
}

/// The properties of every part: `codec` for the columns that compress, none for the random
/// base64 columns, dictionaries off where they cannot pay.
pub(super) fn properties(codec: Codec) -> WriterProperties {
    let mut props = WriterProperties::builder()
        .set_compression(codec.parquet())
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("euid-map {}", env!("CARGO_PKG_VERSION")))
        // Kept columns keep their type for every engine: a `date64` becomes a Parquet DATE
        // (not a bare int64 that only Arrow readers turn back into a date).
        .set_coerce_types(true);
    // Hashes and raw ids are random base64: dictionaries and compression only cost CPU,
    // and min/max statistics span nearly the whole range in every page and row group, so
    // no engine can skip data with them (computing them was 2 % of `map`'s CPU).
    for col in RANDOM_COLUMNS {
        let path = ColumnPath::from(col);
        props = props
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_statistics_enabled(path.clone(), EnabledStatistics::None)
            .set_column_compression(path, Compression::UNCOMPRESSED);
    }
    for col in UNIQUE_NUMBER_COLUMNS {
        props = props.set_column_dictionary_enabled(ColumnPath::from(col), false);
    }
    props.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_parses_back_from_its_name() {
        for c in [Codec::Snappy, Codec::Zstd, Codec::Gzip, Codec::None] {
            assert_eq!(Codec::parse(c.as_str()), Some(c));
        }
        assert_eq!(Codec::parse("ZSTD"), Some(Codec::Zstd));
        assert_eq!(Codec::parse("lzo"), None);
    }
}
