//! The queue: files in arrival order, `files_in_flight` at a time (their parts share the engine's
//! global limit, so a huge file and small ones interleave), and the after-upload action once a
//! file ends. On shutdown it starts nothing new and lets running files drain (the daemon bounds
//! the drain by `shutdown_deadline`). After it records a disposal it pokes the hook runner.

use super::dispose::{apply, plan, recover, Disposal, Plan};
use super::sidecar;
use crate::config::Watch;
use crate::hooks;
use crate::ledger::{FileKey, FileRecord, FileState, Ledger};
use crate::metrics::Metrics;
use crate::shown::shown;
use crate::upload::{Engine, EngineError, Outcome};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// How often the ledger is checked for files queued from outside (`vodup retry`), and the queue
/// for files waiting too long.
const LEDGER_POLL: Duration = Duration::from_secs(1);
/// How long a file whose upload ended on a ledger error waits before it is picked up again.
const COOL_DOWN: Duration = Duration::from_secs(60);

pub struct Scheduler {
    pub engine: Engine,
    pub ledger: Ledger,
    /// The watch list, as the intake watches it.
    pub watches: watch::Receiver<Vec<Watch>>,
    pub files_in_flight: usize,
    pub interleave_after: Duration,
    pub intake: mpsc::Receiver<FileKey>,
    pub metrics: Metrics,
    /// Poked after a disposal is recorded: its hook deliveries may be due.
    pub hooks: Arc<Notify>,
}

type Ended = (FileKey, Result<Outcome, EngineError>);

impl Scheduler {
    pub async fn run(mut self, cancel: CancellationToken) -> Result<(), EngineError> {
        let mut waiting: VecDeque<(FileKey, Instant)> = VecDeque::new();
        let mut known: HashSet<FileKey> = HashSet::new();
        // Files whose upload ended on a ledger error are not picked up again for a while.
        let mut cooling: HashMap<FileKey, Instant> = HashMap::new();
        let mut running: JoinSet<Ended> = JoinSet::new();
        let mut poll = tokio::time::interval(LEDGER_POLL);
        self.dispose_pending().await?;
        loop {
            while running.len() < self.slots(waiting.front()) {
                let Some((key, _)) = waiting.pop_front() else {
                    break;
                };
                let (engine, cancel) = (self.engine.clone(), cancel.clone());
                running.spawn(async move { (key, engine.upload(key, &cancel).await) });
            }
            self.metrics.set_queue_length(waiting.len());
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                Some(ended) = running.join_next(), if !running.is_empty() => {
                    let (key, outcome) = ended.expect("upload task does not panic");
                    known.remove(&key);
                    if !self.ended(key, outcome).await {
                        cooling.insert(key, Instant::now() + COOL_DOWN);
                    }
                }
                Some(key) = self.intake.recv() => {
                    if known.insert(key) {
                        waiting.push_back((key, Instant::now()));
                    }
                }
                _ = poll.tick() => {
                    cooling.retain(|_, until| *until > Instant::now());
                    for record in self.ledger.run(|l| l.unfinished()).await? {
                        let cool = cooling.contains_key(&record.key);
                        if record.origin.is_some() && !cool && known.insert(record.key) {
                            waiting.push_back((record.key, Instant::now()));
                        }
                    }
                }
            }
        }
        self.drain(running).await
    }

    /// How many files may run now: `files_in_flight`, or twice that when the next file has waited
    /// `interleave_after` behind long uploads. Parts still share one limit, so the extra file
    /// takes turns with the running ones instead of waiting for them to end.
    fn slots(&self, next: Option<&(FileKey, Instant)>) -> usize {
        let starved = next.is_some_and(|(_, since)| since.elapsed() >= self.interleave_after);
        if starved {
            self.files_in_flight * 2
        } else {
            self.files_in_flight
        }
    }

    /// Let running files finish their parts in flight (the engine starts no new part once
    /// cancelled) and run their after-upload actions. The daemon's shutdown deadline bounds this:
    /// past it this task is aborted, and with it the uploads (what they had confirmed is in the
    /// ledger; the rest is re-sent on the next start).
    async fn drain(&self, mut running: JoinSet<Ended>) -> Result<(), EngineError> {
        if !running.is_empty() {
            info!(files = running.len(), "draining parts in flight");
        }
        while let Some(ended) = running.join_next().await {
            let (key, outcome) = ended.expect("upload task does not panic");
            self.ended(key, outcome).await;
        }
        Ok(())
    }

    /// A file's upload ended: run its after-upload action. Trouble here is this file's only: it
    /// is logged, the file's action runs again on the next start, and `false` is returned.
    async fn ended(&self, key: FileKey, outcome: Result<Outcome, EngineError>) -> bool {
        let result = match outcome {
            Ok(Outcome::Stopped | Outcome::SetAside(..)) => Ok(()),
            Ok(_) => match self.ledger.run(move |l| l.file(key)).await {
                Ok(Some(record)) => self.dispose_one(record).await,
                Ok(None) => Ok(()),
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => true,
            Err(e) => {
                error!(file = key, error = %e, "file left unfinished; it is tried again later");
                false
            }
        }
    }

    /// Finish the after-upload actions a crash interrupted.
    async fn dispose_pending(&self) -> Result<(), EngineError> {
        for record in self.ledger.run(|l| l.undisposed()).await? {
            self.dispose_one(record).await?;
        }
        Ok(())
    }

    /// The after-upload action of a done or failed file: plan it, record the intent and its held
    /// hooks durably, run it, record the outcome and release the hooks. A file changed since its
    /// upload is superseded instead (nothing touched, no hook).
    async fn dispose_one(&self, record: FileRecord) -> Result<(), EngineError> {
        let Some(root) = record.origin.clone() else {
            return Ok(());
        };
        let watches = self.watches.borrow().clone();
        let Some(watch) = super::for_origin(&watches, &root) else {
            warn!(path = %shown(&record.path), "no watch for this file any more: left in place");
            return Ok(());
        };
        let (key, shown_path) = (record.key, shown(&record.path).to_string());
        let ledger = self.ledger.clone();
        let done =
            tokio::task::spawn_blocking(move || dispose_now(&ledger, &record, &watch, &root))
                .await
                .expect("dispose does not panic");
        match done {
            Ok(Some(disposal)) => {
                debug!(path = %shown_path, ?disposal, "disposed");
                self.hooks.notify_one();
            }
            Ok(None) => {}
            Err(DisposeError::Ledger(e)) => return Err(e.into()),
            Err(DisposeError::Io(e)) => {
                error!(path = %shown_path, file = key, error = %e, "after-upload action failed; will retry on restart")
            }
        }
        Ok(())
    }
}

