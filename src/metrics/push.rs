//! Where the metrics page goes: a Pushgateway (every [`PUSH_EVERY`] while the run goes on,
//! and once more with the exit code when it ends) and a node_exporter textfile, written
//! atomically at the end.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::RunMetrics;

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

/// The last-success time a textfile holds, if any.
pub(super) fn previous_success(path: &std::path::Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("euid_map_last_success_timestamp_seconds")?;
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            return None;
        }
        rest.rsplit(' ').next()?.trim().parse().ok()
    })
}
