//! Input fingerprints: size, modification time and a SHA-256 of the first and last MiB (the
//! whole file when it is no larger than that), recorded in `_job.json` so that `--resume`
//! never splices the committed rows of one version of an export onto the rest of another.

use std::io::{Read, Seek, SeekFrom};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{open, InputError, InputFile};

/// Bytes hashed at each end of a file.
const SAMPLE_BYTES: u64 = 1 << 20;

/// What identifies one version of an input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, RFC 3339 with nanoseconds (empty when the OS has none).
    pub modified: String,
    /// Hex SHA-256 of the first and last MiB (of the whole file up to 2 MiB).
    pub sample_sha256: String,
}

impl Fingerprint {
    /// Reads the fingerprint of `f` (at most 2 MiB of it).
    ///
    /// # Errors
    /// The file cannot be opened or read.
    pub fn of(f: &InputFile) -> Result<Fingerprint, InputError> {
        let err = |e: std::io::Error| InputError::Read {
            path: f.given.clone(),
            row: 0,
            message: e.to_string(),
        };
        let mut file = open(f)?;
        let meta = file.metadata().map_err(err)?;
        let size = meta.len();
        let modified = meta
            .modified()
            .ok()
            .map(|t| {
                chrono::DateTime::<chrono::Utc>::from(t)
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
            })
            .unwrap_or_default();
        let mut sha = Sha256::new();
        let mut buf = Vec::new();
        (&mut file)
            .take(SAMPLE_BYTES)
            .read_to_end(&mut buf)
            .map_err(err)?;
        sha.update(&buf);
        if size > SAMPLE_BYTES {
            let tail_start = size.saturating_sub(SAMPLE_BYTES).max(SAMPLE_BYTES);
            file.seek(SeekFrom::Start(tail_start)).map_err(err)?;
            buf.clear();
            file.take(SAMPLE_BYTES).read_to_end(&mut buf).map_err(err)?;
            sha.update(&buf);
        }
        let sample_sha256 = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Fingerprint {
            size,
            modified,
            sample_sha256,
        })
    }

    /// How `new` differs from this recorded fingerprint, in words; `None` if it does not.
    pub fn differs(&self, new: &Fingerprint) -> Option<String> {
        if self.size != new.size {
            Some(format!(
                "its size changed from {} to {} bytes",
                self.size, new.size
            ))
        } else if self.sample_sha256 != new.sample_sha256 {
            Some("its content changed".to_string())
        } else if self.modified != new.modified {
            Some(format!(
                "it was modified since ({} then, {} now)",
                self.modified, new.modified
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #9.3: a changed input is told apart from the recorded one.
    #[test]
    fn a_changed_file_has_another_fingerprint() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("in.csv");
        let mut data = vec![b'a'; 3 << 20];
        std::fs::write(&p, &data).expect("write");
        let f = InputFile::new(p.to_str().expect("utf-8 path"), None);
        let a = Fingerprint::of(&f).expect("reads");
        assert_eq!(a.differs(&Fingerprint::of(&f).expect("reads")), None);
        let last = data.len() - 1;
        data[last] = b'b'; // same size, last MiB changed
        std::fs::write(&p, &data).expect("write");
        let b = Fingerprint::of(&f).expect("reads");
        assert!(a.differs(&b).is_some_and(|w| w.contains("content")));
        data.push(b'\n');
        std::fs::write(&p, &data).expect("write");
        let c = Fingerprint::of(&f).expect("reads");
        assert!(a.differs(&c).is_some_and(|w| w.contains("size")));
    }
}
