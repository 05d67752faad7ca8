use super::*;
use crate::config::AccountName;
use crate::config::AfterUpload;
use crate::ledger::{
    Disposed, FileIdentity, FileRecord, FileState, FileVersion, Inode, Lease, NewFile,
    RecordedError, WatchRoot,
};
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
    l.claim(key, &lease("here")).unwrap().expect("claimable")
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

fn store_signature(l: &Sqlite, account: &str, sha: &str, encoded: &str, expires_at: u64) {
    let signature = Signature {
        encoded: encoded.into(),
        expires_at,
    };
    l.store_signature(any_claim(l), &upload(account, sha), &signature)
        .unwrap();
}

fn signature(l: &Sqlite, account: &str, sha: &str) -> Option<(String, u64)> {
    let found = l.signature(account, sha).unwrap();
    found.map(|s| (s.encoded, s.expires_at))
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
fn enqueue_is_idempotent_per_file_version() {
    let (_d, l) = ledger();
    let a = l.enqueue(&new_file(Path::new("/drop/a.mp4"))).unwrap();
    let again = l.enqueue(&new_file(Path::new("/drop/a.mp4"))).unwrap();
    assert_eq!(a.key, again.key);
    assert_eq!(a.state, FileState::Queued);
    let mut changed = new_file(Path::new("/drop/a.mp4"));
    changed.identity = identity(3_000_000, 43);
    assert_ne!(l.enqueue(&changed).unwrap().key, a.key);
    assert_eq!(unfinished(&l).len(), 2);
}

#[test]
fn confirmed_parts_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    {
        let l = Sqlite::open(&db).unwrap();
        let f = l.enqueue(&new_file(Path::new("/a.mp4"))).unwrap();
        l.record_hash(
            claim(&l, f.key),
            "sha",
            1_048_576,
            &["m0".into(), "m1".into(), "m2".into()],
            None,
        )
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

#[test]
fn reconcile_makes_the_service_list_the_truth() {
    let (_d, l) = ledger();
    confirm_part(&l, A, "sha", 0, 10);
    confirm_part(&l, A, "sha", 10, 10);
    l.reconcile(any_claim(&l), &upload(A, "sha"), &[(10, 10), (20, 5)], None)
        .unwrap();
    assert_eq!(l.confirmed(A, "sha").unwrap(), BTreeSet::from([10, 20]));
    l.reconcile(any_claim(&l), &upload(A, "sha"), &[], None)
        .unwrap();
    assert!(l.confirmed(A, "sha").unwrap().is_empty());
}

#[test]
fn failure_keeps_code_message_and_description_until_done() {
    let (_d, l) = ledger();
    let f = l.enqueue(&new_file(Path::new("/a.mp4"))).unwrap();
    let err = RecordedError {
        code: -10003,
        message: "bad".into(),
        code_desc: "offset".into(),
    };
    l.write_error(claim(&l, f.key), &err, Some(FileState::Failed))
        .unwrap();
    let got = l.file(f.key).unwrap().unwrap();
    assert_eq!(got.state, FileState::Failed);
    assert_eq!(got.error, Some(err));
    assert!(unfinished(&l).is_empty());
    assert_eq!(l.requeue_failed(Some(Path::new("/a.mp4"))).unwrap(), 1);
    l.finish(claim(&l, f.key), "123", Some("http://u"), false)
        .unwrap();
    let got = l.file(f.key).unwrap().unwrap();
    assert_eq!((got.state, got.error), (FileState::Done, None));
    assert_eq!(
        got.confirmed_bytes, got.size,
        "a done file counts as wholly confirmed"
    );
    assert_eq!(got.file_id.as_deref(), Some("123"));
}

#[test]
fn signatures_are_kept_per_account_and_content() {
    let (_d, l) = ledger();
    assert_eq!(signature(&l, A, "sha"), None);
    store_signature(&l, A, "sha", "sig1", 100);
    store_signature(&l, A, "sha", "sig2", 200);
    assert_eq!(signature(&l, A, "sha"), Some(("sig2".into(), 200)));
    assert_eq!(signature(&l, "AKIDb@vod.example", "sha"), None);
    store_signature(&l, "AKIDb@vod.example", "sha", "sigb", 300);
    assert_eq!(signature(&l, A, "sha"), Some(("sig2".into(), 200)));
}

#[test]
fn finishing_for_one_account_keeps_another_accounts_upload_of_the_same_content() {
    let (_d, l) = ledger();
    let f = l.enqueue(&new_file(Path::new("/a.mp4"))).unwrap();
    let other = "AKIDb@vod.example";
    l.record_hash(claim(&l, f.key), "sha", 1_048_576, &["a".into()], None)
        .unwrap();
    confirm_part(&l, A, "sha", 0, 1_048_576);
    confirm_part(&l, other, "sha", 1_048_576, 1_048_576);
    store_signature(&l, other, "sha", "sigb", 9);
    assert_eq!(
        l.file(f.key).unwrap().unwrap().confirmed_bytes,
        1_048_576,
        "only its own account's parts count"
    );
    l.finish(claim(&l, f.key), "1", None, false).unwrap();
    assert!(l.confirmed(A, "sha").unwrap().is_empty());
    assert_eq!(
        l.confirmed(other, "sha").unwrap(),
        BTreeSet::from([1_048_576])
    );
    assert_eq!(signature(&l, other, "sha"), Some(("sigb".into(), 9)));
}

#[test]
fn a_requeued_file_forgets_its_account() {
    let (_d, l) = ledger();
    let f = l.enqueue(&new_file(Path::new("/a.mp4"))).unwrap();
    assert_eq!(f.account.as_ref(), Some(&*APP));
    let error = RecordedError {
        code: 0,
        message: "x".into(),
        code_desc: String::new(),
    };
    l.write_error(claim(&l, f.key), &error, Some(FileState::Failed))
        .unwrap();
    assert!(l.requeue(f.key).unwrap());
    assert_eq!(l.file(f.key).unwrap().unwrap().account, None);
    let b = AccountName::new("b");
    l.begin_attempt(claim(&l, f.key), Some(&b), true).unwrap();
    let begun = l.file(f.key).unwrap().unwrap();
    assert_eq!(
        (begun.account, begun.state),
        (Some(b.clone()), FileState::Hashing)
    );
    l.begin_attempt(claim(&l, f.key), None, false).unwrap();
    let again = l.file(f.key).unwrap().unwrap();
    assert_eq!(
        (again.account, again.attempts),
        (Some(b), 2),
        "an account once recorded stays"
    );
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
fn a_set_aside_version_is_taken_again_when_it_settles_anew() {
    let (_d, l) = ledger();
    let path = Path::new("/drop/grow.mp4");
    let old = l.enqueue(&new_file(path)).unwrap();
    l.set_aside(claim(&l, old.key), FileState::Superseded, "changed")
        .unwrap();
    let set_aside = l.file(old.key).unwrap().unwrap();
    assert_eq!(set_aside.state, FileState::Superseded);
    assert!(set_aside.state.is_final() && unfinished(&l).is_empty());
    let again = l.enqueue(&new_file(path)).unwrap();
    assert_eq!((again.key, again.state), (old.key, FileState::Queued));
    assert_eq!(again.error, None);
}

#[test]
fn a_waiting_empty_file_gives_way_to_its_version_with_content() {
    let (_d, l) = ledger();
    let path = Path::new("/drop/later.mp4");
    let empty = l
        .enqueue(&NewFile {
            identity: identity(0, 1),
            state: FileState::Waiting,
            ..new_file(path)
        })
        .unwrap();
    assert_eq!(empty.state, FileState::Waiting);
    assert!(unfinished(&l).is_empty(), "nothing to upload yet");
    let full = l.enqueue(&new_file(path)).unwrap();
    assert_eq!(full.state, FileState::Queued);
    let rows = l.files().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].state, rows[0].size),
        (FileState::Queued, 3_000_000)
    );
}

