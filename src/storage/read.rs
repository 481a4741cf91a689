//! Streaming an object over GET as a `std::io::Read`: a task on the storage runtime pulls
//! the body into a small bounded channel (memory stays at a few MiB whatever the object's
//! size), and a connection dropped mid-body is resumed with a ranged GET from the last byte
//! received, pinned to the object's ETag so that a replaced object is never spliced.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::{GetOptions, GetRange, ObjectStore};

use super::bridge;
use super::{ObjectLocation, StorageError};

/// Body pieces queued between the download task and the reader (each up to the store
/// client's chunk size, typically 8–64 KiB): a few MiB at most.
const QUEUED_PIECES: usize = 8;
/// Times a broken body is resumed before the read fails.
const RESUMES: u32 = 5;

/// A streamed object.
pub(super) struct ObjectReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ObjectReader {
    fn drop(&mut self) {
        // Stops the download when the reader is dropped early (a header read, an error).
        self.task.abort();
    }
}

impl ObjectReader {
    /// Starts the download.
    pub(super) fn open(o: ObjectLocation) -> Result<ObjectReader, StorageError> {
        let (store, path) = (Arc::clone(&o.store), o.path.clone());
        let first =
            bridge::block(async move { store.get_opts(&path, GetOptions::default()).await })
                .map_err(|e| o.err("GET", e))?;
        let size = first.meta.size;
        let etag = first.meta.e_tag.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUED_PIECES);
        let url = o.url();
        let task = bridge::spawn(async move {
            let mut offset = 0u64;
            let mut stream = first.into_stream();
            let mut resumes = 0;
            loop {
                match stream.next().await {
                    Some(Ok(b)) => {
                        offset += b.len() as u64;
                        if tx.send(Ok(b)).await.is_err() {
                            return;
                        }
                    }
                    None if offset >= size => return,
                    failure => {
                        let why = match failure {
                            Some(Err(e)) => super::scrub(&super::error_chain(&e)),
                            _ => format!("the body ended at byte {offset} of {size}"),
                        };
                        if resumes >= RESUMES {
                            let _ = tx.send(Err(why)).await;
                            return;
                        }
                        resumes += 1;
                        tracing::warn!(object = %o.url(), offset, "download interrupted ({why}); resuming");
                        tokio::time::sleep(std::time::Duration::from_millis(200 << resumes)).await;
                        let opts = GetOptions {
                            range: Some(GetRange::Offset(offset)),
                            if_match: etag.clone(),
                            ..Default::default()
                        };
                        match o.store.get_opts(&o.path, opts).await {
                            Ok(r) => stream = r.into_stream(),
                            Err(e) => {
                                let _ = tx.send(Err(super::scrub(&super::error_chain(&e)))).await;
                                return;
                            }
                        }
                    }
                }
            }
        });
        Ok(ObjectReader {
            rx,
            current: Bytes::new(),
            url,
            task,
        })
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match bridge::recv(&mut self.rx) {
                Some(Ok(b)) => self.current = b,
                Some(Err(why)) => {
                    return Err(std::io::Error::other(format!(
                        "{}: GET failed: {why}",
                        self.url
                    )))
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}
