//! Input expansion: a directory or prefix ending in `/` reads every input file under it, a
//! glob (`*`, `?` in the last segments) reads every match; both in key order. Names starting
//! with `_` or `.` (`_SUCCESS`, `.crc` files, hidden temporaries) are skipped, as Spark and
//! the warehouses skip them.

use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::path::Path as ObjPath;

use super::bridge;
use super::{Location, ObjectLocation, StorageError};

/// File endings read from a prefix or directory.
pub const INPUT_EXTENSIONS: [&str; 7] = [
    ".csv", ".tsv", ".csv.gz", ".tsv.gz", ".parquet", ".pq", ".tab",
];

fn is_input_name(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    INPUT_EXTENSIONS.iter().any(|e| lower.ends_with(e))
}

fn hidden(segment: &str) -> bool {
    segment.starts_with('_') || segment.starts_with('.')
}

/// Whether `name` matches the glob `pat` (`*` any run of characters but `/`, `?` one).
fn glob_match(pat: &[u8], name: &[u8]) -> bool {
    match (pat.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob_match(&pat[1..], name)
                || (name.first().is_some_and(|&c| c != b'/') && glob_match(pat, &name[1..]))
        }
        (Some(b'?'), Some(&c)) => c != b'/' && glob_match(&pat[1..], &name[1..]),
        (Some(p), Some(c)) => p == c && glob_match(&pat[1..], &name[1..]),
        _ => false,
    }
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// Expands each input as given into the files to read, in order: plain files and objects
/// as they are, prefixes and directories (ending in `/`, or an existing local directory)
/// and globs into their matching input files in key order.
///
/// # Errors
/// A URL that cannot be used, a prefix or glob that matches nothing, a missing file.
pub fn expand_inputs(given: &[String]) -> Result<Vec<(String, Location)>, StorageError> {
    let mut out = Vec::new();
    for g in given {
        let is_dir_like = g.ends_with('/');
        if has_glob(g) {
            let matched = expand_glob(g)?;
            if matched.is_empty() {
                return Err(StorageError::NoInputs { url: g.clone() });
            }
            out.extend(matched);
            continue;
        }
        let loc = Location::parse(g)?;
        let local_dir = loc.local_path().is_some_and(|p| p.is_dir());
        if is_dir_like || local_dir {
            let files = list_inputs(&loc)?;
            if files.is_empty() {
                return Err(StorageError::NoInputs { url: g.clone() });
            }
            out.extend(files);
        } else {
            // A missing file or object fails here, before any output is touched. An object
            // prefix given without its `/` is said so.
            if let Err(e) = loc.meta() {
                if e.is_not_found() && matches!(loc, Location::Object(_)) {
                    let as_prefix = Location::parse(&format!("{g}/"))?;
                    if list_inputs(&as_prefix).is_ok_and(|f| !f.is_empty()) {
                        return Err(StorageError::PrefixWithoutSlash { url: g.clone() });
                    }
                }
                return Err(e);
            }
            out.push((g.clone(), loc));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (given, loc) in &out {
        if !seen.insert(loc.url()) {
            tracing::warn!(input = %given, "the same input is given twice: its rows are read (and written) twice");
        }
    }
    Ok(out)
}

/// Where an input argument reads from when it names many files: a directory or a prefix;
/// `None` for a single file or a glob (checked by matching instead).
fn input_root(g: &str) -> Option<String> {
    if has_glob(g) {
        return None;
    }
    let dir_like = g.ends_with('/')
        || Location::parse(g)
            .ok()
            .and_then(|l| l.local_path().map(|p| p.is_dir()))
            .unwrap_or(false);
    dir_like.then(|| g.trim_end_matches('/').to_string())
}

/// Refuses an output directory inside an input directory, prefix or glob folder.
///
/// # Errors
/// [`StorageError::OutputInsideInput`].
pub fn check_output_outside(given: &[String], output: &str) -> Result<(), StorageError> {
    let absolute = |s: &str| -> String {
        match Location::parse(s) {
            Ok(Location::Local(p)) => std::path::absolute(&p)
                .unwrap_or(p)
                .components()
                .collect::<std::path::PathBuf>()
                .display()
                .to_string(),
            Ok(l) => l.url(),
            Err(_) => s.to_string(),
        }
    };
    let out = absolute(output.trim_end_matches('/'));
    for g in given {
        let part = format!("{}/part-00000.parquet", output.trim_end_matches('/'));
        if has_glob(g) && glob_match(g.as_bytes(), part.as_bytes()) {
            return Err(StorageError::OutputInsideInput {
                output: output.to_string(),
                input: g.clone(),
            });
        }
        let Some(root) = input_root(g) else { continue };
        let root = absolute(if root.is_empty() { "." } else { &root });
        let root = root.trim_end_matches('/');
        if out == root || out.starts_with(&format!("{root}/")) {
            return Err(StorageError::OutputInsideInput {
                output: output.to_string(),
                input: g.clone(),
            });
        }
    }
    Ok(())
}

/// Every input file under a directory or prefix, recursively, in key order.
fn list_inputs(loc: &Location) -> Result<Vec<(String, Location)>, StorageError> {
    let mut found: Vec<(String, Location)> = list_files(loc)?
        .into_iter()
        .filter(|f| !f.rel.split('/').any(hidden) && is_input_name(&f.rel))
        .map(|f| (f.shown, f.loc))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// A file found under a directory or prefix.
struct Found {
    /// As shown and written to `source`: the path, or the object's URL.
    shown: String,
    /// Its path below the listed root, `/`-separated.
    rel: String,
    loc: Location,
}

/// Every file under a directory or prefix, recursively, unsorted; the callers filter.
fn list_files(loc: &Location) -> Result<Vec<Found>, StorageError> {
    match loc {
        Location::Local(root) => {
            let io = |d: &std::path::Path| {
                let path = d.display().to_string();
                move |source| StorageError::Io { path, source }
            };
            let mut files = Vec::new();
            let mut dirs = vec![root.clone()];
            while let Some(d) = dirs.pop() {
                for e in std::fs::read_dir(&d).map_err(io(&d))? {
                    let p = e.map_err(io(&d))?.path();
                    if p.is_dir() {
                        dirs.push(p);
                        continue;
                    }
                    let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
                    let shown = if root.as_os_str() == "." {
                        rel.clone()
                    } else {
                        p.display().to_string()
                    };
                    files.push(Found {
                        shown,
                        rel,
                        loc: Location::Local(p),
                    });
                }
            }
            Ok(files)
        }
        Location::Object(o) => Ok(list_objects(o, &o.path)?
            .into_iter()
            .map(|key| {
                let rel = key
                    .as_ref()
                    .strip_prefix(o.path.as_ref())
                    .unwrap_or(key.as_ref())
                    .trim_start_matches('/')
                    .to_string();
                let l = o.sibling(key);
                Found {
                    shown: l.url(),
                    rel,
                    loc: Location::Object(l),
                }
            })
            .collect()),
    }
}

fn list_objects(o: &ObjectLocation, prefix: &ObjPath) -> Result<Vec<ObjPath>, StorageError> {
    let (store, p) = (Arc::clone(&o.store), prefix.clone());
    let metas = bridge::block(async move {
        let prefix = if p.as_ref().is_empty() {
            None
        } else {
            Some(&p)
        };
        store.list(prefix).try_collect::<Vec<_>>().await
    })
    .map_err(|e| o.err("LIST", e))?;
    Ok(metas.into_iter().map(|m| m.location).collect())
}

/// Files matching a glob: the part before the first segment with a wildcard is listed, the
/// rest matched segment by segment.
fn expand_glob(g: &str) -> Result<Vec<(String, Location)>, StorageError> {
    let (root, pattern) = split_glob(g);
    let base = Location::parse(if root.is_empty() { "." } else { root })?;
    let mut matched: Vec<(String, Location)> = list_files(&base)?
        .into_iter()
        .filter(|f| {
            !f.rel.split('/').any(hidden) && glob_match(pattern.as_bytes(), f.rel.as_bytes())
        })
        .map(|f| (f.shown, f.loc))
        .collect();
    matched.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(matched)
}

/// Splits `s3://b/exports/2026-*/part-*.parquet` into the listed root `s3://b/exports/` and
/// the pattern `2026-*/part-*.parquet` matched against what follows it.
fn split_glob(g: &str) -> (&str, &str) {
    let first = g.find(['*', '?']).unwrap_or(g.len());
    let cut = g[..first].rfind('/').map_or(0, |i| i + 1);
    (&g[..cut], &g[cut..])
}

#[cfg(test)]
mod tests {
    /// Issue #26.7: an output inside an input directory or prefix, or one a glob matches, is
    /// refused; beside it is fine.
    #[test]
    fn an_output_inside_an_input_folder_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let exp = tmp.path().join("exports");
        std::fs::create_dir_all(&exp).expect("mkdir");
        let e = exp.display().to_string();
        let inside = format!("{e}/out");
        let beside = tmp.path().join("out").display().to_string();
        assert!(super::check_output_outside(std::slice::from_ref(&e), &inside).is_err());
        assert!(super::check_output_outside(&[format!("{e}/")], &inside).is_err());
        assert!(super::check_output_outside(std::slice::from_ref(&e), &beside).is_ok());
        assert!(super::check_output_outside(&[format!("{e}/*.csv")], &inside).is_ok());
        assert!(super::check_output_outside(&[format!("{e}/*/*.parquet")], &inside).is_err());
        assert!(
            super::check_output_outside(&["s3://b/exports/".into()], "s3://b/exports/out").is_err()
        );
        assert!(super::check_output_outside(&["s3://b/exports/".into()], "s3://b/euid").is_ok());
    }

    use super::*;

    #[test]
    fn glob_matches_within_segments() {
        assert!(glob_match(b"part-*.parquet", b"part-0001.parquet"));
        assert!(!glob_match(b"part-*.parquet", b"sub/part-0001.parquet"));
        assert!(glob_match(b"*/part-?.csv", b"a/part-1.csv"));
        assert!(!glob_match(b"part-?.csv", b"part-12.csv"));
    }

    #[test]
    fn split_glob_lists_the_part_before_the_wildcard() {
        assert_eq!(
            split_glob("s3://b/exports/part-*.parquet"),
            ("s3://b/exports/", "part-*.parquet")
        );
        assert_eq!(split_glob("*.csv"), ("", "*.csv"));
    }

    #[test]
    fn a_local_directory_reads_its_inputs_in_order_and_skips_markers() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for n in ["b.csv", "a.parquet", "_SUCCESS", ".x.csv", "notes.txt"] {
            std::fs::write(tmp.path().join(n), b"x").expect("write");
        }
        std::fs::create_dir(tmp.path().join("sub")).expect("mkdir");
        std::fs::write(tmp.path().join("sub/c.tsv.gz"), b"x").expect("write");
        let dir = format!("{}/", tmp.path().display());
        let got: Vec<String> = expand_inputs(std::slice::from_ref(&dir))
            .expect("expands")
            .into_iter()
            .map(|(s, _)| s.rsplit('/').next().unwrap_or_default().to_string())
            .collect();
        assert_eq!(got, vec!["a.parquet", "b.csv", "c.tsv.gz"]);
        let glob = format!("{}/*.csv", tmp.path().display());
        let got = expand_inputs(&[glob]).expect("expands");
        assert_eq!(got.len(), 1);
        let empty = tempfile::tempdir().expect("tempdir");
        let e = expand_inputs(&[format!("{}/", empty.path().display())]).expect_err("empty");
        assert!(matches!(e, StorageError::NoInputs { .. }), "{e}");
    }
}
