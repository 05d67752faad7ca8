//! The PostgreSQL ledger against a real server (helpers/postgres.rs; skipped, loudly, where there
//! are no PostgreSQL binaries): each `Ledger` here is a pool of its own, as each node of a fleet
//! has, on a database of the test's own. What a fleet relies on: one row per file however many
//! nodes record it, claims that never overlap, a lapsed claim taken over and the old holder's
//! writes fenced, files keyed on the watch's name and the path in its folder (hosts mount the
//! folder at different paths), migrations run once, and the pool coming back after a restart.
//! The upload sequence is checked as the SQLite tests (src/ledger/sqlite/tests.rs) check it.

use crate::helpers::postgres::{self, Cluster};
use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vodup::config::{AccountName, AfterUpload, Config, LedgerLocation};
use vodup::ledger::{
    Claim, Disposed, FileIdentity, FileKey, FileState, FileVersion, HookKind, Inode, Lease, Ledger,
    LedgerError, NewDelivery, NewFile, Postgres, RecordedError, Upload, Wanted, WatchRoot,
};
use vodup::protocol::Signature;

const A: &str = "AKIDa@vod.example";
const PART: u64 = 1_048_576;

/// A fresh database's URL, or `None` (after the helper's loud message) without PostgreSQL.
fn database() -> Option<String> {
    Some(postgres::shared()?.create_database())
}

fn location(url: &str) -> LedgerLocation {
    LedgerLocation::parse(url).unwrap()
}

/// A node: a ledger of its own pool on the database at `url`, migrated.
async fn node(url: &str) -> Ledger {
    let LedgerLocation::Postgres(url) = location(url) else {
        panic!("{url} is not PostgreSQL");
    };
    Ledger::from(Postgres::open(&url).await.unwrap())
}

/// The watch `drop`, mounted at `path` on this host.
fn drop_at(path: &str) -> WatchRoot {
    WatchRoot {
        name: "drop".into(),
        path: PathBuf::from(path),
    }
}

fn lease(node: &str, secs: u64) -> Lease {
    Lease {
        node: node.into(),
        length: Duration::from_secs(secs),
    }
}

/// `name` in the watch `root`, found by that host (inode 7 unless told).
fn watched(root: &WatchRoot, name: &str) -> NewFile {
    NewFile {
        path: root.path.join(name),
        identity: FileIdentity {
            inode: Inode { dev: 1, ino: 7 },
            version: FileVersion {
                size: 3_000_000,
                mtime_ns: 42,
            },
        },
        part_size: PART,
        watch: Some(root.clone()),
        processing: "{}".into(),
        state: FileState::Queued,
        account: Some(AccountName::new(A)),
    }
}

/// The same file given to `vodup upload` (no watch).
fn named(path: &Path) -> NewFile {
    NewFile {
        path: path.to_owned(),
        watch: None,
        ..watched(&drop_at("/"), "x")
    }
}

fn wanted(watches: &[WatchRoot], limit: usize) -> Wanted<'_> {
    Wanted {
        limit,
        watches,
        queued_before: None,
        one_part: false,
        accounts: &ACCOUNTS,
    }
}

/// The accounts the test nodes have: `A`.
static ACCOUNTS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| vec![A.into()]);

fn upload(sha: &str) -> Upload {
    Upload {
        account: A.into(),
        sha: sha.into(),
        size: 3_000_000,
        part_size: PART,
    }
}

