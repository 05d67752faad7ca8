//! The ledger: what vodup knows of every file version (its state, error, file id and URL, the
//! after-upload intent, the node that holds it), each content's part hashes, signature and
//! confirmed parts, and the hook deliveries. [`Ledger`] is the one handle callers hold, over
//! SQLite ([`Sqlite`], one host) or PostgreSQL ([`Postgres`], a fleet), with one contract that
//! `tests/it/ledger_contract/` holds both to. Not when a file is complete, nor what is sent.
//!
//! Every backend keeps two invariants: an offset is confirmed only after the service confirmed
//! it, and every write under a [`Claim`] is refused ([`LedgerError::Fenced`]) once another node
//! took the file over.

mod claimed;
mod error;
mod postgres;
mod reads;
mod record;
mod row;
mod sqlite;
mod writes;

pub use error::{BackendError, LedgerError, Result};
pub use postgres::{Postgres, SchemaState};
pub use record::{
    instance, Claim, Delivery, DisposalFailed, Disposed, FileIdentity, FileKey, FileRecord,
    FileState, FileVersion, Forgetting, Health, HookKind, Inode, Lease, Listing, NewDelivery,
    NewFile, NodeInfo, NodeStart, RecordedError, Upload, Wanted, WatchRoot,
};
pub use sqlite::Sqlite;
use sqlite::Worker;

use crate::config::{Config, LedgerLocation};
use std::path::Path;

/// The ledger; cheap to clone, shared by every task.
#[derive(Debug, Clone)]
pub struct Ledger {
    store: Store,
}

#[derive(Debug, Clone)]
enum Store {
    Sqlite(Worker),
    Postgres(Postgres),
}

/// A [`Listing`] that can go to the SQLite thread.
struct OwnedListing {
    open: Option<bool>,
    states: Vec<FileState>,
    since: Option<i64>,
    watch: Option<WatchRoot>,
    before: Option<FileKey>,
    limit: usize,
}

impl OwnedListing {
    fn of(l: &Listing<'_>) -> OwnedListing {
        OwnedListing {
            open: l.open,
            states: l.states.to_vec(),
            since: l.since,
            watch: l.watch.cloned(),
            before: l.before,
            limit: l.limit,
        }
    }

    fn listing(&self) -> Listing<'_> {
        Listing {
            open: self.open,
            states: &self.states,
            since: self.since,
            watch: self.watch.as_ref(),
            before: self.before,
            limit: self.limit,
        }
    }
}

impl Ledger {
    /// One call of either backend: SQLite's on its thread, PostgreSQL's awaited.
    async fn either<T: Send + 'static>(
        &self,
        sqlite: impl FnOnce(&Sqlite) -> Result<T> + Send + 'static,
        postgres: impl AsyncFnOnce(&Postgres) -> Result<T>,
    ) -> Result<T> {
        match &self.store {
            Store::Sqlite(worker) => worker.run(sqlite).await,
            Store::Postgres(p) => postgres(p).await,
        }
    }

    /// Open (creating if needed) and migrate the SQLite ledger at `path`.
    pub fn open(path: &Path) -> Result<Ledger> {
        Ok(Ledger::from(Sqlite::open(path)?))
    }

    /// Open the ledger the config names: the SQLite file (created if needed), or the PostgreSQL
    /// database (its schema migrated, once however many nodes start together), which is told
    /// this host's watch folders.
    pub async fn connect(config: &Config) -> Result<Ledger> {
        match &config.ledger {
            LedgerLocation::Sqlite(path) => Ledger::open(path),
            LedgerLocation::Postgres(url) => {
                let ledger = Ledger::from(Postgres::open(url).await?);
                let roots: Vec<WatchRoot> = config.watch.iter().map(WatchRoot::of).collect();
                ledger.know_watches(&roots);
                Ok(ledger)
            }
        }
    }

    /// This host's watch folders (name, canonical path), replacing the ones known before: the
    /// PostgreSQL ledger keys a watch's files on its name and their path in its folder, and
    /// shows them under this host's folder. Call it at start and after a reload. SQLite stores
    /// whole paths and needs none.
    pub fn know_watches(&self, roots: &[WatchRoot]) {
        match &self.store {
            Store::Sqlite(_) => {}
            Store::Postgres(p) => p.know_watches(roots),
        }
    }
}

impl From<Sqlite> for Ledger {
    fn from(s: Sqlite) -> Ledger {
        Ledger {
            store: Store::Sqlite(Worker::start(s)),
        }
    }
}

impl From<Postgres> for Ledger {
    fn from(p: Postgres) -> Ledger {
        Ledger {
            store: Store::Postgres(p),
        }
    }
}
