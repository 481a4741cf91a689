//! The exclusive lock on an output directory or prefix: one run at a time writes a dataset.
//!
//! - **Local**: an OS file lock (`flock`) on `OUT_DIR/.euid-map.lock`, released by the kernel
//!   when the process ends however it ends (crash, `kill -9`), so a stale lock never blocks a
//!   rerun.
//! - **Object store**: the lock object `PREFIX/.euid-map.lock`, created only if absent (S3,
//!   GCS and Azure conditional writes), holding the holder's pid, host and a lease renewed
//!   every [`RENEW_EVERY`]. No kernel releases an object, so a lock is stale when its lease
//!   has expired, or at once when its holder is a process of this host that no longer runs
//!   (the `kill -9` then `--resume` case). A stale lock is taken over by a conditional
//!   replace (If-Match on its ETag), so two runs cannot both take it; it is deleted when the
//!   run ends.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{io_err, OutputError};
use crate::storage::Location;

/// Name of the lock file inside the output directory (a dot file: engines skip it).
pub const LOCK_FILE: &str = ".euid-map.lock";
/// How long a lock object stays valid without renewal.
pub const LEASE: Duration = Duration::from_secs(120);
/// How often the holder renews its lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(30);

/// Held for the whole run; dropping it (or the process ending) releases the lock.
#[derive(Debug)]
pub struct DirLock {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Local(#[allow(dead_code)] File),
    Object(ObjectLock),
    /// A store without create-if-absent writes: nothing guards the prefix.
    None,
}

/// What the lock object holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LockRecord {
    pid: u32,
    host: String,
    command: String,
    started: String,
    /// Unix ms after which the lock is stale unless renewed.
    expires_ms: i64,
}

impl LockRecord {
    fn holder(&self) -> String {
        format!(
            "pid {} on {}, euid-map {} started {}",
            self.pid, self.host, self.command, self.started
        )
    }

    fn expires(&self) -> String {
        chrono::DateTime::from_timestamp_millis(self.expires_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    }

    fn renewed(&self) -> LockRecord {
        LockRecord {
            expires_ms: now_ms() + LEASE.as_millis() as i64,
            ..self.clone()
        }
    }

    fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("the lock record serializes")
    }

