//! Deciding when a file is fully written.
//!
//! Every event or scan hit (re)starts a quiet period for its path. A file is ready when its size
//! and mtime have not changed for its watch's `settle` time; this also covers network filesystems
//! that send no close events. An empty file is never ready (writers often create first and fill
//! later); a file that vanishes is forgotten. Pure logic: the caller supplies the clock and `stat`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
struct Pending {
    seen: Option<(u64, i64)>,
    since: Instant,
    settle: Duration,
}

/// Paths waiting for their quiet period.
#[derive(Debug, Default)]
pub struct Settler {
    pending: HashMap<PathBuf, Pending>,
}

impl Settler {
    /// Something happened to `path`: its quiet period starts (again) now.
    pub fn touch(&mut self, path: PathBuf, settle: Duration, now: Instant) {
        let entry = self.pending.entry(path).or_insert(Pending {
            seen: None,
            since: now,
            settle,
        });
        entry.since = now;
        entry.settle = settle;
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

    /// Stat every pending path; return the ones quiet for their settle time (and forget them).
    pub fn poll(
        &mut self,
        now: Instant,
        stat: impl Fn(&Path) -> Option<(u64, i64)>,
    ) -> Vec<PathBuf> {
        let mut ready = Vec::new();
        self.pending.retain(|path, p| {
            let Some(current) = stat(path) else {
                return false;
            };
            if p.seen != Some(current) {
                p.seen = Some(current);
                p.since = now;
                return true;
            }
            if current.0 > 0 && now.duration_since(p.since) >= p.settle {
                ready.push(path.clone());
                return false;
            }
            true
        });
        ready.sort();
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    const SETTLE: Duration = Duration::from_secs(5);

    #[test]
    fn a_file_is_ready_after_a_quiet_settle_period() {
        let start = Instant::now();
        let size = RefCell::new(10u64);
        let stat = |_: &Path| Some((*size.borrow(), 1));
        let mut s = Settler::default();
        s.touch("/d/a.mp4".into(), SETTLE, start);
        assert!(
            s.poll(start, stat).is_empty(),
            "first sight records the size"
        );
        assert!(s.poll(start + Duration::from_secs(4), stat).is_empty());
        *size.borrow_mut() = 20;
        assert!(
            s.poll(start + Duration::from_secs(6), stat).is_empty(),
            "still growing"
        );
        assert!(s.poll(start + Duration::from_secs(10), stat).is_empty());
        let ready = s.poll(start + Duration::from_secs(11), stat);
        assert_eq!(ready, vec![PathBuf::from("/d/a.mp4")]);
        assert!(s.is_empty());
    }

    #[test]
    fn an_event_restarts_the_quiet_period() {
        let start = Instant::now();
        let stat = |_: &Path| Some((10, 1));
        let mut s = Settler::default();
        s.touch("/d/a.mp4".into(), SETTLE, start);
        s.poll(start, stat);
        s.touch("/d/a.mp4".into(), SETTLE, start + Duration::from_secs(4));
        assert!(s.poll(start + Duration::from_secs(6), stat).is_empty());
        assert_eq!(s.poll(start + Duration::from_secs(9), stat).len(), 1);
    }

    #[test]
    fn empty_and_vanished_files_are_never_ready() {
        let start = Instant::now();
        let mut s = Settler::default();
        s.touch("/d/empty.mp4".into(), SETTLE, start);
        s.touch("/d/gone.mp4".into(), SETTLE, start);
        let stat = |p: &Path| (p.ends_with("empty.mp4")).then_some((0, 1));
        s.poll(start, stat);
        assert!(s.poll(start + Duration::from_secs(60), stat).is_empty());
        assert!(s.contains(Path::new("/d/empty.mp4")));
        assert!(!s.contains(Path::new("/d/gone.mp4")));
    }
}
