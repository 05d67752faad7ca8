//! Recording file versions: one row per version, a version that comes back revived, failed
//! files re-queued, and paths kept byte for byte.

use super::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;

pub async fn enqueue_is_idempotent_per_file_version(b: &Backend) {
    let l = b.node().await;
    let a = l.enqueue(watched("a.mp4")).await.unwrap();
    let again = l.enqueue(watched("a.mp4")).await.unwrap();
    assert_eq!((again.key, again.state), (a.key, FileState::Queued));
    let other_node = b.node().await;
    let seen = other_node.enqueue(watched("a.mp4")).await.unwrap();
    assert_eq!(seen.key, a.key, "another handle records the same row");
    let mut changed = watched("a.mp4");
    changed.identity = identity(SIZE, 43);
    assert_ne!(l.enqueue(changed).await.unwrap().key, a.key);
    assert_eq!(unfinished(&l).await.len(), 2);
}

pub async fn a_file_already_uploaded_under_another_path_is_that_upload(b: &Backend) {
    let l = b.node().await;
    let done = l.enqueue(watched("a.mp4")).await.unwrap();
    l.finish(claim(&l, done.key).await, "id-1", None, false)
        .await
        .unwrap();
    let renamed = l.enqueue(watched("renamed.mp4")).await.unwrap();
    assert_eq!((renamed.key, renamed.state), (done.key, FileState::Done));
    assert_eq!(l.files().await.unwrap().len(), 1, "nothing new recorded");
    let found = l.uploaded(identity(SIZE, 42)).await.unwrap();
    assert_eq!(found.map(|r| r.key), Some(done.key));
    assert_eq!(l.uploaded(identity(SIZE, 43)).await.unwrap(), None);
}

pub async fn a_waiting_empty_file_gives_way_to_its_version_with_content(b: &Backend) {
    let l = b.node().await;
    let mut empty = sized("later.mp4", 0);
    empty.identity.version.mtime_ns = 1;
    empty.state = FileState::Waiting;
    assert_eq!(l.enqueue(empty).await.unwrap().state, FileState::Waiting);
    assert!(unfinished(&l).await.is_empty(), "nothing to upload yet");
    let full = l.enqueue(watched("later.mp4")).await.unwrap();
    assert_eq!(full.state, FileState::Queued);
    let rows = l.files().await.unwrap();
    assert_eq!(rows.len(), 1, "the waiting version gave way: {rows:?}");
    assert_eq!((rows[0].state, rows[0].size), (FileState::Queued, SIZE));
}

pub async fn a_set_aside_version_is_taken_again_when_it_settles_anew(b: &Backend) {
    let l = b.node().await;
    let old = l.enqueue(watched("grow.mp4")).await.unwrap();
    let c = claim(&l, old.key).await;
    l.note_error(c, &error(0, "changed while read"))
        .await
        .unwrap();
    l.set_aside(c, FileState::Superseded, "changed")
        .await
        .unwrap();
    let set_aside = row(&l, old.key).await;
    assert_eq!(set_aside.state, FileState::Superseded);
    assert!(set_aside.state.is_final() && unfinished(&l).await.is_empty());
    let again = l.enqueue(watched("grow.mp4")).await.unwrap();
    assert_eq!((again.key, again.state), (old.key, FileState::Queued));
    assert_eq!(again.error, None);
}

pub async fn a_revived_row_keeps_its_hash_only_for_the_same_inode(b: &Backend) {
    let l = b.node().await;
    let first = l.enqueue(watched("again.mp4")).await.unwrap();
    let c = claim(&l, first.key).await;
    l.record_hash(c, &upload(A, "sha-of-old"), vec!["m".into(); 3], None)
        .await
        .unwrap();
    l.set_aside(c, FileState::Gone, "moved away").await.unwrap();
    let mut other_inode = watched("again.mp4");
    other_inode.identity.inode.ino = 99;
    let revived = l.enqueue(other_inode).await.unwrap();
    assert_eq!((revived.key, revived.state), (first.key, FileState::Queued));
    assert_eq!(
        (revived.file_sha, revived.error),
        (None, None),
        "another file at the same version is hashed anew"
    );
}

pub async fn failed_files_are_requeued_by_path_latest_version_only(b: &Backend) {
    let l = b.node().await;
    let err = RecordedError {
        code: -1,
        message: "bad".into(),
        code_desc: "d".into(),
    };
    let first = l.enqueue(watched("v.mp4")).await.unwrap();
    l.fail(claim(&l, first.key).await, &err).await.unwrap();
    let mut newer = watched("v.mp4");
    newer.identity.inode.ino = 8;
    newer.identity.version.mtime_ns = 43;
    let second = l.enqueue(newer).await.unwrap();
    l.fail(claim(&l, second.key).await, &err).await.unwrap();
    let failed = row(&l, second.key).await;
    assert_eq!((failed.state, failed.error), (FileState::Failed, Some(err)));
    let other = Path::new("/drop/other.mp4");
    assert_eq!(l.requeue_failed(Some(other)).await.unwrap(), 0);
    let path = drop_watch().path.join("v.mp4");
    assert_eq!(l.requeue_failed(Some(&path)).await.unwrap(), 1);
    assert_eq!(row(&l, first.key).await.state, FileState::Failed);
    let requeued = row(&l, second.key).await;
    assert_eq!(
        (requeued.state, requeued.account),
        (FileState::Queued, None)
    );
    let counts = l.count_by_state().await.unwrap();
    assert!(counts.contains(&(FileState::Failed, 1)) && counts.contains(&(FileState::Queued, 1)));
    assert_eq!(l.requeue_failed(None).await.unwrap(), 0, "latest only");
    assert!(l.requeue(first.key).await.unwrap(), "by key, any version");
    assert_eq!(l.recent(1, None).await.unwrap()[0].key, second.key);
    let older = l.recent(5, Some(second.key)).await.unwrap();
    assert_eq!(older[0].key, first.key);
}

