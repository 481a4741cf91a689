//! The identity-map client: one encrypted `POST /v3/identity/map` per batch, sent under the
//! shared rate limiter and the adaptive in-flight window, retried until it succeeds, the
//! retry budget is spent, or the error is final. A batch is never dropped: it ends as
//! answers or as `failed` outcomes for each identity.
//!
//! - [`crate::protocol`] (shared with the emulator): the envelope, the wire formats, limits.
//! - [`http`]: the POST and HTTP status classification.
//! - [`retry`]: what is retryable, and the backoff schedule.
//! - [`concurrency`]: the adaptive in-flight window (AIMD on round-trip time and backpressure).
//! - [`rate_limit`]: the governor limiter.

mod answer;
pub mod concurrency;
mod error;
pub mod http;
pub mod rate_limit;
pub mod retry;
mod stats;
mod v2;

use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::record::{IdentityHash, IdentityKind, MapOutcome};
use crate::secret::Secret;

use crate::protocol::{envelope, wire};
pub use crate::protocol::{MAX_BODY_BYTES, MAX_CONCURRENCY, MAX_ITEMS_PER_REQUEST};
pub use error::ClientError;
pub use retry::{RetryPolicy, DEFAULT_STALL};
pub use stats::{ClientReport, ClientStats, DurationHistogram, Latency, DURATION_BUCKETS};

/// How to reach the operator and how hard to push it.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL without a trailing slash, e.g. `https://prod.euid.eu`.
    pub base_url: String,
    /// API key (bearer token).
    pub api_key: Secret<String>,
    /// Decoded client secret.
    pub secret: Secret<[u8; 32]>,
    /// Most requests in flight (≤ [`MAX_CONCURRENCY`]).
    pub concurrency: usize,
    /// Optional request rate limit.
    pub rps: Option<NonZeroU32>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retry schedule.
    pub retry: RetryPolicy,
    /// Which identity-map API to call.
    pub api: Api,
}

/// The identity-map API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v3/identity/map` (current; gives `r`).
    V3,
    /// `/v2/identity/map` and `/v2/identity/buckets` (deprecated by public EUID on
    /// 30 September 2026; for private operators that still serve them).
    V2,
}

/// What [`Client::probe`] found.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Round-trip time of the request.
    pub rtt: Duration,
    /// The operator's clock minus ours (at the request's midpoint), milliseconds.
    pub skew_ms: i64,
    /// The answers, one per identity sent.
    pub answers: Vec<MapOutcome>,
}

