use super::*;

/// A saturated sample whose goodput was `now` against `best` and whose parts took
/// `inflation` times the fastest's.
fn reading((now, best): (f64, f64), inflation: f64) -> Reading {
    Reading {
        goodput: now,
        best,
        inflation,
        saturated: true,
    }
}

fn unsaturated(goodputs: (f64, f64), inflation: f64) -> Reading {
    Reading {
        saturated: false,
        ..reading(goodputs, inflation)
    }
}

/// Steady, `held` samples into a hold, window of 64 at most.
fn judged(limit: usize, goodputs: (f64, f64), held: u32, inflation: f64) -> Step {
    judge(
        limit,
        64,
        &reading(goodputs, inflation),
        Phase::Steady { held },
    )
}

#[test]
fn the_window_grows_while_goodput_grows_and_holds_when_it_stops() {
    assert_eq!(judged(8, (110.0, 50.0), 0, 1.0), Step::Grow(12));
    assert_eq!(judged(16, (111.0, 100.0), 0, 1.0), Step::Grow(24));
    assert_eq!(judged(48, (200.0, 100.0), 0, 1.0), Step::Grow(64));
    let hold = judged(12, (104.0, 100.0), 0, 1.0);
    assert_eq!(hold, Step::Hold, "not 10 % better");
    let probe = judged(12, (100.0, 100.0), 3, 1.0);
    assert_eq!(probe, Step::Grow(13), "a probe");
    let steady = Phase::Steady { held: 0 };
    let limited = judge(12, 64, &unsaturated((500.0, 100.0), 1.0), steady);
    assert_eq!(limited, Step::Hold, "files, not the window, limit");
    let top = judge(64, 64, &reading((500.0, 100.0), 1.0), steady);
    assert_eq!(top, Step::Hold, "at its maximum");
}

#[test]
fn parts_that_queue_stop_the_window_growing_then_step_it_down() {
    let gaining = (200.0, 100.0);
    let little = judged(16, gaining, 0, 1.4);
    assert_eq!(little, Step::Grow(24), "little queueing");
    let anyway = judged(16, gaining, 0, 1.6);
    assert_eq!(anyway, Step::Hold, "goodput rose anyway");
    assert_eq!(judged(16, gaining, 3, 1.6), Step::Hold, "no probe either");
    assert_eq!(judged(16, gaining, 0, 2.1), Step::Shrink(12));
    let small = judged(3, gaining, 0, 9.0);
    assert_eq!(small, Step::Shrink(2), "a step even when small");
    assert_eq!(judged(2, gaining, 0, 9.0), Step::Hold, "never below MIN");
    let steady = Phase::Steady { held: 0 };
    let unsaturated = judge(16, 64, &unsaturated(gaining, 2.1), steady);
    assert_eq!(unsaturated, Step::Shrink(12), "queueing, whatever limits");
}

#[test]
fn once_parts_queued_the_window_grows_one_part_at_a_time() {
    let after = |inflation| judge(12, 64, &reading((200.0, 100.0), inflation), Phase::Cautious);
    assert_eq!(after(1.2), Step::Grow(13));
    assert_eq!(after(1.6), Step::Hold);
    assert_eq!(after(2.5), Step::Shrink(9));
}

#[test]
fn slow_start_grows_the_window_until_goodput_stalls_or_a_queue_starts() {
    let slow = |limit, now, saturated, inflation| {
        let reading = Reading {
            saturated,
            ..reading((now, 100.0), inflation)
        };
        judge(limit, 64, &reading, Phase::SlowStart)
    };
    assert_eq!(slow(8, 200.0, true, 1.0), Step::Grow(12));
    assert_eq!(slow(18, 200.0, true, 1.1), Step::Grow(27));
    assert_eq!(slow(48, 200.0, true, 1.0), Step::Grow(64), "up to max");
    assert_eq!(slow(16, 105.0, true, 1.0), Step::Hold, "goodput stalled");
    assert_eq!(slow(16, 200.0, true, 1.2), Step::Hold, "a queue starts");
    assert_eq!(slow(32, 200.0, true, 2.5), Step::Shrink(24));
    assert_eq!(slow(16, 200.0, false, 1.0), Step::Hold, "files limit");
}

const MIB: u64 = 1 << 20;

/// A controller and the time it is at, moved by hand.
struct Driven {
    control: Controller,
    now: Instant,
    limit: usize,
}

impl Driven {
    fn new(limit: usize) -> Driven {
        let now = Instant::now();
        Driven {
            control: Controller::new(64, now),
            now,
            limit,
        }
    }

    fn wait(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
    }

    /// A full window of parts sent now, confirmed `ms` later: the steps taken.
    fn round(&mut self, ms: u64) -> Vec<Step> {
        for free in (0..self.limit).rev() {
            self.control.on_slot(self.now, free, self.limit);
        }
        let sent = self.now;
        self.wait(ms);
        let mut steps = Vec::new();
        for _ in 0..self.limit {
            let step = self.control.on_confirmed(self.now, MIB, sent, self.limit);
            if let Some(step) = step {
                if let Step::Grow(to) | Step::Shrink(to) = step {
                    self.limit = to;
                }
                steps.push(step);
            }
        }
        steps
    }
}

