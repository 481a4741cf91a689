//! Prometheus metrics of a run, by the conventions for batch jobs: pushed to a Pushgateway
//! (`--metrics-push`) at the end of every run, success or failure, and every 30 s during a
//! long one, and/or written as a node_exporter textfile (`--metrics-file`), atomically.
//! `euid_map_last_success_timestamp_seconds` is set only by a successful run, and pushes
//! use POST, so a failed run leaves the previous success time in the Pushgateway: the
//! metric alerts are written against.
//!
//! The stages keep their own counters; [`RunMetrics`] only holds them and renders a
//! snapshot ([`crate::prom`]). Never a secret or a raw identifier.

mod push;

pub use push::{push_url, write_file, MetricsError, Reporter, Sinks, JOB, PUSH_EVERY};

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::client::{ClientStats, DURATION_BUCKETS};
use crate::input::ReadProgress;
use crate::mapper::MapperStats;
use crate::output::RefreshCounts;
use crate::record::{LiveCounts, RowStatus};

/// The live counters of one run, attached by the stages as they start.
pub struct RunMetrics {
    /// Days since the run's API key was issued (its profile's `issued`), if known.
    credentials_age_days: std::sync::atomic::AtomicI64,
    /// The opt-out sweep: raw ids checked, found opted out.
    optout: Mutex<Option<(u64, u64)>>,
    started: Instant,
    command: Mutex<String>,
    client: OnceLock<Arc<ClientStats>>,
    mapper: OnceLock<Arc<MapperStats>>,
    read: OnceLock<Arc<ReadProgress>>,
    rows: Arc<LiveCounts>,
    refresh: Mutex<Option<RefreshCounts>>,
}

impl Default for RunMetrics {
    fn default() -> RunMetrics {
        RunMetrics {
            started: Instant::now(),
            command: Mutex::new(String::new()),
            client: OnceLock::new(),
            mapper: OnceLock::new(),
            read: OnceLock::new(),
            rows: Arc::default(),
            refresh: Mutex::new(None),
            credentials_age_days: std::sync::atomic::AtomicI64::new(i64::MIN),
            optout: Mutex::new(None),
        }
    }
}

impl RunMetrics {
    /// Records the opt-out sweep's counts.
    pub fn set_optout(&self, checked: u64, found: u64) {
        *self.optout.lock().expect("metrics lock") = Some((checked, found));
    }

    /// Records how old the run's API key is, in days.
    pub fn set_credentials_age_days(&self, days: i64) {
        self.credentials_age_days
            .store(days, std::sync::atomic::Ordering::Relaxed);
    }
}

impl std::fmt::Debug for RunMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunMetrics").finish_non_exhaustive()
    }
}

impl RunMetrics {
    /// Names the command (`hash`, `map`, `refresh`).
    pub fn set_command(&self, command: &str) {
        *self.command.lock().expect("metrics lock") = command.to_string();
    }

    /// Attaches the client's counters.
    pub fn attach_client(&self, stats: Arc<ClientStats>) {
        let _ = self.client.set(stats);
    }

    /// Attaches the mapper's counters.
    pub fn attach_mapper(&self, stats: Arc<MapperStats>) {
        let _ = self.mapper.set(stats);
    }

    /// Attaches the reader's counters.
    pub fn attach_reader(&self, read: Arc<ReadProgress>) {
        let _ = self.read.set(read);
    }

    /// The output rows per status as the writer counts them: hand it to
    /// `DatasetWriter::report_to`.
    pub fn rows(&self) -> Arc<LiveCounts> {
        Arc::clone(&self.rows)
    }

    /// What refresh did.
    pub fn set_refresh(&self, counts: RefreshCounts) {
        *self.refresh.lock().expect("metrics lock") = Some(counts);
    }

