//! The upload rate limit: one token bucket (governor) shared by every part in flight, with an
//! optional time-of-day schedule. A part waits for its whole length in tokens before it is sent;
//! the bucket holds at most one part, so the long-run rate is the limit.
//!
//! It owns the values the config writes for it ([`Rate`], [`RateWindow`], [`TimeOfDay`]), parsed
//! once when the config is read; it does not read the config itself.

use chrono::{NaiveTime, Timelike};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// A rate in bytes per second, written like "40MiB" or "5MB"; 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(pub u64);

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Rate(n)),
            Raw::Text(t) if t.trim() == "unlimited" => Ok(Rate(0)),
            Raw::Text(t) => t
                .trim()
                .parse::<bytesize::ByteSize>()
                .map(|b| Rate(b.as_u64()))
                .map_err(|e| {
                    serde::de::Error::custom(format!("`{t}` is not a rate in bytes/s: {e}"))
                }),
        }
    }
}

/// A local time of day to the minute, written "HH:MM" (00:00 to 23:59).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay {
    /// Minutes after midnight, below 1440.
    minute: u16,
}

impl TimeOfDay {
    /// The time of day of `time`, to the minute.
    pub fn of(time: impl Timelike) -> TimeOfDay {
        let minute = time.hour() * 60 + time.minute();
        TimeOfDay {
            minute: u16::try_from(minute).expect("a time of day is under 1440 minutes"),
        }
    }

    /// The local time of day now.
    pub fn now() -> TimeOfDay {
        TimeOfDay::of(chrono::Local::now())
    }
}

impl FromStr for TimeOfDay {
    type Err = String;

    fn from_str(text: &str) -> Result<TimeOfDay, String> {
        NaiveTime::parse_from_str(text.trim(), "%H:%M")
            .map(TimeOfDay::of)
            .map_err(|_| format!("`{text}` is not a time of day HH:MM (00:00 to 23:59)"))
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.minute / 60, self.minute % 60)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// From `from` to `to` (local time; may wrap past midnight) the limit is `max_upload_rate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateWindow {
    pub from: TimeOfDay,
    pub to: TimeOfDay,
    pub max_upload_rate: Rate,
}

impl RateWindow {
    fn contains(&self, time: TimeOfDay) -> bool {
        if self.from <= self.to {
            (self.from..self.to).contains(&time)
        } else {
            time >= self.from || time < self.to
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
    windows: Vec<RateWindow>,
    burst: u32,
    /// The rate in force and its bucket; rebuilt when the schedule moves to another rate.
    current: Mutex<(u64, Option<Arc<DefaultDirectRateLimiter>>)>,
}

impl Throttle {
    /// `burst` is the largest single request (the part size).
    pub fn new(default: Option<Rate>, schedule: &[RateWindow], burst: u64) -> Throttle {
        Throttle {
            inner: Arc::new(Inner {
                default: default.map_or(0, |r| r.0),
                windows: schedule.to_vec(),
                burst: u32::try_from(burst).unwrap_or(u32::MAX).max(1),
                current: Mutex::new((0, None)),
            }),
        }
    }

    /// Unlimited.
    pub fn none() -> Throttle {
        Throttle::new(None, &[], 1)
    }

    /// The rate in force at `time` (0 = unlimited).
    fn rate_at(&self, time: TimeOfDay) -> u64 {
        let inner = &self.inner;
        inner
            .windows
            .iter()
            .find(|w| w.contains(time))
            .map_or(inner.default, |w| w.max_upload_rate.0)
    }

    fn bucket(&self) -> Option<Arc<DefaultDirectRateLimiter>> {
        let rate = self.rate_at(TimeOfDay::now());
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

    fn at(text: &str) -> TimeOfDay {
        text.parse().unwrap()
    }

    fn window(from: &str, to: &str, rate: u64) -> RateWindow {
        RateWindow {
            from: at(from),
            to: at(to),
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
        assert_eq!(t.rate_at(at("23:00")), 0);
        assert_eq!(t.rate_at(at("03:00")), 0);
        assert_eq!(t.rate_at(at("06:00")), 100);
        assert_eq!(t.rate_at(at("12:30")), 50);
        assert_eq!(t.rate_at(at("13:00")), 100);
    }

    #[test]
    fn times_of_day_parse_strictly() {
        assert_eq!("06:30".parse(), Ok(TimeOfDay { minute: 390 }));
        assert_eq!(at("23:59").to_string(), "23:59");
        for bad in ["24:00", "25:00", "12:60", "6", "noon", ""] {
            assert!(bad.parse::<TimeOfDay>().is_err(), "{bad}");
        }
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