fn fenced<T: std::fmt::Debug>(result: Result<T, LedgerError>, key: FileKey) -> bool {
    matches!(result, Err(LedgerError::Fenced { key: k }) if k == key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_enqueue_from_two_nodes_of_one_file_makes_one_row_under_each_mount() {
    let Some(url) = database() else { return };
    let (a, b) = (node(&url).await, node(&url).await);
    let (at_a, at_b) = (drop_at("/mnt/a/drop"), drop_at("/srv/shared/drop"));
    let (file_a, file_b) = (watched(&at_a, "sub/v.mp4"), watched(&at_b, "sub/v.mp4"));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (ledger, new) = if i % 2 == 0 {
            (a.clone(), file_a.clone())
        } else {
            (b.clone(), file_b.clone())
        };
        tasks.spawn(async move { ledger.enqueue(new).await.unwrap() });
    }
    let keys: HashSet<FileKey> = tasks.join_all().await.iter().map(|r| r.key).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(a.files().await.unwrap().len(), 1);
    // Each host sees the row under its own folder of the watch.
    a.know_watches(std::slice::from_ref(&at_a));
    b.know_watches(std::slice::from_ref(&at_b));
    let key = *keys.iter().next().unwrap();
    let seen_by_a = a.file(key).await.unwrap().unwrap();
    let seen_by_b = b.file(key).await.unwrap().unwrap();
    assert_eq!(seen_by_a.path, Path::new("/mnt/a/drop/sub/v.mp4"));
    assert_eq!(seen_by_a.origin.as_deref(), Some(Path::new("/mnt/a/drop")));
    assert_eq!(seen_by_b.path, Path::new("/srv/shared/drop/sub/v.mp4"));
    let found = b.latest_for_path(&at_b.path.join("sub/v.mp4")).await;
    assert_eq!(found.unwrap().map(|r| r.key), Some(key));
    // A host without that watch shows the row by the watch's name, with no folder.
    let c = node(&url).await;
    let unknown = c.file(key).await.unwrap().unwrap();
    assert_eq!(
        (unknown.path, unknown.origin),
        ("drop/sub/v.mp4".into(), None)
    );
    // The same path given to `vodup upload` is a row of its own.
    let cli = a.enqueue(named(Path::new("/mnt/a/drop/sub/v.mp4"))).await;
    assert_ne!(cli.unwrap().key, key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_nodes_claiming_at_once_never_get_the_same_file() {
    let Some(url) = database() else { return };
    let (a, b) = (node(&url).await, node(&url).await);
    let root = drop_at("/drop");
    for i in 0..200 {
        a.enqueue(watched(&root, &format!("f{i:03}.mp4")))
            .await
            .unwrap();
    }
    let claimer = |ledger: Ledger, name: &'static str| {
        let root = root.clone();
        tokio::spawn(async move {
            let (lease, mut taken) = (lease(name, 60), Vec::new());
            loop {
                let claims = ledger
                    .claim_next(&lease, wanted(std::slice::from_ref(&root), 5))
                    .await
                    .unwrap();
                if claims.is_empty() {
                    return taken;
                }
                for (claim, record) in claims {
                    assert_eq!(record.node.as_deref(), Some(name));
                    assert_eq!(record.origin.as_deref(), Some(Path::new("/drop")));
                    taken.push(claim.key);
                }
            }
        })
    };
    let (by_a, by_b) = (claimer(a.clone(), "a"), claimer(b.clone(), "b"));
    let (by_a, by_b) = (by_a.await.unwrap(), by_b.await.unwrap());
    let all: HashSet<FileKey> = by_a.iter().chain(&by_b).copied().collect();
    assert_eq!(by_a.len() + by_b.len(), 200, "a file was claimed twice");
    assert_eq!(all.len(), 200);
    assert!(
        !by_a.is_empty() && !by_b.is_empty(),
        "one node took everything"
    );
}

#[tokio::test]
async fn postgres_a_lapsed_claim_is_taken_over_and_every_write_of_the_old_holder_is_fenced() {
    let Some(url) = database() else { return };
    let (frozen, other) = (node(&url).await, node(&url).await);
    let root = [drop_at("/drop")];
    let f = frozen.enqueue(watched(&root[0], "a.mp4")).await.unwrap();
    let short = lease("frozen", 1);
    let (old, _) = frozen
        .claim_next(&short, wanted(&root, 1))
        .await
        .unwrap()
        .remove(0);
    frozen.set_state(old, FileState::Uploading).await.unwrap();
    let b = lease("b", 30);
    assert!(
        other
            .claim_next(&b, wanted(&root, 1))
            .await
            .unwrap()
            .is_empty(),
        "still live"
    );
    assert_eq!(other.claim(f.key, &b).await.unwrap(), None, "still live");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (new, record) = other
        .claim_next(&b, wanted(&root, 1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!((new.key, record.node.as_deref()), (f.key, Some("b")));
    assert!(new.epoch > old.epoch);
    let key = f.key;
    let error = RecordedError {
        code: 1,
        message: "zombie".into(),
        code_desc: String::new(),
    };
    let signature = Signature {
        encoded: "zombie".into(),
        expires_at: 1,
    };
    let l = &frozen;
    assert!(fenced(l.set_state(old, FileState::Finishing).await, key));
    let z = AccountName::new("z");
    assert!(fenced(l.begin_attempt(old, Some(&z), true).await, key));
    assert!(fenced(
        l.record_hash(old, "sha", PART, vec!["m".into()], None)
            .await,
        key
    ));
    assert!(fenced(
        l.store_signature(old, &upload("sha"), &signature).await,
        key
    ));
    assert!(fenced(
        l.confirm_parts(old, &upload("sha"), vec![(0, 1)], None)
            .await,
        key
    ));
    assert!(fenced(
        l.reconcile(old, &upload("sha"), vec![], None).await,
        key
    ));
    assert!(fenced(l.finish(old, "zombie", None, false).await, key));
    assert!(fenced(l.note_error(old, &error).await, key));
    assert!(fenced(l.fail(old, &error).await, key));
    assert!(fenced(
        l.set_aside(old, FileState::Gone, "zombie").await,
        key
    ));
    let intent = l
        .intend_disposal(old, AfterUpload::Delete, None, vec![])
        .await;
    assert!(fenced(intent, key));
    let disposed = l.mark_disposed(old, Disposed::Deleted, None, None).await;
    assert!(fenced(disposed, key));
    assert_eq!(
        l.renew(&short, &[old]).await.unwrap(),
        [],
        "it learns it lost the file"
    );
    assert_eq!(other.renew(&b, &[new]).await.unwrap(), [new]);
    let row = other.file(key).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.file_id, row.error),
        (FileState::Uploading, None, None)
    );
    assert_eq!(
        (row.attempts, row.file_sha),
        (0, None),
        "no write of the old holder landed"
    );
    assert!(other.confirmed(A, "sha").await.unwrap().is_empty());
    other.finish(new, "id", None, false).await.unwrap();
}

#[tokio::test]
async fn postgres_a_file_of_an_account_a_node_lacks_is_left_to_a_node_that_has_it() {
    let Some(url) = database() else { return };
    let l = node(&url).await;
    let root = [drop_at("/drop")];
    let mut other = watched(&root[0], "other.mp4");
    other.account = Some(AccountName::new("AKIDb@vod.example"));
    let theirs = l.enqueue(other).await.unwrap();
    let ours = l.enqueue(watched(&root[0], "ours.mp4")).await.unwrap();
    let n1 = lease("n1", 30);
    let taken = l.claim_next(&n1, wanted(&root, 10)).await.unwrap();
    let keys: Vec<_> = taken.iter().map(|(c, _)| c.key).collect();
    assert_eq!(keys, [ours.key], "only the file of an account n1 has");
    assert_eq!(
        l.owed_accounts().await.unwrap().len(),
        2,
        "both accounts are owed files"
    );
    let b = vec!["AKIDb@vod.example".to_owned()];
    let n2 = lease("n2", 30);
    let wanted_b = Wanted {
        accounts: &b,
        ..wanted(&root, 10)
    };
    let taken = l.claim_next(&n2, wanted_b).await.unwrap();
    let keys: Vec<_> = taken.iter().map(|(c, _)| c.key).collect();
    assert_eq!(keys, [theirs.key], "the node that has the account takes it");
}

#[tokio::test]
async fn postgres_a_restarted_node_releases_what_its_previous_run_held() {
    let Some(url) = database() else { return };
    let l = node(&url).await;
    let root = [drop_at("/drop")];
    let f = l.enqueue(watched(&root[0], "a.mp4")).await.unwrap();
    let n1 = lease("n1", 30);
    assert_eq!(
        l.start_node(&n1, None, A).await.unwrap(),
        vodup::ledger::NodeStart::Started
    );
    let (claim, _) = l.claim_next(&n1, wanted(&root, 1)).await.unwrap().remove(0);
    assert_eq!(l.renew(&n1, &[claim]).await.unwrap(), [claim]);
    assert!(l
        .claim_next(&n1, wanted(&root, 1))
        .await
        .unwrap()
        .is_empty());
    let nodes = l.nodes().await.unwrap();
    assert_eq!(
        (nodes.len(), nodes[0].name.as_str(), nodes[0].holds),
        (1, "n1", 1)
    );
    let lease_until = l.file(f.key).await.unwrap().unwrap().lease_until.unwrap();
    let seen = nodes[0].seen_at;
    assert!(
        (seen + 29..=seen + 31).contains(&lease_until),
        "{lease_until} {seen}"
    );
    assert_eq!(
        l.start_node(&n1, None, A).await.unwrap(),
        vodup::ledger::NodeStart::Started
    );
    assert_eq!(l.nodes().await.unwrap()[0].holds, 0);
    let again = l.claim_next(&n1, wanted(&root, 1)).await.unwrap();
    assert_eq!(again[0].0.key, f.key);
    assert!(again[0].0.epoch > claim.epoch);
    l.release(again[0].0).await.unwrap();
    assert_eq!(l.file(f.key).await.unwrap().unwrap().lease_until, None);
}

#[tokio::test]
async fn postgres_a_claim_for_one_part_files_takes_none_past_a_larger_file_still_waiting() {
    let Some(url) = database() else { return };
    let l = node(&url).await;
    let root = drop_at("/drop");
    let sized = |name: &str, size: u64| {
        let mut file = watched(&root, name);
        file.identity.version.size = size;
        file
    };
    let exact = l.enqueue(sized("exact.mp4", PART)).await.unwrap();
    let large = l.enqueue(sized("large.mp4", PART + 1)).await.unwrap();
    let small = l.enqueue(sized("small.mp4", 1_000)).await.unwrap();
    let n = lease("n", 30);
    let one_part = || Wanted {
        one_part: true,
        ..wanted(std::slice::from_ref(&root), 10)
    };
    let keys = |taken: Vec<(Claim, vodup::ledger::FileRecord)>| -> Vec<FileKey> {
        taken.iter().map(|(c, _)| c.key).collect()
    };
    let taken = l.claim_next(&n, one_part()).await.unwrap();
    let not_past = "one part, and not past the larger file waiting";
    assert_eq!(keys(taken), [exact.key], "{not_past}");
    let taken = l
        .claim_next(&n, wanted(std::slice::from_ref(&root), 1))
        .await;
    assert_eq!(
        keys(taken.unwrap()),
        [large.key],
        "a whole place: the oldest file"
    );
    let taken = l.claim_next(&n, one_part()).await.unwrap();
    assert_eq!(
        keys(taken),
        [small.key],
        "the larger file runs: no longer waiting"
    );
}

#[tokio::test]
async fn postgres_a_node_takes_only_files_of_the_watches_it_has() {
    let Some(url) = database() else { return };
    let l = node(&url).await;
    let (drop, other) = (
        drop_at("/drop"),
        WatchRoot {
            name: "other".into(),
            path: "/other".into(),
        },
    );
    let mine = l.enqueue(watched(&drop, "a.mp4")).await.unwrap();
    let theirs = l.enqueue(watched(&other, "b.mp4")).await.unwrap();
    l.enqueue(named(Path::new("/cli.mp4"))).await.unwrap();
    let n = lease("n", 30);
    let taken = l
        .claim_next(&n, wanted(std::slice::from_ref(&drop), 10))
        .await
        .unwrap();
    let keys: Vec<FileKey> = taken.iter().map(|(c, _)| c.key).collect();
    assert_eq!(
        keys,
        [mine.key],
        "not the other watch's, not a `vodup upload` file"
    );
    assert!(l.claim_next(&n, wanted(&[], 10)).await.unwrap().is_empty());
    let taken = l.claim_next(&n, wanted(&[drop, other], 10)).await.unwrap();
    assert_eq!(
        taken.iter().map(|(c, _)| c.key).collect::<Vec<_>>(),
        [theirs.key]
    );
}

#[tokio::test]
async fn postgres_paths_that_are_not_utf8_are_stored_and_found_exactly() {
    let Some(url) = database() else { return };
    let l = node(&url).await;
    let root = WatchRoot {
        name: "dr\u{f6}p".into(),
        path: PathBuf::from(OsStr::from_bytes(b"/mnt/dr\xf6p")),
    };
    l.know_watches(std::slice::from_ref(&root));
    let path = root.path.join(OsStr::from_bytes(b"bad\xffname.mp4"));
    let f = l.enqueue(watched(&root, "x")).await.unwrap();
    let g = l
        .enqueue(NewFile {
            path: path.clone(),
            ..watched(&root, "x")
        })
        .await
        .unwrap();
    assert_ne!(f.key, g.key);
    assert_eq!(g.path, path);
    assert_eq!(l.file(g.key).await.unwrap().unwrap().path, path);
    assert_eq!(
        l.latest_for_path(&path).await.unwrap().map(|r| r.key),
        Some(g.key)
    );
    let lossy = PathBuf::from("/mnt/dr\u{fffd}p/bad\u{fffd}name.mp4");
    assert!(l.latest_for_path(&lossy).await.unwrap().is_none());
    let cli_path = Path::new(OsStr::from_bytes(b"/elsewhere/\xfe.mp4"));
    let cli = l.enqueue(named(cli_path)).await.unwrap();
    assert_eq!((cli.path.as_path(), cli.origin), (cli_path, None));
    assert_eq!(
        l.latest_for_path(cli_path).await.unwrap().map(|r| r.key),
        Some(cli.key)
    );
}

#[tokio::test]
async fn postgres_an_upload_is_recorded_confirmed_finished_and_disposed_of_as_on_sqlite() {
    let Some(url) = database() else { return };
    let l = node(&url).await;
    let root = [drop_at("/drop")];
    let f = l.enqueue(watched(&root[0], "a.mp4")).await.unwrap();
    let n = lease("n", 30);
    let claim = l.claim(f.key, &n).await.unwrap().unwrap();
    let a = AccountName::new(A);
    l.begin_attempt(claim, Some(&a), true).await.unwrap();
    let begun = l.file(f.key).await.unwrap().unwrap();
    let (state, attempts) = (begun.state, begun.attempts);
    assert_eq!(
        (begun.account, state, attempts),
        (Some(a), FileState::Hashing, 1)
    );
    l.begin_attempt(claim, None, false).await.unwrap();
    let again = l.file(f.key).await.unwrap().unwrap();
    let account = AccountName::new(A);
    assert_eq!(
        (again.account, again.attempts),
        (Some(account), 2),
        "an account stays"
    );
    let md5s: Vec<String> = ["m0", "m1", "m2"].map(String::from).to_vec();
    l.record_hash(claim, "sha", PART, md5s.clone(), None)
        .await
        .unwrap();
    assert_eq!(l.part_md5s("sha", PART, 3).await.unwrap(), Some(md5s));
    assert_eq!(l.part_md5s("sha", PART / 2, 6).await.unwrap(), None);
    let sig = |encoded: &str, expires_at| Signature {
        encoded: encoded.into(),
        expires_at,
    };
    l.store_signature(claim, &upload("sha"), &sig("s1", 100))
        .await
        .unwrap();
    l.store_signature(claim, &upload("sha"), &sig("s2", 200))
        .await
        .unwrap();
    assert_eq!(l.signature(A, "sha").await.unwrap(), Some(sig("s2", 200)));
    assert_eq!(l.signature("other", "sha").await.unwrap(), None);
    let parts = vec![(0, PART), (PART, PART), (0, PART)];
    l.confirm_parts(claim, &upload("sha"), parts, None)
        .await
        .unwrap();
    assert_eq!(
        l.confirmed(A, "sha").await.unwrap(),
        BTreeSet::from([0, PART])
    );
    assert_eq!(l.confirmed_since(A, "sha", 0).await.unwrap(), 2 * PART);
    assert_eq!(l.confirmed_since(A, "sha", i64::MAX).await.unwrap(), 0);
    assert_eq!(
        l.file(f.key).await.unwrap().unwrap().confirmed_bytes,
        2 * PART
    );
    let held = vec![(PART, PART), (2 * PART, 902_848)];
    let confirmed = l
        .reconcile(claim, &upload("sha"), held, None)
        .await
        .unwrap();
    assert_eq!(confirmed, BTreeSet::from([PART, 2 * PART]));
    assert_eq!(l.confirmed(A, "sha").await.unwrap(), confirmed);
    let uploading = l.file(f.key).await.unwrap().unwrap();
    assert_eq!(uploading.state, FileState::Uploading);
    l.set_state(claim, FileState::Finishing).await.unwrap();
    l.finish(claim, "file-1", Some("http://u"), false)
        .await
        .unwrap();
    assert!(l.confirmed(A, "sha").await.unwrap().is_empty());
    assert_eq!(l.part_md5s("sha", PART, 3).await.unwrap(), None);
    assert_eq!(l.signature(A, "sha").await.unwrap(), None);
    let done = l.file(f.key).await.unwrap().unwrap();
    assert_eq!(
        (done.state, done.file_id.as_deref()),
        (FileState::Done, Some("file-1"))
    );
    assert_eq!((done.confirmed_bytes, done.attempts), (done.size, 2));
    let identity = watched(&root[0], "a.mp4").identity;
    assert_eq!(
        l.uploaded(identity).await.unwrap().map(|r| r.key),
        Some(f.key)
    );
    let renamed = l.enqueue(watched(&root[0], "renamed.mp4")).await.unwrap();
    assert_eq!(
        renamed.key, f.key,
        "the same file under another name is that upload"
    );
    disposal_holds_its_hooks_until_recorded(&l, claim).await;
}

/// The done file of `claim`: the intent holds its hooks, the outcome releases them, once.
async fn disposal_holds_its_hooks_until_recorded(l: &Ledger, claim: Claim) {
    let hook = NewDelivery {
        event: "done",
        kind: HookKind::Command,
        target: "[\"true\"]".into(),
        payload: "{}".into(),
    };
    let target = Path::new(OsStr::from_bytes(b"/done/\xffa.mp4"));
    let recorded = l.intend_disposal(claim, AfterUpload::Move, Some(target), vec![hook]);
    assert!(recorded.await.unwrap());
    assert!(l.due_hooks(i64::MAX, 10).await.unwrap().is_empty(), "held");
    assert_eq!(l.pending_hooks().await.unwrap(), 0);
    let intended = l.file(claim.key).await.unwrap().unwrap();
    assert_eq!(intended.intent, Some(AfterUpload::Move));
    assert_eq!(intended.intent_target.as_deref(), Some(target));
    assert!(!intended.disposed);
    assert!(
        !l.requeue(claim.key).await.unwrap(),
        "a done file is not re-queued"
    );
    l.mark_disposed(claim, Disposed::Moved, None, None)
        .await
        .unwrap();
    let due = l.due_hooks(i64::MAX, 10).await.unwrap();
    assert_eq!(due.len(), 1, "released");
    l.mark_disposed(claim, Disposed::Moved, None, None)
        .await
        .unwrap();
    assert_eq!(l.due_hooks(i64::MAX, 10).await.unwrap().len(), 1, "once");
    assert_eq!(l.next_hook_at().await.unwrap(), Some(due[0].next_at));
    l.hook_failed(due[0].id, "refused", 5).await.unwrap();
    let again = l.due_hooks(5, 10).await.unwrap();
    assert_eq!(
        (again[0].attempts, again[0].last_error.as_deref()),
        (1, Some("refused"))
    );
    l.hook_delivered(due[0].id).await.unwrap();
    assert_eq!(l.pending_hooks().await.unwrap(), 0);
    let disposed = l.file(claim.key).await.unwrap().unwrap();
    assert_eq!(
        (disposed.disposed, disposed.disposal),
        (true, Some(Disposed::Moved))
    );
    assert_eq!(
        disposed.lease_until, None,
        "recording the outcome released the claim"
    );
}

#[tokio::test]
async fn postgres_failed_files_are_requeued_by_path_latest_version_only() {
    let Some(url) = database() else { return };
    let l = node(&url).await;
    let root = drop_at("/drop");
    l.know_watches(std::slice::from_ref(&root));
    let n = lease("n", 30);
    let err = RecordedError {
        code: -1,
        message: "bad".into(),
        code_desc: "d".into(),
    };
    let first = l.enqueue(watched(&root, "v.mp4")).await.unwrap();
    l.fail(l.claim(first.key, &n).await.unwrap().unwrap(), &err)
        .await
        .unwrap();
    let mut newer = watched(&root, "v.mp4");
    newer.identity = FileIdentity {
        inode: Inode { dev: 1, ino: 8 },
        ..newer.identity
    };
    newer.identity.version.mtime_ns = 43;
    let second = l.enqueue(newer).await.unwrap();
    l.fail(l.claim(second.key, &n).await.unwrap().unwrap(), &err)
        .await
        .unwrap();
    let failed = l.file(second.key).await.unwrap().unwrap();
    assert_eq!((failed.state, failed.error), (FileState::Failed, Some(err)));
    assert_eq!(
        l.requeue_failed(Some(Path::new("/drop/other.mp4")))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        l.requeue_failed(Some(&root.path.join("v.mp4")))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        l.file(first.key).await.unwrap().unwrap().state,
        FileState::Failed
    );
    let requeued = l.file(second.key).await.unwrap().unwrap();
    assert_eq!(
        (requeued.state, requeued.account),
        (FileState::Queued, None)
    );
    let counts = l.count_by_state().await.unwrap();
    assert!(counts.contains(&(FileState::Failed, 1)) && counts.contains(&(FileState::Queued, 1)));
    assert!(l.requeue(first.key).await.unwrap());
    assert_eq!(l.recent(1, None).await.unwrap()[0].key, second.key);
    assert_eq!(
        l.recent(5, Some(second.key)).await.unwrap()[0].key,
        first.key
    );
}

#[tokio::test]
async fn postgres_a_waiting_or_set_aside_version_is_taken_again_when_it_settles_anew() {
    let Some(url) = database() else { return };
    let l = node(&url).await;
    let root = drop_at("/drop");
    let mut empty = watched(&root, "later.mp4");
    empty.identity.version.size = 0;
    empty.state = FileState::Waiting;
    assert_eq!(l.enqueue(empty).await.unwrap().state, FileState::Waiting);
    let full = l.enqueue(watched(&root, "later.mp4")).await.unwrap();
    assert_eq!(full.state, FileState::Queued);
    assert_eq!(
        l.files().await.unwrap().len(),
        1,
        "the waiting version gave way"
    );
    let c = l.claim(full.key, &lease("n", 30)).await.unwrap().unwrap();
    l.record_hash(c, "sha", PART, vec!["m".into(); 3], None)
        .await
        .unwrap();
    l.set_aside(c, FileState::Gone, "moved away").await.unwrap();
    let mut other_inode = watched(&root, "later.mp4");
    other_inode.identity.inode.ino = 99;
    let revived = l.enqueue(other_inode).await.unwrap();
    assert_eq!((revived.key, revived.state), (full.key, FileState::Queued));
    assert_eq!(
        (revived.file_sha, revived.error),
        (None, None),
        "hashed anew"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_connecting_at_the_same_moment_migrate_once() {
    let Some(url) = database() else { return };
    let config = Config {
        ledger: location(&url),
        ..Config::default()
    };
    let connects = (0..4).map(|_| Ledger::connect(&config));
    for ledger in futures::future::join_all(connects).await {
        ledger.unwrap();
    }
    let client = connect(&url).await;
    let versions = client
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .unwrap();
    assert_eq!(versions.len(), postgres_migrations(), "each migration once");
    // A schema a newer vodup wrote is refused, and named without a password.
    client
        .execute("INSERT INTO schema_migrations (version) VALUES (99)", &[])
        .await
        .unwrap();
    let with_password = url.replacen("postgres://postgres@", "postgres://postgres:pw-s3cr3t@", 1);
    let config = Config {
        ledger: location(&with_password),
        ..Config::default()
    };
    let refused = Ledger::connect(&config).await.unwrap_err();
    assert!(
        matches!(refused, LedgerError::PostgresSchema { .. }),
        "{refused}"
    );
    let shown = format!("{refused} {refused:?}");
    assert!(
        shown.contains("newer") && !shown.contains("s3cr3t"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_ledger_works_again_once_the_server_restarts() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database();
    let l = node(&url).await;
    let root = drop_at("/drop");
    let f = l.enqueue(watched(&root, "a.mp4")).await.unwrap();
    cluster.stop();
    assert!(l.file(f.key).await.is_err(), "answered without a server");
    cluster.start_again();
    let mut answer = l.file(f.key).await;
    for _ in 0..20 {
        if answer.is_ok() {
            break;
        }
        // A connection the pool held may fail once more before it is dropped.
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = l.file(f.key).await;
    }
    assert_eq!(answer.unwrap().map(|r| r.key), Some(f.key));
    let claimed = l
        .claim_next(&lease("n", 30), wanted(&[root], 1))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn postgres_check_config_shows_server_and_schema_and_never_the_password() {
    let Some(url) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let with_password = url.replacen("postgres://postgres@", "postgres://postgres:pw-s3cr3t@", 1);
    let config = dir.path().join("vodup.toml");
    let text = format!("secret_id = \"AKID\"\nsecret_key = \"k\"\nledger = {with_password:?}\n");
    std::fs::write(&config, text).unwrap();
    let vodup = |args: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_vodup"));
        command.arg("--config").arg(&config).args(args);
        command
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null());
        command.output()
    };
    let check = vodup(&["check-config"]).await.unwrap();
    let shown = |out: &std::process::Output| {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("s3cr3t"), "{text}");
        text
    };
    let text = shown(&check);
    assert!(check.status.success(), "{text}");
    assert!(
        text.contains("PostgreSQL 15")
            && text.contains(&format!("{} migration(s) pending", postgres_migrations())),
        "{text}"
    );
    assert!(text.contains(&url), "the URL without its password: {text}");
    assert!(text.contains("holds the ledger password"), "{text}");
    let status = vodup(&["status", "--json"]).await.unwrap();
    assert!(status.status.success(), "{}", shown(&status));
    let check = vodup(&["check-config"]).await.unwrap();
    assert!(shown(&check).contains("up to date"), "migrated by `status`");
}

/// How many migrations the PostgreSQL ledger has (the files of `migrations/postgres`).
fn postgres_migrations() -> usize {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres");
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("sql".as_ref()))
        .count()
}

/// `vodup ARGS` with `config`; its status and its stdout and stderr together.
async fn run_vodup(config: &Path, args: &[&str]) -> (bool, String) {
    let (ok, stdout, stderr) = crate::helpers::env::run_vodup(config, args).await;
    (ok, format!("{stdout}{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_uploads_and_refuses_clear_text_and_an_unknown_certificate() {
    let Some(cluster) = Cluster::start_tls() else {
        return;
    };
    let url = url::Url::parse(&cluster.create_database()).unwrap();
    let (port, db) = (url.port().unwrap(), url.path().trim_start_matches('/'));
    let ca = cluster.ca_file().display().to_string();
    let ledger = |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/{db}{query}");
    let env = crate::helpers::env::Env::new().await;
    let base = std::fs::read_to_string(env.config_file("")).unwrap();
    let config_for = |ledger_url: &str| {
        let sqlite = format!("ledger = {:?}", env.ledger_path().display().to_string());
        let text = base.replace(&sqlite, &format!("ledger = {ledger_url:?}"));
        assert_ne!(text, base);
        let path = env
            .dir
            .path()
            .join(format!("c{:x}.toml", rand::random::<u32>()));
        std::fs::write(&path, text).unwrap();
        path
    };

    // Verified TLS: check-config says so, and a file goes up with its ledger over it.
    let good = config_for(&ledger(
        "localhost",
        &format!("?sslmode=verify-full&sslrootcert={ca}"),
    ));
    let (ok, text) = run_vodup(&good, &["check-config"]).await;
    assert!(ok, "{text}");
    assert!(text.contains("over TLS (TLSv1.3"), "{text}");
    let data = crate::helpers::env::test_bytes(3 * crate::helpers::env::PART as usize, 81);
    let file = env.write(&env.src, "over-tls.mp4", &data);
    let (ok, text) = run_vodup(&good, &["upload", file.to_str().unwrap()]).await;
    assert!(ok, "{text}");
    let (_, status) = run_vodup(&good, &["status", "--json"]).await;
    let rows = crate::helpers::env::json_lines(status.as_bytes());
    let url = rows[0]["url"].as_str().unwrap();
    assert_eq!(crate::helpers::env::fetch(url).await, data);

    // A non-loopback name defaults to TLS required; 127.0.0.1 is in the certificate too.
    let by_ip = config_for(&ledger(
        "127.0.0.1",
        &format!("?sslmode=require&sslrootcert={ca}"),
    ));
    let (ok, text) = run_vodup(&by_ip, &["check-config"]).await;
    assert!(ok && text.contains("over TLS"), "{text}");

    // Clear text: refused by this server (TLS only), so the link was TLS above.
    let plain = config_for(&ledger("127.0.0.1", "?sslmode=disable"));
    let (ok, text) = run_vodup(&plain, &["check-config"]).await;
    assert!(!ok, "{text}");
    // A certificate no trusted CA signed (the system store does not hold the test CA).
    let unknown = config_for(&ledger("localhost", "?sslmode=verify-full"));
    let (ok, text) = run_vodup(&unknown, &["check-config"]).await;
    assert!(!ok, "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");

    // A role the server admits by client certificate only (`cert` in pg_hba.conf).
    cluster.admin("CREATE ROLE vodup_cert LOGIN");
    cluster.admin(&format!("CREATE DATABASE {db}_cert OWNER vodup_cert"));
    let (cert, key) = cluster.client_cert();
    let as_cert = |query: &str| {
        format!(
            "postgres://vodup_cert@localhost:{port}/{db}_cert?sslmode=verify-full&sslrootcert={ca}{query}"
        )
    };
    let with_cert = config_for(&as_cert(&format!(
        "&sslcert={}&sslkey={}",
        cert.display(),
        key.display()
    )));
    let (ok, text) = run_vodup(&with_cert, &["check-config"]).await;
    assert!(ok && text.contains("over TLS"), "{text}");
    let (ok, text) = run_vodup(&with_cert, &["status"]).await;
    assert!(ok, "{text}");
    let without = config_for(&as_cert(""));
    let (ok, text) = run_vodup(&without, &["check-config"]).await;
    assert!(!ok, "admitted without its certificate: {text}");
    let key_only = config_for(&as_cert(&format!("&sslkey={}", key.display())));
    let (ok, text) = run_vodup(&key_only, &["check-config"]).await;
    assert!(!ok && text.contains("without the other"), "{text}");
}
