//! Input fingerprints: size, modification time and a SHA-256 of the first and last MiB (the
//! whole file when it is no larger than that), recorded in `_job.json` so that `--resume`
//! never splices the committed rows of one version of an export onto the rest of another.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{InputError, InputFile};

/// Bytes hashed at each end of a file.
const SAMPLE_BYTES: u64 = 1 << 20;

/// What identifies one version of an input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, RFC 3339 with nanoseconds (empty when the OS has none).
    pub modified: String,
    /// Hex SHA-256 of the first and last MiB (of the whole file up to 2 MiB); empty for an
    /// object larger than 1 MiB, whose ETag stands for its content.
    pub sample_sha256: String,
    /// The object's ETag (object stores only): a new upload under the same key changes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

impl Fingerprint {
    /// Reads the fingerprint of `f` (at most 2 MiB of it, by ranged reads for an object).
    ///
    /// # Errors
    /// The file cannot be opened or read.
    pub fn of(f: &InputFile) -> Result<Fingerprint, InputError> {
        let meta = f.location.meta()?;
        let size = meta.size;
        let mut sha = Sha256::new();
        // An object's ETag already changes with its content; only small objects are read
        // (one request), so that a prefix of many large parts starts without two extra
        // requests per part.
        if meta.etag.is_some() && size > SAMPLE_BYTES {
            return Ok(Fingerprint {
                size,
                modified: meta.modified,
                sample_sha256: String::new(),
                etag: meta.etag,
            });
        }
        sha.update(f.location.read_range(0, SAMPLE_BYTES.min(size))?);
        if size > SAMPLE_BYTES {
            let tail_start = size.saturating_sub(SAMPLE_BYTES).max(SAMPLE_BYTES);
            sha.update(f.location.read_range(tail_start, size)?);
        }
        let sample_sha256 = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Fingerprint {
            size,
            modified: meta.modified,
            sample_sha256,
            etag: meta.etag,
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
        } else if self.etag.is_some() && new.etag.is_some() && self.etag != new.etag {
            Some(format!(
                "it was replaced since (ETag {} then, {} now)",
                self.etag.as_deref().unwrap_or_default(),
                new.etag.as_deref().unwrap_or_default()
            ))
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
