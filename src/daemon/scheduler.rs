//! The queue: files in arrival order, `files_in_flight` at a time (their parts share the engine's
//! global limit, so a huge file and small ones interleave), and the after-upload action once a
//! file ends. On shutdown it starts nothing new and lets running files drain up to the deadline.

use super::dispose::dispose;
use super::Watches;
use crate::hooks;
use crate::ledger::{FileKey, FileRecord, FileState, Ledger};
use crate::metrics::Metrics;
use crate::upload::{Engine, EngineError, Outcome};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// How often the ledger is checked for files queued from outside (`vodup retry`), and the queue
/// for files waiting too long.
const LEDGER_POLL: Duration = Duration::from_secs(1);
/// How long a file whose upload ended on a ledger error waits before it is picked up again.
const COOL_DOWN: Duration = Duration::from_secs(60);

pub struct Scheduler {
    pub engine: Engine,
    pub ledger: Ledger,
    pub watches: Watches,
    pub files_in_flight: usize,
    pub shutdown_deadline: Duration,
    pub interleave_after: Duration,
    pub intake: mpsc::Receiver<FileKey>,
    pub metrics: Metrics,
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

    /// Let running files finish their parts in flight, up to the deadline; then abandon them
    /// (what they had confirmed is in the ledger; the rest is re-sent on the next start).
    async fn drain(&self, mut running: JoinSet<Ended>) -> Result<(), EngineError> {
        if running.is_empty() {
            return Ok(());
        }
        info!(files = running.len(), deadline = ?self.shutdown_deadline, "draining parts in flight");
        let deadline = tokio::time::sleep(self.shutdown_deadline);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                ended = running.join_next() => match ended {
                    Some(Ok((key, outcome))) => {
                        self.ended(key, outcome).await;
                    }
                    Some(Err(e)) if e.is_cancelled() => {}
                    Some(Err(e)) => panic!("upload task panicked: {e}"),
                    None => return Ok(()),
                },
                () = &mut deadline => {
                    warn!(files = running.len(), "shutdown deadline passed: abandoning parts in flight");
                    running.abort_all();
                    return Ok(());
                }
            }
        }
    }

    /// A file's upload ended: run its after-upload action. Trouble here is this file's only: it
    /// is logged, the file's action runs again on the next start, and `false` is returned.
    async fn ended(&self, key: FileKey, outcome: Result<Outcome, EngineError>) -> bool {
        let result = match outcome {
            Ok(Outcome::Stopped) => Ok(()),
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

    async fn dispose_one(&self, record: FileRecord) -> Result<(), EngineError> {
        let Some(origin) = record.origin.clone() else {
            return Ok(());
        };
        let key = record.key;
        let path = record.path.clone();
        let watches = self.watches.clone();
        let done = tokio::task::spawn_blocking(move || {
            let watch = watches.for_origin(&origin)?;
            Some(dispose(&record, &watch).map(|disposal| {
                let moved_to = disposal.target();
                let hook = match record.state {
                    FileState::Done => watch.on_done.as_ref(),
                    _ => watch.on_failed.as_ref(),
                };
                (disposal.clone(), hooks::deliveries(hook, &record, moved_to))
            }))
        })
        .await
        .expect("dispose does not panic");
        match done {
            None => warn!(path = %path.display(), "no watch for this file any more: left in place"),
            Some(Ok((disposal, hooks))) => {
                tracing::debug!(path = %path.display(), ?disposal, hooks = hooks.len(), "disposed");
                self.ledger
                    .run(move |l| l.mark_disposed(key, disposal.as_str(), &hooks))
                    .await?;
            }
            Some(Err(e)) => {
                error!(path = %path.display(), error = %e, "after-upload action failed; will retry on restart")
            }
        }
        Ok(())
    }
}