    /// Whether the holder is gone: its lease expired, or it is a process of this host that
    /// no longer runs.
    fn stale(&self) -> bool {
        self.expires_ms < now_ms()
            || (self.host == host_name()
                && self.pid != std::process::id()
                && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists())
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Debug)]
struct ObjectLock {
    loc: Location,
    stop: Arc<(Mutex<bool>, Condvar)>,
    lost: Arc<AtomicBool>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ObjectLock {
    fn drop(&mut self) {
        let (flag, cv) = &*self.stop;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(h) = self.renewer.take() {
            let _ = h.join();
        }
        if !self.lost.load(Ordering::SeqCst) {
            if let Err(e) = self.loc.delete() {
                tracing::warn!("could not remove the lock object: {e}");
            }
        }
    }
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

/// This machine's name (`/proc/sys/kernel/hostname`, `/etc/hostname`, `HOSTNAME`).
pub(crate) fn host_name() -> String {
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
    /// [`OutputError::Busy`] (or [`OutputError::BusyObject`]) naming the holder (pid, host,
    /// start time) when another run holds it; an I/O or store error otherwise.
    pub fn acquire(dir: &Location, command: &str) -> Result<DirLock, OutputError> {
        match dir {
            Location::Local(p) => Self::acquire_local(p, command),
            Location::Object(_) => Self::acquire_object(dir, command),
        }
    }

    /// Fails if this run's lock object was taken over (checked before `_SUCCESS`).
    ///
    /// # Errors
    /// [`OutputError::LockLost`].
    pub fn check(&self) -> Result<(), OutputError> {
        match &self.inner {
            Inner::Object(o) if o.lost.load(Ordering::SeqCst) => {
                let holder = o
                    .loc
                    .read_all()
                    .ok()
                    .and_then(|b| serde_json::from_slice::<LockRecord>(&b).ok())
                    .map_or_else(|| "unknown".to_string(), |r| r.holder());
                Err(OutputError::LockLost {
                    path: o.loc.url(),
                    holder,
                })
            }
            _ => Ok(()),
        }
    }

    fn acquire_local(dir: &std::path::Path, command: &str) -> Result<DirLock, OutputError> {
        crate::storage::mode::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(LOCK_FILE);
        let mut file = crate::storage::mode::options()
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
        Ok(DirLock {
            inner: Inner::Local(file),
        })
    }

    fn acquire_object(dir: &Location, command: &str) -> Result<DirLock, OutputError> {
        let loc = dir.join(LOCK_FILE);
        let me = LockRecord {
            pid: std::process::id(),
            host: host_name(),
            command: command.to_string(),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            expires_ms: 0,
        }
        .renewed();
        let created = match loc.create_new(me.bytes()) {
            Err(crate::storage::StorageError::Unsupported { .. }) => {
                tracing::warn!(
                    "{}: the store does not support create-if-absent writes (is AWS_CONDITIONAL_PUT=disabled?); no lock guards this prefix against a concurrent run",
                    dir.url()
                );
                return Ok(DirLock { inner: Inner::None });
            }
            r => r?,
        };
        let etag = match created {
            Some(etag) => etag,
            None => {
                let meta = loc.meta()?;
                let theirs: Option<LockRecord> = serde_json::from_slice(&loc.read_all()?).ok();
                let stale = theirs.as_ref().is_none_or(LockRecord::stale);
                let busy = || match &theirs {
                    Some(t) => OutputError::BusyObject {
                        path: dir.url(),
                        holder: t.holder(),
                        expires: t.expires(),
                    },
                    None => OutputError::BusyObject {
                        path: dir.url(),
                        holder: "an unreadable lock object".to_string(),
                        expires: "unknown".to_string(),
                    },
                };
                if !stale {
                    return Err(busy());
                }
                let Some(etag) = meta.etag.clone() else {
                    return Err(busy());
                };
                match loc.replace_if(&etag, me.bytes())? {
                    Some(etag) => {
                        if let Some(t) = &theirs {
                            tracing::warn!(
                                "took over the stale lock of {} (its process is gone or its lease expired)",
                                t.holder()
                            );
                        }
                        etag
                    }
                    None => return Err(busy()),
                }
            }
        };
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (loc, stop, lost) = (loc.clone(), Arc::clone(&stop), Arc::clone(&lost));
            std::thread::Builder::new()
                .name("lock-lease".into())
                .spawn(move || renew(&loc, me, etag, &stop, &lost))
                .map_err(|e| OutputError::Io {
                    path: dir.url(),
                    source: e,
                })?
        };
        Ok(DirLock {
            inner: Inner::Object(ObjectLock {
                loc,
                stop,
                lost,
                renewer: Some(renewer),
            }),
        })
    }
}

/// Renews the lease every [`RENEW_EVERY`] until stopped; a failed conditional replace means
/// another run took the lock over.
fn renew(
    loc: &Location,
    me: LockRecord,
    mut etag: String,
    stop: &(Mutex<bool>, Condvar),
    lost: &AtomicBool,
) {
    let (flag, cv) = stop;
    let mut stopped = flag.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let (guard, _) = cv
            .wait_timeout_while(stopped, RENEW_EVERY, |s| !*s)
            .unwrap_or_else(|e| e.into_inner());
        stopped = guard;
        if *stopped {
            return;
        }
        match loc.replace_if(&etag, me.renewed().bytes()) {
            Ok(Some(new)) => etag = new,
            Ok(None) => {
                tracing::error!(
                    "the lock object {} was taken over by another run",
                    loc.url()
                );
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // A transient store error: the lease has margin for the next attempt.
            Err(e) => tracing::warn!("could not renew the lock lease: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #9.2: a second run into a busy directory fails at once, naming the holder.
    #[test]
    fn a_second_lock_fails_naming_the_holder_and_is_free_after_release() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = Location::Local(tmp.path().to_path_buf());
        let first = DirLock::acquire(&dir, "map").expect("free");
        let err = DirLock::acquire(&dir, "refresh").expect_err("busy");
        let shown = err.to_string();
        assert!(
            shown.contains(&format!("pid {}", std::process::id())) && shown.contains("map"),
            "{shown}"
        );
        drop(first);
        DirLock::acquire(&dir, "map").expect("free again once released");
    }

    #[test]
    fn a_lock_record_is_stale_when_expired_or_its_local_process_is_gone() {
        let mine = LockRecord {
            pid: std::process::id(),
            host: host_name(),
            command: "map".into(),
            started: String::new(),
            expires_ms: 0,
        }
        .renewed();
        assert!(!mine.stale(), "a live, leased holder");
        let gone = LockRecord {
            pid: u32::MAX - 1,
            ..mine.clone()
        };
        assert!(gone.stale(), "a process of this host that does not run");
        let elsewhere = LockRecord {
            pid: u32::MAX - 1,
            host: "another-host".into(),
            ..mine.clone()
        };
        assert!(
            !elsewhere.stale(),
            "another host's process: only the lease decides"
        );
        let expired = LockRecord {
            expires_ms: now_ms() - 1,
            ..elsewhere
        };
        assert!(expired.stale());
    }
}
