//! Deciding when a file is fully written: from evidence where there is some, from silence where
//! there is none.
//!
//! Each pending file carries the evidence of how it came to be:
//! - **Writing**: written to (inotify `IN_MODIFY`) with no close-after-write seen since. The writer
//!   still holds it open, however long it pauses: never ready.
//! - **Closed**: closed after writing (`IN_CLOSE_WRITE`), or renamed into the folder whole (alone
//!   or inside a folder moved in). Ready once its size and mtime have been quiet for `settle`.
//! - **Unseen**: no evidence either way: found by a scan, present at start, after lost events, or
//!   on a network file system whose remote writers send no events here. Ready once quiet for
//!   `settle_unseen` (longer).
//!
//! Any event or change of size or mtime restarts the quiet period. An empty file is never ready;
//! once it has been quiet for `settle_unseen` it is reported, once, so it can be shown. A file that
//! vanishes is forgotten. Pure logic: the caller supplies the time and `stat` (a restart reads the
//! clock too, so that it is never dated before the look that saw the change).
//!
//! When a file is looked at: its quiet period runs from the last moment its version was seen to
//! change. An event or a scan that looked at the file brings its version along (the watcher looks
//! at a file closed after writing or renamed in as it passes the event on), so the period starts
//! there; otherwise the first `poll` looks. `poll` looks at every pending file, which catches
//! changes that no event tells of; and each file is judged again at the end of its own quiet
//! period (`next_due`, `due`), so a burst waits for `settle`, not for `settle` plus a poll period.

use crate::ledger::FileVersion;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// What is known of how a file came to be (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    Unseen,
    Writing,
    Closed,
}

/// A watch's quiet periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub settle: Duration,
    pub settle_unseen: Duration,
}

#[derive(Debug)]
struct Pending {
    seen: Option<FileVersion>,
    since: Instant,
    rule: Rule,
    evidence: Evidence,
    reported_empty: bool,
    /// When this file's live entry in the deadline queue comes up, if it has one.
    queued: Option<Instant>,
}

impl Pending {
    /// When this file is next worth judging: the end of its quiet period, if time alone can make
    /// it ready (or, empty, due to be shown). A file not looked at yet waits for a poll.
    fn deadline(&self) -> Option<Instant> {
        let seen = self.seen?;
        if seen.size == 0 && self.reported_empty {
            return None;
        }
        Some(self.since + self.needed(seen.size)?)
    }

    /// The quiet period this file needs at `size` bytes: to be ready or, empty, to be shown
    /// (whatever its evidence). None while it is still being written.
    fn needed(&self, size: u64) -> Option<Duration> {
        if size == 0 {
            return Some(self.rule.settle_unseen);
        }
        match self.evidence {
            Evidence::Writing => None,
            Evidence::Closed => Some(self.rule.settle),
            Evidence::Unseen => Some(self.rule.settle_unseen),
        }
    }

    /// Judge this file, found as `current` (or gone) at `now`; whether it stays pending.
    fn judge(
        &mut self,
        path: &Path,
        current: Option<FileVersion>,
        now: Instant,
        polled: &mut Polled,
    ) -> bool {
        let Some(current) = current else {
            return false;
        };
        if self.seen != Some(current) {
            self.seen = Some(current);
            // `now` was read before this look, perhaps long before on a busy share: the quiet
            // period starts after it. (Tests drive `now` ahead of the clock; it stands then.)
            self.since = now.max(Instant::now());
            self.reported_empty = false;
            return true;
        }
        let Some(needed) = self.needed(current.size) else {
            return true;
        };
        if now.duration_since(self.since) < needed {
            return true;
        }
        if current.size == 0 {
            if !self.reported_empty {
                self.reported_empty = true;
                polled.empty.push(path.to_owned());
            }
            return true;
        }
        polled.ready.push(path.to_owned());
        false
    }
}

/// Deadlines, earliest first. An entry is live while its file's `queued` names its time; any
/// other entry is stale, and skipped when it comes up.
type Deadlines = BinaryHeap<Reverse<(Instant, PathBuf)>>;

/// Make sure `pending` has a live entry no later than its deadline. When a deadline moves later,
/// the earlier entry stays, and puts the file back in at its new deadline when it comes up: so a
/// file has one live entry however often its quiet period restarts.
fn schedule(deadlines: &mut Deadlines, path: &Path, pending: &mut Pending) {
    let Some(deadline) = pending.deadline() else {
        return;
    };
    if pending.queued.is_none_or(|queued| queued > deadline) {
        deadlines.push(Reverse((deadline, path.to_owned())));
        pending.queued = Some(deadline);
    }
}

/// What one poll found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Polled {
    /// Complete by the rules: take them (they are forgotten here).
    pub ready: Vec<PathBuf>,
    /// Empty and quiet for `settle_unseen`: show them (each is reported once, and stays pending).
    pub empty: Vec<PathBuf>,
}

