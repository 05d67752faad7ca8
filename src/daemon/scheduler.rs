//! The queue, which lives in the ledger: the scheduler claims files owed work, oldest first,
//! `files_in_flight` at a time (their parts share the engine's global limit, so a huge file and
//! small ones interleave), uploads each, runs its after-upload action, and lets it go. A file of
//! one part takes an eighth of a place (see [`SHARES`]): it has no hashing pass worth bounding and
//! one part in the window, and its time is mostly round trips, so a burst of small files runs
//! eight times as wide. Several nodes on one PostgreSQL ledger share the queue this way; on
//! SQLite the one host has it alone.
//!
//! It looks for work when the intake pokes it, when a file ends, and every second (files queued
//! from outside: `vodup retry`, other nodes, claims of a dead node that lapsed). A claim it could
//! not end cleanly (ledger trouble) is not released: it lapses after the lease and the file is
//! taken again then, by this node or another. On shutdown it takes nothing new and lets running
//! files drain (the daemon bounds the drain by `shutdown_deadline`). After it records a disposal
//! it pokes the hook runner, if the watch has a hook for it.

use super::dispose::{apply, plan, recover, Disposal, Plan};
use super::sidecar;
use crate::config::{Hook, Watch};
use crate::hooks;
use crate::ledger::{Claim, FileRecord, FileState, Ledger, LedgerError, Wanted, WatchRoot};
use crate::metrics::Metrics;
use crate::protocol::{Pace, RetryPolicy};
use crate::shown::shown;
use crate::upload::{Engine, EngineError, Held, Outcome};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// How often the ledger is looked at for work nobody poked this node about.
const LEDGER_POLL: Duration = Duration::from_secs(1);

/// The shares of one place of `files_in_flight`: a file of several parts takes them all, a file
/// of one part takes one.
const SHARES: usize = 8;

/// The shares a file takes while it runs: one for a file of one part, or one that ended and is
/// claimed for its after-upload action only.
fn shares(record: &FileRecord) -> usize {
    match record.size <= record.part_size || record.state.is_final() {
        true => 1,
        false => SHARES,
    }
}

pub struct Scheduler {
    pub engine: Engine,
    pub ledger: Ledger,
    /// The watch list, as the intake watches it.
    pub watches: watch::Receiver<Vec<Watch>>,
    pub files_in_flight: usize,
    pub interleave_after: Duration,
    /// Poked by the intake after it queued a file.
    pub queued: Arc<Notify>,
    /// Poked after a disposal is recorded: its hook deliveries may be due.
    pub hooks: Arc<Notify>,
    pub metrics: Metrics,
    /// Paces the after-upload action of a file whose action failed.
    pub retry: RetryPolicy,
}

/// The watch list the intake publishes, with each watch's root as the ledger records it
/// (canonical), worked out once per list rather than at every claim and disposal. Shared by the
/// scheduler and every file's task.
struct Watched {
    published: Mutex<(watch::Receiver<Vec<Watch>>, Arc<WatchList>)>,
}

/// One published watch list and its roots.
#[derive(Default)]
struct WatchList {
    roots: Vec<WatchRoot>,
    watches: Vec<Watch>,
}

impl Watched {
    fn new(mut published: watch::Receiver<Vec<Watch>>) -> Watched {
        let list = WatchList::of(published.borrow_and_update().clone());
        Watched {
            published: Mutex::new((published, Arc::new(list))),
        }
    }

    /// The list as published now.
    fn current(&self) -> Arc<WatchList> {
        let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        let (receiver, list) = &mut *published;
        if receiver.has_changed().unwrap_or(false) {
            *list = Arc::new(WatchList::of(receiver.borrow_and_update().clone()));
        }
        list.clone()
    }
}

impl WatchList {
    fn of(watches: Vec<Watch>) -> WatchList {
        WatchList {
            roots: watches.iter().map(WatchRoot::of).collect(),
            watches,
        }
    }

    /// The watch whose folder is `origin` (as a row records it: canonical).
    fn of_origin(&self, origin: &Path) -> Option<&Watch> {
        let at = self.roots.iter().position(|r| r.path == origin)?;
        self.watches.get(at)
    }
}

