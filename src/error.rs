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
    /// A flag, a file or a credential is unusable.
    #[error(transparent)]
    Invalid(#[from] crate::config::ConfigError),
    /// A refresh that cannot run as asked (options, state, the drop guard).
    #[error(transparent)]
    Refresh(#[from] crate::refresh::RefreshError),
    /// The run was interrupted by a signal after committing what was complete.
    #[error("interrupted: rerun the same command with --resume")]
    Interrupted {
        /// The signal (2 SIGINT, 15 SIGTERM); the exit code is 128 + signal.
        signal: i32,
    },
    /// The caller's record batches (`columnar::MapStream`) could not be read: the producer's
    /// own error.
    #[error("reading the input batches: {0}")]
    Batches(String),
    /// An internal stage stopped unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::secret::SecretError> for Error {
    fn from(e: crate::secret::SecretError) -> Error {
        Error::Invalid(e.into())
    }
}
