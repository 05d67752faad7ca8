//! Claims: which files a node takes and in what order, the one-part rule, a lapsed claim taken
//! over with every write of the old holder fenced, and a restart letting go of its old claims.

use super::*;
use vodup::config::AfterUpload;
use vodup::ledger::{Disposed, NodeStart};

pub async fn claims_take_owed_files_oldest_first_once_each(b: &Backend) {
    let (n1, n2) = (b.node().await, b.node().await);
    let a = n1.enqueue(watched("a.mp4")).await.unwrap();
    let second = n1.enqueue(watched("b.mp4")).await.unwrap();
    n1.enqueue(named(Path::new("/cli.mp4"))).await.unwrap();
    let first = n1.claim_next(&lease("n1", 30), wanted(1)).await.unwrap();
    assert_eq!(keys(&first), [a.key], "oldest first");
    assert_eq!(first[0].1.node.as_deref(), Some("n1"));
    assert_eq!(first[0].1.origin.as_deref(), Some(Path::new("/drop")));
    let rest = n2.claim_next(&lease("n2", 30), wanted(10)).await.unwrap();
    assert_eq!(
        keys(&rest),
        [second.key],
        "a live claim is skipped; a `vodup upload` file is not the queue's"
    );
    let none = n2.claim_next(&lease("n3", 30), wanted(10)).await.unwrap();
    assert!(none.is_empty());
}

pub async fn a_claim_for_one_part_files_takes_none_past_a_larger_file_still_waiting(b: &Backend) {
    let l = b.node().await;
    let exact = l.enqueue(sized("exact.mp4", PART)).await.unwrap();
    let large = l.enqueue(sized("large.mp4", PART + 1)).await.unwrap();
    let small = l.enqueue(sized("small.mp4", 1_000)).await.unwrap();
    let n = lease("n", 30);
    let one_part = || Wanted {
        one_part: true,
        ..wanted(10)
    };
    let taken = l.claim_next(&n, one_part()).await.unwrap();
    let not_past = "one part, and not past the larger file waiting";
    assert_eq!(keys(&taken), [exact.key], "{not_past}");
    let taken = l.claim_next(&n, wanted(1)).await.unwrap();
    assert_eq!(keys(&taken), [large.key], "a whole place: the oldest file");
    let taken = l.claim_next(&n, one_part()).await.unwrap();
    assert_eq!(
        keys(&taken),
        [small.key],
        "the larger file runs: no longer waiting"
    );
}

