//! Retention: old done rows whose source left the watch, and set-aside rows, are forgotten with
//! their delivered hooks and the hashes of a content no row names; every other row stays.

use super::*;
use vodup::config::AfterUpload;
use vodup::ledger::{Disposed, HookKind, NewDelivery};

/// `name` in the drop watch, an inode of its own (a done file's inode under another name is that
/// upload).
fn fresh(name: &str) -> NewFile {
    static INODES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(100);
    let mut file = watched(name);
    file.identity.inode.ino = INODES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    file
}

/// A file of the drop watch that ended with `ended` (done, or failed for good), its after-upload
/// action `outcome` recorded (none: still owed); a done file moved or deleted with a hook
/// delivery its outcome releases.
async fn ended(l: &Ledger, name: &str, ended: FileState, outcome: Option<Disposed>) -> FileKey {
    let f = l.enqueue(fresh(name)).await.unwrap();
    let claim = claim(l, f.key).await;
    match ended {
        FileState::Done => drop(l.finish(claim, "id", None, false).await.unwrap()),
        _ => l.fail(claim, &error(-1, "refused")).await.unwrap(),
    }
    let hook = NewDelivery {
        event: "done",
        kind: HookKind::Command,
        target: "[\"true\"]".into(),
        payload: "{}".into(),
    };
    let released = matches!(outcome, Some(Disposed::Moved | Disposed::Deleted));
    let hooks = if released && ended == FileState::Done {
        vec![hook]
    } else {
        Vec::new()
    };
    let intent = l.intend_disposal(claim, AfterUpload::Move, None, hooks);
    assert!(
        intent.await.unwrap(),
        "{name}: {:?}",
        row(l, f.key).await.state
    );
    if let Some(outcome) = outcome {
        l.mark_disposed(claim, outcome, None, None).await.unwrap();
    }
    f.key
}

/// Every batch of a walk of `batch` rows; how many rows it forgot.
async fn forget_all(l: &Ledger, ended_before: i64, batch: usize) -> u64 {
    let (mut after, mut forgotten) = (FileKey(0), 0);
    loop {
        let walked = l.forget(ended_before, after, batch).await.unwrap();
        forgotten += walked.forgotten;
        match walked.next {
            Some(next) => after = next,
            None => return forgotten,
        }
    }
}

/// A row of the drop watch that recorded the hashes of content `sha`, then set aside or not.
async fn hashed(l: &Ledger, name: &str, sha: &str, set_aside: bool) -> FileKey {
    let key = l.enqueue(fresh(name)).await.unwrap().key;
    let claim = claim(l, key).await;
    let md5s = vec!["m0".to_owned(), "m1".into(), "m2".into()];
    l.record_hash(claim, &upload(A, sha), md5s, None)
        .await
        .unwrap();
    if set_aside {
        l.set_aside(claim, FileState::Superseded, "changed")
            .await
            .unwrap();
    }
    key
}

pub async fn old_ended_rows_are_forgotten_once_their_source_left_the_path(b: &Backend) {
    let l = b.node().await;
    let moved = ended(&l, "moved.mp4", FileState::Done, Some(Disposed::Moved)).await;
    let deleted = ended(&l, "deleted.mp4", FileState::Done, Some(Disposed::Deleted)).await;
    let skipped = ended(
        &l,
        "gone.mp4",
        FileState::Done,
        Some(Disposed::Skipped("gone".into())),
    );
    let skipped = skipped.await;
    let kept = ended(&l, "kept.mp4", FileState::Done, Some(Disposed::Kept)).await;
    let copied = ended(&l, "copied.mp4", FileState::Done, Some(Disposed::Copied)).await;
    let failed = ended(&l, "failed.mp4", FileState::Failed, Some(Disposed::Moved)).await;
    let owed = ended(&l, "owed.mp4", FileState::Done, None).await;
    let queued = l.enqueue(fresh("queued.mp4")).await.unwrap().key;
    let given = l.enqueue(named(Path::new("/given.mp4"))).await.unwrap();
    l.finish(claim(&l, given.key).await, "id", None, false)
        .await
        .unwrap();
    // Contents whose rows were set aside: one named by no other row, one still named by another.
    let alone = hashed(&l, "alone.mp4", "sha-alone", true).await;
    let shared = hashed(&l, "shared.mp4", "sha-shared", true).await;
    let sharing = hashed(&l, "sharing.mp4", "sha-shared", false).await;
    let hashes = async |sha: &str| l.part_md5s(sha, PART, 3).await.unwrap();
    assert!(hashes("sha-alone").await.is_some() && hashes("sha-shared").await.is_some());

    let now = vodup::clock::unix_now_i64();
    assert_eq!(
        forget_all(&l, now - 3600, 1000).await,
        0,
        "nothing is old yet"
    );
    // The moved and the deleted file's hooks are released but not delivered yet.
    let due = l.due_hooks(i64::MAX, 100).await.unwrap();
    let undelivered: Vec<FileKey> = due.iter().map(|d| d.file_key).collect();
    assert!(undelivered.contains(&moved) && undelivered.contains(&deleted));
    let everything_old = now + 3600;
    // Walked three rows at a time: the walk goes on past batches that forget nothing.
    let forgotten = forget_all(&l, everything_old, 3).await;
    assert_eq!(forgotten, 2, "the two set-aside rows");
    for key in [alone, shared] {
        assert_eq!(l.file(key).await.unwrap(), None, "{key} forgotten");
    }
    assert_eq!(
        hashes("sha-alone").await,
        None,
        "its content's hashes went with it"
    );
    assert!(hashes("sha-shared").await.is_some(), "another row names it");
    for delivery in &due {
        l.hook_delivered(delivery.id).await.unwrap();
    }
    assert_eq!(forget_all(&l, everything_old, 1000).await, 2);
    for key in [moved, deleted] {
        assert_eq!(
            l.file(key).await.unwrap(),
            None,
            "{key} forgotten once delivered"
        );
    }
    // Rows that still say something of a file in the watch, or that a person must see, stay.
    let stay = [
        skipped, kept, copied, failed, owed, queued, given.key, sharing,
    ];
    for key in stay {
        assert!(l.file(key).await.unwrap().is_some(), "{key} stays");
    }
    assert_eq!(l.files().await.unwrap().len(), stay.len());
    // A file dropped again after its row went is a new row.
    let again = l.enqueue(fresh("moved.mp4")).await.unwrap();
    assert_eq!(again.state, FileState::Queued);
    assert_ne!(again.key, moved);
}
