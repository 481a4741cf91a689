//! Scratch folders: where a run's spill files live, private, and removed however it ends.

use std::path::{Path, PathBuf};

use super::{fnv1a, io};
use crate::error::Error;

/// Where a run that writes `out` keeps its scratch folder: `tmp_dir` when given, else beside a
/// local output (`OUT_DIR/LOCAL_NAME`, the same disk) or in the system's temporary directory
/// for an object-store output. Outside the output the folder is named after the output's
/// canonical location and this process (`euid-map-TAG-DIGEST-PID`): two runs never share
/// one (the output's lock lets one run at a time write an output, and runs of other outputs
/// have other digests), and the next run on the same output clears what a killed one left
/// ([`Scratch::create`]), hashed identities included.
pub(crate) fn scratch_dir(
    out: &crate::storage::Location,
    tmp_dir: Option<&Path>,
    local_name: &str,
    tag: &str,
) -> PathBuf {
    match (tmp_dir, out.local_path()) {
        (None, Some(p)) => p.join(local_name),
        (base, local) => {
            let base = base.map_or_else(std::env::temp_dir, Path::to_path_buf);
            // The output as it is, not as it was typed: `out` from two working directories
            // is two outputs, and so is one path on two machines sharing --tmp-dir (each
            // holds only its own local lock). An object-store output's lock is the store's.
            let canonical = match local {
                Some(p) => {
                    let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
                    let p = std::fs::canonicalize(&p).unwrap_or(p);
                    format!("{}:{}", crate::output::host_name(), p.to_string_lossy())
                }
                None => out.url(),
            };
            let h = fnv1a(canonical.as_bytes());
            base.join(format!("euid-map-{tag}-{h:016x}-{}", std::process::id()))
        }
    }
}

/// Scratch folders in a shared temporary directory older than this are removed by any run
/// that creates one there: what killed runs of outputs never resumed left behind.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Whether `name` is a scratch folder's (`euid-map-TAG-DIGEST-PID`: a lower-case tag, 16
/// hex digits, a process id), and nothing else that happens to start with `euid-map-`.
fn is_scratch_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("euid-map-") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('-').collect();
    matches!(parts.as_slice(), [tag, digest, pid]
        if !tag.is_empty()
            && tag.bytes().all(|b| b.is_ascii_lowercase())
            && digest.len() == 16
            && digest.bytes().all(|b| b.is_ascii_hexdigit())
            && !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes, beside `dir` (named `euid-map-TAG-DIGEST-PID`), the folders an earlier run of the
/// same output left (same `euid-map-TAG-DIGEST-`: that run is over, since this one holds the
/// output's lock), and any `euid-map-*` folder untouched for [`ABANDONED_AFTER`].
fn clear_leftovers(dir: &Path) {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name().and_then(|n| n.to_str()))
    else {
        return;
    };
    if !is_scratch_name(name) {
        return;
    }
    let Some((same_output, _pid)) = name.rsplit_once('-') else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let other = e.file_name();
        let Some(other) = other.to_str() else {
            continue;
        };
        if !is_scratch_name(other) || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let ours = other.starts_with(&format!("{same_output}-"));
        let abandoned = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > ABANDONED_AFTER);
        if ours || abandoned {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A scratch folder (it holds hashed identities): private (0700), and removed when this
/// guard drops, on every exit path, success, error or panic. One left by a killed run is
/// removed by the next run on the same output, or after a week by any run.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    /// Creates `dir` afresh (removing what an interrupted run left).
    ///
    /// # Errors
    /// The folder cannot be created.
    pub(crate) fn create(dir: PathBuf) -> Result<Scratch, Error> {
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::remove_dir_all(&dir);
        clear_leftovers(&dir);
        if let Some(parent) = dir.parent() {
            crate::storage::mode::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io(&dir))?;
        Ok(Scratch(dir))
    }

    /// The folder.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::Location;

    /// Issue #33.7: an output typed relative or absolute is one output; another output is
    /// another folder; the run's own process is in the name.
    #[test]
    fn scratch_names_follow_the_canonical_output_and_the_run() {
        let base = std::path::Path::new("/scratch");
        let rel = Location::Local("out/night".into());
        let abs = Location::Local(std::env::current_dir().expect("cwd").join("out/night"));
        let other = Location::Local("out/other".into());
        let name = |l: &Location| super::scratch_dir(l, Some(base), ".x", "dedupe");
        assert_eq!(name(&rel), name(&abs));
        assert_ne!(name(&rel), name(&other));
        let n = name(&rel);
        let n = n.file_name().and_then(|n| n.to_str()).expect("a name");
        assert!(n.starts_with("euid-map-dedupe-"), "{n}");
        assert!(n.ends_with(&format!("-{}", std::process::id())), "{n}");
    }

    #[test]
    fn a_new_scratch_folder_clears_an_earlier_runs_of_the_same_output() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let earlier = tmp.path().join("euid-map-dedupe-00000000000000ab-1");
        let unrelated = tmp.path().join("euid-map-dedupe-00000000000000cd-2");
        let not_ours = tmp.path().join("euid-map-0.1.0");
        for d in [&earlier, &unrelated, &not_ours] {
            std::fs::create_dir(d).expect("mkdir");
        }
        assert!(super::is_scratch_name(
            "euid-map-refresh-0123456789abcdef-42"
        ));
        assert!(!super::is_scratch_name("euid-map-0.1.0"));
        assert!(!super::is_scratch_name("euid-map-dedupe-xyz-1"));
        let dir = tmp.path().join("euid-map-dedupe-00000000000000ab-99");
        let s = super::Scratch::create(dir.clone()).expect("created");
        assert!(!earlier.exists(), "the same output's leftover is removed");
        assert!(unrelated.exists(), "another output's (recent) folder stays");
        assert!(not_ours.exists(), "a folder not named as ours stays");
        drop(s);
        assert!(!dir.exists());
    }
}
