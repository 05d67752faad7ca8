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
//! vanishes is forgotten. Pure logic: the caller supplies the clock and `stat`.

use crate::ledger::FileVersion;
use std::collections::HashMap;
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
}

impl Settler {
    /// An event for `path`: its quiet period starts (again) now; `evidence`, if the event carries
    /// some, replaces what was known.
    pub fn note(&mut self, path: PathBuf, evidence: Option<Evidence>, rule: Rule, now: Instant) {
        let entry = self.pending.entry(path).or_insert(Pending {
            seen: None,
            since: now,
            rule,
            evidence: Evidence::Unseen,
            reported_empty: false,
        });
        entry.since = now;
        entry.rule = rule;
        if let Some(evidence) = evidence {
            entry.evidence = evidence;
        }
    }

    /// A scan found `path`: it starts settling with no evidence, unless it is pending already.
    pub fn found(&mut self, path: PathBuf, rule: Rule, now: Instant) {
        if !self.pending.contains_key(&path) {
            self.note(path, None, rule, now);
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
            let entry = self.pending.remove(&old).expect("listed");
            let new = match old.strip_prefix(from) {
                Ok(rest) if !rest.as_os_str().is_empty() => to.join(rest),
                _ => to.to_owned(),
            };
            self.pending.insert(new, entry);
        }
    }

    /// Events may have been lost: nothing pending can rely on its evidence any more.
    pub fn evidence_lost(&mut self) {
        for pending in self.pending.values_mut() {
            pending.evidence = Evidence::Unseen;
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
        self.pending.retain(|path, p| {
            let Some(current) = stat(path) else {
                return false;
            };
            if p.seen != Some(current) {
                p.seen = Some(current);
                p.since = now;
                p.reported_empty = false;
                return true;
            }
            let quiet = now.duration_since(p.since);
            if current.size == 0 {
                if quiet >= p.rule.settle_unseen && !p.reported_empty {
                    p.reported_empty = true;
                    polled.empty.push(path.clone());
                }
                return true;
            }
            let needed = match p.evidence {
                Evidence::Writing => return true,
                Evidence::Closed => p.rule.settle,
                Evidence::Unseen => p.rule.settle_unseen,
            };
            if quiet >= needed {
                polled.ready.push(path.clone());
                return false;
            }
            true
        });
        polled.ready.sort();
        polled.empty.sort();
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

    #[test]
    fn a_closed_file_is_ready_after_a_quiet_settle_period() {
        let start = Instant::now();
        let size = RefCell::new(10u64);
        let stat = |_: &Path| version(*size.borrow());
        let mut s = Settler::default();
        s.note("/d/a.mp4".into(), Some(Evidence::Closed), RULE, start);
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
        let start = Instant::now();
        let stat = |_: &Path| version(4_000_000);
        let mut s = Settler::default();
        s.note("/d/a.mp4".into(), Some(Evidence::Writing), RULE, start);
        s.poll(start, stat);
        assert!(s.poll(start + secs(3600), stat).ready.is_empty());
        s.note(
            "/d/a.mp4".into(),
            Some(Evidence::Closed),
            RULE,
            start + secs(3600),
        );
        assert!(s.poll(start + secs(3604), stat).ready.is_empty());
        assert_eq!(s.poll(start + secs(3605), stat).ready.len(), 1);
    }

    #[test]
    fn a_file_without_evidence_needs_the_longer_quiet_period() {
        let start = Instant::now();
        let stat = |_: &Path| version(10);
        let mut s = Settler::default();
        s.found("/d/a.mp4".into(), RULE, start);
        s.poll(start, stat);
        assert!(s.poll(start + secs(29), stat).ready.is_empty());
        assert_eq!(s.poll(start + secs(30), stat).ready.len(), 1);
    }

    #[test]
    fn a_scan_keeps_the_evidence_of_a_pending_file_and_lost_events_drop_it() {
        let start = Instant::now();
        let stat = |_: &Path| version(10);
        let mut s = Settler::default();
        s.note("/d/w.mp4".into(), Some(Evidence::Writing), RULE, start);
        s.found("/d/w.mp4".into(), RULE, start);
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
        let start = Instant::now();
        let stat = |_: &Path| version(10);
        let mut s = Settler::default();
        s.note("/d/sub/a.mp4".into(), Some(Evidence::Writing), RULE, start);
        s.note("/d/b.mp4".into(), Some(Evidence::Writing), RULE, start);
        // The rename's own event arrives first and says "renamed in": complete.
        s.note("/d/sub2/a.mp4".into(), Some(Evidence::Closed), RULE, start);
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
        let start = Instant::now();
        let stat = |_: &Path| version(10);
        let mut s = Settler::default();
        s.note("/d/a.mp4".into(), Some(Evidence::Closed), RULE, start);
        s.poll(start, stat);
        s.note("/d/a.mp4".into(), None, RULE, start + secs(4));
        assert!(s.poll(start + secs(6), stat).ready.is_empty());
        assert_eq!(s.poll(start + secs(9), stat).ready.len(), 1);
    }

    #[test]
    fn empty_files_are_reported_once_and_vanished_ones_forgotten() {
        let start = Instant::now();
        let mut s = Settler::default();
        s.note("/d/empty.mp4".into(), Some(Evidence::Closed), RULE, start);
        s.note("/d/gone.mp4".into(), Some(Evidence::Closed), RULE, start);
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
}
