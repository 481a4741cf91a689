//! The one shared request-rate limiter (governor), awaited before every send including
//! retries, and the adaptive in-flight window (AIMD): halve on 429/503, grow by about one per
//! window of successes, never above the configured concurrency.

use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Notify;

/// The request quota: `rps` per second with a burst of 1, so requests are paced evenly and a
/// quiet moment never turns into a burst the operator answers with 429s.
pub fn quota(rps: NonZeroU32) -> Quota {
    Quota::per_second(rps).allow_burst(NonZeroU32::MIN)
}

/// Builds the shared limiter for [`quota`].
pub fn limiter(rps: NonZeroU32) -> DefaultDirectRateLimiter {
    RateLimiter::direct(quota(rps))
}

/// The adaptive concurrency window.
#[derive(Debug)]
pub struct Window {
    max: usize,
    state: Mutex<(f64, usize)>, // (window, in flight)
    notify: Notify,
    peak: std::sync::atomic::AtomicUsize,
}

/// A slot in the window; released on drop.
pub struct Slot<'a>(&'a Window);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.state.lock().expect("window lock").1 -= 1;
        self.0.notify.notify_waiters();
    }
}

impl Window {
    /// A window that starts and tops out at `max`.
    pub fn new(max: usize) -> Window {
        let max = max.max(1);
        Window {
            max,
            state: Mutex::new((max as f64, 0)),
            notify: Notify::new(),
            peak: Default::default(),
        }
    }

    /// Waits for a free slot.
    pub async fn acquire(&self) -> Slot<'_> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.state.lock().expect("window lock");
                if st.1 < (st.0.floor() as usize).max(1) {
                    st.1 += 1;
                    self.peak
                        .fetch_max(st.1, std::sync::atomic::Ordering::Relaxed);
                    return Slot(self);
                }
            }
            notified.await;
        }
    }

    /// Multiplicative decrease after 429 or 503.
    pub fn backoff(&self) {
        let mut st = self.state.lock().expect("window lock");
        st.0 = (st.0 / 2.0).max(1.0);
    }

    /// Additive increase after a success.
    pub fn success(&self) {
        let mut st = self.state.lock().expect("window lock");
        st.0 = (st.0 + 1.0 / st.0).min(self.max as f64);
        drop(st);
        self.notify.notify_waiters();
    }

    /// The window's ceiling.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The current window size.
    pub fn size(&self) -> f64 {
        self.state.lock().expect("window lock").0
    }

    /// Most requests ever in flight at once.
    pub fn peak(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_halves_on_backoff_and_regrows_to_the_max() {
        let w = Window::new(16);
        w.backoff();
        w.backoff();
        assert_eq!(w.size(), 4.0);
        for _ in 0..1000 {
            w.success();
        }
        assert_eq!(w.size(), 16.0);
        for _ in 0..10 {
            w.backoff();
        }
        assert_eq!(w.size(), 1.0);
    }

    #[tokio::test]
    async fn window_never_admits_more_than_its_size() {
        let w = Window::new(2);
        let a = w.acquire().await;
        let _b = w.acquire().await;
        let third_admitted = tokio::select! {
            biased;
            _ = w.acquire() => true,
            _ = std::future::ready(()) => false,
        };
        assert!(!third_admitted, "a third slot must wait");
        drop(a);
        let _c = w.acquire().await;
        assert_eq!(w.peak(), 2);
    }

    #[test]
    fn limiter_grants_one_permit_per_interval_on_a_fake_clock() {
        use governor::clock::FakeRelativeClock;
        let clock = FakeRelativeClock::default();
        let q = quota(NonZeroU32::new(20).expect("non-zero"));
        let lim = RateLimiter::direct_with_clock(q, clock.clone());
        let mut granted = 0;
        for _ in 0..1000 {
            if lim.check().is_ok() {
                granted += 1;
            }
            clock.advance(std::time::Duration::from_millis(10)); // 10 s in total
        }
        assert!(
            (200..=201).contains(&granted),
            "{granted} permits in 10 s at 20/s"
        );
    }
}
