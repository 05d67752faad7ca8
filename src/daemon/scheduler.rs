//! The queue, which lives in the ledger: the scheduler claims files owed work, oldest first,
//! `files_in_flight` places at a time (a file of one part takes an eighth of one, see
//! [`SHARES`]), and runs each in a task of its own: its upload, then its after-upload step
//! ([`super::after`]). It looks when the intake pokes it, when a file ends and every second. A
//! claim it could not end cleanly lapses after the lease. On shutdown it takes nothing new and
//! lets running files drain. Not the upload, the after-upload step or the watch list.

use super::after::After;
use super::intake::Again;
use super::watched::Watched;
use crate::config::Watch;
use crate::ledger::{FileRecord, Ledger, Wanted};
use crate::metrics::Metrics;
use crate::protocol::RetryPolicy;
use crate::upload::{Engine, EngineError, Outcome};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

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
    /// Where a file set aside as changed goes back to the intake.
    pub again: Again,
}

impl Scheduler {
    /// Work until cancelled, then drain; this node's claims are renewed all along, the drain
    /// included.
    pub async fn run(self, cancel: CancellationToken) {
        let renewing = CancellationToken::new();
        let renew = self.engine.holder().clone().renew(renewing.clone());
        let work = async {
            self.work(&cancel).await;
            renewing.cancel();
        };
        tokio::join!(work, renew);
    }

    async fn work(&self, cancel: &CancellationToken) {
        // Each file's task returns the shares it took; `load` is their sum.
        let mut running: JoinSet<usize> = JoinSet::new();
        let mut load = 0;
        let mut poll = tokio::time::interval(LEDGER_POLL);
        let after = After {
            lease: self.engine.holder().lease().clone(),
            ledger: self.ledger.clone(),
            hooks: self.hooks.clone(),
            watched: Arc::new(Watched::new(self.watches.clone())),
            metrics: self.metrics.clone(),
            retry: self.retry.clone(),
            again: self.again.clone(),
        };
        loop {
            // A ledger that cannot be reached now (a PostgreSQL restart) is asked again at the
            // next poll; files under way go on meanwhile.
            if let Err(e) = self
                .take_more(&mut running, &mut load, cancel, &after)
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
        after: &After,
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
            let list = after.watched.current();
            let wanted = Wanted {
                limit,
                watches: &list.roots,
                queued_before,
                one_part,
                accounts: &accounts,
            };
            let lease = self.engine.holder().lease();
            let claimed = self.ledger.claim_next(lease, wanted).await?;
            let all = claimed.len() == limit;
            for (claim, record) in claimed {
                *load += shares(&record);
                running.spawn(self.run_one(claim, record, cancel, after));
            }
            // Round again for the room left, unless the queue ran short of files for whole
            // places or this was the last offer (waited files).
            if queued_before.is_some() || (!all && !one_part) {
                return Ok(());
            }
        }
    }

    /// A claimed file's task: its upload (unless it ended already), then its after-upload step.
    /// It returns the shares it took.
    fn run_one(
        &self,
        claim: crate::ledger::Claim,
        record: FileRecord,
        cancel: &CancellationToken,
        after: &After,
    ) -> impl std::future::Future<Output = usize> + Send + 'static {
        let held = self.engine.holder().hold(claim);
        let (engine, cancel, after) = (self.engine.clone(), cancel.clone(), after.clone());
        let taken = shares(&record);
        async move {
            if record.state.is_final() {
                after.ended(held, record, None).await;
                return taken;
            }
            // Lost to another node: the upload is dropped where it stands.
            let lost = held.lost().clone();
            let upload = engine.upload_claimed(claim, record.clone(), &cancel);
            let outcome = lost.run_until_cancelled(upload).await;
            let outcome = outcome.unwrap_or(Ok(Outcome::TakenOver));
            after.ended(held, record, Some(outcome)).await;
            taken
        }
    }
}
