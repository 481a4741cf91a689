//! euid-map: map emails and phone numbers to raw EUIDs through the EUID identity-map API, in
//! bulk, without losing a row.
//!
//! # Pipeline
//!
//! ```text
//! input (CSV/TSV/Parquet) → normalize + SHA-256 (rayon) → dedupe → batch (≤ 5,000, < 1 MiB)
//!   → client (encrypted envelope, ≤ 20 in flight, governor rate limit, retries) → output (Parquet dataset)
//! ```
//!
//! Beside it, [`operator`] is a local EUID operator emulator that speaks the real wire
//! protocol, so tests, benchmarks and demos never need the real service.
//!
//! # Where to look
//! - [`normalize`]: the operator's normalization and hashing rules (one place).
//! - [`input`]: readers that yield chunks with row numbers.
//! - [`client::envelope`]: the AES-256-GCM request/response envelope.
//! - [`client`]: the identity-map client: batching limits, concurrency, retries.
//! - [`mapper`]: dedupe + batching + fan-out of answers back to rows.
//! - [`output`]: the dataset directory (parts, manifest, `_SUCCESS`).
//! - [`pipeline`]: how the stages are wired and how big each queue is.
//! - [`operator`]: the emulator.

pub mod client;
pub mod config;
pub mod error;
pub mod input;
pub mod interrupt;
pub mod mapper;
pub mod normalize;
pub mod operator;
pub mod output;
pub mod pipeline;
pub mod progress;
pub mod protocol;
pub mod record;
pub mod refresh;

pub use error::Error;
