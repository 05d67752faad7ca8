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
