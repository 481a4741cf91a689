//! The identity-map client: one encrypted `POST /v3/identity/map` per batch, sent under the
//! shared rate limiter and the adaptive in-flight window, retried until it succeeds, the
//! retry budget is spent, or the error is final. A batch is never dropped: it ends as
//! answers or as `failed` outcomes for each identity.
//!
//! - [`crate::protocol`] (shared with the emulator): the envelope, the wire formats, limits.
//! - [`http`]: the POST and HTTP status classification.
//! - [`retry`]: what is retryable, and the backoff schedule.
//! - [`rate_limit`]: the governor limiter and the AIMD window.

pub mod http;
pub mod rate_limit;
pub mod retry;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::config::Secret;
use crate::record::{IdentityHash, IdentityKind, MapOutcome};

use crate::protocol::{envelope, wire};
pub use crate::protocol::{MAX_BODY_BYTES, MAX_CONCURRENCY, MAX_ITEMS_PER_REQUEST};
pub use retry::RetryPolicy;

impl From<wire::WireError> for ClientError {
    fn from(e: wire::WireError) -> ClientError {
        ClientError::BadResponse(e.0)
    }
}

/// Errors of one request, and the run-level ones.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// 401: the API key is unknown, disabled or lacks the mapper role.
    #[error("the operator refused the API key (401 unauthorized): check EUID_API_KEY and that the key has the mapper role for this environment")]
    Unauthorized,
    /// 400 `Invalid timestamp`: this machine's clock is off.
    #[error("the operator rejected the request time (400 Invalid timestamp): this machine's clock differs from the operator's by more than about a minute; sync it with NTP")]
    ClockSkew,
    /// 400 `Invalid body: Check encryption key (ClientSecret)`: the operator could not
    /// decrypt the envelope, so the client secret does not belong to the API key.
    #[error("the operator could not decrypt the request (400 Invalid body: Check encryption key): the client secret (EUID_CLIENT_SECRET) does not belong to this API key, or is for another environment")]
    WrongSecret,
    /// Another envelope-level 400 (`Invalid body: …`): the request as a whole is unreadable,
    /// whatever identities it carries (a proxy altering bodies, or a client bug).
    #[error("the operator rejected the request envelope (400): {message}")]
    EnvelopeRejected {
        /// The operator's message.
        message: String,
    },
    /// No request has ever succeeded and the first batches spent their retries on network
    /// errors: the operator is not reachable from here.
    #[error("cannot reach the operator at {endpoint}: {cause}; no request has succeeded, so nothing was mapped (check --env/--base-url, DNS, proxy and firewall)")]
    Unreachable {
        /// Scheme, host and port (never a credential).
        endpoint: String,
        /// DNS lookup, connection refused, TLS, timeout…
        cause: String,
    },
    /// 429.
    #[error("rate limited (429)")]
    RateLimited {
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// 5xx.
    #[error("operator error (HTTP {status})")]
    Server {
        /// The status code.
        status: u16,
    },
    /// Another 400: the operator rejected this batch.
    #[error("rejected by the operator (400): {message}")]
    Rejected {
        /// The operator's message.
        message: String,
    },
    /// Any other status.
    #[error("unexpected HTTP status {status}")]
    Unexpected {
        /// The status code.
        status: u16,
    },
    /// The request timed out.
    #[error("request timed out")]
    Timeout,
    /// Connecting or transferring failed.
    #[error("connection problem: {0}")]
    Connection(String),
    /// The response nonce is not the request's.
    #[error("response nonce does not match the request")]
    NonceMismatch,
    /// The response could not be decrypted with our secret.
    #[error("the response does not decrypt with the client secret")]
    Decrypt,
    /// The decrypted answer is not what was asked for.
    #[error("unusable response: {0}")]
    BadResponse(String),
    /// Configuration is unusable.
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// Errors that end the whole run at once: retrying any batch is pointless.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ClientError::Unauthorized
                | ClientError::ClockSkew
                | ClientError::WrongSecret
                | ClientError::EnvelopeRejected { .. }
                | ClientError::Unreachable { .. }
                | ClientError::Decrypt
                | ClientError::Config(_)
        )
    }
}

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

/// Counters for progress and the manifest.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// HTTP requests sent (attempts).
    pub requests: AtomicU64,
    /// Retries, all causes.
    pub retries: AtomicU64,
    /// 429 answers.
    pub throttled: AtomicU64,
    /// Request bytes sent.
    pub bytes_sent: AtomicU64,
    /// Response bytes received.
    pub bytes_received: AtomicU64,
    /// Identities answered.
    pub identities: AtomicU64,
    /// Batches that ended failed.
    pub failed_batches: AtomicU64,
    retries_by_cause: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    latencies_ms: Mutex<Vec<f64>>,
}

