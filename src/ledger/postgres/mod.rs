//! The PostgreSQL ledger: one database shared by a fleet of hosts watching one shared folder. Its
//! methods are `async` and keep the SQLite backend's contracts (see [`super::Sqlite`]'s doc of each);
//! what differs is written here and in `migrations/postgres/0001_initial.sql`:
//!
//! - A file of a watch is keyed on the watch's name and its path relative to the watch folder,
//!   since hosts may mount the shared folder at different paths. This host's folders
//!   ([`Postgres::know_watches`]) turn a row back into [`FileRecord::path`] and `origin`; a row of
//!   a watch this host does not know has no origin and shows as `<watch name>/<rel>`.
//! - Leases are judged by the database's clock (`now()` of the server), never a host's.
//! - Claims take rows with `FOR UPDATE SKIP LOCKED`, so two nodes claiming at once never get the
//!   same file, and only files of the watches the claiming node has.
//! - Every write under a claim opens its transaction by locking the file's row and checking its
//!   epoch ([`LedgerError::Fenced`] otherwise).
//!
//! Connections come from a pool (deadpool-postgres) that drops a connection the server closed and
//! opens another, so the ledger recovers when PostgreSQL restarts: a call made meanwhile fails,
//! and its caller retries. This file opens the pool, migrates, checks claims, maps paths, and owns
//! each content's part hashes, signature and confirmed parts; the `files` table is `files.rs`,
//! claims `claims.rs`, hook deliveries `hooks.rs`, the schema `migrate.rs`.

mod claims;
mod files;
mod hooks;
mod listing;
mod migrate;
mod tls;

pub use migrate::SchemaState;

use super::row::{self, path_bytes, path_from, unsigned};
use super::{Claim, FileState, LedgerError, Result, Upload, WatchRoot};
use crate::clock::unix_now_i64;
use crate::config::PostgresUrl;
use crate::protocol::Signature;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Transaction};
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
        let schema_err = |message| LedgerError::PostgresSchema {
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
                .map_err(|source| LedgerError::PostgresUrl {
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
                tls::connector(url.tls()).map_err(|message| LedgerError::PostgresSchema {
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
            .map_err(|e| LedgerError::PostgresPool(e.to_string()))?;
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
        LedgerError::Unreachable {
            url: self.url.clone(),
            source,
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
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

    /// Store the hashing pass: the file's SHA-1 and part size, and the MD5 of every part.
    pub async fn record_hash(
        &self,
        claim: Claim,
        sha: &str,
        part_size: u64,
        md5s: &[String],
        ctime_ns: Option<i64>,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = claimed(&mut client, claim).await?;
        let update = tx
            .prepare_cached(
                "UPDATE files SET file_sha = $2, part_size = $3, updated_at = $4, \
                 hashed_ctime_ns = $5 WHERE id = $1",
            )
            .await?;
        let size = int(part_size);
        let now = unix_now_i64();
        tx.execute(&update, &[&claim.key.0, &sha, &size, &now, &ctime_ns])
            .await?;
        let offsets: Vec<i64> = (0..md5s.len()).map(|i| int(i as u64 * part_size)).collect();
        let insert = tx
            .prepare_cached(
                "INSERT INTO part_hashes (file_sha, part_size, \"offset\", md5) \
                 SELECT $1, $2, p.o, p.m FROM unnest($3::bigint[], $4::text[]) AS p(o, m) \
                 ON CONFLICT (file_sha, part_size, \"offset\") DO UPDATE SET md5 = excluded.md5",
            )
            .await?;
        tx.execute(&insert, &[&sha, &size, &offsets, &md5s]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The stored part MD5s of a content at a part size, in offset order, if a pass stored them.
    pub async fn part_md5s(
        &self,
        sha: &str,
        part_size: u64,
        parts: usize,
    ) -> Result<Option<Vec<String>>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT md5 FROM part_hashes WHERE file_sha = $1 AND part_size = $2 \
                 ORDER BY \"offset\"",
            )
            .await?;
        let rows = client.query(&stmt, &[&sha, &int(part_size)]).await?;
        let md5s = rows
            .iter()
            .map(|r| r.try_get("md5"))
            .collect::<std::result::Result<Vec<String>, _>>()?;
        Ok((md5s.len() == parts).then_some(md5s))
    }

    /// The signature of a content's upload to an account, if one was stored.
    pub async fn signature(&self, account: &str, sha: &str) -> Result<Option<Signature>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT signature, signature_expires FROM uploads \
                 WHERE account = $1 AND file_sha = $2 AND signature IS NOT NULL",
            )
            .await?;
        let Some(row) = client.query_opt(&stmt, &[&account, &sha]).await? else {
            return Ok(None);
        };
        Ok(Some(Signature {
            encoded: row.try_get("signature")?,
            expires_at: unsigned(
                row.try_get::<_, Option<i64>>("signature_expires")?
                    .unwrap_or(0),
            ),
        }))
    }

    pub async fn store_signature(
        &self,
        claim: Claim,
        upload: &Upload,
        signature: &Signature,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = claimed(&mut client, claim).await?;
        upsert_signature(&tx, upload, signature).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Offsets the account's service confirmed for a content.
    pub async fn confirmed(&self, account: &str, sha: &str) -> Result<BTreeSet<u64>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT \"offset\" FROM confirmed_parts WHERE account = $1 AND file_sha = $2",
            )
            .await?;
        let rows = client.query(&stmt, &[&account, &sha]).await?;
        rows.iter()
            .map(|r| Ok(unsigned(r.try_get("offset")?)))
            .collect()
    }

    /// Bytes of a content confirmed at or after `since` (Unix seconds): the recent upload speed.
    pub async fn confirmed_since(&self, account: &str, sha: &str, since: i64) -> Result<u64> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT COALESCE(SUM(len), 0)::bigint AS bytes FROM confirmed_parts \
                 WHERE account = $1 AND file_sha = $2 AND confirmed_at >= $3",
            )
            .await?;
        let row = client.query_one(&stmt, &[&account, &sha, &since]).await?;
        Ok(unsigned(row.try_get("bytes")?))
    }

    /// Record parts the account's service answered code 0 for. Call it only then.
    pub async fn confirm_parts(
        &self,
        claim: Claim,
        upload: &Upload,
        parts: &[(u64, u64)],
        then: Option<FileState>,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = claimed(&mut client, claim).await?;
        insert_confirmed(&tx, upload, parts).await?;
        if let Some(state) = then {
            let update = tx
                .prepare_cached("UPDATE files SET state = $2, updated_at = $3 WHERE id = $1")
                .await?;
            tx.execute(&update, &[&claim.key.0, &state.as_str(), &unix_now_i64()])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Make the confirmed parts of a content exactly the ones the service listed: the service is
    /// the truth. Parts it lacks are forgotten (and will be re-sent); parts it holds are recorded.
    /// The file is `uploading` from here; the confirmed offsets.
    pub async fn reconcile(
        &self,
        claim: Claim,
        upload: &Upload,
        held: &[(u64, u64)],
        signature: Option<&Signature>,
    ) -> Result<BTreeSet<u64>> {
        let mut client = self.client().await?;
        let tx = claimed(&mut client, claim).await?;
        if let Some(signature) = signature {
            upsert_signature(&tx, upload, signature).await?;
        }
        let delete = tx
            .prepare_cached("DELETE FROM confirmed_parts WHERE account = $1 AND file_sha = $2")
            .await?;
        tx.execute(&delete, &[&upload.account, &upload.sha]).await?;
        insert_confirmed(&tx, upload, held).await?;
        let uploading = tx
            .prepare_cached("UPDATE files SET state = 'uploading', updated_at = $2 WHERE id = $1")
            .await?;
        tx.execute(&uploading, &[&claim.key.0, &unix_now_i64()])
            .await?;
        tx.commit().await?;
        Ok(held.iter().map(|&(offset, _)| offset).collect())
    }
}

/// Store the signature of the account's upload of a content (creating the upload's row).
async fn upsert_signature(
    tx: &Transaction<'_>,
    upload: &Upload,
    signature: &Signature,
) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO uploads (account, file_sha, size, part_size, signature, \
             signature_expires) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (account, file_sha) DO UPDATE SET signature = excluded.signature, \
             signature_expires = excluded.signature_expires",
        )
        .await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
        &upload.account,
        &upload.sha,
        &int(upload.size),
        &int(upload.part_size),
        &signature.encoded,
        &int(signature.expires_at),
    ];
    tx.execute(&stmt, &params).await?;
    Ok(())
}

