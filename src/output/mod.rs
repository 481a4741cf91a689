//! Output stage: the Parquet dataset directory shared by `hash`, `map` and `refresh`.
//!
//! ```text
//! OUT_DIR/part-00000.parquet   committed parts, in input order
//! OUT_DIR/.part-00001.parquet.tmp   the part being written (renamed after close)
//! OUT_DIR/_job.json            what the run reads (checked by --resume)
//! OUT_DIR/_manifest.json       counts, timings, version (written at the end)
//! OUT_DIR/_SUCCESS             empty, written last
//! ```
//!
//! A part is renamed into place only after it is closed and synced, so a reader never sees a
//! half file. Each part records in its footer metadata the input range it covers and its
//! status counts; `--resume` continues from the end of the last committed part.

mod codec;
mod job_dir;
mod lock;
mod manifest;
mod parts;
mod rows;
mod schema;
mod writer;

pub use codec::Codec;
pub use job_dir::{finished_same_job, prepare_dir, DirState, JobDescription, Restart};
pub(crate) use lock::host_name;
pub use lock::{DirLock, LEASE, LOCK_FILE, RENEW_EVERY};
pub use manifest::{
    counts_map, latest_complete, write_json, Manifest, ManifestColumn, ManifestInput, OptoutCounts,
    RefreshCounts, RunState, JOB_FILE, MANIFEST_FILE, SCHEMA_VERSION, SUCCESS_FILE,
};
pub use parts::{committed_parts, part_name, PartInfo};
pub(crate) use rows::{encode as encode_rows, encode_optout};
pub use rows::{swept_since, DecodedRow, RowReader};
pub use schema::{
    col, OutputKind, Schema, LOOKUP_COLUMNS, OUTPUT_COLUMNS, ROW_TYPE, STATE_COLUMNS,
};
pub use writer::DatasetWriter;

/// Errors of the output stage.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Creating, writing, syncing or renaming a file failed.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Encoding Parquet failed.
    #[error("{path}: parquet: {message}")]
    Parquet {
        /// The part file.
        path: String,
        /// The encoder's message.
        message: String,
    },
    /// `-o` names an existing file, not a directory.
    #[error("-o {path} is an existing file; the output is a dataset directory (or prefix): name a new or empty directory")]
    NotADirectory {
        /// The path.
        path: String,
    },
    /// OUT_DIR already holds files and `--resume` was not given.
    #[error("{path} is not empty; pass --resume to continue the run it holds, or choose another output directory")]
    NotEmpty {
        /// The directory.
        path: String,
    },
    /// The directory or prefix cannot be reached, read or written.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// Another run holds the directory's lock.
    #[error("{path} is in use by another run ({holder}); wait for it to finish, or stop it (the lock is released as soon as that process ends)")]
    Busy {
        /// The directory.
        path: String,
        /// Who holds the lock: pid, host, command and start time.
        holder: String,
    },
    /// Another run holds the lock object of an object-store prefix.
    #[error("{path} is in use by another run ({holder}); wait for it to finish, or stop it. If that run crashed, its lock expires at {expires} (or at once for a process of this host that is gone)")]
    BusyObject {
        /// The prefix.
        path: String,
        /// Who holds the lock: pid, host, command and start time.
        holder: String,
        /// When the holder's lease ends unless renewed (RFC 3339).
        expires: String,
    },
    /// This run lost its lock object (another run took it over after a lease expired):
    /// nothing more is published.
    #[error("{path}: this run's lock was taken over by another run ({holder}); stopping without publishing")]
    LockLost {
        /// The prefix.
        path: String,
        /// Who holds it now.
        holder: String,
    },
    /// `--resume` over an input that is not the one the run started with.
    #[error("cannot resume: input {path} is not the file the run started with ({why}); start this directory over with --restart (its parts are discarded; --resume --restart-if-changed does it only when an input changed), or run into a new output directory")]
    InputChanged {
        /// The input as given.
        path: String,
        /// What changed.
        why: String,
    },
    /// `latest ROOT` on a local ROOT that does not exist or is not a directory.
    #[error("{path} does not exist or is not a directory: no night can be looked for there (a typo, or a volume not mounted?)")]
    NoRoot {
        /// The folder.
        path: String,
    },
    /// A finished night's manifest cannot be read.
    #[error("{path}: {why}; the night cannot be told finished or not, so none is chosen (restore the file, or move the night away)")]
    BadManifest {
        /// The manifest.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// `--resume` of a finished run whose input changed since.
    #[error("{dir} holds a run that finished with an earlier version of {path} ({why} since): it is left as it is. Map the new version into another output directory (or pass --restart-if-changed, which takes the finished run as done)")]
    FinishedWithOtherInput {
        /// The input as given.
        path: String,
        /// What changed.
        why: String,
        /// The output directory.
        dir: String,
    },
    /// `--restart` on a directory whose run finished.
    #[error("{path} holds a finished run (_SUCCESS): --restart only starts over a run that did not finish; write the new run into a new output directory")]
    RestartFinished {
        /// The directory.
        path: String,
    },
    /// `--resume` on a directory that holds another job, or no job.
    #[error("cannot resume in {path}: {why}")]
    CannotResume {
        /// The directory.
        path: String,
        /// What does not match.
        why: String,
    },
    /// A kept column is named like an output column, or twice.
    #[error("--keep-col {column:?} {why}: the dataset would have two columns of that name (warehouses compare names case-insensitively), and a later refresh could read the kept one as its own. Rename the column in the export (or drop it from --keep-col)")]
    KeptNameClash {
        /// The kept column.
        column: String,
        /// Which name it clashes with.
        why: String,
    },
    /// `refresh --state` names something that is not a complete dataset.
    #[error("--state {path}: {why}")]
    BadState {
        /// The state directory or file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
}

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.display().to_string(),
        source,
    }
}