#[test]
fn a_path_that_is_not_utf8_is_stored_and_found_exactly() {
    use std::os::unix::ffi::OsStrExt as _;
    let (_d, l) = ledger();
    let path = Path::new(std::ffi::OsStr::from_bytes(b"/drop/bad\xffname.mp4"));
    let lossy = PathBuf::from("/drop/bad\u{fffd}name.mp4");
    let f = l.enqueue(&new_file(path)).unwrap();
    assert_eq!(f.path, path);
    assert_eq!(l.latest_for_path(path).unwrap().unwrap().key, f.key);
    assert!(l.latest_for_path(&lossy).unwrap().is_none());
    let json = serde_json::to_string(&f).unwrap();
    assert!(
        json.contains(r#""path":"/drop/bad\\xFFname.mp4""#),
        "{json}"
    );
}

#[test]
fn a_disposal_intent_holds_its_hooks_until_the_outcome_is_recorded() {
    let (_d, l) = ledger();
    let f = l.enqueue(&new_file(Path::new("/drop/a.mp4"))).unwrap();
    l.finish(claim(&l, f.key), "id", None, false).unwrap();
    let hook = NewDelivery {
        event: "done",
        kind: HookKind::Command,
        target: "[\"true\"]".into(),
        payload: "{}".into(),
    };
    let recorded = l
        .intend_disposal(
            claim(&l, f.key),
            AfterUpload::Move,
            Some(Path::new("/done/a.mp4")),
            std::slice::from_ref(&hook),
        )
        .unwrap();
    assert!(recorded);
    assert!(l.due_hooks(i64::MAX, 10).unwrap().is_empty(), "held");
    let intended = l.file(f.key).unwrap().unwrap();
    assert_eq!(intended.intent, Some(crate::config::AfterUpload::Move));
    assert_eq!(
        intended.intent_target.as_deref(),
        Some(Path::new("/done/a.mp4"))
    );
    assert!(!intended.disposed);
    l.mark_disposed(claim(&l, f.key), &Disposed::Moved, None, None)
        .unwrap();
    assert_eq!(l.due_hooks(i64::MAX, 10).unwrap().len(), 1, "released");
    l.mark_disposed(claim(&l, f.key), &Disposed::Moved, None, None)
        .unwrap();
    assert_eq!(l.due_hooks(i64::MAX, 10).unwrap().len(), 1, "once");
}

#[test]
fn requeue_takes_only_the_latest_version_of_a_path() {
    let (_d, l) = ledger();
    let path = Path::new("/drop/v.mp4");
    let err = RecordedError {
        code: 1,
        message: "x".into(),
        code_desc: String::new(),
    };
    let first = l.enqueue(&new_file(path)).unwrap();
    l.write_error(claim(&l, first.key), &err, Some(FileState::Failed))
        .unwrap();
    let mut second = new_file(path);
    second.identity = identity(3_000_000, 7);
    let second = l.enqueue(&second).unwrap();
    l.write_error(claim(&l, second.key), &err, Some(FileState::Failed))
        .unwrap();
    assert_eq!(l.requeue_failed(None).unwrap(), 1);
    assert_eq!(l.file(first.key).unwrap().unwrap().state, FileState::Failed);
    assert_eq!(
        l.file(second.key).unwrap().unwrap().state,
        FileState::Queued
    );
}

#[test]
fn finishing_forgets_the_content_parts_hashes_and_signature() {
    let (_d, l) = ledger();
    let f = l.enqueue(&new_file(Path::new("/a.mp4"))).unwrap();
    l.record_hash(
        claim(&l, f.key),
        "sha",
        1_048_576,
        &["a".into(), "b".into(), "c".into()],
        None,
    )
    .unwrap();
    confirm_part(&l, A, "sha", 0, 1_048_576);
    store_signature(&l, A, "sha", "sig", 9);
    l.finish(claim(&l, f.key), "1", None, false).unwrap();
    assert!(l.confirmed(A, "sha").unwrap().is_empty());
    assert_eq!(l.part_md5s("sha", 1_048_576, 3).unwrap(), None);
    assert_eq!(signature(&l, A, "sha"), None);
}

#[test]
fn a_revived_row_keeps_its_hash_only_for_the_same_inode() {
    let (_d, l) = ledger();
    let path = Path::new("/drop/again.mp4");
    let first = l.enqueue(&new_file(path)).unwrap();
    l.record_hash(
        claim(&l, first.key),
        "sha-of-old",
        1_048_576,
        &vec!["m".to_string(); 3],
        None,
    )
    .unwrap();
    l.set_aside(claim(&l, first.key), FileState::Gone, "moved away")
        .unwrap();
    let mut other_inode = new_file(path);
    other_inode.identity.inode.ino = 99;
    let revived = l.enqueue(&other_inode).unwrap();
    assert_eq!((revived.key, revived.state), (first.key, FileState::Queued));
    assert_eq!(
        revived.file_sha, None,
        "another file at the same version is hashed anew"
    );
}

#[test]
fn a_file_already_uploaded_under_another_path_is_that_upload() {
    let (_d, l) = ledger();
    let done = l.enqueue(&new_file(Path::new("/drop/a.mp4"))).unwrap();
    l.finish(claim(&l, done.key), "id-1", None, false).unwrap();
    let renamed = l
        .enqueue(&new_file(Path::new("/drop/renamed.mp4")))
        .unwrap();
    assert_eq!((renamed.key, renamed.state), (done.key, FileState::Done));
    assert_eq!(l.files().unwrap().len(), 1, "nothing new recorded");
    let identity = identity(3_000_000, 42);
    assert!(l.uploaded(&identity).unwrap().is_some());
}

#[test]
fn a_failed_file_whose_disposal_is_under_way_is_not_requeued() {
    let (_d, l) = ledger();
    let path = Path::new("/drop/f.mp4");
    let f = l.enqueue(&new_file(path)).unwrap();
    let err = RecordedError {
        code: 1,
        message: "x".into(),
        code_desc: String::new(),
    };
    l.write_error(claim(&l, f.key), &err, Some(FileState::Failed))
        .unwrap();
    assert!(l
        .intend_disposal(claim(&l, f.key), AfterUpload::Move, None, &[])
        .unwrap());
    assert!(!l.requeue(f.key).unwrap());
    assert_eq!(l.requeue_failed(Some(path)).unwrap(), 0);
    l.mark_disposed(claim(&l, f.key), &Disposed::Moved, None, None)
        .unwrap();
    assert!(
        l.requeue(f.key).unwrap(),
        "once it is disposed of, it can be retried"
    );
}

#[test]
fn claims_take_owed_files_oldest_first_once_each() {
    let (_d, l) = ledger();
    let a = l.enqueue(&watched(Path::new("/drop/a.mp4"))).unwrap();
    let b = l.enqueue(&watched(Path::new("/drop/b.mp4"))).unwrap();
    l.enqueue(&new_file(Path::new("/cli.mp4"))).unwrap();
    let first = l
        .claim_next(&lease("n1"), 1, &[drop_watch()], None, false)
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1.key, a.key, "oldest first");
    assert_eq!(first[0].1.node.as_deref(), Some("n1"));
    let rest = l
        .claim_next(&lease("n2"), 10, &[drop_watch()], None, false)
        .unwrap();
    let keys: Vec<FileKey> = rest.iter().map(|(c, _)| c.key).collect();
    assert_eq!(
        keys,
        [b.key],
        "a live claim is skipped; a `vodup upload` file is not the queue's"
    );
    assert!(l
        .claim_next(&lease("n3"), 10, &[drop_watch()], None, false)
        .unwrap()
        .is_empty());
}

