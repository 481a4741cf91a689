//! Running a user's shell command for secrets (`--credentials-command`, an AWS profile's
//! `credential_process`): both pipes read at once (a command that writes much to stderr
//! before stdout cannot block), output capped, the wait bounded. One runner for both.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Bytes kept of a command's stdout and of its stderr: a credentials answer is small, and a
/// noisy command must not fill memory.
pub const OUTPUT_CAP: u64 = 64 * 1024;

/// Default bound on a credentials command (`--credentials-timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a finished command gave.
#[derive(Debug)]
pub struct ShellOutput {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its stdout, at most the cap (a secret: never log it).
    pub stdout: crate::secret::Secret<Vec<u8>>,
    /// Its stderr, at most the cap.
    pub stderr: Vec<u8>,
}

/// Why a command gave no output.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// `sh` could not be started.
    #[error("cannot start `{program}`: {source}")]
    Start {
        /// The command's first word.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The command did not finish in time; it was killed.
    #[error("`{program}` did not finish within {seconds} s and was stopped (raise --credentials-timeout if it is slow)")]
    TimedOut {
        /// The command's first word (never its arguments, which may hold secrets).
        program: String,
        /// The bound, seconds.
        seconds: u64,
    },
}

/// The program a command runs, the only part of it shown in messages: its first word
/// after any leading `NAME=value` assignments (which may hold a token), as a base name.
pub fn program(command: &str) -> String {
    let word = command
        .split_whitespace()
        .find(|w| {
            !w.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        })
        .unwrap_or_default();
    word.rsplit('/').next().unwrap_or(word).to_string()
}

/// Reads at most `cap` bytes of `r`, then drains the rest so the writer never blocks.
fn capped(mut r: impl Read, cap: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = (&mut r).take(cap).read_to_end(&mut out);
    let _ = std::io::copy(&mut r, &mut std::io::sink());
    out
}

/// Runs `command` with `sh -c` (no stdin), reading stdout and stderr concurrently, each
/// capped at `cap` bytes. A command still running after `timeout` is killed, with its
/// process group.
///
/// # Errors
/// The command cannot start or does not finish in time.
pub fn run(command: &str, timeout: Duration, cap: u64) -> Result<ShellOutput, ShellError> {
    use std::os::unix::process::CommandExt;
    let program = program(command);
    let mut child = Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|source| ShellError::Start {
            program: program.clone(),
            source,
        })?;
    let deadline = std::time::Instant::now() + timeout;
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let (out_tx, out_rx) = mpsc::channel();
    let (err_tx, err_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = out_tx.send(out.map(|o| capped(o, cap)).unwrap_or_default());
    });
    std::thread::spawn(move || {
        let _ = err_tx.send(err.map(|e| capped(e, cap)).unwrap_or_default());
    });
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let timed_out = || {
        // The whole group: `sh` and whatever it started (a CLI waiting on a prompt, a
        // background helper still holding the pipes).
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{pid}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        ShellError::TimedOut {
            program: program.clone(),
            seconds: timeout.as_secs(),
        }
    };
    let left = || deadline.saturating_duration_since(std::time::Instant::now());
    let status = match rx.recv_timeout(left()) {
        Ok(Ok(status)) => status,
        Ok(Err(source)) => {
            return Err(ShellError::Start {
                program: program.clone(),
                source,
            })
        }
        Err(_) => return Err(timed_out()),
    };
    // The pipes close when every process holding them ends: within the same deadline.
    let stdout = out_rx.recv_timeout(left()).map_err(|_| timed_out())?;
    let stderr = err_rx.recv_timeout(left()).map_err(|_| timed_out())?;
    Ok(ShellOutput {
        status,
        stdout: crate::secret::Secret::new(stdout),
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #26.11: 300 kB on stderr before stdout does not block the command.
    #[test]
    fn a_noisy_stderr_does_not_block_stdout() {
        let out = run(
            "head -c 300000 /dev/zero | tr '\\0' x >&2; echo '{\"ok\":1}'",
            Duration::from_secs(30),
            64 * 1024,
        )
        .expect("finishes");
        assert!(out.status.success());
        assert_eq!(out.stdout.expose().as_slice(), b"{\"ok\":1}\n");
        assert_eq!(out.stderr.len(), 64 * 1024, "capped");
    }

    #[test]
    fn only_the_program_is_shown() {
        assert_eq!(program("VAULT_TOKEN=s.xyz vault kv get x"), "vault");
        assert_eq!(program("/usr/local/bin/creds --secret"), "creds");
        assert_eq!(program("a=b c=d sh -c x"), "sh");
    }

    /// A command that exits while a background child keeps the pipes open is stopped at
    /// the deadline too.
    #[test]
    fn a_background_child_holding_the_pipes_times_out() {
        let err =
            run("sleep 600 & echo '{}'", Duration::from_millis(300), 1024).expect_err("times out");
        assert!(matches!(err, ShellError::TimedOut { .. }), "{err}");
    }

    /// Issue #26.11: a command that never answers is stopped, naming only its first word.
    #[test]
    fn a_command_that_never_answers_times_out() {
        let err = run("sleep 600 # --secret-arg", Duration::from_millis(300), 1024)
            .expect_err("times out");
        let msg = err.to_string();
        assert!(matches!(err, ShellError::TimedOut { .. }), "{msg}");
        assert!(
            msg.contains("`sleep`") && !msg.contains("secret-arg"),
            "{msg}"
        );
    }
}
