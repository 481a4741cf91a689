//! Input stage: turns CSV, TSV and Parquet files into [`Chunk`]s of rows with their row
//! numbers, identity cells and pass-through (`--keep-col`) columns.
//!
//! Readers stream: CSV record by record, Parquet record batch by record batch (never the whole
//! file). A chunk holds at most [`CHUNK_ROWS`] rows. Row-level problems (a short CSV row, a
//! cell that is not UTF-8) travel inside the chunk as data; only file-level problems (missing
//! file, unknown column, wrong column type) are [`InputError`]s, raised before any output is
//! published.
//!
//! This module does not hash: cells are handed on as text.

mod columns;
mod csv;
mod error;
pub use csv::DEFAULT_MAX_QUOTED_FIELD_LINES;
mod fingerprint;
mod names;
mod parquet;
mod quote_guard;
mod text_format;

use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::{Array, ArrayRef, LargeStringArray, StringArray, StringViewArray};
use arrow_schema::DataType;

pub use columns::{ColumnSpec, IdentityColumn, RegionColumn, ResolvedColumns};
pub use error::InputError;
pub use fingerprint::Fingerprint;
pub use names::recognise;

use crate::record::InvalidReason;
use crate::storage::Location;

/// Rows per chunk: large enough that per-chunk overhead (channel hop, rayon split, record
/// batch) vanishes, small enough that the few chunks in flight keep memory flat.
pub const CHUNK_ROWS: usize = 32 * 1024;

/// File format of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Delimited text with a header row, optionally gzip-compressed.
    Csv {
        /// Field delimiter.
        delimiter: u8,
        /// Whether the file is gzip-compressed.
        gzip: bool,
        /// A quoted field spanning more lines than this (or more KiB) is taken for a stray
        /// quote (`--max-quoted-field-lines`).
        max_quoted_lines: u64,
        /// RFC 4180 quoting (`"…"`, `""` inside), or none (`--quote none`): the text format
        /// of PostgreSQL's `COPY … TO` and MySQL's `INTO OUTFILE`, where a quote is an
        /// ordinary character, `\N` is null and backslash escapes are decoded.
        quoting: bool,
    },
    /// Apache Parquet.
    Parquet,
}

/// One input file of a job.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// The path as the user gave it, or the object's full URL (written to the `source`
    /// column).
    pub given: String,
    /// Where to read it: a local path or an object.
    pub location: Location,
    /// Its format.
    pub format: Format,
}

impl InputFile {
    /// Picks the format from the file name: `.parquet`/`.pq`, `.tsv[.gz]`, else CSV;
    /// `delimiter` overrides the CSV/TSV default.
    pub fn new(given: &str, delimiter: Option<u8>) -> InputFile {
        InputFile::at(given, Location::Local(given.into()), delimiter)
    }

    /// Like [`InputFile::new`], for a file or object already located (see
    /// [`crate::storage::expand_inputs`]).
    pub fn at(given: &str, location: Location, delimiter: Option<u8>) -> InputFile {
        let lower = given.to_ascii_lowercase();
        let gzip = lower.ends_with(".gz");
        let base = lower.trim_end_matches(".gz");
        let format = if base.ends_with(".parquet") || base.ends_with(".pq") {
            Format::Parquet
        } else {
            let default = if base.ends_with(".tsv") || base.ends_with(".tab") {
                b'\t'
            } else {
                b','
            };
            Format::Csv {
                delimiter: delimiter.unwrap_or(default),
                gzip,
                max_quoted_lines: csv::DEFAULT_MAX_QUOTED_FIELD_LINES,
                quoting: true,
            }
        };
        InputFile {
            given: given.to_string(),
            location,
            format,
        }
    }

    /// Sets the quoted-field limit of a CSV input (`--max-quoted-field-lines`).
    pub fn with_max_quoted_lines(mut self, lines: u64) -> InputFile {
        if let Format::Csv {
            max_quoted_lines, ..
        } = &mut self.format
        {
            *max_quoted_lines = lines.max(1);
        }
        self
    }

