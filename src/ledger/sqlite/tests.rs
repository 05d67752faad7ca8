//! What only the SQLite backend promises: a reopen keeps what was confirmed, calls run off the
//! runtime on the ledger thread in batches, and a removed watch's file is still uploaded. What
//! both backends promise is the contract suite's (tests/it/ledger_contract/).

use super::*;
use crate::config::AccountName;
use crate::config::AfterUpload;
use crate::ledger::BackendError;
use crate::ledger::{
    FileIdentity, FileRecord, FileState, FileVersion, Inode, Lease, NewFile, WatchRoot,
};
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

/// The account the test rows go to.
static APP: LazyLock<AccountName> = LazyLock::new(|| AccountName::new("AKIDa@vod.example"));
const A: &str = "AKIDa@vod.example";

fn ledger() -> (tempfile::TempDir, Sqlite) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Sqlite::open(&dir.path().join("state/ledger.db")).unwrap();
    (dir, ledger)
}

fn new_file(path: &Path) -> NewFile {
    NewFile {
        path: path.to_owned(),
        identity: identity(3_000_000, 42),
        part_size: 1_048_576,
        watch: None,
        processing: "{}".into(),
        state: FileState::Queued,
        account: Some(APP.clone()),
    }
}

/// The watch of the test files the scheduler may claim.
fn drop_watch() -> WatchRoot {
    WatchRoot {
        name: "drop".into(),
        path: PathBuf::from("/drop"),
    }
}

/// A file of that watch.
fn watched(path: &Path) -> NewFile {
    NewFile {
        watch: Some(drop_watch()),
        ..new_file(path)
    }
}

fn lease(node: &str) -> Lease {
    Lease {
        node: node.into(),
        length: Duration::from_secs(30),
    }
}

/// A claim on `key` for this test's node.
fn claim(l: &Sqlite, key: FileKey) -> Claim {
    l.claim(key, &lease("here")).unwrap().expect("claimable").0
}

/// A claim on some file, for writes about a content rather than one file.
fn any_claim(l: &Sqlite) -> Claim {
    let f = l.enqueue(&new_file(Path::new("/any.mp4"))).unwrap();
    claim(l, f.key)
}

fn upload(account: &str, sha: &str) -> Upload {
    Upload {
        account: account.into(),
        sha: sha.into(),
        size: 3_000_000,
        part_size: 1_048_576,
    }
}

fn confirm_part(l: &Sqlite, account: &str, sha: &str, offset: u64, len: u64) {
    let claim = any_claim(l);
    l.confirm_parts(claim, &upload(account, sha), &[(offset, len)], None)
        .unwrap();
}

fn unfinished(l: &Sqlite) -> Vec<FileRecord> {
    let rows = l.files().unwrap().into_iter();
    rows.filter(|r| r.state.is_active()).rev().collect()
}

fn identity(size: u64, mtime_ns: i64) -> FileIdentity {
    FileIdentity {
        inode: Inode { dev: 1, ino: 7 },
        version: FileVersion { size, mtime_ns },
    }
}

#[test]
fn confirmed_parts_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    {
        let l = Sqlite::open(&db).unwrap();
        let f = l.enqueue(&new_file(Path::new("/a.mp4"))).unwrap();
        let upload = Upload {
            account: A.into(),
            sha: "sha".into(),
            size: 3_000_000,
            part_size: 1_048_576,
        };
        let md5s = ["m0".into(), "m1".into(), "m2".into()];
        l.record_hash(claim(&l, f.key), &upload, &md5s, None)
            .unwrap();
        confirm_part(&l, A, "sha", 0, 1_048_576);
        confirm_part(&l, A, "sha", 2_097_152, 902_848);
    }
    let l = Sqlite::open(&db).unwrap();
    assert_eq!(
        l.confirmed(A, "sha").unwrap(),
        BTreeSet::from([0, 2_097_152])
    );
    let f = &unfinished(&l)[0];
    assert_eq!(f.confirmed_bytes, 1_048_576 + 902_848);
    assert_eq!(f.file_sha.as_deref(), Some("sha"));
    assert_eq!(
        l.part_md5s("sha", 1_048_576, 3).unwrap(),
        Some(vec!["m0".into(), "m1".into(), "m2".into()])
    );
    assert_eq!(l.part_md5s("sha", 524_288, 6).unwrap(), None);
}

#[tokio::test]
async fn the_async_ledger_runs_sqlite_calls_off_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let l = crate::ledger::Ledger::open(&dir.path().join("ledger.db")).unwrap();
    let f = l.enqueue(new_file(Path::new("/b.mp4"))).await.unwrap();
    assert_eq!(f.path, PathBuf::from("/b.mp4"));
    assert_eq!(l.file(f.key).await.unwrap(), Some(f));
}