    /// The metrics page now. `exit` is the run's exit code once it ended; `success` sets
    /// the last-success timestamp.
    pub fn render(
        &self,
        labels: &[(String, String)],
        exit: Option<u8>,
        last_success: Option<f64>,
    ) -> String {
        let mut p = crate::prom::Page::new(labels);
        let command = self.command.lock().expect("metrics lock").clone();
        p.gauge(
            "euid_map_run_info",
            "The run: command and euid-map version.",
            &[(
                vec![
                    ("command", command.as_str()),
                    ("version", env!("CARGO_PKG_VERSION")),
                ],
                1.0,
            )],
        );
        let rows = self.rows.get();
        let by_status: Vec<(Vec<(&str, &str)>, f64)> = RowStatus::ALL
            .into_iter()
            .map(|s| (vec![("status", s.as_str())], rows.get(s) as f64))
            .collect();
        p.counter(
            "euid_map_rows_total",
            "Output rows (one per identity cell) written, by status.",
            &by_status,
        );
        if let Some(r) = self.read.get() {
            p.counter(
                "euid_map_input_rows_total",
                "Input rows read by this run.",
                &[(vec![], r.rows.load(Ordering::Relaxed) as f64)],
            );
        }
        if let Some(m) = self.mapper.get() {
            p.counter(
                "euid_map_identities_sent_total",
                "Distinct identity hashes sent to the operator.",
                &[(vec![], m.unique_sent.load(Ordering::Relaxed) as f64)],
            );
        }
        if let Some(c) = self.client.get() {
            let codes = c.requests_by_code();
            p.counter(
                "euid_map_requests_total",
                "Identity-map requests by HTTP status (error: no HTTP answer).",
                &codes
                    .iter()
                    .map(|(k, v)| (vec![("code", k.as_str())], *v as f64))
                    .collect::<Vec<_>>(),
            );
            let causes = c.retries_by_cause();
            p.counter(
                "euid_map_retries_total",
                "Retried requests by cause.",
                &causes
                    .iter()
                    .map(|(k, v)| (vec![("cause", *k)], *v as f64))
                    .collect::<Vec<_>>(),
            );
            let h = c.durations();
            p.histogram(
                "euid_map_request_duration_seconds",
                "Identity-map request duration.",
                &DURATION_BUCKETS,
                &h.cumulative,
                h.count,
                h.sum,
            );
        }
        if let Some(r) = self.refresh.lock().expect("metrics lock").as_ref() {
            let kinds = [
                ("carried", r.carried),
                ("due", r.due),
                ("value_changed", r.value_changed),
                ("new", r.new),
                ("remapped", r.remapped),
                ("changed_ids", r.changed_ids),
                ("newly_opted_out", r.newly_opted_out),
                ("dropped", r.dropped),
            ];
            p.gauge(
                "euid_map_refresh_identities",
                "What the last refresh did with the state's identities, by kind.",
                &kinds
                    .iter()
                    .map(|(k, v)| (vec![("kind", *k)], *v as f64))
                    .collect::<Vec<_>>(),
            );
        }
        p.gauge(
            "euid_map_run_duration_seconds",
            "Wall time of the run so far, seconds.",
            &[(vec![], self.started.elapsed().as_secs_f64())],
        );
        if let Some((checked, found)) = *self.optout.lock().expect("metrics lock") {
            p.counter(
                "euid_map_optout_checked_total",
                "Raw EUIDs refresh's opt-out sweep checked with /v2/optout/status.",
                &[(vec![], checked as f64)],
            );
            p.counter(
                "euid_map_optout_found_total",
                "Raw EUIDs the opt-out sweep found opted out (their rows became optout).",
                &[(vec![], found as f64)],
            );
        }
        let age = self
            .credentials_age_days
            .load(std::sync::atomic::Ordering::Relaxed);
        if age != i64::MIN {
            p.gauge(
                "euid_map_credentials_age_days",
                "Days since the run's API key was issued (its profile's issued date); EUID asks for yearly rotation.",
                &[(vec![], age as f64)],
            );
        }
        if let Some(code) = exit {
            p.gauge(
                "euid_map_exit_code",
                "Exit code of the last run (0 done, 2 some identities failed, 1 fatal, 64 usage, 130/143 interrupted).",
                &[(vec![], f64::from(code))],
            );
        }
        if let Some(t) = last_success {
            p.gauge(
                "euid_map_last_success_timestamp_seconds",
                "When the last successful run ended, Unix seconds.",
                &[(vec![], t)],
            );
        }
        p.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::push::previous_success;
    use super::*;

    #[test]
    fn the_push_url_names_the_job_and_escapes_labels() {
        let u = push_url(
            "http://127.0.0.1:9091/",
            &[("site".into(), "eu west/1".into())],
        )
        .expect("url");
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:9091/metrics/job/euid-map/site@base64/ZXUgd2VzdC8x"
        );
    }

    #[test]
    fn only_a_successful_run_sets_the_last_success_time() {
        let m = RunMetrics::default();
        m.set_command("map");
        let failed = m.render(&[], Some(1), None);
        assert!(!failed.contains("euid_map_last_success_timestamp_seconds"));
        assert!(failed.contains("euid_map_exit_code 1"));
        let ok = m.render(&[], Some(0), Some(1.0e9));
        assert!(ok.contains("euid_map_last_success_timestamp_seconds "));
        assert!(ok.contains("euid_map_rows_total{status=\"mapped\"} 0"));
    }

    /// Issue #24.3: a failed run keeps the last-success time the textfile held.
    #[test]
    fn a_failed_run_carries_the_last_success_time_forward() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let f = tmp.path().join("euid_map.prom");
        std::fs::write(
            &f,
            "# TYPE euid_map_last_success_timestamp_seconds gauge\neuid_map_last_success_timestamp_seconds{site=\"eu\"} 1764547200\n",
        )
        .expect("write");
        assert_eq!(previous_success(&f), Some(1_764_547_200.0));
        assert_eq!(previous_success(&tmp.path().join("none.prom")), None);
    }
}
