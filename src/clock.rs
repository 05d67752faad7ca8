//! The wall clock as the protocol and the ledger count it: whole seconds since the Unix epoch.
//! The one place that reads it that way; it owns no timers, deadlines or time zones (durations
//! and `Instant`s stay with their users, local time of day with [`crate::ratelimit`]).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is set before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// [`unix_now`] as SQLite stores it.
pub fn unix_now_i64() -> i64 {
    i64::try_from(unix_now()).unwrap_or(i64::MAX)
}