/// The disposal of one done or failed file, on the blocking pool: plan it (or recover a recorded
/// intent), record the intent and its held hooks durably, run it, record the outcome and release
/// the hooks. A file changed since its upload is superseded instead (nothing touched, no hook).
/// `None` when nothing was disposed of.
fn dispose_now(
    ledger: &Ledger,
    record: &FileRecord,
    watch: &Watch,
    root: &Path,
) -> Result<Option<Disposal>, DisposeError> {
    let hook = match record.state {
        FileState::Done => watch.on_done.as_ref(),
        FileState::Failed => watch.on_failed.as_ref(),
        // Re-queued since it ended (`vodup retry`): its disposal waits for its next end.
        _ => return Ok(None),
    };
    let planned = match (record.intent, &record.intent_target) {
        (Some(action), target) => match recover(record, watch, root, action, target.as_deref())? {
            Ok(recovered) => Err(recovered),
            Err(plan) => Ok(plan),
        },
        (None, _) => Ok(plan(record, watch, root)?),
    };
    // The target the held deliveries were written for, if any were.
    let mut held_for = record.intent.map(|_| record.intent_target.clone());
    let disposal = match planned {
        Err(recovered) => recovered,
        Ok(Plan::Supersede(why)) => {
            warn!(path = %shown(&record.path), why, "not disposed of");
            ledger.set_aside(record.key, FileState::Superseded, why)?;
            return Ok(None);
        }
        Ok(Plan::Skip(why)) => Disposal::Skipped(why),
        Ok(Plan::Act(action, target)) => {
            let held = hooks::deliveries(hook, record, target.as_deref());
            let (intent, to) = (action.as_str(), target.as_deref());
            if !ledger.intend_disposal(record.key, intent, to, &held)? {
                return Ok(None);
            }
            held_for = Some(target.clone());
            apply(record, root, action, target.as_deref())?
        }
    };
    // A note beside the file for people; the file itself is disposed of whatever becomes of it.
    if let Err(e) = sidecar::write_for(record, watch, root, &disposal) {
        warn!(path = %shown(&record.path), error = %e, "sidecar not written");
    }
    let as_held = !matches!(disposal, Disposal::Skipped(_))
        && held_for.is_some_and(|t| t.as_deref() == disposal.target());
    let replaced = (!as_held).then(|| hooks::deliveries(hook, record, disposal.target()));
    ledger.mark_disposed(
        record.key,
        &disposal.describe(),
        disposal.target(),
        replaced.as_deref(),
    )?;
    Ok(Some(disposal))
}

#[derive(Debug, thiserror::Error)]
enum DisposeError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
}
