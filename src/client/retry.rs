//! Retry policy: which errors are worth another attempt ([`ClientError::is_retryable`]) and
//! how long to wait (exponential backoff with full jitter, `Retry-After` honoured), and
//! **where a request is retried**: [`Client::with_retries`](super::Client), the one loop
//! every call goes through.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::ClientError;

/// Default of [`RetryPolicy::stall`]: two per-request timeouts.
pub const DEFAULT_STALL: Duration = Duration::from_secs(120);

/// The backoff schedule.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub max_retries: u32,
    /// First backoff ceiling.
    pub base: Duration,
    /// Largest backoff.
    pub cap: Duration,
    /// Total time one batch may take, retries included.
    pub deadline: Duration,
    /// How long the run waits with no answer at all from the operator (no HTTP response
    /// to any request) before it stops (`--stall-timeout`): an operator that accepts
    /// connections and never answers fails the run in minutes, not after every retry of
    /// every batch has timed out.
    pub stall: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_retries: 8,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(20),
            deadline: Duration::from_secs(600),
            stall: DEFAULT_STALL,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0-based): a uniform draw in
    /// `[0, min(cap, base·2^attempt)]` ("full jitter"), or the server's `Retry-After` when it
    /// gave one (capped). `unit` is a uniform number in `[0, 1)`.
    pub fn backoff(&self, attempt: u32, err: &ClientError, unit: f64) -> Duration {
        if let ClientError::RateLimited {
            retry_after: Some(s),
        } = err
        {
            return (*s).min(self.cap);
        }
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.cap);
        ceiling.mul_f64(unit.clamp(0.0, 1.0))
    }
}

impl ClientError {
    /// Whether another attempt may succeed: 429, 5xx, timeouts, connection errors, a wrong
    /// nonce or an unreadable answer. Never 400 or 401.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::RateLimited { .. }
                | ClientError::Server { .. }
                | ClientError::Timeout
                | ClientError::Connection(_)
                | ClientError::NonceMismatch
                | ClientError::BadResponse(_)
                | ClientError::ClockSkew
        )
    }

    /// Whether the operator (or what is in front of it) is saturated: 429, 503, a timeout.
    pub fn is_backpressure(&self) -> bool {
        matches!(
            self,
            ClientError::RateLimited { .. }
                | ClientError::Server { status: 503 }
                | ClientError::Timeout
        )
    }

    /// Whether the operator was not reached at all (connection, DNS, TLS, timeout).
    pub fn is_network(&self) -> bool {
        matches!(self, ClientError::Timeout | ClientError::Connection(_))
    }

    /// The counter this error is retried under.
    pub fn cause(&self) -> &'static str {
        match self {
            ClientError::RateLimited { .. } => "429",
            ClientError::Server { .. } => "5xx",
            ClientError::Timeout => "timeout",
            ClientError::Connection(_) => "connection",
            ClientError::NonceMismatch => "nonce",
            ClientError::ClockSkew => "clock",
            _ => "other",
        }
    }
}

impl super::Client {
    /// Resolves once the operator has sent no HTTP answer, to any request, for the stall
    /// timeout counted from the later of its last answer and `since` (since when this call
    /// waits on it: a run that sent nothing for a while, or waited out a `Retry-After`, is
    /// not stalled); returns the time waited.
    async fn stalled(&self, since: Instant) -> Duration {
        loop {
            // A Retry-After pause of the whole client is the client waiting too: the
            // countdown starts again when it ends.
            let pause_end = self
                .paused_until
                .lock()
                .expect("pause lock")
                .map(tokio::time::Instant::into_std);
            let last = (*self.last_answer.lock().expect("last answer lock"))
                .max(since)
                .max(pause_end.unwrap_or(since));
            let waited = Instant::now().saturating_duration_since(last);
            if waited >= self.retry.stall {
                return waited;
            }
            let left = self.retry.stall - waited;
            tokio::time::sleep(left.clamp(Duration::from_millis(10), Duration::from_secs(1))).await;
        }
    }

    /// Runs `op` until it succeeds, the error is final, or the retry budget is spent; backs
    /// the window off on 429/503. Each call of `op` must build a fresh envelope.
    pub(super) async fn with_retries<T, F, Fut>(&self, mut op: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut skew_retried = false;
        // Since when this call has waited on the operator without an answer: its start, or
        // the end of the wait after its last answer (a 429's Retry-After or a 5xx's backoff
        // is the client waiting, not the operator being silent).
        let mut silent_since = started;
        loop {
            let answer = tokio::select! {
                r = op() => r,
                waited = self.stalled(silent_since) => {
                    return Err(ClientError::Stalled {
                        endpoint: self.endpoint.clone(),
                        secs: waited.as_secs(),
                    })
                }
            };
            let answered = !matches!(&answer, Err(e) if e.is_network());
            if answered {
                // An HTTP answer, whatever it says: the operator is alive.
                *self.last_answer.lock().expect("last answer lock") = Instant::now();
            }
            let err = match answer {
                Ok(out) => {
                    self.reached.store(true, Ordering::Relaxed);
                    return Ok(out);
                }
                Err(e) => e,
            };
            if let ClientError::RateLimited { retry_after } = &err {
                self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                if let Some(d) = retry_after {
                    // Bounded like the retry's own wait: a proxy's "Retry-After: 86400" (or a
                    // huge value that would overflow) must not stall the run for a day.
                    let until = tokio::time::Instant::now() + (*d).min(self.retry.cap);
                    let mut p = self.paused_until.lock().expect("pause lock");
                    *p = Some(p.map_or(until, |old| old.max(until)));
                }
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
            if answered {
                silent_since = Instant::now();
            }
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_the_cap_and_honours_retry_after() {
        let p = RetryPolicy::default();
        let e = ClientError::Timeout;
        assert_eq!(p.backoff(0, &e, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(3, &e, 1.0), Duration::from_millis(800));
        assert_eq!(p.backoff(30, &e, 1.0), p.cap);
        assert_eq!(p.backoff(3, &e, 0.0), Duration::ZERO);
        let ra = ClientError::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(p.backoff(0, &ra, 0.0), Duration::from_secs(3));
    }

    #[test]
    fn classification_retries_transient_errors_only() {
        assert!(ClientError::Server { status: 503 }.is_retryable());
        assert!(ClientError::RateLimited { retry_after: None }.is_retryable());
        assert!(!ClientError::Unauthorized.is_retryable());
        assert!(!ClientError::Rejected {
            message: "x".into()
        }
        .is_retryable());
    }
}
