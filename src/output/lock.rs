//! The exclusive lock on an output directory: one run at a time writes a dataset.
//! An OS file lock (`flock`) on `OUT_DIR/.euid-map.lock`, released by the kernel when the
//! process ends however it ends (crash, `kill -9`), so a stale lock never blocks a rerun.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use super::{io_err, OutputError};

/// Name of the lock file inside the output directory (a dot file: engines skip it).
pub const LOCK_FILE: &str = ".euid-map.lock";

/// Held for the whole run; dropping it (or the process ending) releases the lock.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Who holds a lock: what the holder wrote into the lock file.
fn holder_text(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.take(4096).read_to_string(&mut text);
    let text = text.trim().replace('\n', ", ");
    if text.is_empty() {
        "another process (it has not written its details yet)".to_string()
    } else {
        text
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown host".to_string())
}

impl DirLock {
    /// Creates `dir` if needed and takes its lock without waiting.
    ///
    /// # Errors
    /// [`OutputError::Busy`] naming the holder (pid, host, start time) when another run
    /// holds it; an I/O error otherwise.
    pub fn acquire(dir: &Path, command: &str) -> Result<DirLock, OutputError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(OutputError::Busy {
                    path: dir.display().to_string(),
                    holder: holder_text(&mut file),
                })
            }
            Err(TryLockError::Error(e)) => return Err(io_err(&path)(e)),
        }
        let me = format!(
            "pid {} on {}, euid-map {command} started {}\n",
            std::process::id(),
            host_name(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(me.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(io_err(&path))?;
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #9.2: a second run into a busy directory fails at once, naming the holder.
    #[test]
    fn a_second_lock_fails_naming_the_holder_and_is_free_after_release() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let first = DirLock::acquire(tmp.path(), "map").expect("free");
        let err = DirLock::acquire(tmp.path(), "refresh").expect_err("busy");
        let shown = err.to_string();
        assert!(
            shown.contains(&format!("pid {}", std::process::id())) && shown.contains("map"),
            "{shown}"
        );
        drop(first);
        DirLock::acquire(tmp.path(), "map").expect("free again once released");
    }
}
