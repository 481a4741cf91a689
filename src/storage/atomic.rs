//! The one atomic local write: a file written under a temporary name beside its destination
//! and published by [`AtomicFile::commit`] (fsync, rename, fsync of the directory), so a
//! reader sees the old file or the new one, never half of one. Parts, manifests, `_SUCCESS`
//! and the metrics textfile all go through it. Dropped before `commit`, the temporary file
//! is removed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A failed step of an atomic write, and the file it failed on (the temporary file, the
/// destination for the rename, or the directory for its sync).
#[derive(Debug)]
pub(crate) struct AtomicError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Who may read the file.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Perms {
    /// The dataset's files: `--output-mode` (0600 unless told otherwise).
    Output,
    /// The process's umask: a file other users' tools read (node_exporter's textfile).
    Umask,
}

/// A local file being written atomically.
pub(crate) struct AtomicFile {
    file: Option<BufWriter<File>>,
    tmp: PathBuf,
    dest: PathBuf,
}

/// `dir/.NAME.tmp`: the temporary name of `p` when its directory is locked by the run.
pub(crate) fn temp_name(p: &Path) -> PathBuf {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    p.with_file_name(format!(".{name}.tmp"))
}

/// `dir/.NAME.PID.tmp`: a temporary name no other process uses (for a file outside a locked
/// directory, which two runs may write at once).
pub(crate) fn unique_temp_name(p: &Path) -> PathBuf {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    p.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

impl AtomicFile {
    /// Starts writing `dest` under the temporary name `tmp`.
    pub(crate) fn create(
        dest: &Path,
        tmp: PathBuf,
        perms: Perms,
    ) -> Result<AtomicFile, AtomicError> {
        let file = match perms {
            Perms::Output => super::mode::create_file(&tmp),
            Perms::Umask => File::create(&tmp),
        }
        .map_err(|source| AtomicError {
            path: tmp.clone(),
            source,
        })?;
        Ok(AtomicFile {
            file: Some(BufWriter::with_capacity(1 << 16, file)),
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    /// The temporary file.
    pub(crate) fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Publishes the file under its final name: flush, fsync, rename, fsync of the
    /// directory. If a step before the rename fails, the temporary file is removed.
    pub(crate) fn commit(mut self) -> Result<(), AtomicError> {
        let at = |path: &Path| {
            let path = path.to_path_buf();
            move |source| AtomicError { path, source }
        };
        let file = self.file.take().expect("committed once");
        let renamed = file
            .into_inner()
            .map_err(|e| AtomicError {
                path: self.tmp.clone(),
                source: e.into_error(),
            })
            .and_then(|f| f.sync_all().map_err(at(&self.tmp)))
            .and_then(|()| std::fs::rename(&self.tmp, &self.dest).map_err(at(&self.dest)));
        if renamed.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        renamed?;
        sync_parent(&self.dest)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.file.as_mut().expect("not committed").write(data)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().expect("not committed").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            drop(f);
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `dest` atomically, under the temporary name `tmp`.
pub(crate) fn write_atomic(
    dest: &Path,
    tmp: PathBuf,
    bytes: &[u8],
    perms: Perms,
) -> Result<(), AtomicError> {
    let mut f = AtomicFile::create(dest, tmp, perms)?;
    f.write_all(bytes).map_err(|source| AtomicError {
        path: f.tmp.clone(),
        source,
    })?;
    f.commit()
}

/// Makes a rename in `p`'s directory durable.
pub(crate) fn sync_parent(p: &Path) -> Result<(), AtomicError> {
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| AtomicError {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_appears_whole_on_commit_and_not_at_all_when_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("m.json");
        let mut f = AtomicFile::create(&dest, temp_name(&dest), Perms::Umask).expect("create");
        f.write_all(b"{}").expect("write");
        assert!(!dest.exists(), "not visible before commit");
        f.commit().expect("commit");
        assert_eq!(std::fs::read(&dest).expect("read"), b"{}");
        let other = dir.path().join("n.json");
        let f = AtomicFile::create(&other, unique_temp_name(&other), Perms::Umask).expect("create");
        let tmp = f.temp_path().to_path_buf();
        assert!(tmp.exists());
        drop(f);
        assert!(
            !tmp.exists() && !other.exists(),
            "nothing left when dropped"
        );
    }
}