/// Paths waiting for their quiet period.
#[derive(Debug, Default)]
pub struct Settler {
    pending: HashMap<PathBuf, Pending>,
    deadlines: Deadlines,
}

impl Settler {
    /// An event for `path`: its quiet period starts (again) now. `evidence`, if the event carries
    /// some, replaces what was known; so does `version`, the file as it was looked at after the
    /// event (no later than `now`).
    pub fn note(
        &mut self,
        path: PathBuf,
        evidence: Option<Evidence>,
        version: Option<FileVersion>,
        rule: Rule,
        now: Instant,
    ) {
        let pending = self.pending.entry(path.clone()).or_insert(Pending {
            seen: None,
            since: now,
            rule,
            evidence: Evidence::Unseen,
            reported_empty: false,
            queued: None,
        });
        pending.since = now;
        pending.rule = rule;
        if let Some(evidence) = evidence {
            pending.evidence = evidence;
        }
        if version.is_some() && version != pending.seen {
            pending.seen = version;
            pending.reported_empty = false;
        }
        schedule(&mut self.deadlines, &path, pending);
    }

    /// A scan found `path` (as `version`, looked at no later than `now`): it starts settling with
    /// no evidence, unless it is pending already.
    pub fn found(&mut self, path: PathBuf, version: Option<FileVersion>, rule: Rule, now: Instant) {
        if !self.pending.contains_key(&path) {
            self.note(path, None, version, rule, now);
        }
    }

    /// `from` (a file, or a folder and everything under it) was renamed to `to` within the watched
    /// tree: what was pending there keeps its evidence under its new path (a file still open for
    /// writing stays so, whatever the rename event says of the new path).
    pub fn renamed(&mut self, from: &Path, to: &Path) {
        let moved: Vec<PathBuf> = self
            .pending
            .keys()
            .filter(|path| path.starts_with(from))
            .cloned()
            .collect();
        for old in moved {
            let mut pending = self.pending.remove(&old).expect("listed");
            let new = match old.strip_prefix(from) {
                Ok(rest) if !rest.as_os_str().is_empty() => to.join(rest),
                _ => to.to_owned(),
            };
            // Its entries in the queue name the old path.
            pending.queued = None;
            schedule(&mut self.deadlines, &new, &mut pending);
            self.pending.insert(new, pending);
        }
    }

    /// Events may have been lost: nothing pending can rely on its evidence any more.
    pub fn evidence_lost(&mut self) {
        for (path, pending) in &mut self.pending {
            pending.evidence = Evidence::Unseen;
            schedule(&mut self.deadlines, path, pending);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    #[cfg(test)]
    pub fn contains(&self, path: &Path) -> bool {
        self.pending.contains_key(path)
    }

    /// Stat every pending path; return the ones complete by the rules (and forget them), and the
    /// empty ones to show.
    pub fn poll(&mut self, now: Instant, stat: impl Fn(&Path) -> Option<FileVersion>) -> Polled {
        let mut polled = Polled::default();
        let deadlines = &mut self.deadlines;
        self.pending.retain(|path, pending| {
            let keep = pending.judge(path, stat(path), now, &mut polled);
            if keep {
                schedule(deadlines, path, pending);
            }
            keep
        });
        polled.ready.sort();
        polled.empty.sort();
        self.release_if_idle();
        polled
    }

    /// With nothing pending, every entry left in the queue is stale: drop them, and give back the
    /// memory a burst took.
    fn release_if_idle(&mut self) {
        if self.pending.is_empty() {
            self.pending.shrink_to_fit();
            self.deadlines.clear();
            self.deadlines.shrink_to_fit();
        }
    }

    /// When the earliest quiet period ends (or a stale entry comes up, which costs one look at
    /// the queue).
    pub fn next_due(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _))| *at)
    }

    /// Judge the files whose quiet period ended by `now`, statting only those: as `poll`, for
    /// them alone.
    pub fn due(&mut self, now: Instant, stat: impl Fn(&Path) -> Option<FileVersion>) -> Polled {
        let mut polled = Polled::default();
        while let Some(Reverse((at, _))) = self.deadlines.peek() {
            if *at > now {
                break;
            }
            let Reverse((at, path)) = self.deadlines.pop().expect("peeked");
            let Some(pending) = self.pending.get_mut(&path) else {
                continue;
            };
            if pending.queued != Some(at) {
                continue;
            }
            pending.queued = None;
            let keep = match pending.deadline() {
                Some(deadline) if deadline <= now => {
                    pending.judge(&path, stat(&path), now, &mut polled)
                }
                _ => true,
            };
            if keep {
                schedule(&mut self.deadlines, &path, pending);
            } else {
                self.pending.remove(&path);
            }
        }
        polled.ready.sort();
        polled.empty.sort();
        self.release_if_idle();
        polled
    }
}

#[cfg(test)]
mod tests;
