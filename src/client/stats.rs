//! Counters of the client (requests, retries by cause, 429s, bytes, latency), sampled by the
//! progress display and written to the manifest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

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
    by_code: Mutex<std::collections::BTreeMap<String, u64>>,
    durations: Durations,
    latencies_ms: Mutex<Vec<f64>>,
}

/// The client's counters as the manifest records them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClientReport {
    /// HTTP requests sent (attempts).
    pub requests: u64,
    /// Retries, all causes.
    pub retries: u64,
    /// Retries by cause.
    pub retries_by_cause: std::collections::BTreeMap<String, u64>,
    /// 429 answers.
    pub http_429: u64,
    /// Request bytes sent.
    pub bytes_sent: u64,
    /// Response bytes received.
    pub bytes_received: u64,
    /// Batches that ended failed.
    pub failed_batches: u64,
    /// Request latency percentiles, milliseconds.
    pub latency_ms: Latency,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// Upper bounds (seconds) of the request duration histogram.
pub const DURATION_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// A snapshot of the request duration histogram: cumulative counts per bucket of
/// [`DURATION_BUCKETS`], then the count and sum (seconds).
pub type DurationHistogram = crate::prom::HistogramSnapshot;

/// The request duration histogram, in seconds (its sum kept in µs).
#[derive(Debug)]
struct Durations(crate::prom::Histogram);

impl Default for Durations {
    fn default() -> Durations {
        Durations(crate::prom::Histogram::new(&DURATION_BUCKETS, 1e6))
    }
}

/// Latency samples kept for percentiles.
const LATENCY_SAMPLES: usize = 1 << 20;

impl ClientStats {
    /// Counts one answered or failed request by its HTTP status (`error` when there was
    /// none) and records its duration.
    pub(super) fn request_done(&self, code: Option<u16>, seconds: f64) {
        let code = code.map_or_else(|| "error".to_string(), |c| c.to_string());
        *self
            .by_code
            .lock()
            .expect("stats lock")
            .entry(code)
            .or_default() += 1;
        self.durations.0.observe(seconds);
        self.latency(seconds * 1000.0);
    }

    /// Requests by HTTP status code (`error`: no HTTP answer).
    pub fn requests_by_code(&self) -> std::collections::BTreeMap<String, u64> {
        self.by_code.lock().expect("stats lock").clone()
    }

    /// Retries by cause (`429`, `5xx`, `timeout`, `connection`, …).
    pub fn retries_by_cause(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.retries_by_cause.lock().expect("stats lock").clone()
    }

    /// The request duration histogram so far.
    pub fn durations(&self) -> DurationHistogram {
        self.durations.0.snapshot()
    }

    fn latency(&self, ms: f64) {
        let mut l = self.latencies_ms.lock().expect("stats lock");
        if l.len() < LATENCY_SAMPLES {
            l.push(ms);
        }
    }

    pub(super) fn retry(&self, cause: &'static str) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        *self
            .retries_by_cause
            .lock()
            .expect("stats lock")
            .entry(cause)
            .or_default() += 1;
    }

    /// The counters for the manifest.
    pub fn report(&self) -> ClientReport {
        let mut l = self.latencies_ms.lock().expect("stats lock").clone();
        l.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            if l.is_empty() {
                0.0
            } else {
                (l[((l.len() - 1) as f64 * p).round() as usize] * 10.0).round() / 10.0
            }
        };
        ClientReport {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            retries_by_cause: self
                .retries_by_cause()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            http_429: self.throttled.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
            latency_ms: Latency {
                p50: pct(0.5),
                p95: pct(0.95),
                p99: pct(0.99),
            },
        }
    }
}