pub async fn a_lapsed_claim_is_taken_over_and_every_write_of_the_old_holder_is_fenced(b: &Backend) {
    let (frozen, other) = (b.node().await, b.node().await);
    let f = frozen.enqueue(watched("a.mp4")).await.unwrap();
    let short = lease("frozen", 1);
    let (old, _) = frozen
        .claim_next(&short, wanted(1))
        .await
        .unwrap()
        .remove(0);
    frozen.set_state(old, FileState::Uploading).await.unwrap();
    let b_lease = lease("b", 30);
    let live = other.claim_next(&b_lease, wanted(1)).await.unwrap();
    assert!(live.is_empty(), "still live");
    assert_eq!(
        other.claim(f.key, &b_lease).await.unwrap(),
        None,
        "still live"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (new, record) = other
        .claim_next(&b_lease, wanted(1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!((new.key, record.node.as_deref()), (f.key, Some("b")));
    assert!(new.epoch > old.epoch);
    // A part the new holder confirmed, which the old holder's reconcile must not wipe.
    let part = vec![(PART, PART)];
    other
        .confirm_parts(new, &upload(A, "sha"), part, None)
        .await
        .unwrap();
    every_write_is_fenced(&frozen, old).await;
    assert_eq!(
        frozen.renew(&short, &[old]).await.unwrap(),
        [],
        "the old holder learns it lost the file"
    );
    assert_eq!(other.renew(&b_lease, &[new]).await.unwrap(), [new]);
    let after = row(&other, f.key).await;
    assert_eq!(
        (after.state, after.file_id, after.error),
        (FileState::Hashing, None, None),
        "as the new holder's take left it (never hashed)"
    );
    assert_eq!(
        (after.attempts, after.file_sha),
        (2, None),
        "no write of the old holder landed (each take began an attempt)"
    );
    let parts: Vec<u64> = other
        .confirmed(A, "sha")
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        parts,
        [PART],
        "the new holder's part, and none of the old holder's"
    );
    assert_eq!(other.signature(A, "sha").await.unwrap(), None);
    assert_eq!(other.part_md5s("sha", PART, 1).await.unwrap(), None);
    assert_eq!(other.pending_hooks().await.unwrap(), 0);
    other.finish(new, "id", None, false).await.unwrap();
}

/// Every write under a claim, each refused as fenced.
async fn every_write_is_fenced(l: &Ledger, old: Claim) {
    let key = old.key;
    let (err, sig, up) = (error(1, "zombie"), signature("zombie", 1), upload(A, "sha"));
    let z = AccountName::new("z");
    assert!(fenced(l.set_state(old, FileState::Finishing).await, key));
    assert!(fenced(l.set_account(old, &z).await, key));
    let hashed = l.record_hash(old, &up, vec!["m".into()], None);
    assert!(fenced(hashed.await, key));
    assert!(fenced(l.store_signature(old, &up, &sig).await, key));
    let confirmed = l.confirm_parts(old, &up, vec![(0, 1)], None);
    assert!(fenced(confirmed.await, key));
    let finishing = Some(FileState::Finishing);
    let confirmed = l.confirm_parts(old, &up, vec![(0, PART)], finishing);
    assert!(fenced(confirmed.await, key));
    let listed = l.reconcile(old, &up, vec![(0, PART)], Some(&sig));
    assert!(fenced(listed.await, key));
    assert!(fenced(l.finish(old, "zombie", None, false).await, key));
    assert!(fenced(l.note_error(old, &err).await, key));
    assert!(fenced(l.fail(old, &err).await, key));
    assert!(fenced(
        l.set_aside(old, FileState::Gone, "zombie").await,
        key
    ));
    let hook = zombie_hook();
    let intent = l.intend_disposal(old, AfterUpload::Delete, None, vec![hook.clone()]);
    assert!(fenced(intent.await, key));
    let disposed = l.mark_disposed(old, Disposed::Deleted, None, Some(vec![hook]));
    assert!(fenced(disposed.await, key));
    let disposed = l.mark_disposed(old, Disposed::Deleted, None, None);
    assert!(fenced(disposed.await, key));
    assert!(fenced(l.disposal_failed(old, "zombie", 5).await, key));
}

pub async fn a_restarted_node_releases_what_its_previous_run_held(b: &Backend) {
    let l = b.node().await;
    let f = l.enqueue(watched("a.mp4")).await.unwrap();
    let n1 = lease("n1", 30);
    assert_eq!(
        l.start_node(&n1, None, A).await.unwrap(),
        NodeStart::Started
    );
    let (claim, _) = l.claim_next(&n1, wanted(1)).await.unwrap().remove(0);
    assert_eq!(l.renew(&n1, &[claim]).await.unwrap(), [claim]);
    assert!(l.claim_next(&n1, wanted(1)).await.unwrap().is_empty());
    let nodes = l.nodes().await.unwrap();
    let seen = (nodes.len(), nodes[0].name.as_str(), nodes[0].holds);
    assert_eq!(seen, (1, "n1", 1));
    assert_eq!(nodes[0].accounts.as_deref(), Some(A));
    let lease_until = row(&l, f.key).await.lease_until.unwrap();
    let renewed = nodes[0].seen_at;
    assert!(
        (renewed + 29..=renewed + 31).contains(&lease_until),
        "{lease_until} {renewed}"
    );
    let restarted = b.node().await;
    let started = restarted.start_node(&n1, None, A).await.unwrap();
    assert_eq!(started, NodeStart::Started, "the same process: no wait");
    assert_eq!(restarted.nodes().await.unwrap()[0].holds, 0);
    let again = restarted.claim_next(&n1, wanted(1)).await.unwrap();
    assert_eq!(keys(&again), [f.key]);
    assert!(again[0].0.epoch > claim.epoch);
    restarted.release(again[0].0).await.unwrap();
    assert_eq!(row(&l, f.key).await.lease_until, None);
}

pub async fn a_done_file_whose_action_has_not_run_is_owed_and_claimed_for_it(b: &Backend) {
    let l = b.node().await;
    let f = l.enqueue(watched("a.mp4")).await.unwrap();
    let c = claim(&l, f.key).await;
    l.finish(c, "id", None, false).await.unwrap();
    l.release(c).await.unwrap();
    let (again, record) = l
        .claim_next(&lease("n2", 30), wanted(1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!((record.state, record.disposed), (FileState::Done, false));
    l.mark_disposed(again, Disposed::Kept, None, None)
        .await
        .unwrap();
    let nothing = l.claim_next(&lease("n3", 30), wanted(1)).await.unwrap();
    assert!(nothing.is_empty(), "nothing owed");
}

/// Taking a file owed an upload begins its attempt in the same write; taking one for its
/// after-upload action does not.
pub async fn taking_a_file_owed_an_upload_begins_an_attempt(b: &Backend) {
    let l = b.node().await;
    let f = l.enqueue(watched("a.mp4")).await.unwrap();
    assert_eq!((f.state, f.attempts), (FileState::Queued, 0));
    let (c, taken) = l
        .claim_next(&lease("n1", 30), wanted(1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!((taken.state, taken.attempts), (FileState::Hashing, 1));
    assert_eq!(row(&l, f.key).await, taken, "the row as taken is the row");
    // Hashed: a later attempt resumes where it was, and is counted.
    l.record_hash(c, &upload(A, "sha"), vec!["m".into(); 3], None)
        .await
        .unwrap();
    l.set_state(c, FileState::Uploading).await.unwrap();
    l.release(c).await.unwrap();
    let (c, taken) = l.claim(f.key, &lease("n2", 30)).await.unwrap().unwrap();
    assert_eq!((taken.state, taken.attempts), (FileState::Uploading, 2));
    assert_eq!(row(&l, f.key).await, taken);
    // Done and owed its action: taken for it, without an attempt.
    l.finish(c, "id", None, false).await.unwrap();
    l.release(c).await.unwrap();
    let ended = row(&l, f.key).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // so a write would show a later time
    let (_, taken) = l
        .claim_next(&lease("n3", 30), wanted(1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!((taken.state, taken.attempts), (FileState::Done, 2));
    assert_eq!(
        taken.updated_at, ended.updated_at,
        "nothing changed but the claim"
    );
}

/// The old holder of a done file's after-upload action: its intent and outcome, hooks and all,
/// are refused, and the new holder's outcome releases none of them.
pub async fn an_old_holder_of_an_action_is_fenced_with_its_hooks(b: &Backend) {
    let (frozen, other) = (b.node().await, b.node().await);
    let f = frozen.enqueue(watched("a.mp4")).await.unwrap();
    let c = claim(&frozen, f.key).await;
    frozen.finish(c, "id", None, false).await.unwrap();
    frozen.release(c).await.unwrap();
    let short = lease("frozen", 1);
    let (old, taken) = frozen
        .claim_next(&short, wanted(1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(taken.state, FileState::Done, "taken for its action");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (new, _) = other
        .claim_next(&lease("b", 30), wanted(1))
        .await
        .unwrap()
        .remove(0);
    let hook = zombie_hook();
    let intent = frozen.intend_disposal(old, AfterUpload::Delete, None, vec![hook.clone()]);
    assert!(fenced(intent.await, f.key));
    let outcome = frozen.mark_disposed(old, Disposed::Deleted, None, Some(vec![hook]));
    assert!(fenced(outcome.await, f.key));
    // The new holder's outcome releases whatever an intent held: none of the old holder's.
    other
        .mark_disposed(new, Disposed::Kept, None, None)
        .await
        .unwrap();
    assert_eq!(other.pending_hooks().await.unwrap(), 0);
    let after = row(&other, f.key).await;
    assert_eq!((after.intent, after.disposal), (None, Some(Disposed::Kept)));
}

/// A delivery an old holder tries to record.
fn zombie_hook() -> vodup::ledger::NewDelivery {
    vodup::ledger::NewDelivery {
        event: "done",
        kind: vodup::ledger::HookKind::Webhook,
        target: "http://zombie.example/".into(),
        payload: "{}".into(),
    }
}
