//! The ledger: what vodup knows about every file, behind one async boundary that speaks the
//! domain. It remembers every file version seen, its state, last error, the service's file id and
//! URL, the part MD5s of each content, the parts the service confirmed, the after-upload intent
//! and the hook deliveries, and which node holds each file.
//!
//! Two backends: SQLite ([`Sqlite`], embedded, one host; its blocking calls run on the ledger's
//! own thread) and PostgreSQL ([`Postgres`], a fleet of hosts on one shared folder; async, a pool of
//! connections). [`Ledger`] is the one handle callers hold; [`Ledger::connect`] picks the backend
//! from the config's `ledger` value. Every method of the facade dispatches to both, with the same
//! contract.
//!
//! Invariants every backend keeps:
//! - An offset is written to the confirmed parts only after the service confirmed that part
//!   (a code 0, or a resume list). Nothing else writes there.
//! - A file under way is held by one node at a time through a [`Claim`]: taking a file writes the
//!   node, a lease expiry and a new epoch in one statement. Every write for that file takes the
//!   claim and is refused ([`LedgerError::Fenced`]) once the epoch moved on, so a node frozen past
//!   its lease never records, moves or deletes a file another node took over.

mod claimed;
mod error;
mod postgres;
mod reads;
mod record;
mod row;
mod sqlite;
mod writes;

pub use error::{LedgerError, Result};
pub use postgres::{Postgres, SchemaState};
pub use record::{
    instance, Claim, Delivery, DisposalFailed, Disposed, FileIdentity, FileKey, FileRecord,
    FileState, FileVersion, Health, HookKind, Inode, Lease, Listing, NewDelivery, NewFile,
    NodeInfo, NodeStart, RecordedError, Upload, Wanted, WatchRoot,
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
