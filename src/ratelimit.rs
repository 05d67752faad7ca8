//! The upload rate limit: one token bucket (governor) shared by every part in flight, with an
//! optional time-of-day schedule. A part waits for its whole length in tokens before it is sent;
//! the bucket holds at most one part, so the long-run rate is the limit.

use crate::config::{Rate, RateWindow};
use chrono::{NaiveTime, Timelike};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

/// "HH:MM" as minutes after midnight.
pub fn parse_time_of_day(text: &str) -> Option<u32> {
    let t = NaiveTime::parse_from_str(text.trim(), "%H:%M").ok()?;
    Some(t.hour() * 60 + t.minute())
}

#[derive(Debug, Clone)]
struct Window {
    from: u32,
    to: u32,
    rate: u64,
}

impl Window {
    fn contains(&self, minute: u32) -> bool {
        if self.from <= self.to {
            (self.from..self.to).contains(&minute)
        } else {
            minute >= self.from || minute < self.to
        }
    }
}

/// The limiter; cheap to clone.
#[derive(Debug, Clone)]
pub struct Throttle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    default: u64,
    windows: Vec<Window>,
    burst: u32,
    /// The rate in force and its bucket; rebuilt when the schedule moves to another rate.
    current: Mutex<(u64, Option<Arc<DefaultDirectRateLimiter>>)>,
}

impl Throttle {
    /// `burst` is the largest single request (the part size).
    pub fn new(default: Option<Rate>, schedule: &[RateWindow], burst: u64) -> Throttle {
        let windows = schedule
            .iter()
            .filter_map(|w| {
                Some(Window {
                    from: parse_time_of_day(&w.from)?,
                    to: parse_time_of_day(&w.to)?,
                    rate: w.max_upload_rate.0,
                })
            })
            .collect();
        Throttle {
            inner: Arc::new(Inner {
                default: default.map_or(0, |r| r.0),
                windows,
                burst: u32::try_from(burst).unwrap_or(u32::MAX).max(1),
                current: Mutex::new((0, None)),
            }),
        }
    }

    /// Unlimited.
    pub fn none() -> Throttle {
        Throttle::new(None, &[], 1)
    }

    /// The rate in force at `minute` after local midnight (0 = unlimited).
    fn rate_at(&self, minute: u32) -> u64 {
        let inner = &self.inner;
        inner
            .windows
            .iter()
            .find(|w| w.contains(minute))
            .map_or(inner.default, |w| w.rate)
    }

    fn bucket(&self) -> Option<Arc<DefaultDirectRateLimiter>> {
        let now = chrono::Local::now();
        let rate = self.rate_at(now.hour() * 60 + now.minute());
        let mut current = self.inner.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.0 != rate || (rate > 0 && current.1.is_none()) {
            let bucket = NonZeroU32::new(u32::try_from(rate).unwrap_or(u32::MAX)).map(|per_sec| {
                let burst = NonZeroU32::new(self.inner.burst).expect("burst is at least 1");
                Arc::new(RateLimiter::direct(
                    Quota::per_second(per_sec).allow_burst(burst),
                ))
            });
            tracing::info!(bytes_per_sec = rate, "upload rate limit in force");
            *current = (rate, bucket);
        }
        current.1.clone()
    }

    /// Wait until `bytes` may be sent.
    pub async fn acquire(&self, bytes: u64) {
        let Some(bucket) = self.bucket() else { return };
        let mut left = bytes;
        while left > 0 {
            let take = left.min(u64::from(self.inner.burst)) as u32;
            let n = NonZeroU32::new(take).expect("take is positive");
            // n never exceeds the burst, so this cannot fail.
            let _ = bucket.until_n_ready(n).await;
            left -= u64::from(take);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(from: &str, to: &str, rate: u64) -> RateWindow {
        RateWindow {
            from: from.into(),
            to: to.into(),
            max_upload_rate: Rate(rate),
        }
    }

    #[test]
    fn schedule_windows_may_wrap_past_midnight() {
        let t = Throttle::new(
            Some(Rate(100)),
            &[window("22:00", "06:00", 0), window("12:00", "13:00", 50)],
            10,
        );
        assert_eq!(t.rate_at(23 * 60), 0);
        assert_eq!(t.rate_at(3 * 60), 0);
        assert_eq!(t.rate_at(6 * 60), 100);
        assert_eq!(t.rate_at(12 * 60 + 30), 50);
        assert_eq!(t.rate_at(13 * 60), 100);
    }

    #[test]
    fn times_of_day_parse_strictly() {
        assert_eq!(parse_time_of_day("06:30"), Some(390));
        assert_eq!(parse_time_of_day("24:00"), None);
        assert_eq!(parse_time_of_day("6"), None);
    }

    #[tokio::test]
    async fn unlimited_never_waits() {
        let t = Throttle::none();
        tokio::time::timeout(
            std::time::Duration::from_millis(100),
            t.acquire(u64::MAX / 2),
        )
        .await
        .unwrap();
    }
}
