//! Misbehaving on purpose: a token-bucket rate limit, an in-flight cap, and random faults
//! drawn deterministically from the seed (the n-th request always gets the same draw).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A fault the emulator can inject into one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Bare 429, as the infrastructure in front of the operator sends.
    TooMany,
    /// 500 with the operator's JSON.
    Internal,
    /// 503, plain text.
    Unavailable,
    /// Close the connection without answering.
    Reset,
    /// Answer after a delay.
    Slow,
    /// Answer a binary request in base64 text mode.
    TextMode,
    /// Echo a wrong nonce.
    WrongNonce,
    /// v3: move the first `phone_hash` answer to the end of `email_hash` (same total, wrong
    /// per-kind counts), as a buggy server would.
    Shift,
}

impl Fault {
    /// Every fault, in the order `--faults` lists them.
    pub const ALL: [Fault; 8] = [
        Fault::TooMany,
        Fault::Internal,
        Fault::Unavailable,
        Fault::Reset,
        Fault::Slow,
        Fault::TextMode,
        Fault::WrongNonce,
        Fault::Shift,
    ];

    /// The name used in `--faults` and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Fault::TooMany => "429",
            Fault::Internal => "500",
            Fault::Unavailable => "503",
            Fault::Reset => "reset",
            Fault::Slow => "slow",
            Fault::TextMode => "text",
            Fault::WrongNonce => "nonce",
            Fault::Shift => "shift",
        }
    }
}

/// Fault probabilities, parsed from `429=0.1,reset=0.05,...`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    /// Probability of each fault per encrypted request; the sum is at most 1.
    pub probabilities: Vec<(Fault, f64)>,
    /// Latency of a slow answer: it leaves this long after its request arrived, the
    /// emulator's own work included, as a real operator's latency includes its work.
    pub slow: Duration,
}

impl FaultPlan {
    /// Parses `name=probability` pairs separated by commas.
    ///
    /// # Errors
    /// An unknown name, a probability outside 0..=1, or a sum above 1.
    pub fn parse(spec: &str, slow: Duration) -> Result<FaultPlan, super::OperatorConfigError> {
        let bad = super::OperatorConfigError::Faults;
        let mut probabilities = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, p) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("expected name=probability, got {part:?}")))?;
            let fault = Fault::ALL
                .into_iter()
                .find(|f| f.name() == name.trim())
                .ok_or_else(|| bad(format!("unknown fault {name:?}; known: 429, 500, 503, reset, slow, text, nonce, shift")))?;
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| bad(format!("{p:?} is not a probability")))?;
            if !(0.0..=1.0).contains(&p) {
                return Err(bad(format!("{p} is not between 0 and 1")));
            }
            probabilities.push((fault, p));
        }
        if probabilities.iter().map(|(_, p)| p).sum::<f64>() > 1.0 + 1e-9 {
            return Err(bad("probabilities add up to more than 1".into()));
        }
        Ok(FaultPlan {
            probabilities,
            slow,
        })
    }
}

/// Draws faults request by request.
#[derive(Debug)]
pub struct Injector {
    plan: FaultPlan,
    seed: u64,
    counter: AtomicU64,
}

impl Injector {
    /// An injector for `plan`, seeded.
    pub fn new(plan: FaultPlan, seed: u64) -> Injector {
        Injector {
            plan,
            seed,
            counter: AtomicU64::new(0),
        }
    }

    /// The fault for the next request, if any.
    pub fn draw(&self) -> Option<Fault> {
        if self.plan.probabilities.is_empty() {
            return None;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut x = self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        x = (x ^ (x >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        x ^= x >> 33;
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        let mut acc = 0.0;
        for (f, p) in &self.plan.probabilities {
            acc += p;
            if u < acc {
                return Some(*f);
            }
        }
        None
    }

    /// Latency of a slow answer (see [`FaultPlan::slow`]).
    pub fn slow(&self) -> Duration {
        self.plan.slow
    }
}

/// The operator's rate limit: `rate` requests per second with a burst of `rate` (governor's
/// GCRA, the same crate the client paces itself with).
pub struct TokenBucket(governor::DefaultDirectRateLimiter);

impl std::fmt::Debug for TokenBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenBucket")
    }
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32) -> TokenBucket {
        let rate = std::num::NonZeroU32::new(rate.max(1)).expect("at least 1");
        TokenBucket(governor::RateLimiter::direct(governor::Quota::per_second(
            rate,
        )))
    }

    /// Takes a token if one is available.
    pub fn try_take(&self) -> bool {
        self.0.check().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_and_bad_ones_are_refused() {
        let p = FaultPlan::parse("429=0.1, reset=0.2", Duration::ZERO).expect("parses");
        assert_eq!(
            p.probabilities,
            vec![(Fault::TooMany, 0.1), (Fault::Reset, 0.2)]
        );
        assert!(FaultPlan::parse("boom=0.1", Duration::ZERO).is_err());
        assert!(FaultPlan::parse("429=0.7,500=0.7", Duration::ZERO).is_err());
    }

    #[test]
    fn draws_are_deterministic_and_follow_the_probabilities() {
        let plan = FaultPlan::parse("503=0.25", Duration::ZERO).expect("parses");
        let a: Vec<_> = {
            let i = Injector::new(plan.clone(), 3);
            (0..4000).map(|_| i.draw()).collect()
        };
        let b: Vec<_> = {
            let i = Injector::new(plan, 3);
            (0..4000).map(|_| i.draw()).collect()
        };
        assert_eq!(a, b);
        let hits = a.iter().filter(|f| f.is_some()).count();
        assert!((800..1200).contains(&hits), "{hits}");
    }

    /// On governor's fake clock: exactly the burst, then nothing until time passes, then one
    /// token per 1/rate s (the real clock made the count depend on the machine's speed).
    #[test]
    fn token_bucket_grants_its_burst_then_refuses() {
        use governor::clock::FakeRelativeClock;
        let clock = FakeRelativeClock::default();
        let quota = governor::Quota::per_second(std::num::NonZeroU32::new(5).expect("5"));
        let tb = governor::RateLimiter::direct_with_clock(quota, clock.clone());
        let granted = (0..20).filter(|_| tb.check().is_ok()).count();
        assert_eq!(granted, 5, "the burst");
        clock.advance(Duration::from_millis(199));
        assert!(tb.check().is_err(), "not yet a fifth of a second");
        clock.advance(Duration::from_millis(1));
        assert!(tb.check().is_ok(), "one token per 200 ms");
        assert!(tb.check().is_err());
        // The emulator's own bucket is that limiter on the real clock.
        assert!(TokenBucket::new(5).try_take());
    }
}
