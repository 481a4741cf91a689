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
//! - [`normalize`]: the operator's normalization and hashing rules (one place); the hasher
//!   stage (`pipeline/stages.rs`) turns a reader's chunk into a [`record::IdentityChunk`] with
//!   them, which holds only what later stages need.
//! - [`mapper`]: dedupe (`mapper/cache.rs`), batching and the reorder window
//!   (`mapper/window.rs`), the run loop that sends batches; `map --dedupe exact` spills the
//!   identities to disk first (`pipeline/exact.rs`, `spill.rs`) and sends each distinct one
//!   once.
//! - [`client`]: one encrypted request per batch: rate limit, in-flight window, retries.
//! - [`output`]: the dataset directory: the row codec (`output/rows.rs`), parts, the typed
//!   manifest, the lock, `_SUCCESS`.
//!
//! The three questions a new reader asks, each answered in one place:
//! - **where a row's status is decided**: [`record::RowStatus::decide`], from the identity and
//!   its answer, for every command (`output/rows.rs` calls it as it encodes the row; `refresh`
//!   first settles a due identity's answer, `refresh/plan.rs`: a failed remap keeps its last
//!   answer as `stale`, a swept one becomes `optout`);
//! - **where a request is retried**: `client/retry.rs`, the loop beside its policy
//!   ([`client::RetryPolicy`]);
//! - **where a part is committed**: [`output::DatasetWriter`]'s `commit` (through
//!   [`storage::PartSink`]: a local temporary file renamed, or a completed multipart
//!   upload); the run is published by the job skeleton, `pipeline/job.rs`.
//!
//! Beside them:
//! - [`pipeline`]: the job skeleton every command runs the same way (`pipeline/job.rs`: open,
//!   stages, publish), the stage threads and channels (`pipeline/stages.rs`), `run_hash` and
//!   `run_map`; [`pipeline::RunHandles`] (interrupt, metrics) travel beside the config.
//! - [`refresh`]: the nightly job (state-only mode, export-join mode), on the same skeleton.
//! - [`protocol`]: what the client and the emulator share (envelope, wire formats, limits);
//!   they never import each other.
//! - [`operator`]: the emulator.
//! - [`record`]: the types that flow between stages, [`record::IdentityChunk`] above all.
//! - [`config`]: validated configuration; [`secret`]: secrets that never print;
//!   [`interrupt`]: clean stops on SIGINT/SIGTERM; [`shell`]: the one runner of users'
//!   credentials commands; [`text`]: the one reader of string cells of every Arrow flavour;
//!   [`prom`]: the one Prometheus text writer; [`storage`]: local and object-store I/O;
//!   [`metrics`]: the run's Prometheus metrics and where they go; [`credentials`]: profiles
//!   and credentials commands; [`progress`]: the progress bar; [`tls`]: the TLS provider.
//!
//! No two top-level modules import each other (`scripts/module_cycles.py` checks it in CI);
//! [`error`] gathers every stage's error into the crate's [`Error`].
//!
//! The library never parses flags or prints: the `euid-map` binary (`src/main.rs`, `src/cli/`)
//! turns flags into [`config`] types and calls [`pipeline::run_hash`], [`pipeline::run_map`],
//! [`refresh::run_refresh`] or [`operator::serve`].

pub mod client;
pub mod columnar;
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
mod spill;
pub mod storage;
pub mod text;
pub mod tls;

pub use error::Error;
pub use operator::{serve, Config as OperatorConfig};
pub use pipeline::{run_hash, run_map};
pub use refresh::run_refresh;