/// Latency samples kept for percentiles.
const LATENCY_SAMPLES: usize = 1 << 20;

impl ClientStats {
    fn latency(&self, ms: f64) {
        let mut l = self.latencies_ms.lock().expect("stats lock");
        if l.len() < LATENCY_SAMPLES {
            l.push(ms);
        }
    }

    fn retry(&self, cause: &'static str) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        *self
            .retries_by_cause
            .lock()
            .expect("stats lock")
            .entry(cause)
            .or_default() += 1;
    }

    /// The counters as JSON for the manifest.
    pub fn to_json(&self) -> serde_json::Value {
        let mut l = self.latencies_ms.lock().expect("stats lock").clone();
        l.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            if l.is_empty() {
                0.0
            } else {
                (l[((l.len() - 1) as f64 * p).round() as usize] * 10.0).round() / 10.0
            }
        };
        serde_json::json!({
            "requests": self.requests.load(Ordering::Relaxed),
            "retries": self.retries.load(Ordering::Relaxed),
            "retries_by_cause": *self.retries_by_cause.lock().expect("stats lock"),
            "http_429": self.throttled.load(Ordering::Relaxed),
            "bytes_sent": self.bytes_sent.load(Ordering::Relaxed),
            "bytes_received": self.bytes_received.load(Ordering::Relaxed),
            "failed_batches": self.failed_batches.load(Ordering::Relaxed),
            "latency_ms": {"p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99)},
        })
    }
}

