//! How many parts are in flight across all files: a fixed number, or (`parts_in_flight = "auto"`)
//! found the way TCP finds its window, at the part level.
//!
//! In auto mode the window starts at [`START`] and is judged over samples of at least a second
//! and a window's worth of confirmed parts. While every permit is in use (the window, not the
//! files, is the limit) and a sample's goodput beat the previous one by [`GAIN`], the window
//! grows by half; when growing stops paying it holds, probing one part more now and then. A
//! timeout, a reset connection or a quota answer (4400, HTTP 429) halves it. It stays between
//! [`MIN`] and `max_parts_in_flight`. Shrinking never interrupts a part: permits are retired as
//! parts end. Parts stream from the file, so a wide window costs little memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The smallest window in auto mode.
pub const MIN: usize = 2;
/// Where auto mode starts.
pub const START: usize = 8;
/// A sample must beat the previous one by this factor for the window to keep growing.
pub const GAIN: f64 = 1.10;
/// The shortest sample.
const SAMPLE: Duration = Duration::from_secs(1);
/// Samples held before probing one part more.
const PROBE_AFTER: u32 = 4;

/// The parts-in-flight window shared by every file of an engine.
#[derive(Debug)]
pub struct Window {
    permits: Arc<Semaphore>,
    /// Permits to retire as parts end (the window shrank below what is in use).
    debt: AtomicUsize,
    auto: Option<Mutex<Auto>>,
    limit: AtomicUsize,
}

#[derive(Debug)]
struct Auto {
    max: usize,
    started: Instant,
    bytes: u64,
    parts: usize,
    best: f64,
    held: u32,
    /// Whether every permit was in use at some point of this sample.
    saturated: bool,
}

/// What a sample tells the window to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Grow(usize),
    Hold,
}

/// The next window after a sample whose goodput was `now` against the best so far, `held`
/// samples into a hold. Pure, for tests.
pub fn judge(limit: usize, max: usize, now: f64, best: f64, held: u32, saturated: bool) -> Step {
    if !saturated || limit >= max {
        return Step::Hold;
    }
    if now > best * GAIN {
        Step::Grow((limit + limit.div_ceil(2)).min(max))
    } else if held + 1 >= PROBE_AFTER {
        Step::Grow(limit + 1)
    } else {
        Step::Hold
    }
}

/// A part's place in the window; returned (or retired, while the window shrinks) when dropped.
#[derive(Debug)]
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    window: Arc<Window>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let owed = self
            .window
            .debt
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1));
        if owed.is_ok() {
            if let Some(permit) = self.permit.take() {
                permit.forget();
            }
        }
    }
}

impl Window {
    pub fn fixed(n: usize) -> Arc<Window> {
        Arc::new(Window {
            permits: Arc::new(Semaphore::new(n)),
            debt: AtomicUsize::new(0),
            auto: None,
            limit: AtomicUsize::new(n),
        })
    }

    pub fn auto(max: usize) -> Arc<Window> {
        let start = START.min(max);
        Arc::new(Window {
            permits: Arc::new(Semaphore::new(start)),
            debt: AtomicUsize::new(0),
            auto: Some(Mutex::new(Auto {
                max,
                started: Instant::now(),
                bytes: 0,
                parts: 0,
                best: 0.0,
                held: 0,
                saturated: false,
            })),
            limit: AtomicUsize::new(start),
        })
    }

    /// The window now.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::SeqCst)
    }

    /// Wait for a place in the window (fair: files take turns).
    pub async fn slot(self: &Arc<Self>) -> Slot {
        let permit = self.permits.clone().acquire_owned().await;
        let permit = permit.expect("the semaphore is never closed");
        if self.permits.available_permits() == 0 {
            if let Some(auto) = &self.auto {
                lock(auto).saturated = true;
            }
        }
        Slot {
            permit: Some(permit),
            window: self.clone(),
        }
    }

    /// A part of `len` bytes was confirmed: count it; at the end of a sample, judge it.
    pub fn confirmed(&self, len: u64) {
        let Some(auto) = &self.auto else { return };
        let mut a = lock(auto);
        a.bytes += len;
        a.parts += 1;
        let elapsed = a.started.elapsed();
        let limit = self.limit();
        if elapsed < SAMPLE || a.parts < limit {
            return;
        }
        let goodput = a.bytes as f64 / elapsed.as_secs_f64();
        match judge(limit, a.max, goodput, a.best, a.held, a.saturated) {
            Step::Grow(to) => {
                self.permits.add_permits(to - limit);
                self.limit.store(to, Ordering::SeqCst);
                a.held = 0;
                tracing::debug!(parts_in_flight = to, goodput, "window grows");
            }
            Step::Hold => a.held += 1,
        }
        a.best = a.best.max(goodput);
        (a.started, a.bytes, a.parts, a.saturated) = (Instant::now(), 0, 0, false);
    }

    /// The path is congested (a timeout, a reset connection, a quota answer): halve the window.
    pub fn congested(&self) {
        let Some(auto) = &self.auto else { return };
        let mut a = lock(auto);
        let limit = self.limit();
        let to = (limit / 2).max(MIN);
        if to < limit {
            let retired = self.permits.forget_permits(limit - to);
            self.debt.fetch_add(limit - to - retired, Ordering::SeqCst);
            self.limit.store(to, Ordering::SeqCst);
            tracing::debug!(parts_in_flight = to, "window halves after congestion");
        }
        // Goodput measured with the wider window no longer applies.
        (a.best, a.held) = (0.0, 0);
        (a.started, a.bytes, a.parts, a.saturated) = (Instant::now(), 0, 0, false);
    }
}

fn lock(auto: &Mutex<Auto>) -> std::sync::MutexGuard<'_, Auto> {
    auto.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_grows_while_goodput_grows_and_holds_when_it_stops() {
        assert_eq!(judge(8, 64, 110.0, 50.0, 0, true), Step::Grow(12));
        assert_eq!(judge(16, 64, 111.0, 100.0, 0, true), Step::Grow(24));
        assert_eq!(judge(48, 64, 200.0, 100.0, 0, true), Step::Grow(64));
        assert_eq!(
            judge(12, 64, 104.0, 100.0, 0, true),
            Step::Hold,
            "not 10 % better"
        );
        assert_eq!(
            judge(12, 64, 100.0, 100.0, 3, true),
            Step::Grow(13),
            "a probe"
        );
        assert_eq!(
            judge(12, 64, 500.0, 100.0, 0, false),
            Step::Hold,
            "files, not the window, limit"
        );
        assert_eq!(
            judge(64, 64, 500.0, 100.0, 0, true),
            Step::Hold,
            "at its maximum"
        );
    }

    #[tokio::test]
    async fn congestion_halves_the_window_without_interrupting_a_part() {
        let window = Window::auto(64);
        let slots: Vec<Slot> = futures::future::join_all((0..START).map(|_| window.slot())).await;
        window.congested();
        assert_eq!(window.limit(), START / 2);
        assert_eq!(window.permits.available_permits(), 0);
        drop(slots);
        let half = "half retired as parts ended";
        assert_eq!(window.permits.available_permits(), START / 2, "{half}");
        for _ in 0..8 {
            window.congested();
        }
        assert_eq!(window.limit(), MIN);
    }

    #[tokio::test]
    async fn a_fixed_window_never_moves() {
        let window = Window::fixed(3);
        window.congested();
        window.confirmed(1 << 20);
        assert_eq!(window.limit(), 3);
        let _slot = window.slot().await;
        assert_eq!(window.permits.available_permits(), 2);
    }
}
