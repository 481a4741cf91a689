//! Writing a part so that it becomes visible under its final name only when complete.
//!
//! - Local: `.NAME.tmp` beside it, fsync, rename, fsync of the directory; removed on drop.
//! - Object store: up to [`PART_BYTES`] buffered, then a multipart upload with at most
//!   [`UPLOADS_IN_FLIGHT`] parts uploading while the next fills; completed on
//!   [`PartSink::commit`], aborted if the sink is dropped first (an error, an interrupt). A
//!   part smaller than one buffer is a single PUT. Either way the object appears whole or not
//!   at all, so a `kill -9` mid-upload leaves no visible half part (only an incomplete upload,
//!   which stores expire with their usual lifecycle rule).

use std::io::Write;
use std::sync::Arc;

use object_store::{MultipartUpload, ObjectStoreExt, PutPayload};

use super::atomic::{temp_name, AtomicError, AtomicFile, Perms};
use super::bridge;
use super::{Location, ObjectLocation, StorageError};

fn io_error(e: AtomicError) -> StorageError {
    StorageError::Io {
        path: e.path.display().to_string(),
        source: e.source,
    }
}

/// Bytes buffered per uploaded part (S3's minimum part is 5 MiB).
pub const PART_BYTES: usize = 5 << 20;
/// Parts uploading at once while the next one fills.
pub const UPLOADS_IN_FLIGHT: usize = 2;

/// Where a part's bytes go until it is committed.
pub struct PartSink {
    inner: Inner,
    dest: String,
}

enum Inner {
    Local(AtomicFile),
    Object(ObjectSink),
    Done,
}

struct ObjectSink {
    o: ObjectLocation,
    buf: Vec<u8>,
    upload: Option<Box<dyn MultipartUpload>>,
    uploading: std::collections::VecDeque<tokio::task::JoinHandle<object_store::Result<()>>>,
}

impl PartSink {
    /// Starts a part that will be published as `loc`.
    ///
    /// # Errors
    /// The temporary file cannot be created.
    pub fn create(loc: &Location) -> Result<PartSink, StorageError> {
        let dest = loc.url();
        let inner = match loc {
            Location::Local(p) => {
                Inner::Local(AtomicFile::create(p, temp_name(p), Perms::Output).map_err(io_error)?)
            }
            Location::Object(o) => Inner::Object(ObjectSink {
                o: o.clone(),
                buf: Vec::with_capacity(PART_BYTES),
                upload: None,
                uploading: Default::default(),
            }),
        };
        Ok(PartSink { inner, dest })
    }

    /// The temporary file of a local part (for tests and messages).
    pub fn temp_path(&self) -> Option<&std::path::Path> {
        match &self.inner {
            Inner::Local(f) => Some(f.temp_path()),
            _ => None,
        }
    }

    /// The part's final name.
    pub fn dest(&self) -> &str {
        &self.dest
    }

    /// Publishes the part under its final name.
    ///
    /// # Errors
    /// Flushing, syncing, renaming or completing the upload failed (the part is then not
    /// visible; a multipart upload is aborted).
    pub fn commit(self) -> Result<(), StorageError> {
        self.commit_in_background()?.wait()
    }

    /// Starts publishing the part: a local part is published before this returns; an
    /// object's last pieces and the upload's completion run in the background (so the
    /// writer goes on with the next part) until [`PendingCommit::wait`].
    ///
    /// # Errors
    /// Flushing, syncing or renaming a local part failed.
    pub fn commit_in_background(mut self) -> Result<PendingCommit, StorageError> {
        let dest = self.dest.clone();
        match std::mem::replace(&mut self.inner, Inner::Done) {
            Inner::Local(f) => {
                f.commit().map_err(io_error)?;
                Ok(PendingCommit { dest, task: None })
            }
            Inner::Object(s) => Ok(PendingCommit {
                dest,
                task: Some(bridge::spawn(s.complete())),
            }),
            Inner::Done => Ok(PendingCommit { dest, task: None }),
        }
    }
}

/// A part being published. Dropping it waits too: a part that was handed over for
/// publication is never left half-way by this process.
pub struct PendingCommit {
    dest: String,
    task: Option<tokio::task::JoinHandle<Result<(), StorageError>>>,
}

