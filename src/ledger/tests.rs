use super::*;
use crate::config::AccountName;
use std::sync::LazyLock;

/// The account the test rows go to.
static APP: LazyLock<AccountName> = LazyLock::new(|| AccountName::new("AKIDa@vod.example"));
const A: &str = "AKIDa@vod.example";

fn ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("state/ledger.db")).unwrap();
    (dir, ledger)
}

fn new_file(path: &Path) -> NewFile<'_> {
    NewFile {
        path,
        identity: identity(3_000_000, 42),
        part_size: 1_048_576,
        origin: None,
        processing: "{}",
        state: FileState::Queued,
        account: Some(&APP),
    }
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
    assert_eq!(l.unfinished().unwrap().len(), 2);
}

#[test]
fn confirmed_parts_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    {
        let l = Ledger::open(&db).unwrap();
        let f = l.enqueue(&new_file(Path::new("/a.mp4"))).unwrap();
        l.record_hash(
            f.key,
            "sha",
            1_048_576,
            &["m0".into(), "m1".into(), "m2".into()],
        )
        .unwrap();
        l.confirm_part(A, "sha", 0, 1_048_576).unwrap();
        l.confirm_part(A, "sha", 2_097_152, 902_848).unwrap();
    }
    let l = Ledger::open(&db).unwrap();
    assert_eq!(
        l.confirmed(A, "sha").unwrap(),
        BTreeSet::from([0, 2_097_152])
    );
    let f = &l.unfinished().unwrap()[0];
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
    l.confirm_part(A, "sha", 0, 10).unwrap();
    l.confirm_part(A, "sha", 10, 10).unwrap();
    l.reconcile(A, "sha", &[(10, 10), (20, 5)]).unwrap();
    assert_eq!(l.confirmed(A, "sha").unwrap(), BTreeSet::from([10, 20]));
    l.reconcile(A, "sha", &[]).unwrap();
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
    l.fail(f.key, &err).unwrap();
    let got = l.file(f.key).unwrap().unwrap();
    assert_eq!(got.state, FileState::Failed);
    assert_eq!(got.error, Some(err));
    assert!(l.unfinished().unwrap().is_empty());
    assert_eq!(l.requeue_failed(Some(Path::new("/a.mp4"))).unwrap(), 1);
    l.finish(f.key, "123", Some("http://u"), false).unwrap();
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
    assert_eq!(l.signature(A, "sha").unwrap(), None);
    l.store_signature(A, "sha", 10, 524_288, "sig1", 100)
        .unwrap();
    l.store_signature(A, "sha", 10, 524_288, "sig2", 200)
        .unwrap();
    assert_eq!(l.signature(A, "sha").unwrap(), Some(("sig2".into(), 200)));
    assert_eq!(l.signature("AKIDb@vod.example", "sha").unwrap(), None);
    l.store_signature("AKIDb@vod.example", "sha", 10, 524_288, "sigb", 300)
        .unwrap();
    assert_eq!(l.signature(A, "sha").unwrap(), Some(("sig2".into(), 200)));
}

#[test]
fn finishing_for_one_account_keeps_another_accounts_upload_of_the_same_content() {
    let (_d, l) = ledger();
    let f = l.enqueue(&new_file(Path::new("/a.mp4"))).unwrap();
    let other = "AKIDb@vod.example";
    l.record_hash(f.key, "sha", 1_048_576, &["a".into()])
        .unwrap();
    l.confirm_part(A, "sha", 0, 1_048_576).unwrap();
    l.confirm_part(other, "sha", 1_048_576, 1_048_576).unwrap();
    l.store_signature(other, "sha", 3_000_000, 1_048_576, "sigb", 9)
        .unwrap();
    assert_eq!(
        l.file(f.key).unwrap().unwrap().confirmed_bytes,
        1_048_576,
        "only its own account's parts count"
    );
    l.finish(f.key, "1", None, false).unwrap();
    assert!(l.confirmed(A, "sha").unwrap().is_empty());
    assert_eq!(
        l.confirmed(other, "sha").unwrap(),
        BTreeSet::from([1_048_576])
    );
    assert_eq!(l.signature(other, "sha").unwrap(), Some(("sigb".into(), 9)));
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
    l.fail(f.key, &error).unwrap();
    assert!(l.requeue(f.key).unwrap());
    assert_eq!(l.file(f.key).unwrap().unwrap().account, None);
    let b = AccountName::new("b");
    l.set_account(f.key, &b).unwrap();
    assert_eq!(l.file(f.key).unwrap().unwrap().account, Some(b));
}

