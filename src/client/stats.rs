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
    latencies_ms: Mutex<Vec<f64>>,
}

/// Latency samples kept for percentiles.
const LATENCY_SAMPLES: usize = 1 << 20;

impl ClientStats {
    pub(super) fn latency(&self, ms: f64) {
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
