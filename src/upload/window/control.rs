//! The auto window's policy: from what the parts of each sample did (goodput, and latency from
//! send to confirmation), the next [`Step`]. It is given the time of every event and reads no
//! clock, keeps no permits, and knows the window only as the number it is told.
//!
//! - **Slow start**: a sample of a full window ends once a window's worth of parts, sent under
//!   the window as it is, are confirmed (a round trip of the window, not a second). The window
//!   grows by half while goodput beats the best sample's by [`GAIN`] and parts take at most
//!   [`SLOW_BELOW`] times the fastest sample's latency (HyStart's delay signal). The first full
//!   sample that does not grow it ends slow start, as does congestion or a step down.
//! - **Steady**: samples last at least [`SAMPLE`] and a window's worth of parts. While every
//!   permit is in use, goodput beats the best by [`GAIN`] and latency stays under [`GROW_BELOW`]
//!   times the fastest, it grows by half; otherwise it holds, probing one part more after
//!   [`PROBE_AFTER`] holds.
//! - **Cautious**: parts taking over [`SHRINK_ABOVE`] times the fastest step it down by a
//!   quarter; from then on it grows one part at a time, as TCP after a loss.
//! - Congestion (a timeout, a reset, a quota answer) halves it and forgets the best goodput.
//!
//! A sample's latency is the lower quartile of its full-length parts' times, sent since the window
//! last moved: a queue delays every part, while a lost packet delays only the parts it hit (by a
//! retransmission), so a lossy path is not taken for a queue. A sample counts only time with
//! parts in flight.

use crate::config::MIN_PARTS_IN_FLIGHT as MIN;
use std::time::Duration;
use tokio::time::Instant;

/// A sample must beat the best sample's goodput by this factor for the window to keep growing.
pub const GAIN: f64 = 1.10;
/// The shortest sample, past slow start.
pub const SAMPLE: Duration = Duration::from_secs(1);
/// Samples held before probing one part more.
pub const PROBE_AFTER: u32 = 4;
/// Past this factor of the fastest sample's latency, the window does not grow: parts queue.
pub const GROW_BELOW: f64 = 1.5;
/// In slow start, parts taking this much longer than the fastest sample's end it: a queue is
/// starting, and a round more would overshoot by half.
pub const SLOW_BELOW: f64 = 1.125;
/// Past this factor, the window steps down by a quarter.
pub const SHRINK_ABOVE: f64 = 2.0;
/// How much the fastest sample's latency is let rise per sample, so a path that became slower
/// for good is not taken for a queue forever.
const FASTEST_DRIFT: f64 = 1.01;

/// What a sample tells the window to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Grow(usize),
    Hold,
    Shrink(usize),
}

/// Where the controller is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    SlowStart,
    /// Past slow start, after `held` samples without a move.
    Steady {
        held: u32,
    },
    /// Parts queued once: the window grows one part at a time.
    Cautious,
}

/// What one sample measured, against the best before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Bytes per second while parts were in flight.
    pub goodput: f64,
    /// The best goodput of a sample since the last congestion.
    pub best: f64,
    /// The sample's part latency (its lower quartile) over the fastest sample's (1: no queue).
    pub inflation: f64,
    /// Whether every permit was in use at some point: the window, not the files, was the limit.
    pub saturated: bool,
}

/// The next window of `limit` (at most `max`) after a sample read as `reading`, in `phase`.
pub fn judge(limit: usize, max: usize, reading: &Reading, phase: Phase) -> Step {
    let inflation = reading.inflation;
    if inflation > SHRINK_ABOVE && limit > MIN {
        return Step::Shrink((limit - limit.div_ceil(4)).max(MIN));
    }
    if !reading.saturated || limit >= max || inflation > GROW_BELOW {
        return Step::Hold;
    }
    let gained = reading.goodput > reading.best * GAIN;
    let by_half = Step::Grow((limit + limit.div_ceil(2)).min(max));
    match phase {
        Phase::SlowStart if gained && inflation <= SLOW_BELOW => by_half,
        Phase::SlowStart => Step::Hold,
        Phase::Cautious => Step::Grow(limit + 1),
        Phase::Steady { .. } if gained => by_half,
        Phase::Steady { held } if held + 1 >= PROBE_AFTER => Step::Grow(limit + 1),
        Phase::Steady { .. } => Step::Hold,
    }
}

/// The parts of the sample under way.
#[derive(Debug, Clone)]
struct Sample {
    /// When it began, moved on by any time the window stood empty.
    started: Instant,
    bytes: u64,
    parts: usize,
    saturated: bool,
    /// Seconds from send to confirmation of each full-length part.
    latencies: Vec<f64>,
}

impl Sample {
    fn new(now: Instant) -> Sample {
        Sample {
            started: now,
            bytes: 0,
            parts: 0,
            saturated: false,
            latencies: Vec::new(),
        }
    }

    /// The time a part takes without bad luck: the lower quartile of the timed parts.
    fn latency(&mut self) -> Option<f64> {
        let quartile = self.latencies.len().checked_sub(1)? / 4;
        let (_, low, _) = self
            .latencies
            .select_nth_unstable_by(quartile, f64::total_cmp);
        Some(*low)
    }
}

