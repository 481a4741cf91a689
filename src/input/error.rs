//! The input stage's errors: each names the file (and the row or column where it helps).

/// Errors that stop a run before or while reading input. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// An input read twice (`map --dedupe exact`) was not the same the second time.
    #[error("{path} changed while the run read it ({why}): `map --dedupe exact` reads each input twice, so it must not change until the run ends. Once the export is complete, run again with --restart (or --resume --restart-if-changed), which discards the parts committed from the changed input, or pass --dedupe window to read it once")]
    ChangedBetweenReads {
        /// The input (or inputs) as given.
        path: String,
        /// What differs.
        why: String,
    },
    /// An input rewritten while the run read it (found before `_SUCCESS`).
    #[error("{path} changed while the run read it ({why}): the dataset would mix two versions of it, so nothing was published. Once the export is complete, run again with --restart (or --resume --restart-if-changed), which discards the parts committed from the changed input")]
    ChangedDuringRun {
        /// The input as given.
        path: String,
        /// What changed.
        why: String,
    },
    /// The file does not exist or cannot be opened.
    #[error("{path}: cannot open")]
    Open {
        /// Input path as given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading failed part way.
    #[error("{path}: read error near row {row}: {message}")]
    Read {
        /// Input path as given.
        path: String,
        /// 1-based data row where reading failed.
        row: u64,
        /// What failed.
        message: String,
    },
    /// A quoted field never closes, runs on past the limit, or its closing quote is followed
    /// by text: a stray quote that would swallow the rows after it.
    #[error("{path}: line {line}: a quote opens a field here but {why}; fix or escape the stray quote (\"\" inside a quoted field)")]
    UnterminatedQuote {
        /// Input path as given.
        path: String,
        /// 1-based line of the file where the quote opened.
        line: u64,
        /// What went wrong.
        why: String,
    },
    /// The header came out as one column that contains another likely delimiter.
    #[error("{path}: the header {header:?} reads as a single column; is the file delimited by {suggestion:?}? Pass --delimiter {suggestion}")]
    OneColumnHeader {
        /// Input path as given.
        path: String,
        /// The header line (shortened).
        header: String,
        /// The delimiter it seems to use, as `--delimiter` takes it.
        suggestion: String,
    },
    /// The file has no header row.
    #[error("{path}: the file is empty (no header row)")]
    NoHeader {
        /// Input path as given.
        path: String,
    },
    /// A named column is absent.
    #[error("{path}: no column {column:?}; the file's columns are: {available}")]
    MissingColumn {
        /// Input path as given.
        path: String,
        /// The column asked for.
        column: String,
        /// The file's columns, comma separated.
        available: String,
    },
    /// A column the job reads is named twice (by the header, or by the flags).
    #[error("{path}: column {column:?} is named twice (in the header or by the column flags), so which one to read is unclear; rename one of them in the export, or name another")]
    DuplicateColumn {
        /// Input path as given.
        path: String,
        /// The column.
        column: String,
    },
    /// More than one `--phone-region-col`, but not one per raw phone column.
    #[error("{path}: {regions} --phone-region-col columns for {phones} raw phone columns: give one region column for every phone column, or one per phone column (paired in order with --phone-col)")]
    RegionColumns {
        /// Input path as given.
        path: String,
        /// Region columns given.
        regions: usize,
        /// Raw phone columns read.
        phones: usize,
    },
    /// Several `--phone-region-col` with phone columns found by name.
    #[error("{path}: several --phone-region-col columns pair with the phone columns in the order --phone-col names them; name the phone columns with --phone-col (detected ones follow each file's header order, which may differ)")]
    RegionColumnsUnpaired {
        /// Input path as given.
        path: String,
    },
    /// Auto-detection found no identity column.
    #[error("{path}: no email or phone column found; name one with --email-col, --phone-col, --email-hash-col or --phone-hash-col. The file's columns are: {available}")]
    NoIdentityColumn {
        /// Input path as given.
        path: String,
        /// The file's columns, comma separated.
        available: String,
    },
    /// An identity column in Parquet is not a string column.
    #[error("{path}: column {column:?} holds {found}, but identity columns must be strings")]
    NotString {
        /// Input path as given.
        path: String,
        /// The column.
        column: String,
        /// Its Arrow type.
        found: String,
    },
    /// The `--phone-region-col` column in Parquet is not a string column.
    #[error("{path}: the --phone-region-col column {column:?} holds {found}; it must be a string column of ISO 3166-1 alpha-2 codes (FR, de, …)")]
    RegionNotString {
        /// Input path as given.
        path: String,
        /// The column.
        column: String,
        /// Its Arrow type.
        found: String,
    },
    /// A kept column has another type than in the first input.
    #[error("{path}: kept column {column:?} is {found} here but {expected} in the first input")]
    KeepTypeMismatch {
        /// Input path as given.
        path: String,
        /// The column.
        column: String,
        /// Its type in this file.
        found: String,
        /// Its type in the first file.
        expected: String,
    },
    /// The file or object cannot be reached or read.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// The Parquet footer or a page cannot be decoded.
    #[error("{path}: not a readable Parquet file: {message}")]
    Parquet {
        /// Input path as given.
        path: String,
        /// The decoder's message.
        message: String,
    },
}
