//! The local EUID operator emulator (`euid-map operator`): a wire-compatible stand-in for the
//! EUID operator's identity-map endpoints, so that tests, benchmarks, demos and the official
//! SDKs can run without the real service. It never produces real EUIDs.
//!
//! - `routes`: HTTP handling in the operator's check order, with its exact error bodies.
//! - `endpoints`: the identity map (v3, v2), buckets and opt-out handlers behind the envelope.
//! - [`model`]: synthetic salts, buckets, the simulated clock, rotation and opt-out.
//! - [`keys`]: API keys and client secrets.
//! - [`faults`]: rate limit, in-flight cap and random faults, deterministic from the seed.
//! - [`metrics`]: Prometheus counters.
//!
//! [`serve`] takes a bound listener and a shutdown future (mini-redis style), so tests run it
//! in-process on port 0; [`spawn_local`] does exactly that for `map --env local`.

/// Why the emulator's configuration is unusable (its own: the emulator imports nothing of
/// the client side but `protocol`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorConfigError {
    /// The keys file is unusable.
    #[error("{path}: {why}")]
    KeysFile {
        /// The file.
        path: String,
        /// What is wrong (never a secret).
        why: String,
    },
    /// `--faults` does not parse.
    #[error("--faults: {0}")]
    Faults(String),
    /// A client secret is unusable.
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
}

mod endpoints;
pub mod faults;
pub mod keys;
pub mod metrics;
pub mod model;
mod routes;
mod sealed;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use self::faults::{FaultPlan, Injector, TokenBucket};
use self::keys::Keys;
use self::metrics::Metrics;
use self::model::{Model, ModelConfig, RawIdFormat};
use crate::record::IdentityKind;

/// Default accepted clock skew between a request's timestamp and the wall clock (the docs'
/// 60 s; the real operator's code accepts just under 2 minutes).
pub const DEFAULT_TIMESTAMP_WINDOW: Duration = Duration::from_secs(60);

/// Pause after a failed `accept` before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Everything the emulator needs to start.
#[derive(Debug)]
pub struct Config {
    /// Accepted keys.
    pub keys: Keys,
    /// Seed for salts and fault draws.
    pub seed: u64,
    /// Salt buckets (2^20 like production).
    pub buckets: usize,
    /// Raw id layout.
    pub raw_id: RawIdFormat,
    /// Simulated start time, Unix ms.
    pub start_ms: i64,
    /// Opted-out identity hashes (base64).
    pub optout: HashSet<String>,
    /// A file of opted-out identity hashes (one base64 hash per line), re-read when it changes.
    pub optout_file: Option<std::path::PathBuf>,
    /// Accepted clock skew.
    pub timestamp_window: Duration,
    /// Whether `/ops/advance` is enabled.
    pub admin: bool,
    /// Requests per second before bare 429s.
    pub rate_limit: Option<u32>,
    /// `Retry-After` seconds on 429s.
    pub retry_after_s: Option<u32>,
    /// Concurrent requests before 429s.
    pub max_in_flight: Option<usize>,
    /// Random faults.
    pub faults: FaultPlan,
    /// A v3 input value that makes the whole request fail with 400 (tests the client's
    /// poison-item isolation).
    pub poison: Option<String>,
    /// Refuse every request after this many (401), as when credentials expire mid-run.
    pub expire_after: Option<u64>,
    /// How far the emulator's clock is off for the timestamp check, ms (tests of clock skew).
    pub clock_offset_ms: i64,
    /// Hold every encrypted request after this many until `POST /ops/release` (with
    /// `admin`): lets a test stop a run that is certainly mid-way.
    pub hold_after: Option<u64>,
}

impl Config {
    /// A demo-key emulator with production-like buckets and no faults.
    pub fn demo(seed: u64) -> Config {
        Config {
            keys: Keys::demo(),
            seed,
            buckets: model::PROD_BUCKETS,
            raw_id: RawIdFormat::V2,
            start_ms: chrono::Utc::now().timestamp_millis(),
            optout: HashSet::new(),
            optout_file: None,
            timestamp_window: DEFAULT_TIMESTAMP_WINDOW,
            admin: false,
            rate_limit: None,
            retry_after_s: None,
            max_in_flight: None,
            faults: FaultPlan::default(),
            poison: None,
            expire_after: None,
            hold_after: None,
            clock_offset_ms: 0,
        }
    }
}