/// What samples are held against.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    best: f64,
    /// The lowest part latency of a sample (let drift up a little each sample), for parts
    /// of `full` bytes: the last part of a file is shorter, and is not compared.
    fastest: f64,
    full: u64,
}

/// The auto window's policy and what it remembers.
#[derive(Debug)]
pub struct Controller {
    max: usize,
    phase: Phase,
    sample: Sample,
    baseline: Baseline,
    /// When the window last moved: only parts sent since tell of the window as it is.
    moved: Instant,
    /// When the last part was confirmed: the time the window then stood empty is not a sample's.
    last: Instant,
}

impl Controller {
    pub fn new(max: usize, now: Instant) -> Controller {
        Controller {
            max,
            phase: Phase::SlowStart,
            sample: Sample::new(now),
            baseline: Baseline {
                best: 0.0,
                fastest: f64::INFINITY,
                full: 0,
            },
            moved: now,
            last: now,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// A part took a place at `now`, leaving `free` of `limit` places.
    pub fn on_slot(&mut self, now: Instant, free: usize, limit: usize) {
        let sample = &mut self.sample;
        sample.saturated |= free == 0;
        if free + 1 >= limit {
            // The first part into an empty window: the time it stood empty (a file being
            // hashed, none waiting) is not the sample's.
            let empty = now.saturating_duration_since(self.last);
            sample.started = match sample.parts {
                0 => now,
                _ => (sample.started + empty).min(now),
            };
        }
    }

    /// A part of `len` bytes whose last attempt was sent at `sent` was confirmed at `now`, with
    /// the window at `limit`: at the end of a sample, the step to take.
    pub fn on_confirmed(
        &mut self,
        now: Instant,
        len: u64,
        sent: Instant,
        limit: usize,
    ) -> Option<Step> {
        let (sample, baseline) = (&mut self.sample, &mut self.baseline);
        (sample.bytes, sample.parts, self.last) = (sample.bytes + len, sample.parts + 1, now);
        if len > baseline.full {
            (baseline.full, baseline.fastest) = (len, f64::INFINITY);
            sample.latencies.clear();
        }
        if len == baseline.full && sent >= self.moved {
            let took = now.saturating_duration_since(sent).as_secs_f64();
            sample.latencies.push(took);
        }
        let elapsed = now.saturating_duration_since(sample.started);
        let timed = sample.latencies.len();
        let round = self.phase == Phase::SlowStart && sample.saturated && timed >= limit;
        if !round && (elapsed < SAMPLE || sample.parts < limit) {
            return None;
        }
        let latency = sample.latency();
        let reading = Reading {
            goodput: sample.bytes as f64 / elapsed.as_secs_f64(),
            best: baseline.best,
            inflation: match latency {
                Some(latency) if latency > 0.0 => latency / baseline.fastest.min(latency),
                _ => 1.0,
            },
            saturated: sample.saturated,
        };
        let step = judge(limit, self.max, &reading, self.phase);
        self.phase = next_phase(self.phase, step, reading.saturated);
        if step != Step::Hold {
            self.moved = now;
        }
        log(step, &reading, limit);
        baseline.best = baseline.best.max(reading.goodput);
        if let Some(latency) = latency {
            baseline.fastest = (baseline.fastest * FASTEST_DRIFT).min(latency);
        }
        self.sample = Sample::new(now);
        Some(step)
    }

    /// The path is congested at `now` (a timeout, a reset connection, a quota answer): the
    /// window to have instead of `limit`, half of it.
    pub fn on_congestion(&mut self, now: Instant, limit: usize) -> usize {
        // Goodput measured with the wider window no longer applies.
        self.baseline.best = 0.0;
        self.phase = match self.phase {
            Phase::Cautious => Phase::Cautious,
            _ => Phase::Steady { held: 0 },
        };
        (self.moved, self.sample) = (now, Sample::new(now));
        let to = (limit / 2).max(MIN);
        if to < limit {
            tracing::debug!(parts_in_flight = to, "window halves after congestion");
        }
        to.min(limit)
    }
}

/// The phase after a sample that took `step`.
fn next_phase(phase: Phase, step: Step, saturated: bool) -> Phase {
    match (phase, step) {
        (_, Step::Shrink(_)) | (Phase::Cautious, _) => Phase::Cautious,
        (Phase::SlowStart, Step::Hold) if saturated => Phase::Steady { held: 1 },
        (Phase::SlowStart, _) => Phase::SlowStart,
        (Phase::Steady { .. }, Step::Grow(_)) => Phase::Steady { held: 0 },
        (Phase::Steady { held }, Step::Hold) => Phase::Steady { held: held + 1 },
    }
}

fn log(step: Step, reading: &Reading, limit: usize) {
    let (goodput, inflation, best) = (reading.goodput, reading.inflation, reading.best);
    match step {
        Step::Grow(to) => tracing::debug!(parts_in_flight = to, goodput, inflation, "window grows"),
        Step::Hold => tracing::debug!(
            parts_in_flight = limit,
            goodput,
            best,
            inflation,
            saturated = reading.saturated,
            "window holds"
        ),
        Step::Shrink(to) => {
            tracing::debug!(
                parts_in_flight = to,
                goodput,
                inflation,
                "parts queue: window shrinks"
            )
        }
    }
}

#[cfg(test)]
mod tests;
