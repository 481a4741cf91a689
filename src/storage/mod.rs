//! Storage: where inputs are read from and datasets are written to. A [`Location`] is a local
//! path or an object-store URL (`s3://`, `gs://`, `az://`, `abfss://`, `file://`); every
//! stage that touches files goes through it, so the commit protocol is the same on both:
//!
//! ```text
//! part      local: .part-N.parquet.tmp, fsync, rename      object: single PUT, or multipart
//!                                                          upload completed (aborted on error)
//! metadata  local: temp file, fsync, rename                object: single PUT (atomic)
//! lock      local: flock on .euid-map.lock                 object: create-if-absent + lease
//! ```
//!
//! The object-store clients are async (`object_store`); the reader and writer stages are
//! threads, so calls go through a small runtime of their own (`storage::bridge`). Credentials come
//! from each cloud's standard chain (`storage::cloud`) and never appear in errors: messages are
//! scrubbed of query strings and of the values of the credential variables.

mod bridge;
#[cfg(feature = "cloud")]
mod cloud;
mod list;
pub mod mode;
mod parquet;
mod read;
mod write;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

pub(crate) use bridge::block;
pub use list::{check_output_outside, expand_inputs, INPUT_EXTENSIONS};
pub use parquet::{Batches, ParquetFile, ParquetMessage};
pub use write::{PartSink, PendingCommit, PART_BYTES, UPLOADS_IN_FLIGHT};

/// Errors of the storage layer. Messages never carry credentials.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL cannot be used.
    #[error("{url}: {why}")]
    BadUrl {
        /// The URL as given (without query string or user info).
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The binary was built without the cloud backends.
    #[error("{url}: this euid-map was built without object-store support (cargo feature `cloud`)")]
    NotBuilt {
        /// The URL as given.
        url: String,
    },
    /// The store's credentials or configuration are unusable.
    #[error("{url}: {why}")]
    Config {
        /// The URL.
        url: String,
        /// What is wrong (never a secret).
        why: String,
    },
    /// No such object or file.
    #[error("{url}: not found")]
    NotFound {
        /// The object or file.
        url: String,
    },
    /// The store cannot do what was asked (e.g. create-if-absent writes turned off).
    #[error("{url}: the store does not support {what}")]
    Unsupported {
        /// The object.
        url: String,
        /// The operation.
        what: &'static str,
    },
    /// An object that does not exist names a prefix with files under it.
    #[error("{url}: no such object, but it is a prefix with input files under it: end it with / to read them all ({url}/)")]
    PrefixWithoutSlash {
        /// The URL as given.
        url: String,
    },
    /// A prefix, directory or glob matched no input file.
    #[error("{url}: no input file (.csv, .tsv, .csv.gz, .tsv.gz, .parquet) matches")]
    NoInputs {
        /// The prefix, directory or glob as given.
        url: String,
    },
    /// The output directory lies inside an input directory, prefix or glob: its own parts
    /// would be read as input by a resumed or later run.
    #[error("-o {output} is inside the input {input}: its own parts would be read back as input on --resume or by the next run. Write the dataset outside the export's folder")]
    OutputInsideInput {
        /// The output as given.
        output: String,
        /// The input directory, prefix or glob.
        input: String,
    },
    /// A store request failed (after the client's retries).
    #[error("{url}: {op} failed: {message}")]
    Request {
        /// The object or prefix.
        url: String,
        /// What was attempted (`GET`, `PUT`, `LIST`…).
        op: &'static str,
        /// The store's message, scrubbed.
        message: String,
    },
    /// A local file operation failed.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl StorageError {
    /// The I/O error kind behind a local failure, or what a store failure amounts to.
    pub fn is_not_found(&self) -> bool {
        match self {
            StorageError::NotFound { .. } => true,
            StorageError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

/// Environment variables whose values are credentials: any of them found in a message is
/// replaced before the message is shown.
const SECRET_VARS: [&str; 10] = [
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_TOKEN",
    "AZURE_CLIENT_SECRET",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
];

/// Removes what could be a credential from a store's message: query strings of URLs (SAS
/// tokens, presigned signatures) and the values of the credential variables.
pub(crate) fn scrub(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ')' || c == '>')
            .unwrap_or(tail.len());
        let url = &tail[..end];
        out.push_str(url.split(['?', '#']).next().unwrap_or(url));
        rest = &tail[end..];
    }
    out.push_str(rest);
    for var in SECRET_VARS {
        if let Ok(v) = std::env::var(var) {
            if v.len() >= 8 {
                out = out.replace(&v, "[redacted]");
            }
        }
    }
    out
}

/// An object in a store: the store's client and the object's key.
#[derive(Clone)]
pub struct ObjectLocation {
    store: Arc<dyn ObjectStore>,
    /// `scheme://bucket` (or `abfss://container@account…`), for display.
    base: String,
    path: ObjPath,
}

impl fmt::Debug for ObjectLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectLocation({})", self.url())
    }
}

