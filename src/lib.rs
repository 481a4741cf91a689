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
//! In pipeline order:
//! - [`input`]: readers (CSV/TSV/gzip, Parquet) that yield [`input::Chunk`]s with row numbers;
//!   input fingerprints for `--resume`.
//! - [`normalize`]: the operator's normalization and hashing rules (one place).
//! - [`mapper`]: dedupe, batching and the reorder window, as a struct ([`mapper::Mapper`]).
//! - [`client`]: one encrypted request per batch: retries, rate limit, in-flight window.
//! - [`output`]: the dataset directory: parts, the typed manifest, the lock, `_SUCCESS`.
//!
//! Beside them:
//! - [`protocol`]: what the client and the emulator share (envelope, wire formats, limits);
//!   they never import each other.
//! - [`operator`]: the emulator.
//! - [`refresh`]: the nightly job (state-only mode, export-join mode).
//! - [`record`]: the types that flow between stages, [`record::IdentityChunk`] above all.
//! - [`config`]: validated configuration; [`interrupt`]: clean stops on SIGINT/SIGTERM;
//!   [`shell`]: the one runner of users' credentials commands; [`text`]: the one reader of
//!   string cells of every Arrow flavour.
//! - [`pipeline`]: how the stages are wired, how big each queue is, `run_hash`/`run_map`.
//!
//! The library never parses flags or prints: the `euid-map` binary (`src/main.rs`, `src/cli/`)
//! turns flags into [`config`] types and calls [`pipeline::run_hash`], [`pipeline::run_map`],
//! [`refresh::run_refresh`] or [`operator::serve`].

pub mod client;
pub mod config;
pub mod credentials;
pub mod error;
pub mod input;
pub mod interrupt;
pub mod mapper;
pub mod metrics;
pub mod normalize;
pub mod operator;
pub mod output;
pub mod pipeline;
pub mod progress;
pub mod prom;
pub mod protocol;
pub mod record;
pub mod refresh;
pub mod secret;
pub mod shell;
pub mod storage;
pub mod text;
pub mod tls;

pub use error::Error;
pub use operator::{serve, Config as OperatorConfig};
pub use pipeline::{run_hash, run_map};
pub use refresh::run_refresh;