/// The identity-map client. Cheap to share behind an `Arc`; all batches of a run use one.
///
/// ```no_run
/// # async fn demo() -> Result<(), euid_map::client::ClientError> {
/// use euid_map::client::{Api, Client, ClientConfig, RetryPolicy};
/// use euid_map::config::Secret;
/// use euid_map::record::IdentityKind;
/// let client = Client::new(&ClientConfig {
///     base_url: "https://integ.euid.eu".into(),
///     api_key: Secret::new(std::env::var("EUID_API_KEY").unwrap_or_default()),
///     secret: euid_map::protocol::envelope::decode_secret(&std::env::var("EUID_CLIENT_SECRET").unwrap_or_default())
///         .map_err(euid_map::client::ClientError::Config)?,
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
    api: Api,
    key: envelope::Key,
    limiter: Option<governor::DefaultDirectRateLimiter>,
    window: rate_limit::Window,
    retry: RetryPolicy,
    /// Counters.
    pub stats: Arc<ClientStats>,
    jitter: Mutex<u64>,
    /// Whether any request of this client has succeeded (see [`ClientError::Unreachable`]).
    reached: std::sync::atomic::AtomicBool,
    /// `scheme://host:port` of the operator, for messages.
    endpoint: String,
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
            api: cfg.api,
            key: envelope::Key::new(&cfg.secret),
            limiter: cfg.rps.map(rate_limit::limiter),
            window: rate_limit::Window::new(cfg.concurrency.clamp(1, MAX_CONCURRENCY)),
            retry: cfg.retry.clone(),
            stats: Arc::new(ClientStats::default()),
            jitter: Mutex::new(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64 | 1),
            reached: std::sync::atomic::AtomicBool::new(false),
            endpoint: reqwest::Url::parse(&cfg.base_url)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_else(|_| "the configured URL".to_string()),
        })
    }

    /// The configured in-flight limit (the adaptive window's ceiling).
    pub fn max_in_flight(&self) -> usize {
        self.window.max()
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
                parse_answer(&answer, &order, items)
            })
            .await?;
        self.stats
            .identities
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        Ok(out)
    }

    /// Legacy v2: one request per identity type, answers correlated by the echoed identifier.
    async fn map_v2(
        &self,
        items: &[(IdentityKind, IdentityHash)],
    ) -> Result<Vec<MapOutcome>, ClientError> {
        let mut out: Vec<Option<MapOutcome>> = vec![None; items.len()];
        for (kind, key) in [
            (IdentityKind::Email, "email_hash"),
            (IdentityKind::Phone, "phone_hash"),
        ] {
            let idx: Vec<usize> = (0..items.len()).filter(|&i| items[i].0 == kind).collect();
            if idx.is_empty() {
                continue;
            }
            let hashes: Vec<String> = idx.iter().map(|&i| items[i].1.to_base64()).collect();
            let json =
                serde_json::to_vec(&serde_json::json!({ key: hashes })).expect("strings serialize");
            let answers = self
                .with_retries(|| async {
                    let answer = self.exchange(&self.v2_url, &json).await?;
                    Ok(wire::parse_v2(&answer, &hashes)?)
                })
                .await?;
            for (i, a) in idx.into_iter().zip(answers) {
                out[i] = Some(a);
            }
        }
        self.stats
            .identities
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        Ok(out
            .into_iter()
            .map(|o| o.expect("every identity is of one of the two kinds"))
            .collect())
    }

    /// Salt buckets rotated since `since` (legacy v2 `/v2/identity/buckets`), as
    /// (bucket id, last updated in Unix ms).
    ///
    /// # Errors
    /// The request failed after retries, or the answer is not the buckets shape.
    pub async fn rotated_buckets(&self, since_ms: i64) -> Result<Vec<(String, i64)>, ClientError> {
        let since = chrono::DateTime::from_timestamp_millis(since_ms)
            .ok_or_else(|| ClientError::Config("the state's time is out of range".into()))?
            .naive_utc()
            .format("%Y-%m-%dT%H:%M:%S%.3f")
            .to_string();
        let json = serde_json::to_vec(&serde_json::json!({ "since_timestamp": since }))
            .expect("serializes");
        self.with_retries(|| async {
            let answer = self.exchange(&self.buckets_url, &json).await?;
            Ok(wire::parse_buckets(&answer)?)
        })
        .await
    }

    /// Runs `op` until it succeeds, the error is final, or the retry budget is spent; backs
    /// the window off on 429/503. Each call of `op` must build a fresh envelope.
    async fn with_retries<T, F, Fut>(&self, mut op: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut skew_retried = false;
        loop {
            let err = match op().await {
                Ok(out) => {
                    self.window.success();
                    self.reached.store(true, Ordering::Relaxed);
                    return Ok(out);
                }
                Err(e) => e,
            };
            if matches!(
                err,
                ClientError::RateLimited { .. } | ClientError::Server { status: 503 }
            ) {
                self.window.backoff();
            }
            if matches!(err, ClientError::RateLimited { .. }) {
                self.stats.throttled.fetch_add(1, Ordering::Relaxed);
            }
            // A stale timestamp is retried once with a fresh envelope; twice is a clock problem.
            if matches!(err, ClientError::ClockSkew) && std::mem::replace(&mut skew_retried, true) {
                return Err(err);
            }
            if !err.is_retryable() || attempt >= self.retry.max_retries {
                return Err(err);
            }
            let wait = self.retry.backoff(attempt, &err, self.unit());
            if started.elapsed() + wait > self.retry.deadline {
                return Err(err);
            }
            self.stats.retry(err.cause());
            tracing::debug!(
                attempt,
                cause = err.cause(),
                wait_ms = wait.as_millis() as u64,
                "retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One attempt: waits for the rate limiter and a window slot, seals `json` in a fresh
    /// envelope, posts it, and returns the decrypted JSON of the answer (nonce checked).
    async fn exchange(&self, url: &str, json: &[u8]) -> Result<Vec<u8>, ClientError> {
        if let Some(l) = &self.limiter {
            l.until_ready().await;
        }
        let _slot = self.window.acquire().await;
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
        self.stats.latency(t0.elapsed().as_secs_f64() * 1000.0);
        let answer = answer?;
        self.stats
            .bytes_received
            .fetch_add(answer.body.len() as u64, Ordering::Relaxed);
        let raw = if answer.binary {
            answer.body.to_vec()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(answer.body.trim_ascii())
                .map_err(|_| ClientError::BadResponse("text answer is not base64".into()))?
        };
        let opened = self
            .key
            .open_response(&raw)
            .map_err(|_| ClientError::Decrypt)?;
        if opened.nonce != nonce {
            return Err(ClientError::NonceMismatch);
        }
        Ok(opened.json)
    }
}

/// Turns the decrypted JSON into one outcome per requested identity, in the caller's order.
/// Each positional array must have exactly as many answers as that kind had hashes in the
/// request: any other length is a bad response for the whole batch (retried, never assigned),
/// because a surplus in one array and a shortfall in the other would shift answers between
/// identities.
fn parse_answer(
    json: &[u8],
    order: &[usize],
    items: &[(IdentityKind, IdentityHash)],
) -> Result<Vec<MapOutcome>, ClientError> {
    let n = items.len();
    let emails = items
        .iter()
        .filter(|(k, _)| *k == IdentityKind::Email)
        .count();
    let phones = n - emails;
    let resp: wire::Response = serde_json::from_slice(json)
        .map_err(|e| ClientError::BadResponse(format!("not the v3 answer shape: {e}")))?;
    if resp.status != "success" {
        return Err(ClientError::BadResponse(format!(
            "status {:?}",
            resp.status
        )));
    }
    let body = resp
        .body
        .ok_or_else(|| ClientError::BadResponse("no body".into()))?;
    let at = chrono::Utc::now().timestamp_millis();
    if body.email_hash.len() != emails || body.phone_hash.len() != phones || order.len() != n {
        return Err(ClientError::BadResponse(format!(
            "{} email_hash and {} phone_hash answers for {emails} email and {phones} phone hashes sent",
            body.email_hash.len(),
            body.phone_hash.len()
        )));
    }
    let answered = body.email_hash.iter().chain(body.phone_hash.iter());
    let mut out: Vec<Option<MapOutcome>> = vec![None; n];
    for (item, &slot) in answered.zip(order) {
        let outcome = match (&item.u, &item.e) {
            (Some(u), _) => MapOutcome::Mapped {
                raw_euid: Arc::from(u.as_str()),
                previous: item.p.as_deref().map(Arc::from),
                bucket_id: None,
                refresh_from: Some(
                    item.r
                        .ok_or_else(|| ClientError::BadResponse("mapped item without r".into()))?,
                ),
                mapped_at: at,
            },
            (None, Some(e)) if e == "optout" => MapOutcome::Optout { mapped_at: at },
            (None, Some(e)) if e == "invalid identifier" => MapOutcome::Invalid,
            (None, Some(e)) => MapOutcome::Unmapped(Arc::from(e.as_str())),
            (None, None) => {
                return Err(ClientError::BadResponse("item with neither u nor e".into()))
            }
        };
        out[slot] = Some(outcome);
    }
    Ok(out
        .into_iter()
        .map(|o| o.expect("every slot is filled once: order is a permutation"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> IdentityHash {
        crate::normalize::sha256(s.as_bytes())
    }

    #[test]
    fn answers_are_put_back_in_request_order_and_unknown_reasons_kept() {
        let json = br#"{"status":"success","body":{"email":[],"email_hash":[{"u":"U1","p":null,"r":5},{"e":"optout"}],"phone":[],"phone_hash":[{"e":"new reason"}]}}"#;
        let items = [
            (IdentityKind::Email, h("a")),
            (IdentityKind::Phone, h("b")),
            (IdentityKind::Email, h("c")),
        ];
        let out = parse_answer(json, &[2, 0, 1], &items).expect("parses");
        assert!(
            matches!(&out[2], MapOutcome::Mapped { raw_euid, previous: None, refresh_from: Some(5), .. } if &**raw_euid == "U1")
        );
        assert!(matches!(out[0], MapOutcome::Optout { .. }));
        assert_eq!(out[1], MapOutcome::Unmapped(Arc::from("new reason")));
    }

    #[test]
    fn a_short_answer_is_an_error_not_a_shift() {
        let json = br#"{"status":"success","body":{"email":[],"email_hash":[{"e":"optout"}],"phone":[],"phone_hash":[]}}"#;
        let items = [(IdentityKind::Email, h("a")), (IdentityKind::Email, h("b"))];
        assert!(matches!(
            parse_answer(json, &[0, 1], &items),
            Err(ClientError::BadResponse(_))
        ));
    }

    /// Issue #9.4: one answer too many for emails and one too few for phones (same total)
    /// would shift every phone's raw EUID onto another identity.
    #[test]
    fn arrays_are_checked_per_kind_not_by_total() {
        let json = br#"{"status":"success","body":{"email":[],"email_hash":[{"u":"U1","p":null,"r":5},{"u":"U2","p":null,"r":5}],"phone":[],"phone_hash":[{"u":"U3","p":null,"r":5}]}}"#;
        let items = [
            (IdentityKind::Email, h("a")),
            (IdentityKind::Phone, h("b")),
            (IdentityKind::Phone, h("c")),
        ];
        let (_, order) = wire::request_json(&items);
        let err = parse_answer(json, &order, &items).expect_err("a per-kind mismatch is refused");
        assert!(matches!(err, ClientError::BadResponse(_)), "{err:?}");
        assert!(
            err.is_retryable(),
            "a bad response is retried, never assigned"
        );
    }
}
