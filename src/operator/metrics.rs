//! Prometheus text metrics for `GET /metrics`: requests by route and status, items per
//! request, identities by outcome, faults injected, and reused nonces (a client that resends
//! the same envelope on retry shows up here).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds of the items-per-request histogram.
const ITEM_BUCKETS: [u64; 7] = [1, 10, 100, 1000, 2500, 5000, 10000];
/// Nonces remembered for the reuse counter.
const NONCES_KEPT: usize = 1 << 20;

/// The emulator's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    faults: Mutex<BTreeMap<&'static str, u64>>,
    item_hist: [AtomicU64; ITEM_BUCKETS.len() + 1],
    item_sum: AtomicU64,
    item_count: AtomicU64,
    /// Identities answered with a raw id.
    pub mapped: AtomicU64,
    /// Identities answered `optout`.
    pub optout: AtomicU64,
    /// Identities answered `invalid identifier`.
    pub invalid: AtomicU64,
    nonces: Mutex<HashSet<[u8; 8]>>,
    nonce_reuse: AtomicU64,
    /// Requests held by `--hold-after` right now.
    pub held: AtomicU64,
    /// When the last 429 was answered, and the shortest wait seen between a 429 and the
    /// request after it (ms): shows a client honouring `Retry-After`.
    last_429: Mutex<Option<std::time::Instant>>,
    min_gap_after_429_ms: Mutex<Option<u64>>,
    /// `/v2/optout/status` requests in flight, and the most at once.
    optout_in_flight: AtomicU64,
    optout_peak: AtomicU64,
}

/// Counts one `/v2/optout/status` request in flight until dropped.
pub struct OptoutInFlight<'a>(&'a Metrics);

impl Drop for OptoutInFlight<'_> {
    fn drop(&mut self) {
        self.0.optout_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Metrics {
    /// Counts a finished request.
    pub fn request(&self, route: &str, status: u16) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((route.to_string(), status))
            .or_default() += 1;
    }

    /// Enters a `/v2/optout/status` request (the peak in flight is in `/metrics`: the
    /// endpoint asks for one request at a time).
    pub fn optout_status_enter(&self) -> OptoutInFlight<'_> {
        let n = self.optout_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.optout_peak.fetch_max(n, Ordering::SeqCst);
        OptoutInFlight(self)
    }

    /// Notes an encrypted request's arrival (for the gap after a 429).
    pub fn arrival(&self) {
        if let Some(t) = self.last_429.lock().expect("metrics lock").take() {
            let gap = t.elapsed().as_millis() as u64;
            let mut min = self.min_gap_after_429_ms.lock().expect("metrics lock");
            *min = Some(min.map_or(gap, |m| m.min(gap)));
        }
    }

    /// Notes a 429 answer.
    pub fn throttled(&self) {
        *self.last_429.lock().expect("metrics lock") = Some(std::time::Instant::now());
    }

    /// Counts an injected fault.
    pub fn fault(&self, name: &'static str) {
        *self
            .faults
            .lock()
            .expect("metrics lock")
            .entry(name)
            .or_default() += 1;
    }

    /// Records the number of identities in one map request.
    pub fn items(&self, n: u64) {
        let i = ITEM_BUCKETS
            .iter()
            .position(|b| n <= *b)
            .unwrap_or(ITEM_BUCKETS.len());
        self.item_hist[i].fetch_add(1, Ordering::Relaxed);
        self.item_sum.fetch_add(n, Ordering::Relaxed);
        self.item_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Remembers a request nonce, counting reuse.
    pub fn nonce(&self, nonce: [u8; 8]) {
        let mut seen = self.nonces.lock().expect("metrics lock");
        if seen.len() >= NONCES_KEPT {
            seen.clear();
        }
        if !seen.insert(nonce) {
            self.nonce_reuse.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Identities received in map requests so far.
    pub fn identities_requested(&self) -> u64 {
        self.item_sum.load(Ordering::Relaxed)
    }

    /// Renders the Prometheus text format.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("# TYPE euid_emulator_requests_total counter\n");
        for ((route, status), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                s,
                "euid_emulator_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        s.push_str("# TYPE euid_emulator_identity_map_inputs histogram\n");
        let mut cum = 0;
        for (i, b) in ITEM_BUCKETS.iter().enumerate() {
            cum += self.item_hist[i].load(Ordering::Relaxed);
            let _ = writeln!(
                s,
                "euid_emulator_identity_map_inputs_bucket{{le=\"{b}\"}} {cum}"
            );
        }
        cum += self.item_hist[ITEM_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "euid_emulator_identity_map_inputs_bucket{{le=\"+Inf\"}} {cum}"
        );
        let _ = writeln!(
            s,
            "euid_emulator_identity_map_inputs_sum {}",
            self.item_sum.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "euid_emulator_identity_map_inputs_count {}",
            self.item_count.load(Ordering::Relaxed)
        );
        s.push_str("# TYPE euid_emulator_identities_total counter\n");
        for (k, v) in [
            ("mapped", &self.mapped),
            ("optout", &self.optout),
            ("invalid", &self.invalid),
        ] {
            let _ = writeln!(
                s,
                "euid_emulator_identities_total{{outcome=\"{k}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        s.push_str("# TYPE euid_emulator_faults_total counter\n");
        let faults = self.faults.lock().expect("metrics lock");
        for f in super::faults::Fault::ALL {
            let _ = writeln!(
                s,
                "euid_emulator_faults_total{{fault=\"{}\"}} {}",
                f.name(),
                faults.get(f.name()).copied().unwrap_or(0)
            );
        }
        if let Some(ms) = *self.min_gap_after_429_ms.lock().expect("metrics lock") {
            s.push_str("# TYPE euid_emulator_min_gap_after_429_seconds gauge\n");
            let _ = writeln!(
                s,
                "euid_emulator_min_gap_after_429_seconds {}",
                ms as f64 / 1000.0
            );
        }
        s.push_str("# TYPE euid_emulator_optout_status_peak_in_flight gauge\n");
        let _ = writeln!(
            s,
            "euid_emulator_optout_status_peak_in_flight {}",
            self.optout_peak.load(Ordering::SeqCst)
        );
        s.push_str("# TYPE euid_emulator_held_requests gauge\n");
        let _ = writeln!(
            s,
            "euid_emulator_held_requests {}",
            self.held.load(Ordering::Relaxed)
        );
        s.push_str("# TYPE euid_emulator_nonce_reuse_total counter\n");
        let _ = writeln!(
            s,
            "euid_emulator_nonce_reuse_total {}",
            self.nonce_reuse.load(Ordering::Relaxed)
        );
        s
    }
}

/// Reads one sample from Prometheus text (tests and scripts use it).
pub fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
