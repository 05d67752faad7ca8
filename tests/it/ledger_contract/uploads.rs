//! An upload's record: the attempt, the hashing pass, the signature, the parts the service
//! confirmed (and its list made the truth on resume), and the finish that forgets the content.

use super::*;
use std::collections::BTreeSet;

pub async fn an_upload_is_recorded_confirmed_and_finished(b: &Backend) {
    let l = b.node().await;
    let f = l.enqueue(watched("a.mp4")).await.unwrap();
    let claim = claim(&l, f.key).await;
    let a = AccountName::new(A);
    let begun = row(&l, f.key).await;
    let recorded = (begun.account, begun.state, begun.attempts);
    assert_eq!(recorded, (Some(a), FileState::Hashing, 1));
    let md5s: Vec<String> = ["m0", "m1", "m2"].map(String::from).to_vec();
    l.record_hash(claim, &upload(A, "sha"), md5s.clone(), Some(5))
        .await
        .unwrap();
    assert_eq!(l.part_md5s("sha", PART, 3).await.unwrap(), Some(md5s));
    assert_eq!(l.part_md5s("sha", PART / 2, 6).await.unwrap(), None);
    let hashed = row(&l, f.key).await;
    let pass = (hashed.file_sha.as_deref(), hashed.hashed_ctime_ns);
    assert_eq!(pass, (Some("sha"), Some(5)));
    let parts = vec![(0, PART), (PART, PART), (0, PART)];
    let up = upload(A, "sha");
    l.confirm_parts(claim, &up, parts, None).await.unwrap();
    let confirmed = l.confirmed(A, "sha").await.unwrap();
    assert_eq!(confirmed, BTreeSet::from([0, PART]));
    assert_eq!(l.confirmed_since(A, "sha", 0).await.unwrap(), 2 * PART);
    assert_eq!(l.confirmed_since(A, "sha", i64::MAX).await.unwrap(), 0);
    assert_eq!(row(&l, f.key).await.confirmed_bytes, 2 * PART);
    let seen_by_another = b.node().await.confirmed(A, "sha").await.unwrap();
    assert_eq!(seen_by_another, confirmed, "recorded, not cached");
    let last = vec![(2 * PART, SIZE - 2 * PART)];
    let then = Some(FileState::Finishing);
    l.confirm_parts(claim, &up, last, then).await.unwrap();
    let finishing = row(&l, f.key).await;
    assert_eq!(
        (finishing.state, finishing.confirmed_bytes),
        (FileState::Finishing, SIZE)
    );
    store_signature(&l, A, "sha", "sig", 9).await;
    let finished = l.finish(claim, "file-1", Some("http://u"), true);
    let finished = finished.await.unwrap();
    assert!(l.confirmed(A, "sha").await.unwrap().is_empty());
    assert_eq!(l.part_md5s("sha", PART, 3).await.unwrap(), None);
    assert_eq!(l.signature(A, "sha").await.unwrap(), None);
    let done = row(&l, f.key).await;
    assert_eq!(
        finished, done,
        "the finish answers with the row as it left it"
    );
    let id = done.file_id.as_deref();
    assert_eq!(
        (done.state, id, done.instant),
        (FileState::Done, Some("file-1"), true)
    );
    assert_eq!((done.confirmed_bytes, done.attempts), (SIZE, 1));
    assert!(done.finished_at.is_some());
}

pub async fn reconcile_makes_the_service_list_the_truth(b: &Backend) {
    let l = b.node().await;
    confirm_part(&l, A, "sha", 0, 10).await;
    confirm_part(&l, A, "sha", 10, 10).await;
    let (c, up) = (any_claim(&l).await, upload(A, "sha"));
    let held = vec![(10, 10), (20, 5)];
    let sig = signature("init", 77);
    let confirmed = l.reconcile(c, &up, held, Some(&sig)).await.unwrap();
    assert_eq!(confirmed, BTreeSet::from([10, 20]));
    assert_eq!(l.confirmed(A, "sha").await.unwrap(), confirmed);
    assert_eq!(l.signature(A, "sha").await.unwrap(), Some(sig));
    assert_eq!(row(&l, c.key).await.state, FileState::Uploading);
    l.reconcile(c, &up, vec![], None).await.unwrap();
    assert!(l.confirmed(A, "sha").await.unwrap().is_empty());
}

pub async fn signatures_are_kept_per_account_and_content(b: &Backend) {
    let l = b.node().await;
    assert_eq!(l.signature(A, "sha").await.unwrap(), None);
    store_signature(&l, A, "sha", "sig1", 100).await;
    store_signature(&l, A, "sha", "sig2", 200).await;
    assert_eq!(
        l.signature(A, "sha").await.unwrap(),
        Some(signature("sig2", 200))
    );
    assert_eq!(l.signature(B, "sha").await.unwrap(), None);
    assert_eq!(l.signature(A, "other").await.unwrap(), None);
    store_signature(&l, B, "sha", "sigb", 300).await;
    assert_eq!(
        l.signature(A, "sha").await.unwrap(),
        Some(signature("sig2", 200))
    );
    assert_eq!(
        l.signature(B, "sha").await.unwrap(),
        Some(signature("sigb", 300))
    );
    // A hashing pass of another file with that content answers with its account's signature.
    let f = l.enqueue(watched("copy.mp4")).await.unwrap();
    let c = claim(&l, f.key).await;
    let (same, other) = (upload(A, "sha"), upload(A, "other"));
    let pass = l.record_hash(c, &same, vec!["m".into(); 3], None);
    assert_eq!(pass.await.unwrap(), Some(signature("sig2", 200)));
    let for_b = upload(B, "sha");
    let pass = l.record_hash(c, &for_b, vec!["m".into(); 3], None);
    assert_eq!(
        pass.await.unwrap(),
        Some(signature("sigb", 300)),
        "its account's"
    );
    let pass = l.record_hash(c, &other, vec!["m".into(); 3], None);
    assert_eq!(pass.await.unwrap(), None, "none stored for that content");
}

pub async fn finishing_for_one_account_keeps_another_accounts_upload_of_the_same_content(
    b: &Backend,
) {
    let l = b.node().await;
    let f = l.enqueue(watched("a.mp4")).await.unwrap();
    let c = claim(&l, f.key).await;
    l.record_hash(c, &upload(A, "sha"), vec!["a".into()], None)
        .await
        .unwrap();
    confirm_part(&l, A, "sha", 0, PART).await;
    confirm_part(&l, B, "sha", PART, PART).await;
    store_signature(&l, B, "sha", "sigb", 9).await;
    assert_eq!(
        row(&l, f.key).await.confirmed_bytes,
        PART,
        "only its own account's parts count"
    );
    l.finish(claim(&l, f.key).await, "1", None, false)
        .await
        .unwrap();
    assert!(l.confirmed(A, "sha").await.unwrap().is_empty());
    assert_eq!(l.confirmed(B, "sha").await.unwrap(), BTreeSet::from([PART]));
    assert_eq!(
        l.signature(B, "sha").await.unwrap(),
        Some(signature("sigb", 9))
    );
}