impl ObjectLocation {
    /// The object's URL.
    pub fn url(&self) -> String {
        format!("{}/{}", self.base, self.path)
    }

    fn err(&self, op: &'static str, e: object_store::Error) -> StorageError {
        match e {
            object_store::Error::NotFound { .. } => StorageError::NotFound { url: self.url() },
            e => StorageError::Request {
                url: self.url(),
                op,
                message: with_hint(scrub(&tidy(&error_chain(&e)))),
            },
        }
    }

    fn child(&self, name: &str) -> ObjectLocation {
        self.sibling(self.path.clone().join(name))
    }

    /// Another object of the same store.
    fn sibling(&self, path: ObjPath) -> ObjectLocation {
        ObjectLocation {
            store: Arc::clone(&self.store),
            base: self.base.clone(),
            path,
        }
    }
}

/// Adds what to do to the store errors whose own words do not say it.
pub(crate) fn with_hint(message: String) -> String {
    let hint = if message.contains("URL scheme is not allowed") {
        Some("the endpoint is http://: set AWS_ALLOW_HTTP=true (for a local S3 such as moto or MinIO)")
    } else if message.contains("169.254.169.254")
        || message.contains("resolve_deny")
        || message.contains("instance metadata")
        || message.contains("metadata endpoint")
        || message.contains("/latest/api/token")
        || message.contains("/latest/meta-data")
    {
        Some("no AWS credentials found (tried: the environment, the AWS_PROFILE profile, web identity, the ECS task role, instance metadata); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE")
    } else {
        None
    };
    match hint {
        Some(h) => format!("{message} ({h})"),
        None => message,
    }
}

/// Shortens a store's XML error body to its code and message.
fn tidy(message: &str) -> String {
    let Some(start) = message.find("<?xml").or_else(|| message.find("<Error>")) else {
        return message.to_string();
    };
    let tag = |t: &str| {
        let open = format!("<{t}>");
        let from = message[start..].find(&open)? + start + open.len();
        let to = message[from..].find('<')? + from;
        Some(message[from..to].trim().to_string())
    };
    let head = message[..start].trim_end().trim_end_matches(':');
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{head}: {c}: {}", m.lines().next().unwrap_or_default()),
        (Some(c), None) => format!("{head}: {c}"),
        _ => head.to_string(),
    }
}

/// An error and its sources, `: `-separated, each said once.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        source = s.source();
    }
    text
}

/// A file or object, or a directory or prefix holding a dataset.
#[derive(Clone, Debug)]
pub enum Location {
    /// A local path.
    Local(PathBuf),
    /// An object (or prefix) in an object store.
    Object(ObjectLocation),
}

/// What the store says about a file or object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Size in bytes.
    pub size: u64,
    /// Last modification, RFC 3339 with nanoseconds (empty when unknown).
    pub modified: String,
    /// The object's ETag (object stores only).
    pub etag: Option<String>,
}

/// Object-store URL schemes, by cloud.
const S3_SCHEMES: [&str; 2] = ["s3", "s3a"];
const GCS_SCHEMES: [&str; 1] = ["gs"];
const AZURE_SCHEMES: [&str; 5] = ["az", "abfs", "abfss", "adl", "azure"];

