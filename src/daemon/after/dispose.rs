//! One file's after-upload step, in order, under its claim: decide (or recover a recorded
//! intent), record the intent and its held hook deliveries durably, run the action and write its
//! sidecar, record the outcome and release the deliveries. A file changed since its upload is
//! superseded instead (nothing touched, no hook). Every ledger write takes the claim, so a node
//! that lost the file touches nothing of it.

use super::decide::{decide, Disposal, Plan};
use super::{apply, hook_for, sidecar, AfterError};
use crate::config::{AfterUpload, Hook, Watch};
use crate::daemon::intake::Again;
use crate::hooks;
use crate::ledger::{Claim, FileRecord, FileState, Lease, Ledger};
use crate::shown::shown;
use std::path::{Path, PathBuf};
use tracing::warn;

/// A done or failed file whose after-upload step runs now.
pub(super) struct One<'a> {
    pub ledger: &'a Ledger,
    /// Told of a file superseded here, so its new version is taken.
    pub again: &'a Again,
    pub claim: Claim,
    pub lease: &'a Lease,
    pub record: &'a FileRecord,
    pub watch: &'a Watch,
    /// The folder of its watch (canonical).
    pub root: &'a Path,
}

/// What an action that ran left: its outcome, and whether its sidecar was written.
type Acted = (Disposal, std::io::Result<Option<PathBuf>>);

impl One<'_> {
    /// The whole step; what was done, or `None` when nothing was (re-queued meanwhile,
    /// superseded, or its intent no longer recordable).
    pub async fn dispose(&self) -> Result<Option<Disposal>, AfterError> {
        let record = self.record;
        if !FileState::TAKES_ACTION.contains(&record.state) {
            // Re-queued since it ended (`vodup retry`): its action waits for its next end.
            return Ok(None);
        }
        let hook = hook_for(self.watch, record.state).cloned();
        let plan = self.off_workers(decide).await?;
        // The target the held deliveries were written for, if any were.
        let mut held_for = record.intent.map(|_| record.intent_target.clone());
        let (disposal, written) = match plan {
            Plan::Recovered(disposal) => (disposal, None),
            Plan::Skip(why) => (Disposal::Skipped(why), None),
            Plan::Supersede(why) => {
                warn!(path = %shown(&record.path), why, "not disposed of");
                let aside = self
                    .ledger
                    .set_aside(self.claim, FileState::Superseded, why);
                aside.await?;
                self.again.look(&record.path);
                return Ok(None);
            }
            Plan::Act(action, target) => {
                let Some(acted) = self.act(action, target.clone(), hook.as_ref()).await? else {
                    return Ok(None);
                };
                held_for = Some(target);
                (acted.0, Some(acted.1))
            }
        };
        // A note beside the file for people; the file itself is disposed of whatever becomes of it.
        let written = match written {
            Some(written) => written,
            None => self.note(&disposal).await,
        };
        if let Err(e) = written {
            warn!(path = %shown(&record.path), error = %e, "sidecar not written");
        }
        let as_held = !matches!(disposal, Disposal::Skipped(_))
            && held_for.is_some_and(|t| t.as_deref() == disposal.target());
        let replaced =
            (!as_held).then(|| hooks::deliveries(hook.as_ref(), record, disposal.target()));
        let (recorded, target) = (disposal.recorded(), disposal.target());
        let marked = self
            .ledger
            .mark_disposed(self.claim, recorded, target, replaced);
        marked.await?;
        Ok(Some(disposal))
    }

    /// Record the intent of `action` (to `target`) with the deliveries its outcome will release,
    /// then run it and write its sidecar, in one trip off the async workers. `None`: the intent
    /// was not recorded (disposed of meanwhile, or re-queued).
    async fn act(
        &self,
        action: AfterUpload,
        target: Option<PathBuf>,
        hook: Option<&Hook>,
    ) -> Result<Option<Acted>, AfterError> {
        let held = hooks::deliveries(hook, self.record, target.as_deref());
        let intent = self
            .ledger
            .intend_disposal(self.claim, action, target.as_deref(), held);
        if !intent.await? {
            return Ok(None);
        }
        // Asked by a copy across file systems right before the copy takes its name: a node
        // frozen mid-copy whose file was taken over meanwhile lands no second copy.
        let still_ours = {
            let (ledger, lease, claim) = (self.ledger.clone(), self.lease.clone(), self.claim);
            let runtime = tokio::runtime::Handle::current();
            move || {
                let renewed = runtime.block_on(ledger.renew(&lease, &[claim]));
                renewed.is_ok_and(|held| !held.is_empty())
            }
        };
        let acted = self.off_workers(move |record, watch, root| {
            let disposal = apply(record, root, action, target.as_deref(), &still_ours)?;
            let written = sidecar::write_for(record, watch, root, &disposal);
            Ok::<_, AfterError>((disposal, written))
        });
        Ok(Some(acted.await?))
    }

    /// The sidecar of an outcome no action of this run produced (recovered, or skipped), if the
    /// watch wants one.
    async fn note(&self, disposal: &Disposal) -> std::io::Result<Option<PathBuf>> {
        if !sidecar::wanted(self.record, self.watch, disposal) {
            return Ok(None);
        }
        let disposal = disposal.clone();
        let note =
            move |r: &FileRecord, w: &Watch, root: &Path| sidecar::write_for(r, w, root, &disposal);
        self.off_workers(note).await
    }

    /// Run blocking file-system work (plans, renames, copies, sidecars) on the file, off the
    /// async workers.
    async fn off_workers<T: Send + 'static>(
        &self,
        work: impl FnOnce(&FileRecord, &Watch, &Path) -> T + Send + 'static,
    ) -> T {
        let (record, watch, root) = (
            self.record.clone(),
            self.watch.clone(),
            self.root.to_owned(),
        );
        let run = tokio::task::spawn_blocking(move || work(&record, &watch, &root));
        run.await.expect("file-system work does not panic")
    }
}
