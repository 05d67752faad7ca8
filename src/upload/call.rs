//! The retry loop around one protocol call: classify each failure, note and log each retry, back
//! off with full jitter, and hand the decisions the loop cannot take (re-init, re-sign, give up)
//! back as an [`Interrupt`].

use super::job::{recorded, Interrupt};
use super::Inner;
use crate::ledger::Claim;
use crate::protocol::{classify, Attempts, CallError, Pace, RetryPolicy, Verdict};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::future::Future;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Which call of which file is retried: for the log, the ledger and the metrics.
#[derive(Debug, Clone, Copy)]
pub struct Retried {
    pub claim: Claim,
    /// The part's offset; `None` for init and finish.
    pub offset: Option<u64>,
}

impl Retried {
    /// A file's init or finish.
    pub fn file(claim: Claim) -> Retried {
        Retried {
            claim,
            offset: None,
        }
    }
}

/// Call `f` until it succeeds or [`classify`] says to stop, each attempt only while this node's
/// claim is fresh by its own clock ([`super::Holder::fence`]). `stale` tells whether the signature
/// the call carries is expired or about to be, by our clock. Each retry is logged, counted and
/// noted in the ledger as the file's last error.
pub async fn with_retry<T, F, Fut>(
    inner: &Inner,
    what: Retried,
    cancel: &CancellationToken,
    stale: impl Fn() -> bool,
    mut f: F,
) -> Result<T, Interrupt>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut attempts = Attempts::new();
    // Made once a retry is due: most calls succeed first time, and seeding costs a system call.
    let mut rng: Option<StdRng> = None;
    loop {
        if cancel.is_cancelled() {
            return Err(Interrupt::Stopped);
        }
        inner.holder.fence(what.claim).await?;
        let error = match f().await {
            Ok(answer) => return Ok(answer),
            Err(error) => error,
        };
        let pace = match classify(&error, stale()) {
            Verdict::Retry(pace) => pace,
            Verdict::Reinit => return Err(Interrupt::Reinit(error)),
            Verdict::Resign => return Err(Interrupt::Resign(error)),
            Verdict::Final => return Err(final_failure(inner, what, &error)),
        };
        let rng = rng.get_or_insert_with(StdRng::from_entropy);
        let Some(delay) = inner.retry.next_delay(&mut attempts, pace, rng) else {
            return Err(final_failure(inner, what, &error));
        };
        if what.offset.is_some() && congestion(&error, pace) {
            inner.window.congested();
        }
        note_retry(inner, what, &error, attempts.failures()).await?;
        sleep_unless(delay, cancel).await?;
    }
}

/// Whether a part's failure says the path is congested: a timeout or a reset connection, or the
/// service's quota answer.
fn congestion(error: &CallError, pace: Pace) -> bool {
    pace == Pace::Slow || matches!(error, CallError::Transport { .. })
}

fn final_failure(inner: &Inner, what: Retried, error: &CallError) -> Interrupt {
    if what.offset.is_some() {
        inner.metrics.part_failed(error.code());
    }
    Interrupt::Failed(recorded(error))
}

/// A failed attempt that will be retried: log it, count it, note it in the ledger (awaited, so a
/// note can never land after the file's final state and overwrite its reason).
async fn note_retry(
    inner: &Inner,
    what: Retried,
    error: &CallError,
    attempt: u32,
) -> Result<(), Interrupt> {
    warn!(attempt, offset = what.offset, code = error.code(), error = %error, "retrying");
    match what.offset {
        Some(_) => inner.metrics.part_retried(error.code()),
        None => inner.metrics.error_now(),
    }
    inner
        .ledger
        .note_error(what.claim, &recorded(error))
        .await?;
    Ok(())
}

/// Count one failure of a whole round and wait its full-jitter delay; `Err` when the policy's
/// limits are reached (the file fails with `error`) or on shutdown.
pub async fn back_off(
    policy: &RetryPolicy,
    attempts: &mut Attempts,
    rng: &mut StdRng,
    cancel: &CancellationToken,
    error: &CallError,
) -> Result<(), Interrupt> {
    let Some(delay) = policy.next_delay(attempts, Pace::Normal, rng) else {
        return Err(Interrupt::Failed(recorded(error)));
    };
    sleep_unless(delay, cancel).await
}

async fn sleep_unless(
    delay: std::time::Duration,
    cancel: &CancellationToken,
) -> Result<(), Interrupt> {
    tokio::select! {
        () = tokio::time::sleep(delay) => Ok(()),
        () = cancel.cancelled() => Err(Interrupt::Stopped),
    }
}