    /// Turns quoting off for a CSV or TSV input (`--quote none`): see [`Format::Csv`].
    pub fn without_quoting(mut self) -> InputFile {
        if let Format::Csv { quoting, .. } = &mut self.format {
            *quoting = false;
        }
        self
    }

    /// Size in bytes, for progress; 0 when unknown.
    pub fn size(&self) -> u64 {
        self.location.meta().map(|m| m.size).unwrap_or(0)
    }
}

/// A string column of a chunk, whatever Arrow string layout it came in.
#[derive(Debug, Clone)]
pub struct TextColumn(ArrayRef);

impl TextColumn {
    /// Wraps a string array (Utf8, LargeUtf8, Utf8View or a dictionary of strings).
    pub fn new(array: ArrayRef) -> TextColumn {
        debug_assert!(crate::text::is_text(array.data_type()));
        TextColumn(array)
    }

    /// The cell at `i`; `None` when null.
    pub fn get(&self, i: usize) -> Option<&str> {
        if self.0.is_null(i) {
            return None;
        }
        let a = self.0.as_any();
        if let Some(s) = a.downcast_ref::<StringArray>() {
            Some(s.value(i))
        } else if let Some(s) = a.downcast_ref::<LargeStringArray>() {
            Some(s.value(i))
        } else if let Some(s) = a.downcast_ref::<StringViewArray>() {
            Some(s.value(i))
        } else {
            crate::text::at(self.0.as_ref(), i)
        }
    }
}

/// A cell of a chunk that could not be read (not UTF-8): which row, and which of the
/// chunk's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadCell {
    /// Identity column `j` (in [`ResolvedColumns::identities`] order).
    Identity(usize),
    /// Region column `r` (in [`ResolvedColumns::phone_region_cols`] order).
    Region(usize),
}

/// Rows of one input file, as read. Row `k` of the chunk is data row `first_row + k` of file
/// `file` (0-based, header excluded).
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Index of the file in the job's input list.
    pub file: usize,
    /// Row number of the chunk's first row within its file.
    pub first_row: u64,
    /// Number of rows.
    pub len: usize,
    /// One column per identity column of the file, in [`ResolvedColumns::identities`] order.
    pub identities: Vec<TextColumn>,
    /// Rows that cannot be read at all (a CSV row with the wrong number of fields), with the
    /// reason every identity of the row gets (sorted by row).
    pub broken: Vec<(usize, InvalidReason)>,
    /// Cells that are not UTF-8, by row (sorted): each belongs to the identity that reads it
    /// (an identity cell makes that identity invalid; a region cell, the phones read in it).
    /// Such cells are null in their column.
    pub bad_cells: Vec<(usize, BadCell)>,
    /// Kept cells that are not UTF-8 (row, kept column), written as null.
    pub bad_kept: Vec<(usize, usize)>,
    /// Kept columns, in `--keep-col` order.
    pub kept: Vec<ArrayRef>,
    /// The `--phone-region-col` columns' cells, in their order.
    pub phone_regions: Vec<TextColumn>,
}

impl Chunk {
    /// Why row `k` is unusable as a whole, if it is.
    pub fn broken_reason(&self, k: usize) -> Option<&InvalidReason> {
        self.broken
            .binary_search_by_key(&k, |(r, _)| *r)
            .ok()
            .map(|i| &self.broken[i].1)
    }

    /// The unreadable cells of row `k`.
    pub fn bad_cells_of(&self, k: usize) -> &[(usize, BadCell)] {
        let from = self.bad_cells.partition_point(|(r, _)| *r < k);
        let to = self.bad_cells.partition_point(|(r, _)| *r <= k);
        &self.bad_cells[from..to]
    }
}

/// Where reading starts: file index and data row (for `--resume`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Index of the file in the input list.
    pub file: usize,
    /// 0-based data row within that file.
    pub row: u64,
}

