//! Where a file is: a local path or an object-store URL ([`Location`]), how URLs are parsed
//! and shown, and the registry of object stores they resolve to.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as ObjPath;
use object_store::ObjectStore;

#[cfg(feature = "cloud")]
use super::cloud;
use super::error::*;

/// An object in a store: the store's client and the object's key.
#[derive(Clone)]
pub struct ObjectLocation {
    pub(super) store: Arc<dyn ObjectStore>,
    /// `scheme://bucket` (or `abfss://container@account…`), for display.
    pub(super) base: String,
    pub(super) path: ObjPath,
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

    pub(super) fn err(&self, op: &'static str, e: object_store::Error) -> StorageError {
        match e {
            object_store::Error::NotFound { .. } => StorageError::NotFound { url: self.url() },
            e => StorageError::Request {
                url: self.url(),
                op,
                message: with_hint(scrub(&tidy(&error_chain(&e)))),
            },
        }
    }

    pub(super) fn child(&self, name: &str) -> ObjectLocation {
        self.sibling(self.path.clone().join(name))
    }

    /// Another object of the same store.
    pub(super) fn sibling(&self, path: ObjPath) -> ObjectLocation {
        ObjectLocation {
            store: Arc::clone(&self.store),
            base: self.base.clone(),
            path,
        }
    }
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
pub(super) const S3_SCHEMES: [&str; 2] = ["s3", "s3a"];

pub(super) const GCS_SCHEMES: [&str; 1] = ["gs"];

pub(super) const AZURE_SCHEMES: [&str; 5] = ["az", "abfs", "abfss", "adl", "azure"];

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
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Cloud {
    S3,
    Gcs,
    Azure,
}

/// The store of a bucket or container, built once per process.
pub(super) fn store_for(
    cloud: Cloud,
    base: &str,
    shown: &str,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
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
pub(super) fn build_store(
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
pub(super) fn build_store(
    _: Cloud,
    _: &str,
    shown: &str,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    Err(StorageError::NotBuilt {
        url: shown.to_string(),
    })
}
