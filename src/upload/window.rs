//! How many parts are in flight across all files: a fixed number, or (`parts_in_flight = "auto"`)
//! found the way TCP finds its window, at the part level.
//!
//! In auto mode the window starts at [`START`]. Two measures judge it, sample by sample:
//! goodput, and part latency (send to confirmation) against the fastest sample's, which tells
//! parts waiting in queues (TCP Vegas's signal) where goodput alone credited a wider window with
//! the gains of connections warming up, and climbed past what the link holds. A sample counts
//! only time with parts in flight.
//! - It starts as TCP does, in slow start: a sample of a full window ends as soon as a window's
//!   worth of parts sent under the window as it is are confirmed (a round trip of the window,
//!   not a second), and the window grows by half while goodput beats the best sample's by
//!   [`GAIN`] and the parts take no more than [`SLOW_BELOW`] times the fastest sample's latency
//!   (HyStart's delay signal: a queue is starting). The first such sample that does not grow
//!   the window ends slow start, as does congestion. On a long fat link, the climb from 8 to 27
//!   parts took three one-second samples after the first; now it takes three rounds. Doubling,
//!   as TCP does, overshot to 64 there, losses and all: the latency signal lags a round.
//! - Past slow start, samples last at least a second and a window's worth of confirmed parts.
//!   While every permit is in use (the window, not the files, is the limit), a sample's goodput
//!   beat the best sample's by [`GAIN`] and its parts took less than [`GROW_BELOW`] times the
//!   fastest sample's latency, the window grows by half; when growing stops paying it holds,
//!   probing one part more now and then.
//! - Parts taking over [`SHRINK_ABOVE`] times as long step the window down by a quarter; from
//!   then on it grows one part at a time, as TCP does after a loss.
//! - A timeout, a reset connection or a quota answer (4400, HTTP 429) halves it.
//! - Latency counts only parts sent since the window last moved (sent under the window as it
//!   is), and only their last attempt, after any wait for `max_rate`: a retry's back-off is not
//!   a queue.
//!
//! It stays between [`MIN`] and `max_parts_in_flight`. Shrinking never interrupts a part: permits
//! are retired as parts end. Parts stream from the file, so a wide window costs little memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The smallest window in auto mode.
pub const MIN: usize = 2;
/// Where auto mode starts.
pub const START: usize = 8;
/// A sample must beat the best sample's goodput by this factor for the window to keep growing.
pub const GAIN: f64 = 1.10;
/// The shortest sample, past slow start.
const SAMPLE: Duration = Duration::from_secs(1);
/// Samples held before probing one part more.
const PROBE_AFTER: u32 = 4;
/// Parts waiting in queues show as part latency above the fastest sample's: past this factor
/// the window does not grow.
pub const GROW_BELOW: f64 = 1.5;
/// In slow start, parts taking this much longer than the fastest sample's end it: a queue is
/// starting (HyStart's delay signal), and a round more would overshoot by half.
pub const SLOW_BELOW: f64 = 1.125;
/// Past this factor, the window steps down by a quarter.
pub const SHRINK_ABOVE: f64 = 2.0;
/// How much the fastest sample's latency is let rise per sample, so a path that became slower
/// for good is not taken for a queue forever.
const FASTEST_DRIFT: f64 = 1.01;

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
    /// Seconds from send to confirmation, summed over this sample's full-length parts.
    latency: f64,
    timed: usize,
    /// The lowest mean part latency of a sample (let drift up by [`FASTEST_DRIFT`] a sample), and
    /// the part length it was measured for.
    fastest: f64,
    full: u64,
    /// When the window last moved: only parts sent since tell of the window as it is.
    moved: Instant,
    /// When the last part was confirmed: time the window then spent empty is not the sample's.
    last: Instant,
    /// Whether the window has stepped down for queueing parts.
    queued_before: bool,
    /// Whether the window is still in slow start (it has only grown so far).
    slow: bool,
}

