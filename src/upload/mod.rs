//! The upload engine: takes one file from the ledger to the service, exactly once, byte for byte.
//!
//! [`Engine::upload`] drives one file through hash → sign → init → parts → finish, resuming from
//! what the ledger and the service already hold. Parts of every file share one semaphore
//! (`parts_in_flight`), so memory is bounded by that many parts. The engine owns no retry policy
//! (that is [`crate::protocol::retry`]) and no SQL (that is [`crate::ledger`]).

mod call;
mod file;
mod job;
mod parts;
mod signer;

pub use signer::Signer;

use crate::config::Config;
use crate::ledger::{FileKey, FileRecord, FileState, Ledger, LedgerError, RecordedError};
use crate::metrics::Metrics;
use crate::protocol::{Client, ClientError, PartSize, RetryPolicy};
use crate::ratelimit::Throttle;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How a file's upload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The service confirmed the file.
    Done(Finished),
    /// The file failed for good; the ledger holds the same error.
    Failed(RecordedError),
    /// Shutdown was requested; the file resumes on the next start.
    Stopped,
    /// Not uploaded, and not a failure: the file is empty (`Waiting`), changed after it settled
    /// (`Superseded`), or its path no longer names it (`Gone`); with the reason.
    SetAside(FileState, String),
}

impl Outcome {
    /// How a row that is over already ended, if it is.
    fn ended_already(record: &FileRecord) -> Option<Outcome> {
        let why = || {
            record.error.as_ref().map_or_else(
                || "the file is empty: waiting for content".into(),
                |e| e.message.clone(),
            )
        };
        match (record.state, &record.error) {
            (FileState::Done, _) => Some(Outcome::Done(Finished::of(record))),
            (FileState::Failed, Some(error)) => Some(Outcome::Failed(error.clone())),
            (state @ (FileState::Waiting | FileState::Superseded | FileState::Gone), _) => {
                Some(Outcome::SetAside(state, why()))
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finished {
    #[serde(rename = "fileSha")]
    pub file_sha: String,
    #[serde(rename = "fileId")]
    pub file_id: String,
    pub url: Option<String>,
    pub instant: bool,
}

impl Finished {
    /// A done row's result.
    fn of(record: &FileRecord) -> Finished {
        Finished {
            file_sha: record.file_sha.clone().unwrap_or_default(),
            file_id: record.file_id.clone().unwrap_or_default(),
            url: record.url.clone(),
            instant: record.instant,
        }
    }
}

/// What the engine reports as a file moves; the CLI draws bars from it, the daemon logs it.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    Hashing {
        size: u64,
    },
    /// Parts are going up; `confirmed` bytes were already held.
    Uploading {
        total: u64,
        confirmed: u64,
    },
    PartConfirmed {
        len: u64,
    },
    Finishing,
}

pub trait Progress: Send + Sync {
    fn event(&self, key: FileKey, path: &Path, event: Event);
}

/// A progress sink that ignores everything.
#[derive(Debug)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: FileKey, _: &Path, _: Event) {}
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("file {0} is not in the ledger")]
    UnknownFile(FileKey),
}

/// The engine; cheap to clone, shared by every file task.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    ledger: Ledger,
    signer: Signer,
    part_size: PartSize,
    retry: RetryPolicy,
    permits: Arc<Semaphore>,
    progress: Arc<dyn Progress>,
    contents: ContentLocks,
    throttle: Throttle,
    metrics: Metrics,
}

/// One lock per content (fileSha): two copies of the same content never upload at once, so the
/// second one finds the first finished and completes by instant upload.
#[derive(Default)]
struct ContentLocks {
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while a content uploads; the map entry goes when the last holder or waiter is done.
struct ContentGuard<'a> {
    locks: &'a ContentLocks,
    sha: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl ContentLocks {
    async fn lock(&self, sha: &str) -> ContentGuard<'_> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(sha.to_owned()).or_default().clone()
        };
        ContentGuard {
            locks: self,
            sha: sha.to_owned(),
            guard: Some(lock.lock_owned().await),
        }
    }
}

impl Drop for ContentGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.locks.locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks
            .get(&self.sha)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.sha);
        }
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("part_size", &self.inner.part_size)
            .field("permits", &self.inner.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine for a validated config.
    pub fn new(
        config: &Config,
        ledger: Ledger,
        progress: Arc<dyn Progress>,
    ) -> Result<Engine, EngineError> {
        let client = Client::new(&config.endpoint, &config.timeouts)?;
        Ok(Engine {
            inner: Arc::new(Inner {
                client,
                ledger,
                signer: Signer {
                    secret_id: config.secret_id.clone(),
                    secret_key: config.secret().clone(),
                    uid: config.uid.clone(),
                    validity: config.signature_validity,
                },
                part_size: config.part_size().unwrap_or(PartSize::OneMiB),
                retry: config.retry.clone(),
                permits: Arc::new(Semaphore::new(config.parts_in_flight)),
                progress,
                contents: ContentLocks::default(),
                throttle: Throttle::new(
                    config.max_upload_rate,
                    &config.rate_schedule,
                    config.part_size,
                ),
                metrics: Metrics::default(),
            }),
        })
    }

    /// Move `metrics` (instead of a private set) as files and parts go.
    pub fn with_metrics(mut self, metrics: Metrics) -> Engine {
        Arc::get_mut(&mut self.inner)
            .expect("with_metrics is called before the engine is shared")
            .metrics = metrics;
        self
    }

    pub fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    /// Upload the file `key` of the ledger. `cancel` stops it taking new parts; parts already in
    /// flight finish (the caller bounds that with its deadline). Only ledger trouble is an `Err`:
    /// everything that happens to the file is in the [`Outcome`] and the ledger.
    pub async fn upload(
        &self,
        key: FileKey,
        cancel: &CancellationToken,
    ) -> Result<Outcome, EngineError> {
        let started = std::time::Instant::now();
        let outcome = file::upload(&self.inner, key, cancel).await?;
        if let Outcome::Done(done) = &outcome {
            let metrics = &self.inner.metrics;
            metrics.file_done(done.instant, started.elapsed().as_secs_f64());
        }
        Ok(outcome)
    }
}
