//! The retry policy: exponential backoff with full jitter, bounded by attempts and elapsed time.
//!
//! The delay before retry `n` (0-based) is uniform in `[0, min(cap, base · 2ⁿ)]` ("full jitter"),
//! so many workers failing together do not retry together. The RNG is injected so tests can pin it,
//! and elapsed time uses `tokio::time::Instant` so tests run under `tokio::time::pause()`.

use super::outcome::Pace;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;

/// Retry limits, from the config's `[retry]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// First backoff ceiling.
    #[serde(with = "humantime_serde")]
    pub base: Duration,
    /// First backoff ceiling when the service says its quota is exceeded.
    #[serde(with = "humantime_serde")]
    pub slow_base: Duration,
    /// Largest backoff ceiling.
    #[serde(with = "humantime_serde")]
    pub cap: Duration,
    /// Attempts of one call before its file fails (the first try counts).
    pub max_attempts: u32,
    /// Time after the first failure of one call past which its file fails; 0 = no limit.
    #[serde(with = "humantime_serde")]
    pub max_elapsed: Duration,
    /// Attempts for answers that are not the protocol's (HTML error pages, unknown 4xx).
    pub few_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(500),
            slow_base: Duration::from_secs(5),
            cap: Duration::from_secs(60),
            max_attempts: 12,
            max_elapsed: Duration::from_secs(30 * 60),
            few_attempts: 3,
        }
    }
}

/// The retry state of one call (one part, one init, one finish).
#[derive(Debug, Clone)]
pub struct Attempts {
    failures: u32,
    first_failure: Option<Instant>,
}

impl Default for Attempts {
    fn default() -> Self {
        Self::new()
    }
}

impl Attempts {
    pub fn new() -> Self {
        Attempts {
            failures: 0,
            first_failure: None,
        }
    }

    /// The state of a call that already failed `failures` times, its first failure not timed
    /// (a count read back from storage: a policy with `max_elapsed` 0 needs nothing more).
    pub fn after(failures: u32) -> Self {
        Attempts {
            failures,
            first_failure: None,
        }
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

impl RetryPolicy {
    /// The ceiling of the delay before retry `n` (0-based).
    pub fn ceiling(&self, n: u32, pace: Pace) -> Duration {
        let base = match pace {
            Pace::Slow => self.slow_base,
            Pace::Normal | Pace::Few => self.base,
        };
        base.saturating_mul(1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX))
            .min(self.cap.max(base))
    }

    /// Record one failure; the delay to wait before the next attempt, or `None` to give up.
    pub fn next_delay(
        &self,
        attempts: &mut Attempts,
        pace: Pace,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        let now = Instant::now();
        let first = *attempts.first_failure.get_or_insert(now);
        attempts.failures = attempts.failures.saturating_add(1);
        let limit = match pace {
            Pace::Few => self.few_attempts.min(self.max_attempts),
            Pace::Normal | Pace::Slow => self.max_attempts,
        };
        if attempts.failures >= limit {
            return None;
        }
        if !self.max_elapsed.is_zero() && now.duration_since(first) >= self.max_elapsed {
            return None;
        }
        let ceiling = self.ceiling(attempts.failures - 1, pace);
        Some(Duration::from_nanos(
            rng.gen_range(0..=ceiling.as_nanos() as u64),
        ))
    }
}

/// serde for `Duration` as humantime text ("500ms", "1m 30s").
pub mod humantime_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim_start().starts_with('-') {
            return Err(serde::de::Error::custom("must be more than zero"));
        }
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration like \"30s\" or \"500ms\": {e}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(100),
            slow_base: Duration::from_secs(1),
            cap: Duration::from_secs(5),
            max_attempts: 8,
            max_elapsed: Duration::from_secs(60),
            few_attempts: 3,
        }
    }

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let p = policy();
        let ceilings: Vec<u64> = (0..8)
            .map(|n| p.ceiling(n, Pace::Normal).as_millis() as u64)
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(p.ceiling(0, Pace::Slow), Duration::from_secs(1));
        assert_eq!(p.ceiling(40, Pace::Normal), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts() {
        let p = policy();
        let mut a = Attempts::new();
        let mut rng = StdRng::seed_from_u64(1);
        let delays: Vec<_> =
            std::iter::from_fn(|| p.next_delay(&mut a, Pace::Normal, &mut rng)).collect();
        assert_eq!(
            delays.len(),
            7,
            "the first try plus 7 retries make 8 attempts"
        );
        let mut a = Attempts::new();
        let few = std::iter::from_fn(|| p.next_delay(&mut a, Pace::Few, &mut rng)).count();
        assert_eq!(few, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_elapsed() {
        let mut p = policy();
        p.max_attempts = u32::MAX;
        let mut a = Attempts::new();
        let mut rng = StdRng::seed_from_u64(2);
        let mut waited = Duration::ZERO;
        while let Some(d) = p.next_delay(&mut a, Pace::Normal, &mut rng) {
            tokio::time::sleep(d).await;
            waited += d;
        }
        assert!(waited >= p.max_elapsed, "{waited:?}");
        assert!(waited <= p.max_elapsed + p.cap, "{waited:?}");
    }

    proptest! {
        #[test]
        fn delays_stay_within_their_ceiling(seed in any::<u64>(), slow in any::<bool>()) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            rt.block_on(async {
                let p = policy();
                let pace = if slow { Pace::Slow } else { Pace::Normal };
                let mut a = Attempts::new();
                let mut rng = StdRng::seed_from_u64(seed);
                let mut n = 0;
                while let Some(d) = p.next_delay(&mut a, pace, &mut rng) {
                    prop_assert!(d <= p.ceiling(n, pace));
                    prop_assert!(d <= p.cap.max(p.slow_base));
                    tokio::time::sleep(d).await;
                    n += 1;
                }
                prop_assert!(n < p.max_attempts);
                Ok(())
            })?;
        }
    }
}
