use super::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::time::timeout;

const NOW: i64 = 1_700_000_000;

#[tokio::test(start_paused = true)]
async fn the_runner_sleeps_until_the_next_delivery_is_due() {
    let poke = Notify::new();
    let next = Some(NOW + 30);
    let early = timeout(Duration::from_secs(29), idle(next, NOW, &poke)).await;
    assert!(early.is_err(), "not awake before the delivery is due");
    let due = timeout(Duration::from_secs(31), idle(next, NOW, &poke)).await;
    assert!(due.is_ok(), "awake when it is due");
    let overdue = timeout(Duration::from_millis(1), idle(Some(NOW - 5), NOW, &poke)).await;
    assert!(overdue.is_ok(), "an overdue delivery goes at once");
}

#[tokio::test(start_paused = true)]
async fn a_poke_wakes_the_runner_also_one_given_while_it_was_busy() {
    let poke = Notify::new();
    let far = Some(NOW + 3600);
    let asleep = timeout(LONGEST_SLEEP / 2, idle(far, NOW, &poke)).await;
    assert!(asleep.is_err(), "nothing due, nobody pokes: it sleeps");
    let (woken, ()) = tokio::join!(
        timeout(Duration::from_secs(1), idle(far, NOW, &poke)),
        async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            poke.notify_one();
        }
    );
    assert!(woken.is_ok(), "a poke while it sleeps wakes it");
    poke.notify_one();
    let kept = timeout(Duration::from_millis(1), idle(None, NOW, &poke)).await;
    assert!(
        kept.is_ok(),
        "a poke while it delivered is kept for its next sleep"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_delivery_is_retried_after_two_seconds_doubling_to_an_hour_forever() {
    let policy = retry_policy();
    assert_eq!(policy.ceiling(0, Pace::Normal), Duration::from_secs(2));
    assert_eq!(policy.ceiling(40, Pace::Normal), Duration::from_secs(3600));
    let mut rng = StdRng::seed_from_u64(9);
    for attempts in [0, 1, 5, 11, 1000, u32::MAX - 1, u32::MAX] {
        let ceiling = policy.ceiling(attempts, Pace::Normal).as_secs() as i64;
        let wait = retry_in(attempts, &mut rng);
        assert!((1..=ceiling).contains(&wait), "{attempts}: {wait}");
    }
}
