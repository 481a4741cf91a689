//! Validated configuration: what the CLI's flags become once checked. Library functions take
//! these types, never clap's, so an invalid combination cannot reach the pipeline.

use std::fmt;
use std::path::PathBuf;

use crate::input::{ColumnSpec, InputFile};

/// Output rows per part file before it is committed (and becomes a resume point).
pub const DEFAULT_PART_ROWS: u64 = 1_000_000;

/// A secret value (API key, client secret). `Debug` prints `[redacted]` and there is no
/// `Display`, so it cannot reach a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret.
    pub fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The secret itself; call only where it is put on the wire or into a cipher.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

/// Parses a flag or environment value straight into a [`Secret`] (clap `value_parser`), so
/// that even the parsed arguments' `Debug` output never shows it.
///
/// # Errors
/// Never; the signature is clap's.
pub fn parse_secret(s: &str) -> Result<Secret<String>, std::convert::Infallible> {
    Ok(Secret::new(s.to_string()))
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What every job reads and where it writes.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Input files, in order.
    pub inputs: Vec<InputFile>,
    /// Column choices.
    pub columns: ColumnSpec,
    /// The output dataset directory.
    pub out_dir: PathBuf,
    /// Continue a previous run in `out_dir`.
    pub resume: bool,
    /// Output rows per part.
    pub part_rows: u64,
    /// No progress bar or log lines (errors are still reported).
    pub quiet: bool,
}

impl JobConfig {
    /// The `_job.json` description used to check `--resume`.
    pub fn describe(&self, command: &str, extra: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "command": command,
            "inputs": self.inputs.iter().map(|f| f.given.clone()).collect::<Vec<_>>(),
            "columns": {
                "email": self.columns.email,
                "phone": self.columns.phone,
                "email_hash": self.columns.email_hash,
                "phone_hash": self.columns.phone_hash,
                "keep": self.columns.keep,
            },
            "options": extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
    }
}