impl Scheduler {
    /// Work until cancelled, then drain; this node's claims are renewed all along, the drain
    /// included.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), EngineError> {
        let renewing = CancellationToken::new();
        let renew = self.engine.holder().clone().renew(renewing.clone());
        let work = async {
            let worked = self.work(&cancel).await;
            renewing.cancel();
            worked
        };
        let (worked, renewed) = tokio::join!(work, renew);
        worked.and(renewed.map_err(EngineError::from))
    }

    async fn work(&self, cancel: &CancellationToken) -> Result<(), EngineError> {
        // Each file's task returns the shares it took; `load` is their sum.
        let mut running: JoinSet<usize> = JoinSet::new();
        let mut load = 0;
        let mut poll = tokio::time::interval(LEDGER_POLL);
        let ending = Ending {
            lease: self.engine.holder().lease().clone(),
            ledger: self.ledger.clone(),
            hooks: self.hooks.clone(),
            watched: Arc::new(Watched::new(self.watches.clone())),
            metrics: self.metrics.clone(),
            retry: self.retry.clone(),
        };
        loop {
            // A ledger that cannot be reached now (a PostgreSQL restart) is asked again at the
            // next poll; files under way go on meanwhile.
            if let Err(e) = self
                .take_more(&mut running, &mut load, cancel, &ending)
                .await
            {
                warn!(error = %e, "no file taken from the ledger; trying again shortly");
            }
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                Some(ended) = running.join_next(), if !running.is_empty() => {
                    load -= ended.expect("file task does not panic");
                    // Every file that ended in the meantime makes room at once.
                    while let Some(ended) = running.try_join_next() {
                        load -= ended.expect("file task does not panic");
                    }
                }
                () = self.queued.notified() => {}
                _ = poll.tick() => {}
            }
        }
        if !running.is_empty() {
            info!(files = running.len(), "draining parts in flight");
        }
        // Running files finish their parts in flight (the engine starts no new part once
        // cancelled) and run their after-upload actions. The daemon's shutdown deadline bounds
        // this: past it this task is aborted, and with it the uploads (what they had confirmed is
        // in the ledger; the rest is re-sent on the next start).
        while let Some(ended) = running.join_next().await {
            ended.expect("file task does not panic");
        }
        Ok(())
    }

    /// Claim what there is room for: up to `files_in_flight` places, or up to twice that for files
    /// that have waited `interleave_after` behind long uploads (parts still share one limit, so
    /// the extra file takes turns with the running ones instead of waiting for them to end). A
    /// file's size is known once it is claimed, so a whole free place is offered to the next file
    /// whatever its size, and the shares a small file leaves are offered to files of one part
    /// only, and only to those queued before any larger file still waiting (which the next whole
    /// place then goes to). Files that waited are offered room only when a call finds no share
    /// free, as the poll does while every place is taken. Each file's task uploads it, runs its
    /// after-upload action and lets it go, so files end side by side rather than one after
    /// another here.
    async fn take_more(
        &self,
        running: &mut JoinSet<usize>,
        load: &mut usize,
        cancel: &CancellationToken,
        ending: &Ending,
    ) -> Result<(), EngineError> {
        let places = self.files_in_flight * SHARES;
        let no_room = *load >= places;
        let accounts = self.engine.account_names();
        let mut shares_offered = false;
        loop {
            if cancel.is_cancelled() {
                return Ok(());
            }
            let free = places.saturating_sub(*load);
            let (limit, queued_before, one_part) = if free >= SHARES {
                (free / SHARES, None, false)
            } else if free > 0 && !shares_offered {
                shares_offered = true;
                (free, None, true)
            } else if no_room {
                let waited = i64::try_from(self.interleave_after.as_secs()).unwrap_or(i64::MAX);
                let extra = (places * 2).saturating_sub(*load) / SHARES;
                let now = crate::clock::unix_now_i64();
                (extra, Some(now.saturating_sub(waited)), false)
            } else {
                return Ok(());
            };
            if limit == 0 {
                return Ok(());
            }
            let holder = self.engine.holder();
            let list = ending.watched.current();
            let wanted = Wanted {
                limit,
                watches: &list.roots,
                queued_before,
                one_part,
                accounts: &accounts,
            };
            let claimed = self.ledger.claim_next(holder.lease(), wanted).await?;
            let all = claimed.len() == limit;
            for (claim, record) in claimed {
                let held = holder.hold(claim);
                let (engine, cancel, ending) =
                    (self.engine.clone(), cancel.clone(), ending.clone());
                let taken = shares(&record);
                *load += taken;
                running.spawn(async move {
                    if record.state.is_final() {
                        ending.ended(held, record, None).await;
                        return taken;
                    }
                    // Lost to another node: the upload is dropped where it stands.
                    let lost = held.lost().clone();
                    let upload = engine.upload_claimed(claim, record.clone(), &cancel);
                    let outcome = lost.run_until_cancelled(upload).await;
                    let outcome = outcome.unwrap_or(Ok(Outcome::TakenOver));
                    ending.ended(held, record, Some(outcome)).await;
                    taken
                });
            }
            // Round again for the room left, unless the queue ran short of files for whole
            // places or this was the last offer (waited files).
            if queued_before.is_some() || (!all && !one_part) {
                return Ok(());
            }
        }
    }
}