#[test]
fn a_claim_for_one_part_files_takes_none_past_a_larger_file_still_waiting() {
    let (_d, l) = ledger();
    let one_part = |name: &str, size: u64| NewFile {
        identity: identity(size, 42),
        ..watched(&Path::new("/drop").join(name))
    };
    let exact = l.enqueue(&one_part("exact.mp4", 1_048_576)).unwrap();
    let large = l.enqueue(&watched(Path::new("/drop/large.mp4"))).unwrap();
    let small = l.enqueue(&one_part("small.mp4", 1_000)).unwrap();
    let keys = |taken: Vec<(Claim, FileRecord)>| -> Vec<FileKey> {
        taken.iter().map(|(c, _)| c.key).collect()
    };
    let n1 = lease("n1");
    let taken = l.claim_next(&n1, 10, &[drop_watch()], None, true).unwrap();
    let not_past = "one part, and not past the larger file waiting";
    assert_eq!(keys(taken), [exact.key], "{not_past}");
    let taken = l.claim_next(&n1, 1, &[drop_watch()], None, false).unwrap();
    assert_eq!(keys(taken), [large.key], "a whole place: the oldest file");
    let taken = l.claim_next(&n1, 10, &[drop_watch()], None, true).unwrap();
    assert_eq!(
        keys(taken),
        [small.key],
        "the larger file runs: no longer waiting"
    );
}

