//! Prometheus metrics of a run, by the conventions for batch jobs: pushed to a Pushgateway
//! (`--metrics-push`) at the end of every run, success or failure, and every 30 s during a
//! long one, and/or written as a node_exporter textfile (`--metrics-file`), atomically.
//! `euid_map_last_success_timestamp_seconds` is set only by a successful run, and pushes
//! use POST, so a failed run leaves the previous success time in the Pushgateway: the
//! metric alerts are written against.
//!
//! The stages keep their own counters; [`RunMetrics`] only holds them and renders a
//! snapshot ([`text`]). Never a secret or a raw identifier.

pub use crate::prom as text;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::client::{ClientStats, DURATION_BUCKETS};
use crate::input::ReadProgress;
use crate::mapper::MapperStats;
use crate::output::RefreshCounts;
use crate::record::{LiveCounts, RowStatus, StatusCounts};

/// How often a long run pushes.
pub const PUSH_EVERY: Duration = Duration::from_secs(30);
/// The Pushgateway `job` label.
pub const JOB: &str = "euid-map";

/// Where the metrics go.
#[derive(Debug, Clone, Default)]
pub struct Sinks {
    /// Pushgateway base URL (`http://pushgateway:9091`).
    pub push: Option<String>,
    /// node_exporter textfile path (`…/euid_map.prom`).
    pub file: Option<PathBuf>,
    /// Extra labels: grouping labels for the Pushgateway, sample labels in the textfile.
    pub labels: Vec<(String, String)>,
}

impl Sinks {
    /// Whether any sink is configured.
    pub fn any(&self) -> bool {
        self.push.is_some() || self.file.is_some()
    }
}

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

    /// The output rows per status written so far (the writer calls this).
    pub fn set_rows(&self, counts: &StatusCounts) {
        self.rows.set(counts);
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
        let mut p = text::Page::new(labels);
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

/// The last-success time a textfile holds, if any.
fn previous_success(path: &std::path::Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("euid_map_last_success_timestamp_seconds")?;
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            return None;
        }
        rest.rsplit(' ').next()?.trim().parse().ok()
    })
}

/// Why metrics could not be delivered (reported, never fatal to the run).
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The Pushgateway URL does not parse.
    #[error("--metrics-push {0:?} is not a URL")]
    BadUrl(String),
    /// The push failed.
    #[error("pushing metrics to {url}: {why}")]
    Push {
        /// The Pushgateway (without credentials).
        url: String,
        /// What failed.
        why: String,
    },
    /// Writing the textfile failed.
    #[error("writing metrics to {path}: {source}")]
    File {
        /// The textfile.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The Pushgateway URL of this job's group: `/metrics/job/euid-map/<label>/<value>…`.
///
/// # Errors
/// The base URL does not parse.
pub fn push_url(base: &str, labels: &[(String, String)]) -> Result<reqwest::Url, MetricsError> {
    let mut url = reqwest::Url::parse(base.trim_end_matches('/'))
        .map_err(|_| MetricsError::BadUrl(base.into()))?;
    {
        let mut segs = url
            .path_segments_mut()
            .map_err(|()| MetricsError::BadUrl(base.into()))?;
        segs.pop_if_empty().extend(["metrics", "job", JOB]);
        for (k, v) in labels {
            // The Pushgateway's own escape for values a path cannot hold: `name@base64`.
            if v.is_empty() || v.contains('/') {
                use base64::Engine;
                let b64 = base64::engine::general_purpose::URL_SAFE.encode(v);
                segs.push(&format!("{k}@base64"))
                    .push(if b64.is_empty() { "=" } else { &b64 });
            } else {
                segs.push(k).push(v);
            }
        }
    }
    Ok(url)
}

/// Writes `page` to `path` atomically (a temporary file in the same folder, then rename),
/// as the textfile collector requires.
///
/// # Errors
/// Writing or renaming failed.
pub fn write_file(path: &std::path::Path, page: &str) -> Result<(), MetricsError> {
    let err = |source| MetricsError::File {
        path: path.display().to_string(),
        source,
    };
    // Another user's node_exporter reads it: the umask's permissions, not the dataset's.
    crate::storage::write_atomic(
        path,
        crate::storage::unique_temp_name(path),
        page.as_bytes(),
        crate::storage::Perms::Umask,
    )
    .map_err(|e| err(e.source))
}

/// Delivers metrics pages to the sinks: every [`PUSH_EVERY`] while the run goes on, and
/// once more with the exit code when it ends.
pub struct Reporter {
    metrics: Arc<RunMetrics>,
    sinks: Sinks,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Sends one page to every sink; failures are logged, never fatal.
fn deliver(rt: &tokio::runtime::Runtime, http: &reqwest::Client, sinks: &Sinks, page: String) {
    if let Some(path) = &sinks.file {
        if let Err(e) = write_file(path, &page) {
            tracing::warn!(error = %e, "metrics not written");
        }
    }
    if let Some(base) = &sinks.push {
        let result = push_url(base, &sinks.labels).and_then(|url| {
            let shown = url.origin().ascii_serialization();
            rt.block_on(async {
                let r = http
                    .post(url)
                    .header("Content-Type", "text/plain; version=0.0.4")
                    .body(page)
                    .send()
                    .await
                    .map_err(|e| MetricsError::Push {
                        url: shown.clone(),
                        why: if e.is_connect() {
                            "connection failed".into()
                        } else {
                            "request failed".into()
                        },
                    })?;
                if r.status().is_success() {
                    Ok(())
                } else {
                    Err(MetricsError::Push {
                        url: shown,
                        why: format!("HTTP {}", r.status().as_u16()),
                    })
                }
            })
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "metrics not pushed");
        }
    }
}

impl Reporter {
    /// Starts delivering `metrics` to `sinks` (nothing happens without a sink).
    pub fn start(metrics: Arc<RunMetrics>, sinks: Sinks) -> Reporter {
        if sinks.push.is_none() {
            return Reporter {
                metrics,
                sinks,
                stop: None,
                thread: None,
            };
        }
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (m, s) = (Arc::clone(&metrics), sinks.clone());
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                let http = {
                    crate::tls::install_provider();
                    reqwest::Client::new()
                };
                let periodic = Sinks { file: None, ..s };
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    rx.recv_timeout(PUSH_EVERY)
                {
                    deliver(
                        &rt,
                        &http,
                        &periodic,
                        m.render(&periodic.labels, None, None),
                    );
                }
            })
            .ok();
        Reporter {
            metrics,
            sinks,
            stop: Some(tx),
            thread,
        }
    }

    /// Stops the periodic pushes and delivers the final page with the exit code.
    pub fn finish(mut self, exit: u8, success: bool) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if !self.sinks.any() {
            return;
        }
        // A run that wrote `_SUCCESS` sets the last-success time; any other keeps the one the
        // textfile holds (the Pushgateway keeps its own: pushes are POSTs), so the alert on
        // its age still has something to evaluate after a failed night.
        let last_success = if success {
            Some(chrono::Utc::now().timestamp_millis() as f64 / 1000.0)
        } else {
            self.sinks.file.as_deref().and_then(previous_success)
        };
        let page = self
            .metrics
            .render(&self.sinks.labels, Some(exit), last_success);
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => deliver(
                &rt,
                &{
                    crate::tls::install_provider();
                    reqwest::Client::new()
                },
                &self.sinks,
                page,
            ),
            Err(e) => tracing::warn!(error = %e, "metrics not delivered"),
        }
    }
}

#[cfg(test)]
mod tests {
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
