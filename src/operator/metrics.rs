//! Prometheus text metrics for `GET /metrics`: requests by route and status, items per
//! request, identities by outcome, faults injected, and reused nonces (a client that resends
//! the same envelope on retry shows up here).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::prom::{Histogram, Page};

pub use crate::prom::sample;

/// Upper bounds of the items-per-request histogram.
const ITEM_BUCKETS: [f64; 7] = [1.0, 10.0, 100.0, 1000.0, 2500.0, 5000.0, 10000.0];

/// Identities per map request (whole numbers: the sum is exact).
#[derive(Debug)]
struct Items(Histogram);

impl Default for Items {
    fn default() -> Items {
        Items(Histogram::new(&ITEM_BUCKETS, 1.0))
    }
}
/// Nonces remembered for the reuse counter.
const NONCES_KEPT: usize = 1 << 20;

/// The emulator's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    faults: Mutex<BTreeMap<&'static str, u64>>,
    items: Items,
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
        self.items.0.observe(n as f64);
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
        self.items.0.sum_units()
    }

    /// Renders the Prometheus text format.
    pub fn render(&self) -> String {
        let mut p = Page::new(&[]);
        let requests = self.requests.lock().expect("metrics lock").clone();
        let statuses: Vec<String> = requests.keys().map(|(_, s)| s.to_string()).collect();
        p.counter(
            "euid_emulator_requests_total",
            "Requests answered, by route and HTTP status (0: the connection was reset).",
            &requests
                .iter()
                .zip(&statuses)
                .map(|(((route, _), n), status)| {
                    (
                        vec![("route", route.as_str()), ("status", status.as_str())],
                        *n as f64,
                    )
                })
                .collect::<Vec<_>>(),
        );
        p.histogram_of(
            "euid_emulator_identity_map_inputs",
            "Identities per identity-map request.",
            &self.items.0,
        );
        p.counter(
            "euid_emulator_identities_total",
            "Identities answered, by outcome.",
            &[
                ("mapped", &self.mapped),
                ("optout", &self.optout),
                ("invalid", &self.invalid),
            ]
            .map(|(k, v)| (vec![("outcome", k)], v.load(Ordering::Relaxed) as f64)),
        );
        let faults = self.faults.lock().expect("metrics lock").clone();
        p.counter(
            "euid_emulator_faults_total",
            "Faults injected, by kind.",
            &super::faults::Fault::ALL
                .iter()
                .map(|f| {
                    let n = faults.get(f.name()).copied().unwrap_or(0);
                    (vec![("fault", f.name())], n as f64)
                })
                .collect::<Vec<_>>(),
        );
        if let Some(ms) = *self.min_gap_after_429_ms.lock().expect("metrics lock") {
            p.gauge(
                "euid_emulator_min_gap_after_429_seconds",
                "The shortest wait between a 429 and the request after it.",
                &[(vec![], ms as f64 / 1000.0)],
            );
        }
        p.gauge(
            "euid_emulator_optout_status_peak_in_flight",
            "The most /v2/optout/status requests in flight at once.",
            &[(vec![], self.optout_peak.load(Ordering::SeqCst) as f64)],
        );
        p.gauge(
            "euid_emulator_held_requests",
            "Requests held by --hold-after or /ops/hold right now.",
            &[(vec![], self.held.load(Ordering::Relaxed) as f64)],
        );
        p.counter(
            "euid_emulator_nonce_reuse_total",
            "Requests whose envelope nonce was seen before.",
            &[(vec![], self.nonce_reuse.load(Ordering::Relaxed) as f64)],
        );
        p.finish()
    }
}