/// The parts, in one statement; a part already recorded stays as it was.
async fn insert_confirmed(
    tx: &Transaction<'_>,
    upload: &Upload,
    parts: &[(u64, u64)],
) -> Result<()> {
    let (offsets, lens): (Vec<i64>, Vec<i64>) =
        parts.iter().map(|&(o, l)| (int(o), int(l))).unzip();
    let insert = tx
        .prepare_cached(
            "INSERT INTO confirmed_parts (account, file_sha, \"offset\", len, confirmed_at) \
             SELECT $1, $2, p.o, p.l, $5 FROM unnest($3::bigint[], $4::bigint[]) AS p(o, l) \
             ON CONFLICT DO NOTHING",
        )
        .await?;
    let t = unix_now_i64();
    tx.execute(
        &insert,
        &[&upload.account, &upload.sha, &offsets, &lens, &t],
    )
    .await?;
    Ok(())
}

/// Begin a write under `claim`: a transaction that locks the file's row (no other node can take
/// the file over until it ends) and finds the claim's epoch there. Refused with
/// [`LedgerError::Fenced`] otherwise (the transaction is rolled back).
async fn claimed(client: &mut deadpool_postgres::Object, claim: Claim) -> Result<Transaction<'_>> {
    let tx = client.transaction().await?;
    let lock = tx
        .prepare_cached("SELECT epoch FROM files WHERE id = $1 FOR UPDATE")
        .await?;
    let epoch: Option<i64> = match tx.query_opt(&lock, &[&claim.key.0]).await? {
        Some(row) => Some(row.try_get("epoch")?),
        None => None,
    };
    if epoch != Some(claim.epoch) {
        return Err(LedgerError::Fenced { key: claim.key });
    }
    Ok(tx)
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
