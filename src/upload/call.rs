//! The retry loop around one protocol call: classify each failure, back off with full jitter,
//! and hand the decisions the loop cannot take (re-init, re-sign, give up) back to the caller.

use crate::protocol::{classify, Attempts, CallError, Pace, RetryPolicy, Verdict};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::future::Future;
use tokio_util::sync::CancellationToken;

/// Why a call stopped without succeeding.
#[derive(Debug)]
pub enum Stop {
    /// Run init again (and reconcile), then go on.
    Reinit(CallError),
    /// Make a new signature, run init again, then go on.
    Resign(CallError),
    /// The file fails with this error: final, or retries exhausted.
    Final(CallError),
    /// Shutdown was requested.
    Cancelled,
}

/// What each failed attempt is told, so the caller can record it.
pub trait OnRetry: Fn(&CallError, u32) + Send + Sync {}
impl<F: Fn(&CallError, u32) + Send + Sync> OnRetry for F {}

/// Call `f` until it succeeds or [`classify`] says to stop. `stale` tells whether the signature the
/// call carries is expired or about to be, by our clock.
pub async fn with_retry<T, F, Fut>(
    policy: &RetryPolicy,
    cancel: &CancellationToken,
    stale: impl Fn() -> bool,
    on_retry: impl OnRetry,
    mut f: F,
) -> Result<T, Stop>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut attempts = Attempts::new();
    let mut rng = StdRng::from_entropy();
    loop {
        if cancel.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        let error = match f().await {
            Ok(answer) => return Ok(answer),
            Err(error) => error,
        };
        let pace = match classify(&error, stale()) {
            Verdict::Retry(pace) => pace,
            Verdict::Reinit => return Err(Stop::Reinit(error)),
            Verdict::Resign => return Err(Stop::Resign(error)),
            Verdict::Final => return Err(Stop::Final(error)),
        };
        let Some(delay) = policy.next_delay(&mut attempts, pace, &mut rng) else {
            return Err(Stop::Final(error));
        };
        on_retry(&error, attempts.failures());
        if let Waited::Cancelled = sleep_unless(delay, cancel).await {
            return Err(Stop::Cancelled);
        }
    }
}

/// What a backoff wait ended with.
pub enum Waited {
    /// Time to try again.
    Again,
    /// The policy's limits are reached.
    GaveUp,
    Cancelled,
}

/// Count one failure and wait its full-jitter delay, unless the limits are reached or `cancel`
/// fires first.
pub async fn back_off(
    policy: &RetryPolicy,
    attempts: &mut Attempts,
    pace: Pace,
    rng: &mut StdRng,
    cancel: &CancellationToken,
) -> Waited {
    let Some(delay) = policy.next_delay(attempts, pace, rng) else {
        return Waited::GaveUp;
    };
    sleep_unless(delay, cancel).await
}

async fn sleep_unless(delay: std::time::Duration, cancel: &CancellationToken) -> Waited {
    tokio::select! {
        () = tokio::time::sleep(delay) => Waited::Again,
        () = cancel.cancelled() => Waited::Cancelled,
    }
}
