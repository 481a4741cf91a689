//! The connection of a mapping run: the shared client, and for `--env local` the embedded
//! emulator it talks to (started and stopped here, the one place client and emulator meet).

use std::sync::Arc;
use std::time::Instant;

use crate::config::MapSettings;
use crate::error::Error;
use crate::output::Manifest;

/// Starts the embedded emulator (demo key, seed 1) on loopback and points `cfg` at it with
/// the demo credentials: the one place the client side starts it.
///
/// # Errors
/// The emulator cannot listen on loopback.
pub async fn start_embedded(
    cfg: &mut crate::client::ClientConfig,
) -> Result<crate::operator::LocalOperator, Error> {
    let op = crate::operator::spawn_local(crate::operator::Config::demo(1))
        .await
        .map_err(|e| Error::Internal(format!("cannot start the embedded operator: {e}")))?;
    cfg.base_url = op.base_url();
    cfg.api_key = crate::secret::Secret::new(crate::protocol::DEMO_API_KEY.to_string());
    cfg.secret = crate::protocol::envelope::decode_secret(crate::protocol::DEMO_CLIENT_SECRET)?;
    tracing::debug!(url = %op.base_url(), "embedded local operator started (demo credentials; its ids are not real EUIDs)");
    Ok(op)
}

/// A connected client, and the embedded operator behind it for `--env local`.
pub(crate) struct Connection {
    pub client: Arc<crate::client::Client>,
    pub local: Option<crate::operator::LocalOperator>,
}

impl Connection {
    /// Connects as `settings` say, starting the embedded operator if asked.
    pub(crate) async fn open(settings: &MapSettings) -> Result<Connection, Error> {
        let mut client_cfg = settings.client.clone();
        let local = if settings.embedded_operator {
            Some(start_embedded(&mut client_cfg).await?)
        } else {
            None
        };
        Ok(Connection {
            client: Arc::new(crate::client::Client::new(&client_cfg)?),
            local,
        })
    }

    /// Hands the client's and the mapper's counters to the run's metrics (the reader's go
    /// with [`super::Job::progress`]).
    pub(crate) fn attach_metrics(
        &self,
        job: &super::Job<'_>,
        mstats: &Arc<crate::mapper::MapperStats>,
    ) {
        job.run
            .metrics
            .attach_client(Arc::clone(&self.client.stats));
        job.run.metrics.attach_mapper(Arc::clone(mstats));
    }

    /// Stops the embedded operator, if any.
    pub(crate) async fn close(self) {
        if let Some(op) = self.local {
            op.stop().await;
        }
    }

    /// Progress text: identities answered, requests, retries, 429s.
    pub(crate) fn progress_extra(
        &self,
        mstats: &Arc<crate::mapper::MapperStats>,
    ) -> crate::progress::Extra {
        use std::sync::atomic::Ordering;
        let (client, ms, t0) = (Arc::clone(&self.client), Arc::clone(mstats), Instant::now());
        Box::new(move || {
            let cs = &client.stats;
            let req = cs.requests.load(Ordering::Relaxed);
            // A silent operator shows as waiting, not as a finished read at 100 %.
            let waiting = match client.waiting_for() {
                Some(w) if w.as_secs() >= 10 => {
                    format!(
                        ", WAITING: no answer from the operator for {} s",
                        w.as_secs()
                    )
                }
                _ => String::new(),
            };
            format!(
                ", {} identities answered, {} requests ({:.1}/s), {} retries, {} × 429{waiting}",
                ms.answered.load(Ordering::Relaxed),
                req,
                req as f64 / t0.elapsed().as_secs_f64().max(1e-3),
                cs.retries.load(Ordering::Relaxed),
                cs.throttled.load(Ordering::Relaxed)
            )
        })
    }

    /// The manifest fields every mapping run adds.
    pub(crate) fn annotate(
        &self,
        manifest: &mut Manifest,
        settings: &MapSettings,
        mstats: &crate::mapper::MapperStats,
    ) {
        use std::sync::atomic::Ordering;
        manifest.environment = Some(settings.env.clone());
        manifest.key_id = Some(crate::credentials::key_id(&settings.client.api_key));
        manifest.base_url = Some(if settings.embedded_operator {
            "embedded local operator".to_string()
        } else {
            settings.client.base_url.clone()
        });
        let sent = mstats.unique_sent.load(Ordering::Relaxed);
        manifest.hashes_sent = Some(sent);
        // Without the answer cache every repeat is sent again: what was sent is then not a
        // count of distinct hashes, and none is claimed.
        manifest.unique_hashes_sent = (settings.cache_bytes > 0).then_some(sent);
        manifest.deduplicated = Some(mstats.deduplicated.load(Ordering::Relaxed));
        manifest.client = Some(self.client.stats.report());
        manifest.peak_in_flight = Some(self.client.peak_in_flight());
    }
}