#[test]
fn a_removed_watchs_file_is_still_uploaded_but_its_action_waits_for_the_watch() {
    let (_d, l) = ledger();
    let queued = l.enqueue(&watched(Path::new("/drop/q.mp4"))).unwrap();
    let ended = l.enqueue(&watched(Path::new("/drop/e.mp4"))).unwrap();
    let c = claim(&l, ended.key);
    l.finish(c, "id", None, false).unwrap();
    l.release(c).unwrap();
    let taken = l.claim_next(&lease("n1"), 10, &[], None, false).unwrap();
    let keys: Vec<FileKey> = taken.iter().map(|(c, _)| c.key).collect();
    assert_eq!(
        keys,
        [queued.key],
        "the upload is owed; the action needs its watch"
    );
    let (_, record) = l
        .claim_next(&lease("n1"), 10, &[drop_watch()], None, false)
        .unwrap()
        .remove(0);
    assert_eq!(record.key, ended.key, "taken once its watch is back");
}

/// Calls that queue while the ledger thread is busy run as one batch: one transaction, in which
/// a call that fails (here, fenced) rolls back alone, and whose callers are answered only once it
/// is committed (another connection sees every row a caller was told of).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_calls_commit_as_one_batch_answered_after_the_commit() {
    let (dir, l) = ledger();
    let other = Sqlite::open(&dir.path().join("state/ledger.db")).unwrap();
    let fenced_file = l.enqueue(&new_file(Path::new("/fenced.mp4"))).unwrap();
    let old = claim(&l, fenced_file.key);
    l.release(old).unwrap();
    let _taken_over = claim(&l, fenced_file.key);
    let worker = Worker::start(l.clone());
    // Keep the thread busy while the batch queues behind it.
    let busy = worker.run(|_| {
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    });
    let queue = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let first = worker.run(|s| s.enqueue(&new_file(Path::new("/a.mp4"))));
        let fenced = worker.run(move |s| s.set_state(old, FileState::Hashing));
        // Runs in the batch, after the enqueue of /a.mp4: another connection must not see it yet.
        let seen = {
            let other = other.clone();
            worker.run(move |_| other.latest_for_path(Path::new("/a.mp4")))
        };
        let rest = futures::future::join_all((0..40).map(|i| {
            let path = PathBuf::from(format!("/f{i}.mp4"));
            worker.run(move |s| s.enqueue(&new_file(&path)))
        }));
        tokio::join!(first, fenced, seen, rest)
    };
    let ((), (first, fenced, seen, rest)) = tokio::join!(async { busy.await.unwrap() }, queue);
    assert!(
        seen.unwrap().is_none(),
        "the batch's writes were visible outside it before its commit"
    );
    assert!(
        matches!(fenced, Err(LedgerError::Fenced { .. })),
        "{fenced:?}"
    );
    for record in std::iter::once(first).chain(rest) {
        let record = record.expect("the fenced call failed alone");
        assert!(
            other.file(record.key).unwrap().is_some(),
            "{} answered before it was committed",
            record.path.display()
        );
    }
}

/// A call that panics loses its own answer only: the thread goes on with the next.
#[tokio::test]
async fn a_panicking_call_fails_alone_and_the_ledger_thread_goes_on() {
    let (_d, l) = ledger();
    let worker = Worker::start(l);
    let panicked = worker.run(|_| -> Result<()> { panic!("a bug in one call") });
    assert!(matches!(
        panicked.await,
        Err(LedgerError::Backend(BackendError::Task(_)))
    ));
    let record = worker
        .run(|s| s.enqueue(&new_file(Path::new("/after.mp4"))))
        .await
        .unwrap();
    assert_eq!(record.path, Path::new("/after.mp4"));
}

/// An after-upload intent in a batch is recorded only if it was queued as durable (the batch then
/// commits with `synchronous=FULL`); queued as an ordinary call, it is refused, not recorded
/// without the fsync a power cut needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intent_in_a_batch_must_be_queued_as_durable() {
    let (_d, l) = ledger();
    let (a, b) = (
        l.enqueue(&new_file(Path::new("/a.mp4"))).unwrap(),
        l.enqueue(&new_file(Path::new("/b.mp4"))).unwrap(),
    );
    let (ca, cb) = (claim(&l, a.key), claim(&l, b.key));
    l.finish(ca, "ida", None, false).unwrap();
    l.finish(cb, "idb", None, false).unwrap();
    let worker = Worker::start(l.clone());
    let in_a_batch = |durable: bool, c: Claim| {
        let worker = worker.clone();
        async move {
            let busy = worker.run(|_| {
                std::thread::sleep(Duration::from_millis(200));
                Ok(())
            });
            let queued = async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let intent = move |s: &Sqlite| s.intend_disposal(c, AfterUpload::Delete, None, &[]);
                let other = worker.run(|s| s.count_by_state());
                match durable {
                    true => tokio::join!(worker.run_durable(intent), other).0,
                    false => tokio::join!(worker.run(intent), other).0,
                }
            };
            tokio::join!(busy, queued).1
        }
    };
    let refused = in_a_batch(false, ca).await;
    assert!(
        matches!(refused, Err(LedgerError::Backend(BackendError::Task(_)))),
        "{refused:?}"
    );
    assert_eq!(l.file(a.key).unwrap().unwrap().intent, None);
    assert!(in_a_batch(true, cb).await.unwrap());
    assert_eq!(
        l.file(b.key).unwrap().unwrap().intent,
        Some(AfterUpload::Delete)
    );
}