#[test]
fn a_claim_taken_over_fences_every_write_of_the_old_holder() {
    let (_d, l) = ledger();
    let f = l.enqueue(&watched(Path::new("/drop/a.mp4"))).unwrap();
    let short = Lease {
        node: "frozen".into(),
        length: Duration::from_secs(1),
    };
    let (old, _) = l
        .claim_next(&short, 1, &[drop_watch()], None, false)
        .unwrap()
        .remove(0);
    l.set_state(old, FileState::Uploading).unwrap();
    assert!(
        l.claim_next(&lease("b"), 1, &[drop_watch()], None, false)
            .unwrap()
            .is_empty(),
        "still live"
    );
    std::thread::sleep(Duration::from_millis(2100));
    let (new, record) = l
        .claim_next(&lease("b"), 1, &[drop_watch()], None, false)
        .unwrap()
        .remove(0);
    assert_eq!((new.key, record.node.as_deref()), (f.key, Some("b")));
    assert!(new.epoch > old.epoch);
    let fenced = |r: crate::ledger::Result<()>| matches!(r, Err(LedgerError::Fenced { key }) if key == f.key);
    assert!(fenced(l.set_state(old, FileState::Finishing)));
    assert!(fenced(l.finish(old, "zombie", None, false)));
    assert!(fenced(l.confirm_parts(
        old,
        &upload(A, "sha"),
        &[(0, 1)],
        None
    )));
    assert!(fenced(l.mark_disposed(old, &Disposed::Deleted, None, None)));
    assert!(matches!(
        l.intend_disposal(old, AfterUpload::Delete, None, &[]),
        Err(LedgerError::Fenced { .. })
    ));
    assert_eq!(
        l.renew(&short, &[old]).unwrap(),
        [],
        "the old holder learns it lost the file"
    );
    assert_eq!(l.renew(&lease("b"), &[new]).unwrap(), [new]);
    let row = l.file(f.key).unwrap().unwrap();
    assert_eq!(
        (row.state, row.file_id),
        (FileState::Uploading, None),
        "no write of the old holder landed"
    );
    l.finish(new, "id", None, false).unwrap();
}

