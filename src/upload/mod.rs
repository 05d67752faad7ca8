//! The upload engine: takes one file from the ledger to the service, exactly once, byte for byte.
//!
//! [`Engine::upload`] drives one file through hash → sign → init → parts → finish, resuming from
//! what the ledger and the service already hold. Parts of every file share one semaphore
//! (`parts_in_flight`), so memory is bounded by that many parts. It holds one client and signer per
//! account ([`Account`]) and sends each file with the account its ledger row names (or, for a
//! row without one, its watch's). The engine owns no retry policy
//! (that is [`crate::protocol::retry`]) and no SQL (that is [`crate::ledger`]).

mod call;
mod file;
mod hold;
mod job;
mod parts;
mod signer;
pub mod window;

pub use signer::Signer;

pub use hold::{Held, Holder};

use crate::config::{AccountName, Config, PartsInFlight};
use crate::ledger::{Claim, FileKey, FileRecord, FileState, Ledger, LedgerError, RecordedError};
use crate::metrics::Metrics;
use crate::protocol::{Client, ClientError, PartSize, RetryPolicy};
use crate::ratelimit::Throttle;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    /// Another node took the file over (this node's claim had lapsed); this node touches it no
    /// more.
    TakenOver,
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
            (FileState::Done, _) => Some(Outcome::Done(Finished::of(record.clone()))),
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
    /// The file's row as the finish left it: what its after-upload step works from.
    #[serde(skip)]
    pub record: Box<FileRecord>,
}

impl Finished {
    /// A done row's result.
    pub fn of(record: FileRecord) -> Finished {
        Finished {
            file_sha: record.file_sha.clone().unwrap_or_default(),
            file_id: record.file_id.clone().unwrap_or_default(),
            url: record.url.clone(),
            instant: record.instant,
            record: Box::new(record),
        }
    }
}

/// What the engine reports as a file moves; the CLI draws bars from it, the daemon logs it.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    Hashing {
        size: u64,
    },
    /// `bytes` more of the file were read by the hashing pass (one part).
    Hashed {
        bytes: u64,
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
    #[error("another node is uploading this file now")]
    HeldElsewhere(FileKey),
}

/// The engine; cheap to clone, shared by every file task.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    accounts: Accounts,
    ledger: Ledger,
    holder: Arc<Holder>,
    part_size: PartSize,
    retry: RetryPolicy,
    window: Arc<window::Window>,
    progress: Arc<dyn Progress>,
    contents: ContentLocks,
    throttle: Throttle,
    metrics: Metrics,
}

/// One account's connection to its service: the client for its endpoint and the signer with its
/// credentials.
#[derive(Debug)]
pub(crate) struct Account {
    pub name: AccountName,
    pub client: Client,
    pub signer: Signer,
}

/// Every account of the config, and which one a file without a recorded account goes to.
struct Accounts {
    by_name: HashMap<AccountName, Arc<Account>>,
    /// The account of each watch root (files queued by the intake).
    by_origin: HashMap<PathBuf, AccountName>,
    /// The top-level account (`vodup upload`, and watches without account keys).
    default: AccountName,
}

impl Accounts {
    fn new(config: &Config) -> Result<Accounts, ClientError> {
        let mut by_name = HashMap::new();
        let node = crate::ledger::Lease::of(config).node;
        for account in config.accounts() {
            let client = Client::new(&account.endpoint, &config.timeouts, &node)?;
            let signer = Signer {
                secret_id: account.secret_id,
                secret_key: account.secret_key,
                uid: account.uid,
                validity: config.signature_validity,
            };
            let name = account.name;
            let account = Account {
                name: name.clone(),
                client,
                signer,
            };
            by_name.insert(name, Arc::new(account));
        }
        let by_origin = config
            .watch
            .iter()
            // Keyed as rows record their origin: the watch folder's canonical path.
            .map(|w| (w.folder(), config.account_of(w).name))
            .collect();
        Ok(Accounts {
            by_name,
            by_origin,
            default: config.default_account().name,
        })
    }

    /// The account a row goes to: the one it names, else its watch's, else the top-level one.
    /// `Err` with the name when the row names an account the config no longer has.
    fn of(&self, record: &FileRecord) -> Result<Arc<Account>, AccountName> {
        let name = record.account.clone().unwrap_or_else(|| {
            let origin = record.origin.as_ref();
            origin
                .and_then(|o| self.by_origin.get(o))
                .unwrap_or(&self.default)
                .clone()
        });
        self.by_name.get(&name).cloned().ok_or(name)
    }
}