/// What a file's task needs once its upload ended: the ledger, the hook runner to poke, the
/// watch list its after-upload action follows, and the pace of an action that failed.
#[derive(Clone)]
struct Ending {
    /// This node's lease: a copy across file systems checks the claim under it before it lands.
    lease: crate::ledger::Lease,
    ledger: Ledger,
    hooks: Arc<Notify>,
    watched: Arc<Watched>,
    metrics: Metrics,
    retry: RetryPolicy,
}

impl Ending {
    /// A file's upload ended (`None`: it had ended already and was claimed for its after-upload
    /// action): run its after-upload action and let the file go. Trouble here is this file's
    /// only: it is logged, and the file's claim lapses so it is taken again later.
    async fn ended(
        &self,
        held: Held,
        record: FileRecord,
        outcome: Option<Result<Outcome, EngineError>>,
    ) {
        let claim = held.claim;
        // Whether the claim is still to be released (recording a disposal releases it).
        let result = match outcome {
            Some(Ok(Outcome::TakenOver)) => return,
            Some(Ok(Outcome::Stopped | Outcome::SetAside(..))) => Ok(true),
            None => self.dispose_one(claim, record).await,
            Some(Ok(_)) => match self.ledger.file(claim.key).await {
                Ok(Some(record)) => self.dispose_one(claim, record).await,
                Ok(None) => Ok(true),
                Err(e) => Err(e.into()),
            },
            Some(Err(e)) => Err(e),
        };
        let result = match result {
            Ok(_) if held.lost().is_cancelled() => return,
            Ok(true) => self.ledger.release(claim).await.map_err(EngineError::from),
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {}
            Err(EngineError::Ledger(LedgerError::Fenced { .. })) => {
                warn!(file = %claim.key, "another node took this file over: left to it");
            }
            Err(e) => {
                error!(file = %claim.key, error = %e, "file left unfinished; it is taken again once its claim lapses");
            }
        }
    }

    /// The after-upload action of a done or failed file (see [`dispose_now`]); whether the claim
    /// is still to be released (recording the disposal released it).
    async fn dispose_one(&self, claim: Claim, record: FileRecord) -> Result<bool, EngineError> {
        let Some(root) = record.origin.clone() else {
            return Ok(true);
        };
        let list = self.watched.current();
        let Some(watch) = list.of_origin(&root) else {
            warn!(path = %shown(&record.path), "no watch for this file any more: left in place");
            return Ok(true);
        };
        let shown_path = shown(&record.path).to_string();
        match dispose_now(&self.ledger, (claim, &self.lease), &record, watch, &root).await {
            Ok(Some(disposal)) => {
                debug!(path = %shown_path, ?disposal, "disposed");
                if hook_for(watch, record.state).is_some() {
                    self.hooks.notify_one();
                }
                Ok(false)
            }
            Ok(None) => Ok(true),
            Err(DisposeError::Ledger(e)) => Err(e.into()),
            Err(DisposeError::Io(e)) if e.to_string() == super::dispose::CLAIM_LOST => {
                warn!(path = %shown_path, "the file's claim could not be confirmed during its copy across file systems: the copy is removed; the file is taken again if it is still this node's");
                Ok(false)
            }
            Err(DisposeError::Io(e)) => {
                self.disposal_failed(claim, &record, &shown_path, &e)
                    .await?;
                Ok(false)
            }
        }
    }

