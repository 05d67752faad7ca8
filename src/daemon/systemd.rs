//! systemd integration: READY when watching, STOPPING on shutdown, and the watchdog fed from the
//! event loop (so a wedged loop gets the service restarted). All no-ops outside systemd.

use sd_notify::NotifyState;
use std::time::Duration;

pub fn ready() {
    let _ = sd_notify::notify(&[NotifyState::Ready]);
}

pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

pub fn status(text: &str) {
    let _ = sd_notify::notify(&[NotifyState::Status(text)]);
}

/// How often to feed the watchdog, if systemd asked for one.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|every| every / 2)
}

pub fn feed_watchdog() {
    let _ = sd_notify::notify(&[NotifyState::Watchdog]);
}
