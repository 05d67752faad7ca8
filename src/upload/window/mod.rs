//! How many parts are in flight across all files: a fixed number, or (`parts_in_flight = "auto"`)
//! one found the way TCP finds its window, at the part level. This file is the mechanism: the
//! permits, the debt of permits to retire as parts end, and the [`Slot`] a part holds. The policy
//! is [`control`]'s; the mechanism hands it each event with the time, read from tokio's clock
//! (so tests pause and move it).
//!
//! The window stays between [`MIN`] and `max_parts_in_flight`, starting at [`START`] in auto
//! mode. Shrinking never interrupts a part: permits are retired as parts end.

pub mod control;

pub use crate::config::MIN_PARTS_IN_FLIGHT as MIN;
use control::{Controller, Step};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Where auto mode starts.
pub const START: usize = 8;

/// The parts-in-flight window shared by every file of an engine.
#[derive(Debug)]
pub struct Window {
    permits: Arc<Semaphore>,
    /// Permits to retire as parts end (the window shrank below what is in use).
    debt: AtomicUsize,
    limit: AtomicUsize,
    /// The policy, in auto mode.
    control: Option<Mutex<Controller>>,
}

/// A part's place in the window; returned (or retired, while the window shrinks) when dropped.
#[derive(Debug)]
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    window: Arc<Window>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let debt = &self.window.debt;
        let owed = debt.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1));
        if let (Ok(_), Some(permit)) = (owed, self.permit.take()) {
            permit.forget();
        }
    }
}

impl Window {
    pub fn fixed(n: usize) -> Arc<Window> {
        Window::new(n, None)
    }

    pub fn auto(max: usize) -> Arc<Window> {
        let control = Controller::new(max, Instant::now());
        Window::new(START.min(max), Some(control))
    }

    fn new(limit: usize, control: Option<Controller>) -> Arc<Window> {
        Arc::new(Window {
            permits: Arc::new(Semaphore::new(limit)),
            debt: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            control: control.map(Mutex::new),
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
        if let Some(mut control) = self.control() {
            let free = self.permits.available_permits();
            control.on_slot(Instant::now(), free, self.limit());
        }
        Slot {
            permit: Some(permit),
            window: self.clone(),
        }
    }

    /// A part of `len` bytes whose last attempt was sent at `sent` was confirmed.
    pub fn confirmed(&self, len: u64, sent: Instant) {
        let Some(mut control) = self.control() else {
            return;
        };
        let limit = self.limit();
        match control.on_confirmed(Instant::now(), len, sent, limit) {
            Some(Step::Grow(to)) => {
                self.permits.add_permits(to - limit);
                self.limit.store(to, Ordering::SeqCst);
            }
            Some(Step::Shrink(to)) => self.shrink(limit, to),
            Some(Step::Hold) | None => {}
        }
    }

    /// The path is congested (a timeout, a reset connection, a quota answer): halve the window.
    pub fn congested(&self) {
        let Some(mut control) = self.control() else {
            return;
        };
        let limit = self.limit();
        let to = control.on_congestion(Instant::now(), limit);
        if to < limit {
            self.shrink(limit, to);
        }
    }

    /// Retire permits down to `to` (those in use as their parts end).
    fn shrink(&self, limit: usize, to: usize) {
        let retired = self.permits.forget_permits(limit - to);
        self.debt.fetch_add(limit - to - retired, Ordering::SeqCst);
        self.limit.store(to, Ordering::SeqCst);
    }

    fn control(&self) -> Option<MutexGuard<'_, Controller>> {
        let control = self.control.as_ref()?;
        Some(control.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Take `n` places in the window.
    async fn fill(window: &Arc<Window>, n: usize) -> Vec<Slot> {
        futures::future::join_all((0..n).map(|_| window.slot())).await
    }

    /// Confirm `n` parts of 1 MiB, each 50 ms after it was sent (tokio's paused clock).
    async fn confirm(window: &Window, n: usize) {
        let sent = Instant::now();
        tokio::time::advance(Duration::from_millis(50)).await;
        for _ in 0..n {
            window.confirmed(1 << 20, sent);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_judges_each_round_of_parts_then_samples_by_the_second() {
        let window = Window::auto(64);
        let slots = fill(&window, START).await;
        confirm(&window, START).await;
        let grown = START + START / 2;
        assert_eq!(window.limit(), grown, "a round, not a second");
        drop(slots);
        let slots = fill(&window, grown).await;
        confirm(&window, grown / 2).await;
        assert_eq!(window.limit(), grown, "half a round is not judged");
        // Goodput stalls: a round at a slower pace than the first ends slow start.
        tokio::time::advance(Duration::from_millis(300)).await;
        confirm(&window, grown / 2).await;
        assert_eq!(window.limit(), grown);
        drop(slots);
        let _slots = fill(&window, grown).await;
        confirm(&window, 4 * grown).await;
        let past = "past slow start, a second per sample";
        assert_eq!(window.limit(), grown, "{past}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sample_counts_only_time_with_parts_in_flight() {
        let window = Window::auto(64);
        let slots = fill(&window, START).await;
        tokio::time::advance(Duration::from_millis(150)).await;
        confirm(&window, START).await;
        let grown = START + START / 2;
        assert_eq!(window.limit(), grown);
        drop(slots);
        // Half a round, then the window stands empty (the next file being hashed) for longer
        // than the parts took: counted, it would make goodput look stalled.
        let slots = fill(&window, grown).await;
        confirm(&window, grown / 2).await;
        drop(slots);
        tokio::time::advance(Duration::from_millis(400)).await;
        let _slots = fill(&window, grown).await;
        confirm(&window, grown / 2).await;
        assert_eq!(window.limit(), grown + grown / 2, "goodput grew");
    }

    #[tokio::test(start_paused = true)]
    async fn congestion_halves_the_window_without_interrupting_a_part() {
        let window = Window::auto(64);
        let slots = fill(&window, START).await;
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

    #[tokio::test(start_paused = true)]
    async fn a_shrink_retires_permits_as_parts_end_and_a_fixed_window_never_moves() {
        let window = Window::auto(64);
        let slots = fill(&window, START).await;
        window.shrink(START, 5);
        let (limit, free) = (window.limit(), window.permits.available_permits());
        assert_eq!((limit, free), (5, 0), "every part goes on");
        drop(slots);
        assert_eq!(window.permits.available_permits(), 5, "three retired");
        let fixed = Window::fixed(3);
        fixed.congested();
        let _slot = fixed.slot().await;
        fixed.confirmed(1 << 20, Instant::now());
        assert_eq!(fixed.limit(), 3);
        assert_eq!(fixed.permits.available_permits(), 2);
    }
}