    /// The after-upload action failed (the file system refused a move, say): the file stays
    /// uploaded and its source where it is; the failure is recorded with its reason (`status`
    /// and the page show it), counted, and the action tried again after the retry policy's slow
    /// backoff, the claim released meanwhile. Logged at ERROR the first time, at WARN after.
    async fn disposal_failed(
        &self,
        claim: Claim,
        record: &FileRecord,
        path: &str,
        error: &std::io::Error,
    ) -> Result<(), EngineError> {
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
        self.ledger
            .disposal_failed(claim, &reason, retry_in)
            .await
            .map_err(EngineError::from)
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

/// Run blocking file-system work (plans, renames, copies, sidecars) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("file-system work does not panic")
}

/// The disposal of one done or failed file under `claim`: plan it (or recover a recorded
/// intent), record the intent and its held hooks durably, run it, record the outcome and release
/// the hooks. A file changed since its upload is superseded instead (nothing touched, no hook).
/// Each ledger write is under the claim, so a node that lost the file touches nothing of it.
/// `None` when nothing was disposed of.
async fn dispose_now(
    ledger: &Ledger,
    (claim, lease): (Claim, &crate::ledger::Lease),
    record: &FileRecord,
    watch: &Watch,
    root: &Path,
) -> Result<Option<Disposal>, DisposeError> {
    if !matches!(record.state, FileState::Done | FileState::Failed) {
        // Re-queued since it ended (`vodup retry`): its disposal waits for its next end.
        return Ok(None);
    }
    let hook = hook_for(watch, record.state).cloned();
    let planned = {
        let (record, watch, root) = (record.clone(), watch.clone(), root.to_owned());
        blocking(move || match (record.intent, &record.intent_target) {
            (Some(action), target) => {
                let recovered = recover(&record, &watch, &root, action, target.as_deref())?;
                Ok::<_, std::io::Error>(match recovered {
                    Ok(recovered) => Err(recovered),
                    Err(plan) => Ok(plan),
                })
            }
            (None, _) => Ok(Ok(plan(&record, &watch, &root)?)),
        })
        .await?
    };
    // The target the held deliveries were written for, if any were.
    let mut held_for = record.intent.map(|_| record.intent_target.clone());
    let (disposal, written) = match planned {
        Err(recovered) => (recovered, None),
        Ok(Plan::Supersede(why)) => {
            warn!(path = %shown(&record.path), why, "not disposed of");
            ledger.set_aside(claim, FileState::Superseded, why).await?;
            return Ok(None);
        }
        Ok(Plan::Skip(why)) => (Disposal::Skipped(why), None),
        Ok(Plan::Act(action, target)) => {
            let held = hooks::deliveries(hook.as_ref(), record, target.as_deref());
            if !ledger
                .intend_disposal(claim, action, target.as_deref(), held)
                .await?
            {
                return Ok(None);
            }
            held_for = Some(target.clone());
            // The action and its sidecar in one trip off the async workers.
            let (record, watch, root) = (record.clone(), watch.clone(), root.to_owned());
            // Asked by a copy across file systems right before the copy takes its name: a node
            // frozen mid-copy whose file was taken over meanwhile lands no second copy.
            let still_ours = {
                let (ledger, lease) = (ledger.clone(), lease.clone());
                let runtime = tokio::runtime::Handle::current();
                move || {
                    runtime
                        .block_on(ledger.renew(&lease, &[claim]))
                        .is_ok_and(|held| !held.is_empty())
                }
            };
            blocking(move || {
                let disposal = apply(&record, &root, action, target.as_deref(), &still_ours)?;
                let written = sidecar::write_for(&record, &watch, &root, &disposal);
                Ok::<_, std::io::Error>((disposal, Some(written)))
            })
            .await?
        }
    };
    // A note beside the file for people; the file itself is disposed of whatever becomes of it.
    let written = match written {
        Some(written) => written,
        None if sidecar::wanted(record, watch, &disposal) => {
            let (record, watch, root, disposal) = (
                record.clone(),
                watch.clone(),
                root.to_owned(),
                disposal.clone(),
            );
            blocking(move || sidecar::write_for(&record, &watch, &root, &disposal)).await
        }
        None => Ok(None),
    };
    if let Err(e) = written {
        warn!(path = %shown(&record.path), error = %e, "sidecar not written");
    }
    let as_held = !matches!(disposal, Disposal::Skipped(_))
        && held_for.is_some_and(|t| t.as_deref() == disposal.target());
    let replaced = (!as_held).then(|| hooks::deliveries(hook.as_ref(), record, disposal.target()));
    ledger
        .mark_disposed(claim, disposal.recorded(), disposal.target(), replaced)
        .await?;
    Ok(Some(disposal))
}

#[derive(Debug, thiserror::Error)]
enum DisposeError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
}
