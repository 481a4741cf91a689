//! The crate's error type: one variant per stage, each carrying its stage's typed error.
//! Row-level problems are never errors; they are statuses in the output.

use crate::client::ClientError;
use crate::input::InputError;
use crate::output::OutputError;

/// A run-level failure. The CLI maps every variant to exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading input failed.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Writing output failed.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The operator refused the run (authentication, clock skew, configuration).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A flag or credential is unusable.
    #[error("{0}")]
    Config(String),
    /// The run was interrupted (Ctrl-C); committed parts are kept for `--resume`.
    #[error("interrupted; committed parts are kept, run again with --resume to continue")]
    Interrupted,
    /// An internal stage stopped unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
}
