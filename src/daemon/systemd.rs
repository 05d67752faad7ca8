//! systemd integration: READY when watching, RELOADING then READY around a reload (with STATUS=
//! saying what it watches, or why a reload was refused), STOPPING on shutdown, and the watchdog
//! fed from the event loop (so a wedged loop gets the service restarted). All no-ops outside
//! systemd.

use sd_notify::NotifyState;
use std::time::Duration;

pub fn ready() {
    let _ = sd_notify::notify(&[NotifyState::Ready]);
}

pub fn reloading() {
    let _ = sd_notify::notify(&[NotifyState::Reloading]);
}

/// A reload ended (applied or refused): ready again, and `status` says how it went.
pub fn reloaded(status: &str) {
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]);
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
