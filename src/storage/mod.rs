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

mod atomic;
mod bridge;
#[cfg(feature = "cloud")]
mod cloud;
mod error;
mod io;
mod list;
mod location;
pub mod mode;
mod parquet;
mod read;
mod write;

use std::sync::Arc;

use object_store::ObjectStore;

pub(crate) use atomic::{unique_temp_name, write_atomic, Perms};
pub(crate) use bridge::block;
pub use error::*;
pub use list::{check_output_outside, expand_inputs, INPUT_EXTENSIONS};
pub use location::*;
pub use parquet::{Batches, ParquetFile, ParquetMessage};
pub use write::{PartSink, PendingCommit, PART_BYTES, UPLOADS_IN_FLIGHT};

#[cfg(test)]
mod tests {
    use std::path::Path;

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