/// Shared state of a running emulator.
pub(crate) struct State {
    keys: Keys,
    model: Model,
    metrics: Arc<Metrics>,
    faults: Injector,
    rate_limit: Option<TokenBucket>,
    retry_after_s: Option<u32>,
    max_in_flight: Option<usize>,
    in_flight: AtomicUsize,
    timestamp_window_ms: i64,
    clock_offset_ms: i64,
    admin: bool,
    poison: Option<String>,
    expire_after: Option<u64>,
    served: std::sync::atomic::AtomicU64,
    /// Requests after which to hold (`u64::MAX`: never).
    hold_after: std::sync::atomic::AtomicU64,
    arrived: std::sync::atomic::AtomicU64,
    released: tokio::sync::watch::Sender<bool>,
    started_ms: i64,
}

impl State {
    /// Raw ids (current and previous, both kinds) of every opted-out identity, with when it
    /// opted out (Unix ms: the admin route's time, else the emulator's start).
    fn optout_raw_ids(&self) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for h in self.model.optout_hashes() {
            let since = self.model.opted_out_since(&h).unwrap_or(self.started_ms);
            for kind in [IdentityKind::Email, IdentityKind::Phone] {
                out.extend(
                    self.model
                        .raw_ids_ignoring_optout(kind, &h)
                        .into_iter()
                        .map(|u| (u, since)),
                );
            }
        }
        out
    }
}

/// Serves until `shutdown` completes. Connections in progress are dropped at shutdown.
///
/// # Errors
/// Accepting connections failed.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let state = Arc::new(build_state(config));
    serve_state(listener, state, shutdown).await
}

fn build_state(config: Config) -> State {
    State {
        keys: config.keys,
        model: Model::new(ModelConfig {
            seed: config.seed,
            buckets: config.buckets,
            raw_id: config.raw_id,
            start_ms: config.start_ms,
            optout: config.optout,
            optout_file: config.optout_file,
        }),
        metrics: Arc::new(Metrics::default()),
        faults: Injector::new(config.faults, config.seed),
        rate_limit: config.rate_limit.map(TokenBucket::new),
        retry_after_s: config.retry_after_s,
        max_in_flight: config.max_in_flight,
        in_flight: AtomicUsize::new(0),
        timestamp_window_ms: config.timestamp_window.as_millis() as i64,
        clock_offset_ms: config.clock_offset_ms,
        admin: config.admin,
        poison: config.poison,
        expire_after: config.expire_after,
        served: std::sync::atomic::AtomicU64::new(0),
        hold_after: std::sync::atomic::AtomicU64::new(config.hold_after.unwrap_or(u64::MAX)),
        arrived: std::sync::atomic::AtomicU64::new(0),
        released: tokio::sync::watch::Sender::new(false),
        started_ms: chrono::Utc::now().timestamp_millis(),
    }
}

async fn serve_state(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, a connection reset before accept…: back
                        // off a little and keep serving the connections already open.
                        tracing::warn!(error = %e, "accept failed; retrying shortly");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                conns.spawn(async move {
                    let svc = service_fn(move |req| routes::handle(Arc::clone(&state), req));
                    let _ = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), svc).await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
    Ok(())
}

/// An emulator running in-process on a loopback port.
pub struct LocalOperator {
    /// Where it listens.
    pub addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl LocalOperator {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The emulator's metrics, as `/metrics` renders them.
    pub fn metrics_text(&self) -> String {
        self.metrics.render()
    }

    /// Identities received in map requests so far.
    pub fn identities_requested(&self) -> u64 {
        self.metrics.identities_requested()
    }

    /// Stops serving and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// Starts an emulator on `127.0.0.1:0` inside the current tokio runtime.
///
/// # Errors
/// Binding the loopback port failed.
pub async fn spawn_local(config: Config) -> std::io::Result<LocalOperator> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(build_state(config));
    let metrics = Arc::clone(&state.metrics);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_state(listener, state, async move {
        let _ = rx.await;
    }));
    Ok(LocalOperator {
        addr,
        metrics,
        stop: Some(tx),
        task: Some(task),
    })
}