impl PendingCommit {
    /// The part's final name.
    pub fn dest(&self) -> &str {
        &self.dest
    }

    /// Waits until the part is visible under its final name.
    ///
    /// # Errors
    /// Uploading its last pieces or completing the upload failed (it was then aborted and
    /// is not visible).
    pub fn wait(mut self) -> Result<(), StorageError> {
        match self.task.take() {
            Some(t) => bridge::join(t),
            None => Ok(()),
        }
    }
}

impl Drop for PendingCommit {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            if let Err(e) = bridge::join(t) {
                tracing::warn!("{e}");
            }
        }
    }
}

impl Drop for PartSink {
    /// A part dropped before [`PartSink::commit`] leaves nothing visible.
    fn drop(&mut self) {
        match std::mem::replace(&mut self.inner, Inner::Done) {
            Inner::Local(f) => drop(f), // removes the temporary file
            Inner::Object(mut s) => s.abort(),
            Inner::Done => {}
        }
    }
}

impl Write for PartSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match &mut self.inner {
            Inner::Local(f) => f.write(data),
            Inner::Object(s) => {
                s.buf.extend_from_slice(data);
                if s.buf.len() >= PART_BYTES {
                    s.send_part().map_err(std::io::Error::other)?;
                }
                Ok(data.len())
            }
            Inner::Done => Err(std::io::Error::other("part already committed")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.inner {
            Inner::Local(f) => f.flush(),
            _ => Ok(()),
        }
    }
}

impl ObjectSink {
    /// Uploads the buffer as the next part, starting the multipart upload if needed, and
    /// waits while too many parts are uploading.
    fn send_part(&mut self) -> Result<(), StorageError> {
        if self.upload.is_none() {
            let (store, path) = (Arc::clone(&self.o.store), self.o.path.clone());
            let up = bridge::block(async move { store.put_multipart(&path).await })
                .map_err(|e| self.o.err("multipart upload start", e))?;
            self.upload = Some(up);
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(PART_BYTES));
        let fut = self
            .upload
            .as_mut()
            .expect("started above")
            .put_part(PutPayload::from(data));
        self.uploading.push_back(bridge::spawn(fut));
        while self.uploading.len() > UPLOADS_IN_FLIGHT {
            self.wait_oldest()?;
        }
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<(), StorageError> {
        if let Some(h) = self.uploading.pop_front() {
            bridge::join(h).map_err(|e| self.o.err("part upload", e))?;
        }
        Ok(())
    }

    /// Sends what is buffered, waits for every piece and completes the upload (or PUTs a
    /// part smaller than one piece); aborts the upload on failure.
    async fn complete(mut self) -> Result<(), StorageError> {
        let r = self.finish().await;
        if r.is_err() {
            for h in self.uploading.drain(..) {
                h.abort();
            }
            if let Some(mut up) = self.upload.take() {
                let _ = up.abort().await;
            }
        }
        r
    }

    async fn finish(&mut self) -> Result<(), StorageError> {
        let data = std::mem::take(&mut self.buf);
        let Some(up) = self.upload.as_mut() else {
            return self
                .o
                .store
                .put(&self.o.path, PutPayload::from(data))
                .await
                .map(|_| ())
                .map_err(|e| self.o.err("PUT", e));
        };
        if !data.is_empty() {
            self.uploading
                .push_back(tokio::spawn(up.put_part(PutPayload::from(data))));
        }
        while let Some(h) = self.uploading.pop_front() {
            h.await
                .map_err(|e| StorageError::Request {
                    url: self.o.url(),
                    op: "part upload",
                    message: e.to_string(),
                })?
                .map_err(|e| self.o.err("part upload", e))?;
        }
        let mut up = self.upload.take().expect("checked above");
        match up.complete().await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.upload = Some(up);
                Err(self.o.err("multipart upload completion", e))
            }
        }
    }

    fn abort(&mut self) {
        for h in self.uploading.drain(..) {
            h.abort();
        }
        if let Some(mut up) = self.upload.take() {
            let url = self.o.url();
            let r = bridge::block(async move { up.abort().await });
            if let Err(e) = r {
                tracing::warn!(object = %url, "could not abort the multipart upload: {}", super::scrub(&e.to_string()));
            }
        }
    }
}