/// The identity-map client. Cheap to share behind an `Arc`; all batches of a run use one.
///
/// ```no_run
/// # async fn demo() -> Result<(), euid_map::Error> {
/// use euid_map::client::{Api, Client, ClientConfig, RetryPolicy};
/// use euid_map::secret::Secret;
/// use euid_map::record::IdentityKind;
/// let client = Client::new(&ClientConfig {
///     base_url: "https://integ.euid.eu".into(),
///     api_key: Secret::new(std::env::var("EUID_API_KEY").unwrap_or_default()),
///     secret: euid_map::protocol::envelope::decode_secret(&std::env::var("EUID_CLIENT_SECRET").unwrap_or_default())?,
///     concurrency: 8,
///     rps: None,
///     timeout: std::time::Duration::from_secs(60),
///     retry: RetryPolicy::default(),
///     api: Api::V3,
/// })?;
/// let hash = euid_map::normalize::hash_email("user@example.com").expect("valid email");
/// let answers = client.map(&[(IdentityKind::Email, hash)]).await?;
/// println!("{answers:?}");
/// # Ok(())
/// # }
/// ```
pub struct Client {
    http: reqwest::Client,
    v3_url: String,
    v2_url: String,
    buckets_url: String,
    optout_url: String,
    api: Api,
    key: envelope::Key,
    limiter: Option<governor::DefaultDirectRateLimiter>,
    window: concurrency::Window,
    retry: RetryPolicy,
    /// Counters.
    pub stats: Arc<ClientStats>,
    jitter: Mutex<u64>,
    /// Whether any request of this client has succeeded (see [`ClientError::Unreachable`]).
    reached: std::sync::atomic::AtomicBool,
    /// `scheme://host:port` of the operator, for messages.
    endpoint: String,
    /// No request leaves before this instant: a `Retry-After` pauses the whole client, not
    /// only the request that got it (RFC 6585: wait before making a new request).
    paused_until: Mutex<Option<tokio::time::Instant>>,
    /// When the operator last sent an HTTP answer (any status), for the stall deadline.
    last_answer: Mutex<std::time::Instant>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.v3_url)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client.
    ///
    /// # Errors
    /// [`ClientError::Config`] for an unusable key or TLS setup.
    pub fn new(cfg: &ClientConfig) -> Result<Client, ClientError> {
        let http = http::build(
            &cfg.api_key,
            Duration::from_secs(10).min(cfg.timeout),
            cfg.timeout,
        )?;
        Ok(Client {
            http,
            v3_url: format!("{}/v3/identity/map", cfg.base_url.trim_end_matches('/')),
            v2_url: format!("{}/v2/identity/map", cfg.base_url.trim_end_matches('/')),
            buckets_url: format!("{}/v2/identity/buckets", cfg.base_url.trim_end_matches('/')),
            optout_url: format!("{}/v2/optout/status", cfg.base_url.trim_end_matches('/')),
            api: cfg.api,
            key: envelope::Key::new(&cfg.secret),
            limiter: cfg.rps.map(rate_limit::limiter),
            window: concurrency::Window::new(cfg.concurrency.clamp(1, MAX_CONCURRENCY)),
            retry: cfg.retry.clone(),
            stats: Arc::new(ClientStats::default()),
            jitter: Mutex::new(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64 | 1),
            reached: std::sync::atomic::AtomicBool::new(false),
            endpoint: reqwest::Url::parse(&cfg.base_url)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_else(|_| "the configured URL".to_string()),
            paused_until: Mutex::new(None),
            last_answer: Mutex::new(std::time::Instant::now()),
        })
    }

    /// The configured in-flight limit (the adaptive window's ceiling).
    pub fn max_in_flight(&self) -> usize {
        self.window.max()
    }

    /// With requests in flight, how long the operator has sent no answer to any of them
    /// (`None` when nothing is in flight): what the progress line says while it waits.
    pub fn waiting_for(&self) -> Option<Duration> {
        (self.window.in_flight() > 0)
            .then(|| self.last_answer.lock().expect("last answer lock").elapsed())
    }

    /// Most requests that were ever in flight at once.
    pub fn peak_in_flight(&self) -> usize {
        self.window.peak()
    }

    fn unit(&self) -> f64 {
        let mut s = self.jitter.lock().expect("jitter lock");
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        (*s >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Maps a batch (≤ [`MAX_ITEMS_PER_REQUEST`] identities): one answer per identity, in
    /// order. Retries transient errors; isolates an item the operator rejects with an
    /// item-level 400 by splitting the batch; gives up as [`MapOutcome::Failed`] per identity.
    ///
    /// # Errors
    /// Only fatal errors ([`ClientError::is_fatal`]): the run must stop. A batch that fails on
    /// network errors before any request of the run has succeeded is fatal too
    /// ([`ClientError::Unreachable`]): the operator was never reached.
    pub async fn map(
        &self,
        items: &[(IdentityKind, IdentityHash)],
    ) -> Result<Vec<MapOutcome>, ClientError> {
        let result = self.map_with_retries(items).await;
        self.settle(items, result).await
    }

    /// Turns the result of one batch into answers: bisects an item-level rejection, stops
    /// the run on a fatal error, marks the identities failed otherwise.
    async fn settle(
        &self,
        items: &[(IdentityKind, IdentityHash)],
        result: Result<Vec<MapOutcome>, ClientError>,
    ) -> Result<Vec<MapOutcome>, ClientError> {
        match result {
            Ok(out) => Ok(out),
            Err(e) if e.is_fatal() => Err(e),
            Err(ClientError::Rejected { message }) if items.len() > 1 => {
                Box::pin(self.isolate(items, message)).await
            }
            Err(e) => {
                if e.is_network() && !self.reached.load(Ordering::Relaxed) {
                    return Err(ClientError::Unreachable {
                        endpoint: self.endpoint.clone(),
                        cause: e.to_string(),
                    });
                }
                Ok(self.failed(items, &e))
            }
        }
    }

    /// Splits a batch the operator rejected with an item-level 400 to find the bad item.
    /// When both halves are rejected with the same message the problem is not one item, so
    /// the batch fails as a whole instead of being split down to single identities: the cost
    /// stays at about two requests per level for one bad item.
    async fn isolate(
        &self,
        items: &[(IdentityKind, IdentityHash)],
        message: String,
    ) -> Result<Vec<MapOutcome>, ClientError> {
        let (a, b) = items.split_at(items.len() / 2);
        tracing::debug!(
            items = items.len(),
            "operator rejected a batch; splitting it to isolate the bad item"
        );
        let left = match self.map_with_retries(a).await {
            Err(e) if e.is_fatal() => return Err(e),
            other => other,
        };
        let right = self.map_with_retries(b).await;
        if let (
            Err(ClientError::Rejected { message: l }),
            Err(ClientError::Rejected { message: r }),
        ) = (&left, &right)
        {
            if *l == message && *r == message {
                let e = ClientError::Rejected { message };
                return Ok(self.failed(items, &e));
            }
        }
        let mut out = self.settle(a, left).await?;
        out.extend(self.settle(b, right).await?);
        Ok(out)
    }

    /// `failed` outcomes for every identity of a batch that could not be mapped.
    fn failed(&self, items: &[(IdentityKind, IdentityHash)], e: &ClientError) -> Vec<MapOutcome> {
        self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(items = items.len(), error = %e, "batch failed after retries; its identities are marked failed");
        let reason: Arc<str> = Arc::from(e.to_string());
        items
            .iter()
            .map(|_| MapOutcome::Failed(Arc::clone(&reason)))
            .collect()
    }

    async fn map_with_retries(
        &self,
        items: &[(IdentityKind, IdentityHash)],
    ) -> Result<Vec<MapOutcome>, ClientError> {
        if self.api == Api::V2 {
            return self.map_v2(items).await;
        }
        let (json, order) = wire::request_json(items);
        let out = self
            .with_retries(|| async {
                let answer = self.exchange(&self.v3_url, &json).await?;
                answer::parse_answer(answer.json(), &order, items)
            })
            .await?;
        self.stats
            .identities
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        Ok(out)
    }

    /// One attempt: waits for a window slot and the rate limiter, seals `json` in a fresh
    /// envelope, posts it, and returns the decrypted answer (nonce checked); its timestamp
    /// tells the operator's clock.
    async fn exchange(&self, url: &str, json: &[u8]) -> Result<envelope::Opened, ClientError> {
        // The slot first, then the rate-limit token: a token taken while waiting for a slot
        // would let a burst out when slots free up.
        let slot = self.window.acquire().await;
        if let Some(l) = &self.limiter {
            l.until_ready().await;
        }
        let paused = *self.paused_until.lock().expect("pause lock");
        if let Some(until) = paused {
            tokio::time::sleep_until(until).await;
        }
        let (body, nonce) = self
            .key
            .seal_request(chrono::Utc::now().timestamp_millis(), json);
        debug_assert!(body.len() <= MAX_BODY_BYTES);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_sent
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        let t0 = Instant::now();
        let answer = http::post(&self.http, url, body).await;
        let code = match &answer {
            Ok(_) => Some(200),
            Err(e) => e.http_status(),
        };
        let rtt = t0.elapsed();
        self.stats.request_done(code, rtt.as_secs_f64());
        slot.finish(match &answer {
            Ok(_) => concurrency::Signal::Answered(rtt),
            Err(e) if e.is_backpressure() => concurrency::Signal::Backpressure,
            Err(_) => concurrency::Signal::Neutral,
        });
        let answer = answer?;
        self.stats
            .bytes_received
            .fetch_add(answer.body.len() as u64, Ordering::Relaxed);
        let raw: std::borrow::Cow<'_, [u8]> = if answer.binary {
            std::borrow::Cow::Borrowed(&answer.body)
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(answer.body.trim_ascii())
                .map_err(|_| ClientError::BadResponse("text answer is not base64".into()))?
                .into()
        };
        let opened = self
            .key
            .open_response(&raw)
            .map_err(|_| ClientError::Decrypt)?;
        if opened.nonce != nonce {
            return Err(ClientError::NonceMismatch);
        }
        Ok(opened)
    }

    /// One request, no retries, with `items` (the documented opt-out test identities, for
    /// `euid-map credentials check`): how long it took, how far the operator's clock is from
    /// ours, and the answers.
    ///
    /// # Errors
    /// Any error of the request, unclassified: the caller explains it.
    pub async fn probe(
        &self,
        items: &[(IdentityKind, IdentityHash)],
    ) -> Result<Probe, ClientError> {
        let (json, order) = wire::request_json(items);
        let sent_ms = chrono::Utc::now().timestamp_millis();
        let t0 = Instant::now();
        let opened = self.exchange(&self.v3_url, &json).await?;
        let rtt = t0.elapsed();
        let midpoint = sent_ms + (rtt.as_millis() / 2) as i64;
        Ok(Probe {
            rtt,
            skew_ms: opened.ts_ms.saturating_sub(midpoint),
            answers: answer::parse_answer(opened.json(), &order, items)?,
        })
    }
}