pub async fn a_requeued_file_forgets_its_account_until_an_attempt_records_one(b: &Backend) {
    let l = b.node().await;
    let f = l.enqueue(watched("a.mp4")).await.unwrap();
    assert_eq!(f.account, Some(AccountName::new(A)));
    l.fail(claim(&l, f.key).await, &error(0, "x"))
        .await
        .unwrap();
    assert!(l.requeue(f.key).await.unwrap());
    assert_eq!(row(&l, f.key).await.account, None);
    let other = AccountName::new(B);
    let c = claim(&l, f.key).await;
    l.set_account(c, &other).await.unwrap();
    let begun = row(&l, f.key).await;
    let recorded = (begun.account.clone(), begun.state, begun.attempts);
    assert_eq!(recorded, (Some(other.clone()), FileState::Hashing, 1));
    l.release(c).await.unwrap();
    claim(&l, f.key).await;
    let again = row(&l, f.key).await;
    assert_eq!(
        (again.account, again.attempts),
        (Some(other), 2),
        "an account once recorded stays"
    );
}

pub async fn a_failure_keeps_code_message_and_description_until_done(b: &Backend) {
    let l = b.node().await;
    let f = l.enqueue(watched("a.mp4")).await.unwrap();
    let err = RecordedError {
        code: -10003,
        message: "bad".into(),
        code_desc: "offset".into(),
    };
    l.note_error(claim(&l, f.key).await, &err).await.unwrap();
    let noted = row(&l, f.key).await;
    assert_eq!(
        (noted.state, noted.error),
        (FileState::Hashing, Some(err.clone()))
    );
    l.fail(claim(&l, f.key).await, &err).await.unwrap();
    let got = row(&l, f.key).await;
    assert_eq!((got.state, got.error), (FileState::Failed, Some(err)));
    assert!(unfinished(&l).await.is_empty());
    let path = drop_watch().path.join("a.mp4");
    assert_eq!(l.requeue_failed(Some(&path)).await.unwrap(), 1);
    let c = claim(&l, f.key).await;
    l.finish(c, "123", Some("http://u"), false).await.unwrap();
    let got = row(&l, f.key).await;
    assert_eq!((got.state, got.error), (FileState::Done, None));
    assert_eq!(
        got.confirmed_bytes, got.size,
        "a done file counts as wholly confirmed"
    );
    let (id, url) = (got.file_id.as_deref(), got.url.as_deref());
    assert_eq!((id, url), (Some("123"), Some("http://u")));
}

pub async fn paths_that_are_not_utf8_are_stored_and_found_exactly(b: &Backend) {
    let l = b.node().await;
    let root = WatchRoot {
        name: "dr\u{f6}p".into(),
        path: PathBuf::from(OsStr::from_bytes(b"/mnt/dr\xf6p")),
    };
    l.know_watches(&[drop_watch(), root.clone()]);
    let path = root.path.join(OsStr::from_bytes(b"bad\xffname.mp4"));
    let f = l
        .enqueue(NewFile {
            path: path.clone(),
            watch: Some(root.clone()),
            ..watched("x")
        })
        .await
        .unwrap();
    assert_eq!(
        (f.path.as_path(), f.origin.as_deref()),
        (path.as_path(), Some(root.path.as_path()))
    );
    assert_eq!(row(&l, f.key).await.path, path);
    let found = l.latest_for_path(&path).await.unwrap();
    assert_eq!(found.map(|r| r.key), Some(f.key));
    let lossy = PathBuf::from("/mnt/dr\u{fffd}p/bad\u{fffd}name.mp4");
    assert!(l.latest_for_path(&lossy).await.unwrap().is_none());
    let json = serde_json::to_string(&vodup::status::FileJson::from(&f)).unwrap();
    assert!(
        json.contains(r#""path":"/mnt/dr\\xF6p/bad\\xFFname.mp4""#),
        "{json}"
    );
    let cli_path = Path::new(OsStr::from_bytes(b"/elsewhere/\xfe.mp4"));
    let cli = l.enqueue(named(cli_path)).await.unwrap();
    assert_eq!((cli.path.as_path(), cli.origin), (cli_path, None));
    let found = l.latest_for_path(cli_path).await.unwrap();
    assert_eq!(found.map(|r| r.key), Some(cli.key));
}
