//! The PostgreSQL ledger: one database shared by a fleet. This file opens the pool (which
//! reconnects after a server restart), migrates and maps paths; the `files` table is `files.rs`,
//! listings `listing.rs`, a content's hashes and parts `content.rs`, claims `claims.rs`, hook
//! deliveries `hooks.rs`, forgetting old rows `retention.rs`. Where it differs from SQLite (see
//! `migrations/postgres/`): files of a watch are keyed on the watch's name and their path in its
//! folder, since hosts mount it at different paths; leases are judged by the server's clock; claims
//! skip rows another node is taking; a write under a claim is one statement that carries the
//! claim's epoch in its own `WHERE` ([`Postgres::fenced`]).

mod claims;
mod content;
mod files;
mod hooks;
mod listing;
mod migrate;
mod retention;
mod tls;

pub use migrate::SchemaState;

use super::row::{self, path_bytes, path_from, unsigned};
use super::{Claim, FileState, LedgerError, Result, Upload, WatchRoot};
use crate::clock::unix_now_i64;
use crate::config::PostgresUrl;
use crate::ledger::BackendError;
use crate::protocol::Signature;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Connections at most: a node runs a few files at a time, each writing now and then.
const POOL_SIZE: usize = 12;
/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a transaction may sit idle, or wait for a row lock, before the server ends it.
const STUCK: Duration = Duration::from_secs(2);
/// How long a call may wait for a connection of the pool before it fails (and is retried).
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The server's clock, in whole Unix seconds: what leases are judged by.
const NOW: &str = "floor(extract(epoch FROM now()))::bigint";

/// A handle on the PostgreSQL ledger; cheap to clone (clones share the pool and the watches).
#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
    /// The URL without its password, for errors.
    url: String,
    /// This host's watch folders by name (canonical paths).
    roots: Arc<RwLock<HashMap<String, PathBuf>>>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").field("url", &self.url).finish()
    }
}

impl Postgres {
    /// Connect to the database at `url` and bring its schema up to date (once, however many
    /// nodes start at the same moment). A schema newer than this binary is refused.
    pub async fn open(url: &PostgresUrl) -> Result<Postgres> {
        let ledger = Postgres::connect(url)?;
        let mut client = ledger
            .pool
            .get()
            .await
            .map_err(|source| ledger.unreachable(source))?;
        let schema_err = |message| BackendError::PostgresSchema {
            url: ledger.url.clone(),
            message,
        };
        migrate::migrate(&mut client).await?.map_err(schema_err)?;
        let select = format!("SELECT {} FROM files f", files::FILE_COLUMNS);
        let stmt = client.prepare(&select).await?;
        let names = stmt.columns().iter().map(|c| c.name());
        row::check_order(names, ["watch", "rel"]).map_err(schema_err)?;
        Ok(ledger)
    }

    /// A pool of connections to `url`, opened as calls need them (nothing is checked here, and
    /// the schema is not migrated: see [`Postgres::open`]).
    pub fn connect(url: &PostgresUrl) -> Result<Postgres> {
        let shown = url.as_str().to_owned();
        let mut config: tokio_postgres::Config =
            url.for_driver()
                .parse()
                .map_err(|source| BackendError::PostgresUrl {
                    url: shown.clone(),
                    source,
                })?;
        config.ssl_mode(tls::ssl_mode(url.tls()));
        let clear = url.tls().mode == crate::config::TlsMode::Disable;
        if clear && !url.tls().local {
            tracing::warn!(ledger = %shown, "sslmode=disable: the ledger's traffic (its password included) crosses the network in clear text");
        }
        if let Some(password) = url.password() {
            config.password(password.reveal());
        }
        // The URL's own settings (`?connect_timeout=5&application_name=...`) win.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("vodup");
        }
        bound_stuck_sessions(&mut config);
        let recycling = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        // Clear text needs no connector (and a Unix socket has no host name to check).
        let manager = if clear {
            Manager::from_config(config, tokio_postgres::NoTls, recycling())
        } else {
            let connector =
                tls::connector(url.tls()).map_err(|message| BackendError::PostgresSchema {
                    url: shown.clone(),
                    message,
                })?;
            Manager::from_config(config, connector, recycling())
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(WAIT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| BackendError::PostgresPool(e.to_string()))?;
        Ok(Postgres {
            pool,
            url: shown,
            roots: Arc::default(),
        })
    }

    /// The server's version (`SHOW server_version`).
    pub async fn server_version(&self) -> Result<String> {
        let client = self.pool.get().await.map_err(|e| self.unreachable(e))?;
        let row = client.query_one("SHOW server_version", &[]).await?;
        Ok(row.try_get("server_version")?)
    }

