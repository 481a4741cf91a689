//! The one shared request-rate limiter (governor), awaited before every send including
//! retries, after the request's in-flight slot ([`super::concurrency`]) is taken, so that a
//! quiet moment never releases a burst.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// The request quota: `rps` per second with a burst of 1, so requests are paced evenly and a
/// quiet moment never turns into a burst the operator answers with 429s.
pub fn quota(rps: NonZeroU32) -> Quota {
    Quota::per_second(rps).allow_burst(NonZeroU32::MIN)
}

/// Builds the shared limiter for [`quota`].
pub fn limiter(rps: NonZeroU32) -> DefaultDirectRateLimiter {
    RateLimiter::direct(quota(rps))
}

#[cfg(test)]
mod tests {
    use super::*;

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