/// Whether `s` is an object-store URL (rather than a local path or `file://` URL).
pub fn is_object_url(s: &str) -> bool {
    s.split_once("://").is_some_and(|(scheme, _)| {
        let scheme = scheme.to_ascii_lowercase();
        S3_SCHEMES
            .iter()
            .chain(&GCS_SCHEMES)
            .chain(&AZURE_SCHEMES)
            .any(|s| *s == scheme)
    })
}

impl Location {
    /// Parses a local path, a `file://` URL or an object-store URL. Object stores are
    /// built once per bucket or container, from the cloud's standard credential chain.
    ///
    /// # Errors
    /// An unknown scheme, a malformed URL, or a store that cannot be configured.
    pub fn parse(s: &str) -> Result<Location, StorageError> {
        let Some((scheme, _)) = s.split_once("://") else {
            return Ok(Location::Local(PathBuf::from(s)));
        };
        let shown = without_secrets(s);
        let bad = |why: &str| StorageError::BadUrl {
            url: shown.clone(),
            why: why.to_string(),
        };
        let url = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a query string or fragment is not allowed (credentials come from the environment, never from the URL)"));
        }
        if url.password().is_some() {
            return Err(bad("a password in the URL is not allowed"));
        }
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "file" {
            let p = url
                .to_file_path()
                .map_err(|()| bad("not a local absolute path"))?;
            return Ok(Location::Local(p));
        }
        let cloud = if S3_SCHEMES.contains(&scheme.as_str()) {
            Cloud::S3
        } else if GCS_SCHEMES.contains(&scheme.as_str()) {
            Cloud::Gcs
        } else if AZURE_SCHEMES.contains(&scheme.as_str()) {
            Cloud::Azure
        } else {
            return Err(bad(
                "unknown scheme; use a local path, file://, s3://, gs://, az:// or abfss://",
            ));
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no bucket or container: write scheme://BUCKET/path"))?;
        if !url.username().is_empty() && cloud != Cloud::Azure {
            return Err(bad("user info is not allowed in the URL"));
        }
        let base = if url.username().is_empty() {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{}@{host}", url.username())
        };
        let path = ObjPath::from_url_path(url.path()).map_err(|e| bad(&e.to_string()))?;
        let store = store_for(cloud, &base, &shown)?;
        Ok(Location::Object(ObjectLocation { store, base, path }))
    }

    /// The path or URL, for messages and the `source` column.
    pub fn url(&self) -> String {
        match self {
            Location::Local(p) => p.display().to_string(),
            Location::Object(o) => o.url(),
        }
    }

    /// The local path, if local.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Location::Local(p) => Some(p),
            Location::Object(_) => None,
        }
    }

    /// The file or object `name` inside this directory or prefix.
    pub fn join(&self, name: &str) -> Location {
        match self {
            Location::Local(p) => Location::Local(p.join(name)),
            Location::Object(o) => Location::Object(o.child(name)),
        }
    }

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
                let tmp = temp_name(p);
                let tmp_loc = Location::Local(tmp.clone());
                mode::create_file(&tmp)
                    .and_then(|mut f| {
                        std::io::Write::write_all(&mut f, &bytes)?;
                        f.sync_all()
                    })
                    .map_err(tmp_loc.io())?;
                std::fs::rename(&tmp, p).map_err(self.io())?;
                sync_parent(p)
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

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

/// The hidden temporary name a local file is written under before its rename:
/// `dir/.NAME.tmp`.
fn temp_name(p: &Path) -> PathBuf {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    p.with_file_name(format!(".{name}.tmp"))
}

/// `s` without its query string, fragment and password, for messages.
fn without_secrets(s: &str) -> String {
    let s = s.split(['?', '#']).next().unwrap_or(s);
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            format!("{scheme}://***@{host}{}", &rest[authority_end..])
        }
        _ => s.to_string(),
    }
}

fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Makes a rename in `p`'s directory durable.
fn sync_parent(p: &Path) -> Result<(), StorageError> {
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StorageError::Io {
            path: dir.display().to_string(),
            source,
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Cloud {
    S3,
    Gcs,
    Azure,
}

/// The store of a bucket or container, built once per process.
fn store_for(cloud: Cloud, base: &str, shown: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static STORES: Mutex<Option<HashMap<String, Arc<dyn ObjectStore>>>> = Mutex::new(None);
    let mut stores = STORES.lock().unwrap_or_else(|e| e.into_inner());
    let stores = stores.get_or_insert_with(HashMap::new);
    if let Some(s) = stores.get(base) {
        return Ok(Arc::clone(s));
    }
    let store = build_store(cloud, base, shown)?;
    stores.insert(base.to_string(), Arc::clone(&store));
    Ok(store)
}

#[cfg(feature = "cloud")]
fn build_store(
    cloud: Cloud,
    base: &str,
    shown: &str,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    match cloud {
        Cloud::S3 => cloud::s3(base, shown),
        Cloud::Gcs => cloud::gcs(base, shown),
        Cloud::Azure => cloud::azure(base, shown),
    }
}

#[cfg(not(feature = "cloud"))]
fn build_store(_: Cloud, _: &str, shown: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
    Err(StorageError::NotBuilt {
        url: shown.to_string(),
    })
}

#[cfg(test)]
mod tests {
    /// Issue #24.5: store errors whose words do not say what to do get a hint.
    #[test]
    fn store_errors_say_what_to_do() {
        let h = super::with_hint("HEAD failed: builder error: URL scheme is not allowed".into());
        assert!(h.contains("AWS_ALLOW_HTTP=true"), "{h}");
        let h = super::with_hint("PUT http://127.0.0.1:9/latest/api/token: refused".into());
        assert!(h.contains("no AWS credentials found (tried:"), "{h}");
        assert_eq!(super::with_hint("other".into()), "other");
    }

    use super::*;

    #[test]
    fn local_paths_and_file_urls_are_local() {
        assert!(
            matches!(Location::parse("out/dir").expect("path"), Location::Local(p) if p == Path::new("out/dir"))
        );
        assert!(
            matches!(Location::parse("file:///tmp/x.csv").expect("url"), Location::Local(p) if p == Path::new("/tmp/x.csv"))
        );
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_a_query() {
        let e = Location::parse("s3://bucket/key?X-Amz-Signature=SECRETSIG").expect_err("query");
        assert!(!e.to_string().contains("SECRETSIG"), "{e}");
        let e = Location::parse("ftp://host/x").expect_err("scheme");
        assert!(e.to_string().contains("unknown scheme"), "{e}");
        let e = Location::parse("s3://key:secret@bucket/x").expect_err("password");
        assert!(!e.to_string().contains("secret@"), "{e}");
    }

    #[test]
    fn object_urls_are_recognised() {
        for u in [
            "s3://b/k",
            "S3A://b/k",
            "gs://b/k",
            "az://c/k",
            "abfss://c@a.dfs.core.windows.net/k",
        ] {
            assert!(is_object_url(u), "{u}");
        }
        for u in ["file:///x", "/tmp/x", "x.csv", "https://example.com/x"] {
            assert!(!is_object_url(u), "{u}");
        }
    }

    #[test]
    fn store_xml_errors_are_shortened_to_code_and_message() {
        let m = "Error performing list request: Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><RequestId>x</RequestId></Error>";
        assert_eq!(
            tidy(m),
            "Error performing list request: Server returned non-2xx status code: 404 Not Found: NoSuchBucket: The specified bucket does not exist"
        );
    }

    #[test]
    fn scrub_removes_query_strings() {
        let m = "error sending request for url (https://acct.blob.core.windows.net/c/k?sv=2024&sig=abc%2Fdef): timed out";
        let s = scrub(m);
        assert!(!s.contains("sig="), "{s}");
        assert!(s.contains("https://acct.blob.core.windows.net/c/k"), "{s}");
        assert!(s.ends_with("timed out"), "{s}");
    }
}