impl Driven {
    /// Every place of the window kept busy for `total` ms on a path without a queue: each part
    /// takes `ms`, and one in `one_in` at random (a lost packet's retransmission) `late` ms more.
    /// The steps taken.
    fn lossy(&mut self, total: u64, ms: u64, one_in: u64, late: u64) -> Vec<Step> {
        let end = self.now + Duration::from_millis(total);
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let (mut flight, mut steps) = (Vec::<(Instant, Instant)>::new(), Vec::new());
        loop {
            while flight.len() < self.limit {
                self.control
                    .on_slot(self.now, self.limit - flight.len() - 1, self.limit);
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let hit = (seed >> 33) % one_in == 0;
                let took = Duration::from_millis(ms + if hit { late } else { 0 });
                flight.push((self.now + took, self.now));
            }
            let first = (0..flight.len()).min_by_key(|&i| flight[i].0).unwrap();
            let (due, sent) = flight.swap_remove(first);
            if due > end {
                return steps;
            }
            self.now = due;
            if let Some(step) = self.control.on_confirmed(due, MIB, sent, self.limit) {
                if let Step::Grow(to) | Step::Shrink(to) = step {
                    self.limit = to;
                }
                steps.push(step);
            }
        }
    }
}

#[test]
fn parts_a_loss_delayed_are_not_a_queue() {
    // 150 ms a part, and one part in three at random two round trips late: a mean of the
    // sample's parts would take the unlucky samples for a queue and hold the window near 40.
    let mut d = Driven::new(8);
    let steps = d.lossy(20_000, 150, 3, 300);
    assert!(
        !steps.iter().any(|s| matches!(s, Step::Shrink(_))),
        "never stepped down: {steps:?}"
    );
    assert_eq!(d.limit, 64, "opened up to its most: {steps:?}");
}

#[test]
fn slow_start_ends_at_the_first_full_round_that_does_not_grow() {
    let mut d = Driven::new(8);
    assert_eq!(d.round(50), [Step::Grow(12)]);
    assert_eq!(
        d.round(50),
        [Step::Grow(18)],
        "goodput grew with the window"
    );
    assert_eq!(d.control.phase(), Phase::SlowStart);
    let slower = d.round(70);
    let starts = "parts took 1.4 times as long: a queue starts";
    assert_eq!(slower, [Step::Hold], "{starts}");
    assert_eq!(d.control.phase(), Phase::Steady { held: 1 });
    assert_eq!(d.round(70), [], "past slow start, a round is not a sample");
}

#[test]
fn parts_that_take_twice_as_long_step_the_window_down_then_it_grows_by_one() {
    let mut d = Driven::new(8);
    assert_eq!(d.round(50), [Step::Grow(12)]);
    let queued = d.round(150);
    assert_eq!(queued, [Step::Shrink(9)], "three times the fastest latency");
    assert_eq!(d.control.phase(), Phase::Cautious);
    // Past slow start a sample lasts a second: five rounds of 200 ms are one sample.
    let steps: Vec<Step> = (0..5).flat_map(|_| d.round(200)).collect();
    assert_eq!(steps, [Step::Shrink(6)], "still queueing");
    let steps: Vec<Step> = (0..40).flat_map(|_| d.round(60)).collect();
    assert_eq!(steps, [Step::Grow(7), Step::Grow(8)], "one part at a time");
}

#[test]
fn congestion_halves_the_window_ends_slow_start_and_forgets_the_best_goodput() {
    let mut d = Driven::new(8);
    assert_eq!(d.round(50), [Step::Grow(12)]);
    assert_eq!(d.control.on_congestion(d.now, 12), 6);
    assert_eq!(d.control.phase(), Phase::Steady { held: 0 });
    d.limit = 6;
    // Past slow start, twenty rounds of 50 ms are one sample, judged against no best goodput.
    let steps: Vec<Step> = (0..20).flat_map(|_| d.round(50)).collect();
    assert_eq!(steps, [Step::Grow(9)], "goodput is judged afresh");
    assert_eq!(d.control.on_congestion(d.now, MIN), MIN, "never below MIN");
}

#[test]
fn time_the_window_stood_empty_is_not_the_samples() {
    let mut d = Driven::new(8);
    assert_eq!(d.round(200), [Step::Grow(12)]);
    // Half a round, then an empty window for longer than the parts took, then the rest.
    for free in (0..12).rev() {
        d.control.on_slot(d.now, free, 12);
    }
    let sent = d.now;
    d.wait(50);
    for _ in 0..6 {
        assert_eq!(d.control.on_confirmed(d.now, MIB, sent, 12), None);
    }
    d.wait(400);
    for free in (0..12).rev() {
        d.control.on_slot(d.now, free, 12);
    }
    let sent = d.now;
    d.wait(50);
    let steps: Vec<Step> = (0..6)
        .filter_map(|_| d.control.on_confirmed(d.now, MIB, sent, 12))
        .collect();
    assert_eq!(
        steps,
        [Step::Grow(18)],
        "12 MiB in 100 ms of parts, not in 500"
    );
}