/// What a sample tells the window to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Grow(usize),
    Hold,
    Shrink(usize),
}

/// The next window after a sample whose goodput was `now` against the best so far, `held`
/// samples into a hold (`None`: in slow start), and whose parts took `inflation` times as long as
/// the fastest sample's. Pure, for tests.
pub fn judge(
    limit: usize,
    max: usize,
    (now, best): (f64, f64),
    held: Option<u32>,
    saturated: bool,
    (inflation, queued_before): (f64, bool),
) -> Step {
    if inflation > SHRINK_ABOVE && limit > MIN {
        return Step::Shrink((limit - limit.div_ceil(4)).max(MIN));
    }
    if !saturated || limit >= max || inflation > GROW_BELOW {
        return Step::Hold;
    }
    let (gained, by_half) = (
        now > best * GAIN,
        Step::Grow((limit + limit.div_ceil(2)).min(max)),
    );
    let Some(held) = held else {
        return match gained && inflation <= SLOW_BELOW {
            true => by_half,
            false => Step::Hold,
        };
    };
    if queued_before {
        // Near the window where parts queued: one part more at a time, as TCP after a loss.
        return Step::Grow(limit + 1);
    }
    if gained {
        by_half
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
                latency: 0.0,
                timed: 0,
                fastest: f64::INFINITY,
                full: 0,
                moved: Instant::now(),
                last: Instant::now(),
                queued_before: false,
                slow: true,
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
        if let Some(auto) = &self.auto {
            let available = self.permits.available_permits();
            let mut a = lock(auto);
            if available == 0 {
                a.saturated = true;
            }
            if available + 1 >= self.limit() {
                // The first part into an empty window: the time it stood empty (a file being
                // hashed, none waiting) is not the sample's.
                let now = Instant::now();
                a.started = match a.parts {
                    0 => now,
                    _ => (a.started + now.saturating_duration_since(a.last)).min(now),
                };
            }
        }
        Slot {
            permit: Some(permit),
            window: self.clone(),
        }
    }

    /// A part of `len` bytes whose last attempt was sent at `sent` was confirmed: count it; at
    /// the end of a sample, judge it.
    pub fn confirmed(&self, len: u64, sent: Instant) {
        let Some(auto) = &self.auto else { return };
        let mut a = lock(auto);
        a.bytes += len;
        a.parts += 1;
        a.last = Instant::now();
        // Latency is compared between parts of one length (the last part of a file is shorter).
        if len > a.full {
            (a.full, a.fastest, a.latency, a.timed) = (len, f64::INFINITY, 0.0, 0);
        }
        if len == a.full && sent >= a.moved {
            a.latency += sent.elapsed().as_secs_f64();
            a.timed += 1;
        }
        let elapsed = a.started.elapsed();
        let limit = self.limit();
        let round = a.slow && a.saturated && a.timed >= limit;
        if !round && (elapsed < SAMPLE || a.parts < limit) {
            return;
        }
        let goodput = a.bytes as f64 / elapsed.as_secs_f64();
        let mean = match a.timed {
            0 => None,
            n => Some(a.latency / n as f64),
        };
        let inflation = match mean {
            Some(mean) if mean > 0.0 => mean / a.fastest.min(mean),
            _ => 1.0,
        };
        let goodputs = (goodput, a.best);
        let latency = (inflation, a.queued_before);
        let held = (!a.slow).then_some(a.held);
        let step = judge(limit, a.max, goodputs, held, a.saturated, latency);
        // Slow start ends with the first sample of a full window that does not grow it.
        a.slow &= match step {
            Step::Grow(_) => true,
            Step::Hold => !a.saturated,
            Step::Shrink(_) => false,
        };
        match step {
            Step::Grow(to) => {
                self.permits.add_permits(to - limit);
                self.limit.store(to, Ordering::SeqCst);
                (a.held, a.moved) = (0, Instant::now());
                tracing::debug!(parts_in_flight = to, goodput, inflation, "window grows");
            }
            Step::Hold => a.held += 1,
            Step::Shrink(to) => {
                self.shrink(limit, to);
                (a.held, a.moved, a.queued_before) = (0, Instant::now(), true);
                tracing::debug!(
                    parts_in_flight = to,
                    goodput,
                    inflation,
                    "parts queue: window shrinks"
                );
            }
        }
        a.best = a.best.max(goodput);
        if let Some(mean) = mean {
            a.fastest = (a.fastest * FASTEST_DRIFT).min(mean);
        }
        a.new_sample();
    }

    /// Retire permits down to `to` (those in use as their parts end).
    fn shrink(&self, limit: usize, to: usize) {
        let retired = self.permits.forget_permits(limit - to);
        self.debt.fetch_add(limit - to - retired, Ordering::SeqCst);
        self.limit.store(to, Ordering::SeqCst);
    }

    /// The path is congested (a timeout, a reset connection, a quota answer): halve the window.
    pub fn congested(&self) {
        let Some(auto) = &self.auto else { return };
        let mut a = lock(auto);
        let limit = self.limit();
        let to = (limit / 2).max(MIN);
        if to < limit {
            self.shrink(limit, to);
            tracing::debug!(parts_in_flight = to, "window halves after congestion");
        }
        // Goodput measured with the wider window no longer applies.
        (a.best, a.held, a.moved, a.slow) = (0.0, 0, Instant::now(), false);
        a.new_sample();
    }
}

