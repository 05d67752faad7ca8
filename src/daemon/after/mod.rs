//! The after-upload step: once a file's upload ended (or a file that ended was claimed for its
//! action alone), decide its action ([`decide`]), record the intent with the hook deliveries
//! it will release, run it ([`apply`]), write its sidecar ([`sidecar`]), record the outcome, and
//! let the file go; an action that failed is recorded, counted and paced. Not the upload, nor
//! which files run (the scheduler), nor delivering the hooks (the hook runner, poked here).

mod apply;
mod decide;
mod dispose;
mod sidecar;
#[cfg(test)]
mod tests;

pub use apply::apply;
pub use decide::{decide, plan, recover, Disposal, Plan};

use super::intake::Again;
use super::watched::Watched;
use crate::config::{Hook, Watch};
use crate::ledger::{Claim, FileRecord, FileState, Lease, Ledger, LedgerError};
use crate::metrics::Metrics;
use crate::protocol::{Pace, RetryPolicy};
use crate::shown::shown;
use crate::upload::{EngineError, Held, Outcome};
use std::sync::Arc;
use tokio::sync::Notify;
use tracing::{debug, error, warn};

/// What went wrong in the after-upload step of one file.
#[derive(Debug, thiserror::Error)]
pub enum AfterError {
    /// The file system refused (a move, a copy, a lookup): the action is tried again later.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A copy across file systems could not confirm the claim before it landed: the copy is
    /// removed; the file is taken again if it is still this node's.
    #[error("the claim on the file could not be confirmed (another node took it over, or the ledger did not answer)")]
    ClaimLost,
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<rustix::io::Errno> for AfterError {
    fn from(e: rustix::io::Errno) -> AfterError {
        AfterError::Io(e.into())
    }
}

/// What a file's task needs once its upload ended: the ledger, the hook runner to poke, the
/// watch list its action follows, and the pace of an action that failed. Cheap to clone.
#[derive(Clone)]
pub struct After {
    /// This node's lease: a copy across file systems checks the claim under it before it lands.
    pub lease: Lease,
    pub ledger: Ledger,
    /// Poked after a disposal is recorded: its hook deliveries may be due.
    pub hooks: Arc<Notify>,
    pub watched: Arc<Watched>,
    pub metrics: Metrics,
    pub retry: RetryPolicy,
    /// Where a file set aside as changed goes back to the intake.
    pub again: Again,
}

impl After {
    /// A file's upload ended with `outcome` (`None`: it had ended already and was claimed for
    /// its action): run its action and let the file go. Trouble here is this file's only: it is
    /// logged, and the file's claim lapses so it is taken again later.
    pub async fn ended(
        &self,
        held: Held,
        record: FileRecord,
        outcome: Option<Result<Outcome, EngineError>>,
    ) {
        let claim = held.claim;
        let released = match outcome {
            Some(Ok(Outcome::TakenOver)) => return,
            Some(Ok(Outcome::SetAside(FileState::Superseded, _))) => {
                self.again.look(&record.path);
                Ok(false)
            }
            Some(Ok(Outcome::Stopped | Outcome::SetAside(..))) => Ok(false),
            None => self.run(claim, record).await,
            Some(Ok(Outcome::Done(done))) => self.run(claim, *done.record).await,
            Some(Ok(Outcome::Failed(_))) => match self.ledger.file(claim.key).await {
                Ok(Some(record)) => self.run(claim, record).await,
                Ok(None) => Ok(false),
                Err(e) => Err(e.into()),
            },
            Some(Err(EngineError::Ledger(e))) => Err(e.into()),
            Some(Err(e)) => {
                error!(file = %claim.key, error = %e, "file left unfinished; it is taken again once its claim lapses");
                return;
            }
        };
        let result = match released {
            Ok(_) if held.lost().is_cancelled() => return,
            Ok(false) => self.ledger.release(claim).await.map_err(AfterError::from),
            Ok(true) => Ok(()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {}
            Err(AfterError::Ledger(LedgerError::Fenced { .. })) => {
                warn!(file = %claim.key, "another node took this file over: left to it");
            }
            Err(e) => {
                error!(file = %claim.key, error = %e, "file left unfinished; it is taken again once its claim lapses");
            }
        }
    }

    /// The action of a done or failed file; whether the claim was released with the record of
    /// its outcome.
    async fn run(&self, claim: Claim, record: FileRecord) -> Result<bool, AfterError> {
        let Some(root) = record.origin.clone() else {
            return Ok(false);
        };
        let list = self.watched.current();
        let Some(watch) = list.of_origin(&root) else {
            warn!(path = %shown(&record.path), "no watch for this file any more: left in place");
            return Ok(false);
        };
        let path = shown(&record.path).to_string();
        let one = dispose::One {
            ledger: &self.ledger,
            again: &self.again,
            claim,
            lease: &self.lease,
            record: &record,
            watch,
            root: &root,
        };
        match one.dispose().await {
            Ok(Some(disposal)) => {
                debug!(path, ?disposal, "disposed");
                if hook_for(watch, record.state).is_some() {
                    self.hooks.notify_one();
                }
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(AfterError::ClaimLost) => {
                warn!(path, "the file's claim could not be confirmed during its copy across file systems: the copy is removed; the file is taken again if it is still this node's");
                Ok(true)
            }
            Err(AfterError::Io(e)) => {
                self.failed(claim, &record, &path, &e).await?;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// The action failed (the file system refused a move, say): the file stays uploaded and its
    /// source where it is; the failure is recorded with its reason (`status` and the page show
    /// it), counted, and the action tried again after the retry policy's slow backoff, the claim
    /// released meanwhile. Logged at ERROR the first time, at WARN after.
    async fn failed(
        &self,
        claim: Claim,
        record: &FileRecord,
        path: &str,
        error: &std::io::Error,
    ) -> Result<(), AfterError> {
        let before = record.disposal_failed.as_ref().map_or(0, |f| f.failures);
        let delay = self.retry.ceiling(before, Pace::Slow);
        // Whole seconds on a clock of whole seconds: one more, so the wait is never shorter
        // than the delay (nor than a second).
        let retry_in = i64::try_from(delay.as_millis().div_ceil(1000) + 1).unwrap_or(i64::MAX);
        let reason = format!(
            "after-upload action failed: {}",
            super::folders::explain(error)
        );
        self.metrics.disposal_failed();
        if before == 0 {
            error!(
                path,
                reason,
                retry_in,
                "file uploaded, but its source was not disposed of; tried again later"
            );
        } else {
            let failures = before + 1;
            warn!(
                path,
                reason, failures, retry_in, "after-upload action failed again"
            );
        }
        Ok(self
            .ledger
            .disposal_failed(claim, &reason, retry_in)
            .await?)
    }
}

/// The hook `watch` runs when a file ends in `state`: `on_done` or `on_failed`.
fn hook_for(watch: &Watch, state: FileState) -> Option<&Hook> {
    match state {
        FileState::Done => watch.on_done.as_ref(),
        FileState::Failed => watch.on_failed.as_ref(),
        _ => None,
    }
}