    /// Whether this connection to the server is encrypted (`pg_stat_ssl`), and with what.
    pub async fn encryption(&self) -> Result<Option<String>> {
        let client = self.pool.get().await.map_err(|e| self.unreachable(e))?;
        let row = client
            .query_one(
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await?;
        let ssl: bool = row.try_get("ssl")?;
        Ok(ssl.then(|| {
            row.try_get::<_, Option<String>>("version")
                .ok()
                .flatten()
                .unwrap_or_default()
        }))
    }

    /// How far the database's schema is from this binary's, without migrating.
    pub async fn schema(&self) -> Result<SchemaState> {
        let client = self.pool.get().await.map_err(|e| self.unreachable(e))?;
        Ok(migrate::state(&**client).await?)
    }

    /// This host's watch folders (name and canonical path), replacing the ones it knew: rows of
    /// these watches are shown under these folders.
    pub fn know_watches(&self, roots: &[WatchRoot]) {
        let known = roots
            .iter()
            .map(|r| (r.name.clone(), r.path.clone()))
            .collect();
        *self.roots.write().unwrap_or_else(|p| p.into_inner()) = known;
    }

    fn unreachable(&self, source: deadpool_postgres::PoolError) -> LedgerError {
        BackendError::Unreachable {
            url: self.url.clone(),
            source,
        }
        .into()
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }

    /// Run `sql`, one write under `claim`, in one round trip. The statement carries its own
    /// fence: `$1` is the file's key and `$2` the claim's epoch, both in the `WHERE` of the files
    /// row it writes or locks (`FOR UPDATE`), and whatever else it writes is joined to that row.
    /// The row lock orders it with a takeover, which re-checks the epoch if one committed
    /// meanwhile. Its rows; none means nothing was written, which is refused as
    /// [`LedgerError::Fenced`] unless the row still carries the epoch (a condition of the write's
    /// own did not hold: a file already disposed of, say).
    async fn fenced(
        &self,
        claim: Claim,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await?;
        let rows = client.query(&stmt, params).await?;
        if rows.is_empty() {
            let epoch = client
                .prepare_cached("SELECT epoch FROM files WHERE id = $1")
                .await?;
            let now = client.query_opt(&epoch, &[&claim.key.0]).await?;
            let epoch: Option<i64> = now.map(|r| r.try_get("epoch")).transpose()?;
            if epoch != Some(claim.epoch) {
                return Err(LedgerError::Fenced { key: claim.key });
            }
        }
        Ok(rows)
    }

    /// The watch folders to show rows under: the known ones, and `extra` (the roots a call was
    /// given: they are this host's too).
    fn roots(&self, extra: &[WatchRoot]) -> HashMap<String, PathBuf> {
        let mut roots = self.roots.read().unwrap_or_else(|p| p.into_inner()).clone();
        for root in extra {
            roots.insert(root.name.clone(), root.path.clone());
        }
        roots
    }

    /// The (watch, rel) keys `path` may be stored under as a watch's file: its path in each
    /// known watch folder that holds it, as `(names, rels)`. (As a `vodup upload` row it is
    /// stored under no watch and the absolute path.)
    fn keys_of(&self, path: &Path) -> (Vec<String>, Vec<Vec<u8>>) {
        let roots = self.roots.read().unwrap_or_else(|p| p.into_inner());
        roots
            .iter()
            .filter_map(|(name, root)| {
                let rel = path.strip_prefix(root).ok()?;
                (!rel.as_os_str().is_empty()).then(|| (name.clone(), path_bytes(rel).to_vec()))
            })
            .unzip()
    }
}

/// A count or size as PostgreSQL's BIGINT (the ledger's numbers are far below 2^63).
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What every connection of the pool is told, besides the URL's own settings.
fn bound_stuck_sessions(config: &mut tokio_postgres::Config) {
    // A node frozen (or cut off) in the middle of a transaction would keep its rows locked,
    // and `FOR UPDATE SKIP LOCKED` would skip its files for as long: the server ends such a
    // transaction after STUCK, below the least lease (3 s), and a claim waits on a row lock
    // no longer than that. Keepalives find a dead host's connection.
    let stuck = STUCK.as_millis();
    let mut options = config.get_options().unwrap_or_default().to_owned();
    options.push_str(&format!(
        " -c idle_in_transaction_session_timeout={stuck} -c lock_timeout={stuck}"
    ));
    config.options(options.trim_start());
    config.keepalives(true).keepalives_idle(STUCK);
}

#[cfg(test)]
mod tests;
