//! The after-upload action: its intent recorded before it runs, holding the hook deliveries its
//! outcome releases, once; a failed file's action blocking a retry; deliveries taken by one node.

use super::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use vodup::config::AfterUpload;
use vodup::ledger::{Disposed, HookKind, NewDelivery};

fn delivery(kind: HookKind, target: &str) -> NewDelivery {
    NewDelivery {
        event: "done",
        kind,
        target: target.into(),
        payload: "{}".into(),
    }
}

pub async fn a_disposal_intent_holds_its_hooks_until_the_outcome_is_recorded(b: &Backend) {
    let l = b.node().await;
    let f = l.enqueue(watched("a.mp4")).await.unwrap();
    let claim = claim(&l, f.key).await;
    l.finish(claim, "id", None, false).await.unwrap();
    let hook = delivery(HookKind::Command, "[\"true\"]");
    let target = Path::new(OsStr::from_bytes(b"/done/\xffa.mp4"));
    let recorded = l.intend_disposal(claim, AfterUpload::Move, Some(target), vec![hook]);
    assert!(recorded.await.unwrap());
    assert!(l.due_hooks(i64::MAX, 10).await.unwrap().is_empty(), "held");
    assert_eq!(l.pending_hooks().await.unwrap(), 0);
    let intended = row(&l, f.key).await;
    assert_eq!(intended.intent, Some(AfterUpload::Move));
    assert_eq!(intended.intent_target.as_deref(), Some(target));
    assert!(!intended.disposed);
    assert!(
        !l.requeue(f.key).await.unwrap(),
        "a done file is not re-queued"
    );
    l.mark_disposed(claim, Disposed::Moved, None, None)
        .await
        .unwrap();
    let due = l.due_hooks(i64::MAX, 10).await.unwrap();
    assert_eq!(due.len(), 1, "released");
    assert_eq!((due[0].file_key, due[0].kind), (f.key, HookKind::Command));
    l.mark_disposed(claim, Disposed::Moved, None, None)
        .await
        .unwrap();
    assert_eq!(l.due_hooks(i64::MAX, 10).await.unwrap().len(), 1, "once");
    assert_eq!(l.next_hook_at().await.unwrap(), Some(due[0].next_at));
    l.hook_failed(due[0].id, "refused", 5).await.unwrap();
    let again = l.due_hooks(5, 10).await.unwrap();
    let failed = (again[0].attempts, again[0].last_error.as_deref());
    assert_eq!(failed, (1, Some("refused")));
    l.hook_delivered(due[0].id).await.unwrap();
    assert_eq!(l.pending_hooks().await.unwrap(), 0);
    let disposed = row(&l, f.key).await;
    let outcome = (disposed.disposed, disposed.disposal);
    assert_eq!(outcome, (true, Some(Disposed::Moved)));
    assert_eq!(disposed.lease_until, None, "the outcome released the claim");
}

pub async fn a_failed_file_whose_disposal_is_under_way_is_not_requeued(b: &Backend) {
    let l = b.node().await;
    let f = l.enqueue(watched("f.mp4")).await.unwrap();
    l.fail(claim(&l, f.key).await, &error(1, "x"))
        .await
        .unwrap();
    let intent = l.intend_disposal(claim(&l, f.key).await, AfterUpload::Move, None, vec![]);
    assert!(intent.await.unwrap());
    assert!(!l.requeue(f.key).await.unwrap());
    let path = drop_watch().path.join("f.mp4");
    assert_eq!(l.requeue_failed(Some(&path)).await.unwrap(), 0);
    let c = claim(&l, f.key).await;
    l.disposal_failed(c, "the target's disk is full", 0)
        .await
        .unwrap();
    let failing = row(&l, f.key).await.disposal_failed.expect("recorded");
    assert_eq!(
        (failing.reason.as_str(), failing.failures),
        ("the target's disk is full", 1)
    );
    assert_eq!(l.health().await.unwrap().disposals_failing, 1);
    assert!(!l.requeue(f.key).await.unwrap(), "still under way");
    l.mark_disposed(claim(&l, f.key).await, Disposed::Moved, None, None)
        .await
        .unwrap();
    assert_eq!(row(&l, f.key).await.disposal_failed, None, "cleared");
    assert!(
        l.requeue(f.key).await.unwrap(),
        "once it is disposed of, it can be retried"
    );
}

pub async fn a_taken_delivery_is_not_taken_again_until_its_hold_passes(b: &Backend) {
    let (n1, n2) = (b.node().await, b.node().await);
    let f = n1.enqueue(watched("h.mp4")).await.unwrap();
    let c = claim(&n1, f.key).await;
    n1.finish(c, "id", None, false).await.unwrap();
    let hook = delivery(HookKind::Webhook, "http://hooks.example/");
    let recorded = n1.intend_disposal(c, AfterUpload::Keep, None, vec![hook]);
    assert!(recorded.await.unwrap());
    n1.mark_disposed(c, Disposed::Kept, None, None)
        .await
        .unwrap();
    let now = vodup::clock::unix_now_i64();
    let taken = n1.take_due_hooks(now, 10, 120).await.unwrap();
    assert_eq!(taken.len(), 1, "one node takes it");
    let again = n2.take_due_hooks(now, 10, 120).await.unwrap();
    assert!(again.is_empty(), "another finds it taken");
    let later = n2.take_due_hooks(now + 121, 10, 120).await.unwrap();
    assert_eq!(later.len(), 1, "due again once the taker is presumed gone");
}