/// Shared counter of input bytes consumed (compressed bytes for gzip), for progress and ETA.
#[derive(Debug, Default)]
pub struct ReadProgress {
    /// Bytes consumed so far.
    pub bytes: AtomicU64,
    /// Rows read so far.
    pub rows: AtomicU64,
}

impl ReadProgress {
    fn add(&self, bytes: u64, rows: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.rows.fetch_add(rows, Ordering::Relaxed);
    }
}

/// Outcome of handing a chunk downstream: `false` means the consumer is gone; stop reading.
pub type Sink<'a> = dyn FnMut(Chunk) -> bool + 'a;

/// Opens every input once to check and resolve its columns, so that a bad file fails the run
/// before any output is written.
///
/// # Errors
/// The first file that cannot be opened or lacks a column.
pub fn resolve_all(
    files: &[InputFile],
    spec: &ColumnSpec,
) -> Result<Vec<ResolvedColumns>, InputError> {
    let mut out: Vec<ResolvedColumns> = Vec::with_capacity(files.len());
    for f in files {
        let header = match f.format {
            Format::Csv { .. } => csv::header(f)?,
            Format::Parquet => parquet::header(f)?,
        };
        let resolved = spec.resolve(&f.given, &header)?;
        if let Some(first) = out.first() {
            for (i, (name, ty)) in resolved.keep_types.iter().enumerate() {
                let expected = &first.keep_types[i].1;
                if ty != expected {
                    return Err(InputError::KeepTypeMismatch {
                        path: f.given.clone(),
                        column: name.clone(),
                        found: ty.to_string(),
                        expected: expected.to_string(),
                    });
                }
            }
        }
        out.push(resolved);
    }
    Ok(out)
}

/// Says on stderr which identity columns auto-detection found (once, and again for each
/// file where they differ from the file before); nothing when the columns were named.
pub fn announce_detected(files: &[InputFile], spec: &ColumnSpec, columns: &[ResolvedColumns]) {
    if spec.is_explicit() || spec.no_identity {
        return;
    }
    let mut previous: Option<String> = None;
    for (f, c) in files.iter().zip(columns) {
        let list = c
            .identities
            .iter()
            .map(|i| {
                let form = match i.form {
                    crate::record::IdentityForm::Raw => "",
                    crate::record::IdentityForm::Hashed => " hash",
                };
                format!("{} ({}{form})", i.name, i.kind.as_str())
            })
            .collect::<Vec<_>>()
            .join(", ");
        if previous.as_deref() != Some(list.as_str()) {
            tracing::info!(
                file = %f.given,
                "identity columns found by name: {list} (name them with --email-col/--phone-col to choose)"
            );
            previous = Some(list);
        }
    }
}

/// Reads every file from `start` on, in order, handing chunks to `sink`.
///
/// # Errors
/// A file-level read error; chunks sent before it stay sent.
pub fn read_all(
    files: &[InputFile],
    columns: &[ResolvedColumns],
    start: Position,
    progress: &ReadProgress,
    sink: &mut Sink<'_>,
) -> Result<(), InputError> {
    for (idx, (f, cols)) in files.iter().zip(columns).enumerate().skip(start.file) {
        let skip = if idx == start.file { start.row } else { 0 };
        let keep_going = match f.format {
            Format::Csv { .. } => csv::read(idx, f, cols, skip, progress, sink)?,
            Format::Parquet => parquet::read(idx, f, cols, skip, progress, sink)?,
        };
        if !keep_going {
            break;
        }
    }
    Ok(())
}

/// The columns (name and Arrow type) of a file, as its header or schema declares them.
#[derive(Debug, Clone)]
pub struct Header {
    /// Column names and types, in file order. CSV columns are all Utf8.
    pub columns: Vec<(String, DataType)>,
}

fn open(f: &InputFile) -> Result<Box<dyn std::io::Read + Send>, InputError> {
    match f.location.open_read() {
        Ok(r) => Ok(r),
        Err(crate::storage::StorageError::Io { source, .. }) => Err(InputError::Open {
            path: f.given.clone(),
            source,
        }),
        Err(e) => Err(e.into()),
    }
}