#[tokio::test]
async fn run_moves_work_off_the_runtime() {
    let (_d, l) = ledger();
    let f = l
        .run(|l| l.enqueue(&new_file(Path::new("/b.mp4"))))
        .await
        .unwrap();
    assert_eq!(f.path, PathBuf::from("/b.mp4"));
}

#[test]
fn a_set_aside_version_is_taken_again_when_it_settles_anew() {
    let (_d, l) = ledger();
    let path = Path::new("/drop/grow.mp4");
    let old = l.enqueue(&new_file(path)).unwrap();
    l.set_aside(old.key, FileState::Superseded, "changed")
        .unwrap();
    let set_aside = l.file(old.key).unwrap().unwrap();
    assert_eq!(set_aside.state, FileState::Superseded);
    assert!(set_aside.state.is_final() && l.unfinished().unwrap().is_empty());
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
    assert!(l.unfinished().unwrap().is_empty(), "nothing to upload yet");
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
    l.finish(f.key, "id", None, false).unwrap();
    let hook = NewDelivery {
        event: "done",
        kind: HookKind::Command,
        target: "[\"true\"]".into(),
        payload: "{}".into(),
    };
    let recorded = l
        .intend_disposal(
            f.key,
            "move",
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
    l.mark_disposed(f.key, "moved", None, None).unwrap();
    assert_eq!(l.due_hooks(i64::MAX, 10).unwrap().len(), 1, "released");
    l.mark_disposed(f.key, "moved", None, None).unwrap();
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
    l.fail(first.key, &err).unwrap();
    let mut second = new_file(path);
    second.identity = identity(3_000_000, 7);
    let second = l.enqueue(&second).unwrap();
    l.fail(second.key, &err).unwrap();
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
        f.key,
        "sha",
        1_048_576,
        &["a".into(), "b".into(), "c".into()],
    )
    .unwrap();
    l.confirm_part(A, "sha", 0, 1_048_576).unwrap();
    l.store_signature(A, "sha", 3_000_000, 1_048_576, "sig", 9)
        .unwrap();
    l.finish(f.key, "1", None, false).unwrap();
    assert!(l.confirmed(A, "sha").unwrap().is_empty());
    assert_eq!(l.part_md5s("sha", 1_048_576, 3).unwrap(), None);
    assert_eq!(l.signature(A, "sha").unwrap(), None);
}

#[test]
fn a_revived_row_keeps_its_hash_only_for_the_same_inode() {
    let (_d, l) = ledger();
    let path = Path::new("/drop/again.mp4");
    let first = l.enqueue(&new_file(path)).unwrap();
    l.record_hash(
        first.key,
        "sha-of-old",
        1_048_576,
        &vec!["m".to_string(); 3],
    )
    .unwrap();
    l.set_aside(first.key, FileState::Gone, "moved away")
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
    l.finish(done.key, "id-1", None, false).unwrap();
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
    l.fail(f.key, &err).unwrap();
    assert!(l.intend_disposal(f.key, "move", None, &[]).unwrap());
    assert!(!l.requeue(f.key).unwrap());
    assert_eq!(l.requeue_failed(Some(path)).unwrap(), 0);
    l.mark_disposed(f.key, "moved", None, None).unwrap();
    assert!(
        l.requeue(f.key).unwrap(),
        "once it is disposed of, it can be retried"
    );
}