#[test]
fn a_restarted_node_releases_what_its_previous_run_held() {
    let (_d, l) = ledger();
    let f = l.enqueue(&watched(Path::new("/drop/a.mp4"))).unwrap();
    assert_eq!(
        l.claim_next(&lease("n1"), 1, &[drop_watch()], None, false)
            .unwrap()
            .len(),
        1
    );
    assert!(l
        .claim_next(&lease("n1"), 1, &[drop_watch()], None, false)
        .unwrap()
        .is_empty());
    assert_eq!(
        l.start_node(&lease("n1"), None, "").unwrap(),
        crate::ledger::NodeStart::Started
    );
    let again = l
        .claim_next(&lease("n1"), 1, &[drop_watch()], None, false)
        .unwrap();
    assert_eq!(again[0].0.key, f.key);
    let nodes = l.nodes().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!((nodes[0].name.as_str(), nodes[0].holds), ("n1", 1));
}

#[test]
fn a_done_file_whose_action_has_not_run_is_owed_and_claimed_for_it() {
    let (_d, l) = ledger();
    let f = l.enqueue(&watched(Path::new("/drop/a.mp4"))).unwrap();
    let c = claim(&l, f.key);
    l.finish(c, "id", None, false).unwrap();
    l.release(c).unwrap();
    let (again, record) = l
        .claim_next(&lease("n2"), 1, &[drop_watch()], None, false)
        .unwrap()
        .remove(0);
    assert_eq!((record.state, record.disposed), (FileState::Done, false));
    l.mark_disposed(again, &Disposed::Kept, None, None).unwrap();
    l.release(again).unwrap();
    assert!(
        l.claim_next(&lease("n3"), 1, &[drop_watch()], None, false)
            .unwrap()
            .is_empty(),
        "nothing owed"
    );
}

#[test]
fn a_taken_delivery_is_not_taken_again_until_its_hold_passes() {
    let (_d, l) = ledger();
    let f = l.enqueue(&watched(Path::new("/drop/h.mp4"))).unwrap();
    let c = claim(&l, f.key);
    l.finish(c, "id", None, false).unwrap();
    let hook = NewDelivery {
        event: "done",
        kind: HookKind::Webhook,
        target: "http://hooks.example/".into(),
        payload: "{}".into(),
    };
    assert!(l
        .intend_disposal(c, AfterUpload::Keep, None, &[hook])
        .unwrap());
    l.mark_disposed(c, &Disposed::Kept, None, None).unwrap();
    let now = crate::clock::unix_now_i64();
    assert_eq!(
        l.take_due_hooks(now, 10, 120).unwrap().len(),
        1,
        "one node takes it"
    );
    assert!(
        l.take_due_hooks(now, 10, 120).unwrap().is_empty(),
        "another finds it taken"
    );
    assert_eq!(
        l.take_due_hooks(now + 121, 10, 120).unwrap().len(),
        1,
        "due again once the taker is presumed gone"
    );
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
    assert!(matches!(panicked.await, Err(LedgerError::Task(_))));
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
    assert!(matches!(refused, Err(LedgerError::Task(_))), "{refused:?}");
    assert_eq!(l.file(a.key).unwrap().unwrap().intent, None);
    assert!(in_a_batch(true, cb).await.unwrap());
    assert_eq!(
        l.file(b.key).unwrap().unwrap().intent,
        Some(AfterUpload::Delete)
    );
}