impl Auto {
    /// Start a sample: nothing counted, goodput nor latency.
    fn new_sample(&mut self) {
        (self.started, self.bytes, self.parts, self.saturated) = (Instant::now(), 0, 0, false);
        (self.latency, self.timed) = (0.0, 0);
    }
}

fn lock(auto: &Mutex<Auto>) -> std::sync::MutexGuard<'_, Auto> {
    auto.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample of a saturated window whose parts took `inflation` times the fastest's.
    fn judged(limit: usize, (now, best): (f64, f64), held: u32, inflation: f64) -> Step {
        judge(limit, 64, (now, best), Some(held), true, (inflation, false))
    }

    #[test]
    fn the_window_grows_while_goodput_grows_and_holds_when_it_stops() {
        assert_eq!(judged(8, (110.0, 50.0), 0, 1.0), Step::Grow(12));
        assert_eq!(judged(16, (111.0, 100.0), 0, 1.0), Step::Grow(24));
        assert_eq!(judged(48, (200.0, 100.0), 0, 1.0), Step::Grow(64));
        let hold = judged(12, (104.0, 100.0), 0, 1.0);
        assert_eq!(hold, Step::Hold, "not 10 % better");
        assert_eq!(
            judged(12, (100.0, 100.0), 3, 1.0),
            Step::Grow(13),
            "a probe"
        );
        let limited = judge(12, 64, (500.0, 100.0), Some(0), false, (1.0, false));
        assert_eq!(limited, Step::Hold, "files, not the window, limit");
        let top = judge(64, 64, (500.0, 100.0), Some(0), true, (1.0, false));
        assert_eq!(top, Step::Hold, "at its maximum");
    }

    #[test]
    fn parts_that_queue_stop_the_window_growing_then_step_it_down() {
        let gaining = (200.0, 100.0);
        assert_eq!(
            judged(16, gaining, 0, 1.4),
            Step::Grow(24),
            "little queueing"
        );
        assert_eq!(
            judged(16, gaining, 0, 1.6),
            Step::Hold,
            "goodput rose anyway"
        );
        assert_eq!(judged(16, gaining, 3, 1.6), Step::Hold, "no probe either");
        assert_eq!(judged(16, gaining, 0, 2.1), Step::Shrink(12));
        assert_eq!(
            judged(3, gaining, 0, 9.0),
            Step::Shrink(2),
            "a step even when small"
        );
        assert_eq!(judged(2, gaining, 0, 9.0), Step::Hold, "never below MIN");
        let unsaturated = judge(16, 64, gaining, Some(0), false, (2.1, false));
        assert_eq!(unsaturated, Step::Shrink(12), "queueing, whatever limits");
    }

    #[test]
    fn once_parts_queued_the_window_grows_one_part_at_a_time() {
        let after = |inflation| judge(12, 64, (200.0, 100.0), Some(0), true, (inflation, true));
        assert_eq!(after(1.2), Step::Grow(13));
        assert_eq!(after(1.6), Step::Hold);
        assert_eq!(after(2.5), Step::Shrink(9));
    }

    #[test]
    fn slow_start_grows_the_window_until_goodput_stalls_or_a_queue_starts() {
        let slow = |limit, now, saturated, inflation| {
            judge(limit, 64, (now, 100.0), None, saturated, (inflation, false))
        };
        assert_eq!(slow(8, 200.0, true, 1.0), Step::Grow(12));
        assert_eq!(slow(18, 200.0, true, 1.1), Step::Grow(27));
        assert_eq!(slow(48, 200.0, true, 1.0), Step::Grow(64), "up to max");
        assert_eq!(slow(16, 105.0, true, 1.0), Step::Hold, "goodput stalled");
        assert_eq!(slow(16, 200.0, true, 1.2), Step::Hold, "a queue starts");
        assert_eq!(slow(32, 200.0, true, 2.5), Step::Shrink(24));
        assert_eq!(slow(16, 200.0, false, 1.0), Step::Hold, "files limit");
    }

    /// Take `n` places in the window.
    async fn fill(window: &Arc<Window>, n: usize) -> Vec<Slot> {
        futures::future::join_all((0..n).map(|_| window.slot())).await
    }

    /// Confirm `n` parts of 1 MiB, each 50 ms after it was sent.
    fn confirm(window: &Window, n: usize) {
        let sent = Instant::now();
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..n {
            window.confirmed(1 << 20, sent);
        }
    }

    #[tokio::test]
    async fn slow_start_judges_each_round_of_parts_then_samples_by_the_second() {
        let window = Window::auto(64);
        let slots = fill(&window, START).await;
        confirm(&window, START);
        let grown = START + START / 2;
        assert_eq!(window.limit(), grown, "a round, not a second");
        drop(slots);
        let slots = fill(&window, grown).await;
        confirm(&window, grown / 2);
        assert_eq!(window.limit(), grown, "half a round is not judged");
        // Goodput stalls: a round at a slower pace than the first ends slow start.
        std::thread::sleep(Duration::from_millis(300));
        confirm(&window, grown / 2);
        assert_eq!(window.limit(), grown);
        drop(slots);
        let _slots = fill(&window, grown).await;
        confirm(&window, 4 * grown);
        let past = "past slow start, a second per sample";
        assert_eq!(window.limit(), grown, "{past}");
    }

    #[tokio::test]
    async fn a_sample_counts_only_time_with_parts_in_flight() {
        let window = Window::auto(64);
        let slots = fill(&window, START).await;
        std::thread::sleep(Duration::from_millis(150));
        confirm(&window, START);
        let grown = START + START / 2;
        assert_eq!(window.limit(), grown);
        drop(slots);
        // Half a round, then the window stands empty (the next file being hashed) for longer
        // than the parts took: counted, it would make goodput look stalled.
        let slots = fill(&window, grown).await;
        confirm(&window, grown / 2);
        drop(slots);
        std::thread::sleep(Duration::from_millis(400));
        let _slots = fill(&window, grown).await;
        confirm(&window, grown / 2);
        assert_eq!(window.limit(), grown + grown / 2, "goodput grew");
    }

    #[tokio::test]
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

    #[tokio::test]
    async fn a_fixed_window_never_moves() {
        let window = Window::fixed(3);
        window.congested();
        let _slot = window.slot().await;
        window.confirmed(1 << 20, Instant::now());
        assert_eq!(window.limit(), 3);
        assert_eq!(window.permits.available_permits(), 2);
    }
}