/// `n` rows of files of a watch, done and moved a day ago, written straight into the table.
fn old_moved(l: &Sqlite, n: i64) {
    moved_at(l, n, unix_now_i64() - 86_400);
}

/// `n` rows of files of a watch, done and moved at `at` (Unix seconds).
fn moved_at(l: &Sqlite, n: i64, at: i64) {
    let conn = l.conn();
    let first: i64 = conn
        .query_row("SELECT COALESCE(MAX(id), 0) FROM files", [], |r| r.get(0))
        .unwrap();
    let mut insert = conn
        .prepare(
            "INSERT INTO files (path, origin, size, mtime_ns, part_size, state, file_sha, \
             processing, file_id, disposed, disposal, created_at, updated_at, finished_at) \
             VALUES (?1, '/drop', 1, 1, 1048576, 'done', ?2, '{}', 'id', 1, 'moved', ?3, ?3, ?3)",
        )
        .unwrap();
    for i in first..first + n {
        let path = format!("/drop/a-file-with-a-long-name-of-its-own-{i:08}.mp4");
        insert
            .execute(params![path, format!("{i:040}"), at])
            .unwrap();
    }
}

/// Every batch of a walk, `batch` rows at a time: the rows forgotten and the batches taken.
fn forget_all(l: &Sqlite, ended_before: i64, batch: usize) -> (u64, usize) {
    let (mut after, mut forgotten, mut batches) = (FileKey(0), 0, 0);
    loop {
        let walked = l.forget(ended_before, after, batch).unwrap();
        (forgotten, batches) = (forgotten + walked.forgotten, batches + 1);
        match walked.next {
            Some(next) => after = next,
            None => return (forgotten, batches),
        }
    }
}

#[test]
fn the_walk_ends_at_the_first_batch_of_rows_made_after_the_cutoff() {
    let (_dir, l) = ledger();
    let now = unix_now_i64();
    moved_at(&l, 10, now - 86_400);
    moved_at(&l, 10, now);
    let (forgotten, batches) = forget_all(&l, now - 3600, 5);
    assert_eq!(forgotten, 10, "every old row");
    assert_eq!(
        batches, 3,
        "two batches of old rows, then the first of new ones"
    );
    let left = l
        .conn()
        .query_row("SELECT COUNT(*) FROM files", [], |r| r.get::<_, i64>(0));
    assert_eq!(left.unwrap(), 10, "the new rows stay");
}

impl Sqlite {
    fn freelist(&self) -> u64 {
        let free: i64 = self
            .conn()
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .unwrap();
        free as u64
    }
}

fn pages(l: &Sqlite) -> i64 {
    l.conn()
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn forgotten_rows_give_their_pages_back_to_the_file_system() {
    let (_dir, l) = ledger();
    old_moved(&l, 20_000);
    let full = pages(&l);
    let (forgotten, _) = forget_all(&l, unix_now_i64() - 3600, 1000);
    assert_eq!(forgotten, 20_000);
    assert_eq!(pages(&l), full, "SQLite keeps the pages until told");
    let mut free = l.freelist();
    assert!(free > 64);
    while free > 0 {
        let left = l.give_back_space(64).unwrap();
        assert_eq!(left, free.saturating_sub(64), "each call gives 64 back");
        free = left;
    }
    assert!(pages(&l) * 10 < full, "{} of {full} pages left", pages(&l));
}

#[test]
fn a_ledger_made_before_retention_keeps_its_free_pages_for_new_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "auto_vacuum", "NONE").unwrap();
    conn.execute_batch("CREATE TABLE made_before (x)").unwrap();
    drop(conn);
    let l = Sqlite::open(&path).unwrap();
    old_moved(&l, 5_000);
    let full = pages(&l);
    let forgotten = l.forget(unix_now_i64(), FileKey(0), 10_000).unwrap();
    assert_eq!(forgotten.forgotten, 5_000);
    let free = l.give_back_space(64).unwrap();
    assert!(free > 0);
    assert_eq!(l.give_back_space(64).unwrap(), free, "nothing given back");
    old_moved(&l, 5_000);
    assert!(
        pages(&l) <= full + full / 10,
        "the free pages were used again"
    );
}
