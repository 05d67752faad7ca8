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

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

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
mod tests {
    use super::*;
    use std::cell::RefCell;

    const RULE: Rule = Rule {
        settle: Duration::from_secs(5),
        settle_unseen: Duration::from_secs(30),
    };

    fn version(size: u64) -> Option<FileVersion> {
        Some(FileVersion { size, mtime_ns: 1 })
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// An event with its evidence, and the file as looked at after it (`size` bytes).
    fn event(s: &mut Settler, path: &str, evidence: Evidence, size: u64, at: Instant) {
        s.note(path.into(), Some(evidence), version(size), RULE, at);
    }

    /// The tests drive time by hand, ahead of the clock: a restart is dated by the clock only when
    /// the clock is later than the time given.
    fn ahead() -> Instant {
        Instant::now() + secs(86_400)
    }

    #[test]
    fn a_closed_file_is_ready_after_a_quiet_settle_period() {
        let start = ahead();
        let size = RefCell::new(10u64);
        let stat = |_: &Path| version(*size.borrow());
        let mut s = Settler::default();
        s.note("/d/a.mp4".into(), Some(Evidence::Closed), None, RULE, start);
        assert!(
            s.poll(start, stat).ready.is_empty(),
            "first sight records the size"
        );
        assert!(s.poll(start + secs(4), stat).ready.is_empty());
        *size.borrow_mut() = 20;
        assert!(
            s.poll(start + secs(6), stat).ready.is_empty(),
            "still growing"
        );
        assert!(s.poll(start + secs(10), stat).ready.is_empty());
        let polled = s.poll(start + secs(11), stat);
        assert_eq!(polled.ready, vec![PathBuf::from("/d/a.mp4")]);
        assert!(s.is_empty());
    }

    #[test]
    fn a_file_still_open_for_writing_is_never_ready_however_long_it_pauses() {
        let start = ahead();
        let stat = |_: &Path| version(4_000_000);
        let mut s = Settler::default();
        s.note(
            "/d/a.mp4".into(),
            Some(Evidence::Writing),
            None,
            RULE,
            start,
        );
        s.poll(start, stat);
        assert!(s.poll(start + secs(3600), stat).ready.is_empty());
        s.note(
            "/d/a.mp4".into(),
            Some(Evidence::Closed),
            None,
            RULE,
            start + secs(3600),
        );
        assert!(s.poll(start + secs(3604), stat).ready.is_empty());
        assert_eq!(s.poll(start + secs(3605), stat).ready.len(), 1);
    }

    #[test]
    fn a_file_without_evidence_needs_the_longer_quiet_period() {
        let start = ahead();
        let stat = |_: &Path| version(10);
        let mut s = Settler::default();
        s.found("/d/a.mp4".into(), None, RULE, start);
        s.poll(start, stat);
        assert!(s.poll(start + secs(29), stat).ready.is_empty());
        assert_eq!(s.poll(start + secs(30), stat).ready.len(), 1);
    }

    #[test]
    fn a_scan_keeps_the_evidence_of_a_pending_file_and_lost_events_drop_it() {
        let start = ahead();
        let stat = |_: &Path| version(10);
        let mut s = Settler::default();
        s.note(
            "/d/w.mp4".into(),
            Some(Evidence::Writing),
            None,
            RULE,
            start,
        );
        s.found("/d/w.mp4".into(), None, RULE, start);
        s.poll(start, stat);
        assert!(
            s.poll(start + secs(60), stat).ready.is_empty(),
            "still writing"
        );
        s.evidence_lost();
        assert_eq!(
            s.poll(start + secs(60), stat).ready.len(),
            1,
            "silence alone now"
        );
    }

    #[test]
    fn a_file_still_written_keeps_its_evidence_when_it_or_its_folder_is_renamed() {
        let start = ahead();
        let stat = |_: &Path| version(10);
        let mut s = Settler::default();
        s.note(
            "/d/sub/a.mp4".into(),
            Some(Evidence::Writing),
            None,
            RULE,
            start,
        );
        s.note(
            "/d/b.mp4".into(),
            Some(Evidence::Writing),
            None,
            RULE,
            start,
        );
        // The rename's own event arrives first and says "renamed in": complete.
        s.note(
            "/d/sub2/a.mp4".into(),
            Some(Evidence::Closed),
            None,
            RULE,
            start,
        );
        s.renamed(Path::new("/d/sub"), Path::new("/d/sub2"));
        s.renamed(Path::new("/d/b.mp4"), Path::new("/d/c.mp4"));
        s.poll(start, stat);
        assert!(
            s.poll(start + secs(600), stat).ready.is_empty(),
            "still open for writing"
        );
        assert!(s.contains(Path::new("/d/sub2/a.mp4")) && s.contains(Path::new("/d/c.mp4")));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn an_event_restarts_the_quiet_period() {
        let start = ahead();
        let stat = |_: &Path| version(10);
        let mut s = Settler::default();
        s.note("/d/a.mp4".into(), Some(Evidence::Closed), None, RULE, start);
        s.poll(start, stat);
        s.note("/d/a.mp4".into(), None, None, RULE, start + secs(4));
        assert!(s.poll(start + secs(6), stat).ready.is_empty());
        assert_eq!(s.poll(start + secs(9), stat).ready.len(), 1);
    }

    #[test]
    fn empty_files_are_reported_once_and_vanished_ones_forgotten() {
        let start = ahead();
        let mut s = Settler::default();
        s.note(
            "/d/empty.mp4".into(),
            Some(Evidence::Closed),
            None,
            RULE,
            start,
        );
        s.note(
            "/d/gone.mp4".into(),
            Some(Evidence::Closed),
            None,
            RULE,
            start,
        );
        let stat = |p: &Path| {
            if p.ends_with("empty.mp4") {
                version(0)
            } else {
                None
            }
        };
        s.poll(start, stat);
        assert!(s.poll(start + secs(29), stat).empty.is_empty());
        let polled = s.poll(start + secs(30), stat);
        assert_eq!(polled.empty, vec![PathBuf::from("/d/empty.mp4")]);
        assert!(polled.ready.is_empty());
        assert!(s.poll(start + secs(90), stat).empty.is_empty(), "once");
        assert!(s.contains(Path::new("/d/empty.mp4")));
        assert!(!s.contains(Path::new("/d/gone.mp4")));
    }

    #[test]
    fn a_file_looked_at_with_its_event_is_ready_at_the_end_of_its_quiet_period_without_a_poll() {
        let start = ahead();
        let stat = |_: &Path| version(10);
        let mut s = Settler::default();
        event(&mut s, "/d/a.mp4", Evidence::Closed, 10, start);
        assert_eq!(s.next_due(), Some(start + secs(5)));
        assert!(s.due(start + secs(4), stat).ready.is_empty(), "not yet due");
        assert_eq!(s.len(), 1);
        let polled = s.due(start + secs(5), stat);
        assert_eq!(polled.ready, vec![PathBuf::from("/d/a.mp4")]);
        assert!(s.is_empty());
    }

    #[test]
    fn a_file_changed_without_an_event_starts_again_when_its_deadline_finds_it_changed() {
        let start = ahead();
        let size = RefCell::new(10u64);
        let stat = |_: &Path| version(*size.borrow());
        let mut s = Settler::default();
        event(&mut s, "/d/a.mp4", Evidence::Closed, 10, start);
        *size.borrow_mut() = 20;
        assert!(s.due(start + secs(5), stat).ready.is_empty(), "changed");
        assert_eq!(s.next_due(), Some(start + secs(10)));
        assert!(s.due(start + secs(9), stat).ready.is_empty());
        assert_eq!(s.due(start + secs(10), stat).ready.len(), 1);
    }

    #[test]
    fn a_restarted_quiet_period_moves_the_deadline_and_keeps_one_entry_in_the_queue() {
        let start = ahead();
        let stat = |_: &Path| version(10);
        let mut s = Settler::default();
        for ms in 0..1_000 {
            let at = start + Duration::from_millis(ms);
            event(&mut s, "/d/a.mp4", Evidence::Closed, 10, at);
        }
        assert_eq!(
            s.deadlines.len(),
            1,
            "one live entry, however many restarts"
        );
        let last = start + Duration::from_millis(999);
        // The first entry comes up at 5 s, finds the period restarted, and waits again.
        assert!(s.due(start + secs(5), stat).ready.is_empty());
        assert_eq!(s.next_due(), Some(last + secs(5)));
        assert_eq!(s.due(last + secs(5), stat).ready.len(), 1);
        assert!(s.next_due().is_none());
    }

    #[test]
    fn deadlines_follow_the_evidence() {
        let start = ahead();
        let stat = |_: &Path| version(10);
        let mut s = Settler::default();
        event(&mut s, "/d/w.mp4", Evidence::Writing, 10, start);
        assert_eq!(s.next_due(), None, "a file still written is never due");
        s.found("/d/u.mp4".into(), version(10), RULE, start);
        assert_eq!(
            s.next_due(),
            Some(start + secs(30)),
            "no evidence: the longer period"
        );
        event(&mut s, "/d/w.mp4", Evidence::Closed, 10, start + secs(60));
        s.evidence_lost();
        assert!(s.due(start + secs(30), stat).ready.len() == 1, "u.mp4");
        assert!(
            s.due(start + secs(65), stat).ready.is_empty(),
            "w.mp4 lost its evidence: it needs the longer period"
        );
        assert_eq!(s.due(start + secs(90), stat).ready.len(), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn a_renamed_file_is_due_under_its_new_name() {
        let start = ahead();
        let stat = |_: &Path| version(10);
        let mut s = Settler::default();
        event(&mut s, "/d/sub/a.mp4", Evidence::Closed, 10, start);
        s.renamed(Path::new("/d/sub"), Path::new("/d/sub2"));
        let polled = s.due(start + secs(5), stat);
        assert_eq!(polled.ready, vec![PathBuf::from("/d/sub2/a.mp4")]);
        assert!(s.is_empty());
    }

    #[test]
    fn an_empty_file_is_shown_at_its_deadline_once_and_a_gone_one_forgotten() {
        let start = ahead();
        let stat = |p: &Path| {
            p.ends_with("empty.mp4").then_some(FileVersion {
                size: 0,
                mtime_ns: 1,
            })
        };
        let mut s = Settler::default();
        event(&mut s, "/d/empty.mp4", Evidence::Closed, 0, start);
        event(&mut s, "/d/gone.mp4", Evidence::Closed, 5, start);
        assert!(s.due(start + secs(5), stat).ready.is_empty());
        assert!(
            !s.contains(Path::new("/d/gone.mp4")),
            "gone at its deadline"
        );
        let polled = s.due(start + secs(30), stat);
        assert_eq!(polled.empty, vec![PathBuf::from("/d/empty.mp4")]);
        assert_eq!(s.next_due(), None, "shown once");
        assert!(s.contains(Path::new("/d/empty.mp4")));
    }

    #[test]
    fn a_file_still_written_and_renamed_within_the_tree_is_never_due() {
        let start = ahead();
        let stat = |_: &Path| version(10);
        let mut s = Settler::default();
        event(&mut s, "/d/a.mp4", Evidence::Writing, 10, start);
        // The rename's own event comes first, says "renamed in" and brings a look.
        event(&mut s, "/d/b.mp4", Evidence::Closed, 10, start);
        s.renamed(Path::new("/d/a.mp4"), Path::new("/d/b.mp4"));
        assert!(s.due(start + secs(3600), stat).ready.is_empty());
        assert!(s.poll(start + secs(3600), stat).ready.is_empty());
        assert_eq!(s.next_due(), None, "still open for writing");
        assert!(s.contains(Path::new("/d/b.mp4")));
    }

    #[test]
    fn an_empty_file_closed_again_unchanged_is_shown_once() {
        let start = ahead();
        let stat = |_: &Path| version(0);
        let mut s = Settler::default();
        event(&mut s, "/d/e.mp4", Evidence::Closed, 0, start);
        assert_eq!(s.due(start + secs(30), stat).empty.len(), 1);
        event(&mut s, "/d/e.mp4", Evidence::Closed, 0, start + secs(40));
        assert!(s.due(start + secs(70), stat).empty.is_empty(), "shown once");
        assert!(s.poll(start + secs(70), stat).empty.is_empty());
    }

    #[test]
    fn a_restart_is_never_dated_before_the_look_that_saw_the_change() {
        let clock = Instant::now();
        let long_ago = clock.checked_sub(secs(10)).expect("the clock runs");
        let mut s = Settler::default();
        event(&mut s, "/d/a.mp4", Evidence::Closed, 10, long_ago);
        // A pass that began long ago reaches this file only now, and finds it changed.
        let stat = |_: &Path| version(20);
        assert!(s.poll(long_ago, stat).ready.is_empty());
        let just_before = clock + RULE.settle - Duration::from_millis(1);
        assert!(s.due(just_before, stat).ready.is_empty());
        assert!(s.poll(just_before, stat).ready.is_empty());
        assert_eq!(s.due(Instant::now() + RULE.settle, stat).ready.len(), 1);
    }

    #[test]
    fn a_burst_leaves_nothing_behind_once_it_is_taken() {
        let start = ahead();
        let stat = |_: &Path| version(10);
        let mut s = Settler::default();
        for i in 0..1_000 {
            event(&mut s, &format!("/d/{i}.mp4"), Evidence::Closed, 10, start);
            // A stale entry, left behind by a file taken at a poll before its deadline came up.
            s.renamed(
                Path::new(&format!("/d/{i}.mp4")),
                Path::new(&format!("/d/{i}.mov")),
            );
        }
        assert_eq!(s.poll(start + secs(5), stat).ready.len(), 1_000);
        assert!(s.is_empty());
        assert_eq!(s.next_due(), None, "no stale entry stays");
        assert_eq!(s.deadlines.capacity(), 0);
        assert_eq!(s.pending.capacity(), 0);
    }
}
