//! Reading and writing a [`Location`], local or object store: every stage's I/O, with the
//! same commit protocol on both (a local file is written under a temporary name, synced and
//! renamed; an object is one PUT or a completed multipart upload).

use std::io::Read;

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::*;

impl Location {
    fn io(&self) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
        move |source| match source.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound { url: self.url() },
            _ => StorageError::Io {
                path: self.url(),
                source,
            },
        }
    }

    /// Size, modification time and ETag.
    ///
    /// # Errors
    /// Not found, or the request failed.
    pub fn meta(&self) -> Result<Meta, StorageError> {
        match self {
            Location::Local(p) => {
                let m = std::fs::metadata(p).map_err(self.io())?;
                if m.is_dir() {
                    return Err(StorageError::Io {
                        path: self.url(),
                        source: std::io::Error::other("is a directory, not a file"),
                    });
                }
                Ok(Meta {
                    size: m.len(),
                    modified: m.modified().ok().map(rfc3339).unwrap_or_default(),
                    etag: None,
                })
            }
            Location::Object(o) => {
                let (store, path) = (Arc::clone(&o.store), o.path.clone());
                let m =
                    block(async move { store.head(&path).await }).map_err(|e| o.err("HEAD", e))?;
                Ok(Meta {
                    size: m.size,
                    modified: m
                        .last_modified
                        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                    etag: m.e_tag,
                })
            }
        }
    }

    /// Whether the file or object exists.
    ///
    /// # Errors
    /// The request failed for another reason than absence.
    pub fn exists(&self) -> Result<bool, StorageError> {
        match self {
            Location::Local(p) => Ok(p.exists()),
            Location::Object(_) => match self.meta() {
                Ok(_) => Ok(true),
                Err(e) if e.is_not_found() => Ok(false),
                Err(e) => Err(e),
            },
        }
    }

    /// The whole content (for small files: JSON metadata).
    ///
    /// # Errors
    /// Not found, or reading failed.
    pub fn read_all(&self) -> Result<Vec<u8>, StorageError> {
        match self {
            Location::Local(p) => std::fs::read(p).map_err(self.io()),
            Location::Object(o) => {
                let (store, path) = (Arc::clone(&o.store), o.path.clone());
                block(async move { store.get(&path).await?.bytes().await })
                    .map(|b| b.to_vec())
                    .map_err(|e| o.err("GET", e))
            }
        }
    }

    /// Bytes `start..end` (clamped to the size).
    ///
    /// # Errors
    /// Not found, or reading failed.
    pub fn read_range(&self, start: u64, end: u64) -> Result<Vec<u8>, StorageError> {
        if end <= start {
            return Ok(Vec::new());
        }
        match self {
            Location::Local(p) => {
                use std::io::{Seek, SeekFrom};
                let mut f = std::fs::File::open(p).map_err(self.io())?;
                f.seek(SeekFrom::Start(start)).map_err(self.io())?;
                let mut buf = Vec::new();
                f.take(end - start)
                    .read_to_end(&mut buf)
                    .map_err(self.io())?;
                Ok(buf)
            }
            Location::Object(o) => {
                let (store, path) = (Arc::clone(&o.store), o.path.clone());
                block(async move { store.get_range(&path, start..end).await })
                    .map(|b| b.to_vec())
                    .map_err(|e| o.err("GET", e))
            }
        }
    }

    /// Writes the whole content atomically: readers see the old content or the new one,
    /// never a mix. Local: a temporary file, fsync, rename, fsync of the directory.
    ///
    /// # Errors
    /// Writing failed.
    pub fn write_all(&self, bytes: Vec<u8>) -> Result<(), StorageError> {
        match self {
            Location::Local(p) => {
                let tmp = super::atomic::temp_name(p);
                write_atomic(p, tmp.clone(), &bytes, Perms::Output).map_err(|e| match e.path {
                    // The rename: named by the destination; the directory's sync: by it.
                    ref at if at == p => self.io()(e.source),
                    ref at if *at == tmp => Location::Local(tmp.clone()).io()(e.source),
                    at => StorageError::Io {
                        path: at.display().to_string(),
                        source: e.source,
                    },
                })
            }
            Location::Object(o) => {
                let (store, path) = (Arc::clone(&o.store), o.path.clone());
                block(async move { store.put(&path, PutPayload::from(bytes)).await })
                    .map(|_| ())
                    .map_err(|e| o.err("PUT", e))
            }
        }
    }

    /// Writes `bytes` only if nothing exists under this name; `Ok(false)` if something does.
    /// Used for the lock object (S3, GCS and Azure all honour create-if-absent).
    ///
    /// # Errors
    /// The request failed, or the store does not support create-if-absent.
    pub fn create_new(&self, bytes: Vec<u8>) -> Result<Option<String>, StorageError> {
        match self {
            Location::Local(p) => {
                use std::io::Write;
                match mode::options().write(true).create_new(true).open(p) {
                    Ok(mut f) => {
                        f.write_all(&bytes).map_err(self.io())?;
                        Ok(Some(String::new()))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
                    Err(e) => Err(self.io()(e)),
                }
            }
            Location::Object(o) => {
                let (store, path) = (Arc::clone(&o.store), o.path.clone());
                let opts = PutOptions::from(PutMode::Create);
                match block(
                    async move { store.put_opts(&path, PutPayload::from(bytes), opts).await },
                ) {
                    Ok(r) => Ok(Some(r.e_tag.unwrap_or_default())),
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(None),
                    Err(object_store::Error::NotImplemented { .. }) => {
                        Err(StorageError::Unsupported {
                            url: o.url(),
                            what: "create-if-absent writes",
                        })
                    }
                    Err(e) => Err(o.err("PUT (create if absent)", e)),
                }
            }
        }
    }

    /// Replaces the object only if its ETag is still `etag`; `Ok(None)` if it changed.
    /// Returns the new ETag. Local files are simply overwritten.
    ///
    /// # Errors
    /// The request failed.
    pub fn replace_if(&self, etag: &str, bytes: Vec<u8>) -> Result<Option<String>, StorageError> {
        match self {
            Location::Local(p) => {
                std::fs::write(p, bytes).map_err(self.io())?;
                Ok(Some(String::new()))
            }
            Location::Object(o) => {
                let (store, path) = (Arc::clone(&o.store), o.path.clone());
                let opts = PutOptions::from(PutMode::Update(object_store::UpdateVersion {
                    e_tag: Some(etag.to_string()),
                    version: None,
                }));
                match block(
                    async move { store.put_opts(&path, PutPayload::from(bytes), opts).await },
                ) {
                    Ok(r) => Ok(Some(r.e_tag.unwrap_or_default())),
                    Err(
                        object_store::Error::Precondition { .. }
                        | object_store::Error::NotFound { .. },
                    ) => Ok(None),
                    Err(e) => Err(o.err("PUT (if match)", e)),
                }
            }
        }
    }

    /// Deletes the file or object; absent is fine.
    ///
    /// # Errors
    /// The request failed.
    pub fn delete(&self) -> Result<(), StorageError> {
        match self {
            Location::Local(p) => match std::fs::remove_file(p) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(self.io()(e)),
            },
            Location::Object(o) => {
                let (store, path) = (Arc::clone(&o.store), o.path.clone());
                match block(async move { store.delete(&path).await }) {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(o.err("DELETE", e)),
                }
            }
        }
    }

    /// Creates the directory (local); a prefix needs no creating.
    ///
    /// # Errors
    /// Creating failed.
    pub fn create_dir_all(&self) -> Result<(), StorageError> {
        match self {
            Location::Local(p) => mode::create_dir_all(p).map_err(self.io()),
            Location::Object(_) => Ok(()),
        }
    }

    /// Names of the entries directly inside this directory or prefix (files and
    /// sub-directories), unsorted; empty when it does not exist.
    ///
    /// # Errors
    /// Listing failed.
    pub fn list_names(&self) -> Result<Vec<String>, StorageError> {
        match self {
            Location::Local(p) => {
                let entries = match std::fs::read_dir(p) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(self.io()(e)),
                };
                let mut names = Vec::new();
                for entry in entries {
                    let entry = entry.map_err(self.io())?;
                    names.push(entry.file_name().to_string_lossy().to_string());
                }
                Ok(names)
            }
            Location::Object(o) => {
                let (store, path) = (Arc::clone(&o.store), o.path.clone());
                let listed = block(async move { store.list_with_delimiter(Some(&path)).await })
                    .map_err(|e| o.err("LIST", e))?;
                Ok(listed
                    .objects
                    .iter()
                    .map(|m| &m.location)
                    .chain(&listed.common_prefixes)
                    .filter_map(|p| p.filename().map(str::to_string))
                    .collect())
            }
        }
    }

    /// Opens the file or object for sequential reading (objects stream over GET, resuming
    /// after a dropped connection).
    ///
    /// # Errors
    /// Not found, or the first request failed.
    pub fn open_read(&self) -> Result<Box<dyn Read + Send>, StorageError> {
        match self {
            Location::Local(p) => Ok(Box::new(std::fs::File::open(p).map_err(self.io())?)),
            Location::Object(o) => Ok(Box::new(read::ObjectReader::open(o.clone())?)),
        }
    }
}

/// The hidden temporary name a local file is written under before its rename:
/// `dir/.NAME.tmp`.
pub(super) fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