/// One lock per upload, a content (fileSha) for an account: two copies of the same content for
/// the same account never upload at once, so the second one finds the first finished and
/// completes by instant upload. The same content for two accounts is two uploads, to two apps:
/// they go on side by side.
#[derive(Default)]
struct ContentLocks {
    locks: std::sync::Mutex<HashMap<UploadKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// An upload: the account and the fileSha.
type UploadKey = (AccountName, String);

/// Held while a content uploads; the map entry goes when the last holder or waiter is done.
struct ContentGuard<'a> {
    locks: &'a ContentLocks,
    key: UploadKey,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl ContentLocks {
    async fn lock(&self, account: &AccountName, sha: &str) -> ContentGuard<'_> {
        let key = (account.clone(), sha.to_owned());
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(key.clone()).or_default().clone()
        };
        ContentGuard {
            locks: self,
            key,
            guard: Some(lock.lock_owned().await),
        }
    }
}

impl Drop for ContentGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.locks.locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("part_size", &self.inner.part_size)
            .field("parts_in_flight", &self.inner.window.limit())
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
        Ok(Engine {
            inner: Arc::new(Inner {
                accounts: Accounts::new(config)?,
                holder: Holder::new(ledger.clone(), crate::ledger::Lease::of(config)),
                ledger,
                part_size: config.part_size().unwrap_or(PartSize::OneMiB),
                retry: config.retry.clone(),
                window: match config.parts_in_flight {
                    PartsInFlight::Fixed(n) => window::Window::fixed(n),
                    PartsInFlight::Auto => window::Window::auto(config.max_parts_in_flight),
                },
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

    /// The names of the accounts this engine can sign for, in order.
    pub fn account_names(&self) -> Vec<String> {
        let mut names: Vec<String> = (self.inner.accounts.by_name.keys())
            .map(|n| n.as_str().to_owned())
            .collect();
        names.sort();
        names
    }

    /// This node's claims, kept alive by [`Holder::renew`] (which the caller runs).
    pub fn holder(&self) -> &Arc<Holder> {
        &self.inner.holder
    }

    /// Take the file `key` of the ledger for this node, upload it, and let it go: `vodup upload`.
    /// A file another node holds a live claim on is not touched ([`EngineError::HeldElsewhere`]).
    /// `cancel` stops it taking new parts; parts already in flight finish (the caller bounds that
    /// with its deadline). Only ledger trouble is an `Err`: everything that happens to the file is
    /// in the [`Outcome`] and the ledger.
    pub async fn upload(
        &self,
        key: FileKey,
        cancel: &CancellationToken,
    ) -> Result<Outcome, EngineError> {
        let (ledger, holder) = (&self.inner.ledger, &self.inner.holder);
        let (claim, record) = match ledger.claim(key, holder.lease()).await? {
            Some(taken) => taken,
            None if ledger.file(key).await?.is_none() => return Err(EngineError::UnknownFile(key)),
            None => return Err(EngineError::HeldElsewhere(key)),
        };
        let held = holder.hold(claim);
        // Lost to another node: the journey is dropped where it stands.
        let lost = held.lost().clone();
        let outcome = lost
            .run_until_cancelled(self.upload_claimed(held.claim, record, cancel))
            .await;
        let outcome = match outcome {
            Some(outcome) if !lost.is_cancelled() => outcome?,
            _ => Outcome::TakenOver,
        };
        if outcome != Outcome::TakenOver {
            ledger.release(held.claim).await?;
        }
        Ok(outcome)
    }

    /// Upload a file this node holds `claim` on, `record` as read when it was claimed (the
    /// caller keeps the claim alive and releases it).
    pub async fn upload_claimed(
        &self,
        claim: Claim,
        record: FileRecord,
        cancel: &CancellationToken,
    ) -> Result<Outcome, EngineError> {
        let started = std::time::Instant::now();
        let outcome = file::upload(&self.inner, claim, record, cancel).await?;
        if let Outcome::Done(done) = &outcome {
            let metrics = &self.inner.metrics;
            metrics.file_done(done.instant, started.elapsed().as_secs_f64());
        }
        Ok(outcome)
    }
}
