//! The SQLite ledger: one host, embedded, the default. Its methods are blocking; async callers
//! reach them through [`super::Ledger`], which runs each call on the ledger's own thread
//! ([`Worker`]). Each method is one transaction, or one savepoint of a batch the ledger thread
//! commits at once.
//!
//! This file opens the ledger, checks claims, and owns each content's part hashes, signature and
//! confirmed parts; the `files` table (file versions, their states and claims) is `files.rs`, hook
//! deliveries `hooks.rs`, forgetting old rows `retention.rs`, the schema `migrate.rs`.

mod claims;
mod files;
mod hooks;
mod migrate;
mod retention;
mod worker;

pub use worker::Worker;

use super::row::{self, path_bytes};
use super::{Claim, FileKey, FileState, LedgerError, Result, Upload};
use crate::clock::unix_now_i64;
use crate::ledger::BackendError;
use crate::protocol::Signature;
use rusqlite::{
    params, Connection, OptionalExtension, Savepoint, Transaction, TransactionBehavior,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// A handle on the SQLite ledger; cheap to clone.
#[derive(Debug, Clone)]
pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
    /// Set while the ledger thread's open batch will commit with `synchronous=FULL`.
    durable_batch: Arc<AtomicBool>,
}

impl rusqlite::ToSql for FileKey {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

impl rusqlite::types::FromSql for FileKey {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        i64::column_result(value).map(FileKey)
    }
}

/// One method's write: a transaction of its own, or, inside a batch the ledger thread opened
/// ([`Sqlite::begin_batch`]), a savepoint of the batch's transaction, committed with the batch.
/// Dropped uncommitted, it rolls back (the savepoint only: the batch's other writes stand).
enum Write<'c> {
    Own(Transaction<'c>),
    InBatch(Savepoint<'c>),
}

impl std::ops::Deref for Write<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self {
            Write::Own(tx) => tx,
            Write::InBatch(savepoint) => savepoint,
        }
    }
}

impl Write<'_> {
    fn commit(self) -> rusqlite::Result<()> {
        match self {
            Write::Own(tx) => tx.commit(),
            Write::InBatch(savepoint) => savepoint.commit(),
        }
    }
}

/// Begin a write: with `behavior` on its own, or as a savepoint inside the ledger thread's batch.
fn begin(conn: &mut Connection, behavior: TransactionBehavior) -> Result<Write<'_>> {
    Ok(if conn.is_autocommit() {
        Write::Own(conn.transaction_with_behavior(behavior)?)
    } else {
        Write::InBatch(conn.savepoint()?)
    })
}

/// Begin a write under `claim`: an immediate transaction (SQLite has one writer, so nothing can
/// take the file over until it ends) in which the file still carries the claim's epoch. Refused
/// with [`LedgerError::Fenced`] otherwise.
fn claimed(conn: &mut Connection, claim: Claim) -> Result<Write<'_>> {
    let tx = begin(conn, TransactionBehavior::Immediate)?;
    let epoch: Option<i64> = query_one(
        &tx,
        "SELECT epoch FROM files WHERE id = ?1",
        [claim.key],
        |r| r.get(0),
    )
    .optional()?;
    if epoch != Some(claim.epoch) {
        return Err(LedgerError::Fenced { key: claim.key });
    }
    Ok(tx)
}

/// The signature stored for the account's upload of a content, if any.
fn stored_signature(conn: &Connection, account: &str, sha: &str) -> Result<Option<Signature>> {
    Ok(query_one(
        conn,
        "SELECT signature, signature_expires FROM uploads WHERE account = ?1 AND file_sha = ?2 \
         AND signature IS NOT NULL",
        [account, sha],
        |r| {
            Ok(Signature {
                encoded: r.get("signature")?,
                expires_at: r.get("signature_expires")?,
            })
        },
    )
    .optional()?)
}

/// `execute` through the connection's statement cache: each statement is parsed once.
fn exec<P: rusqlite::Params>(conn: &Connection, sql: &str, params: P) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// `query_row` through the connection's statement cache.
fn query_one<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, row)
}

impl Sqlite {
    /// Open (creating if needed) and migrate. WAL, `synchronous=NORMAL`, foreign keys, a busy
    /// timeout so a `vodup status` beside the daemon waits instead of failing.
    pub fn open(path: &Path) -> Result<Sqlite> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let open_err = |source| BackendError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        // Every statement the ledger runs stays parsed (there are a few dozen).
        conn.set_prepared_statement_cache_capacity(128);
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(open_err)?;
        // A new ledger can give the pages of forgotten rows back ([`Sqlite::give_back_space`]);
        // an existing one keeps the mode it was made with until it is rebuilt.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        let schema_err = |message| BackendError::Schema {
            path: path.to_owned(),
            message,
        };
        migrate::migrate(&mut conn)
            .map_err(open_err)?
            .map_err(schema_err)?;
        let select = format!("SELECT {} FROM files f", files::FILE_COLUMNS);
        let stmt = conn.prepare(&select).map_err(open_err)?;
        row::check_order(stmt.column_names(), ["path", "origin"]).map_err(schema_err)?;
        drop(stmt);
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
            durable_batch: Arc::default(),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the connection is inside a transaction (a batch, or a call's own).
    pub(super) fn in_transaction(&self) -> bool {
        !self.conn().is_autocommit()
    }

    /// Make sure no transaction is left open on the connection (rolled back if one is); an
    /// error if one stays open, and then no call may be told its write is recorded.
    pub(super) fn idle(&self) -> Result<()> {
        let conn = self.conn();
        if !conn.is_autocommit() {
            conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }

    /// Open a batch: one immediate transaction that the writes run until [`Sqlite::end_batch`]
    /// join as savepoints, so a burst of writes costs one commit. `durable`: the batch holds a
    /// write that must survive a power cut (an after-upload intent), so it commits with
    /// `synchronous=FULL` (which SQLite lets change only outside a transaction).
    pub(super) fn begin_batch(&self, durable: bool) -> Result<()> {
        let conn = self.conn();
        if durable {
            conn.pragma_update(None, "synchronous", "FULL")?;
        }
        let begun = conn.execute_batch("BEGIN IMMEDIATE");
        if begun.is_err() && durable {
            // The calls then run one by one, each setting what it needs.
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        begun?;
        self.durable_batch.store(durable, Ordering::SeqCst);
        Ok(())
    }

    /// Commit the batch (rolled back if that fails), and go back to `synchronous=NORMAL`. An
    /// error if the batch's transaction is gone already (SQLite rolls a transaction back by
    /// itself on some errors, such as a full disk): none of its writes is recorded then.
    pub(super) fn end_batch(&self, durable: bool) -> Result<()> {
        let conn = self.conn();
        self.durable_batch.store(false, Ordering::SeqCst);
        let committed = if conn.is_autocommit() {
            Err(
                BackendError::Task("the batch's transaction was rolled back by SQLite".into())
                    .into(),
            )
        } else {
            conn.execute_batch("COMMIT").map_err(LedgerError::from)
        };
        if committed.is_err() && !conn.is_autocommit() {
            if let Err(e) = conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "the ledger's batch could not be rolled back");
            }
        }
        if durable {
            if let Err(e) = conn.pragma_update(None, "synchronous", "NORMAL") {
                tracing::warn!(error = %e, "the ledger stays at synchronous=FULL");
            }
        }
        committed
    }

    /// Whether the open batch commits with `synchronous=FULL`.
    fn batch_is_durable(&self) -> bool {
        self.durable_batch.load(Ordering::SeqCst)
    }

    /// See [`crate::ledger::Ledger::record_hash`].
    pub fn record_hash(
        &self,
        claim: Claim,
        upload: &Upload,
        md5s: &[String],
        ctime_ns: Option<i64>,
    ) -> Result<Option<Signature>> {
        let (sha, part_size) = (upload.sha.as_str(), upload.part_size);
        let mut conn = self.conn();
        let tx = claimed(&mut conn, claim)?;
        exec(
            &tx,
            "UPDATE files SET file_sha = ?2, part_size = ?3, updated_at = ?4, hashed_ctime_ns = ?5 \
             WHERE id = ?1",
            params![claim.key, sha, part_size, unix_now_i64(), ctime_ns],
        )?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO part_hashes (file_sha, part_size, offset, md5) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (i, md5) in md5s.iter().enumerate() {
                insert.execute(params![sha, part_size, i as u64 * part_size, md5])?;
            }
        }
        let signature = stored_signature(&tx, &upload.account, sha)?;
        tx.commit()?;
        Ok(signature)
    }

    /// The stored part MD5s of a content at a part size, in offset order, if a pass stored them.
    pub fn part_md5s(
        &self,
        sha: &str,
        part_size: u64,
        parts: usize,
    ) -> Result<Option<Vec<String>>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT md5 FROM part_hashes WHERE file_sha = ?1 AND part_size = ?2 ORDER BY offset",
        )?;
        let md5s: Vec<String> = stmt
            .query_map(params![sha, part_size], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok((md5s.len() == parts).then_some(md5s))
    }

    /// The signature of a content's upload to an account, if one was stored.
    pub fn signature(&self, account: &str, sha: &str) -> Result<Option<Signature>> {
        stored_signature(&self.conn(), account, sha)
    }

    pub fn store_signature(
        &self,
        claim: Claim,
        upload: &Upload,
        signature: &Signature,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = claimed(&mut conn, claim)?;
        upsert_signature(&tx, upload, signature)?;
        tx.commit()?;
        Ok(())
    }

    /// Offsets the account's service confirmed for a content.
    pub fn confirmed(&self, account: &str, sha: &str) -> Result<BTreeSet<u64>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT offset FROM confirmed_parts WHERE account = ?1 AND file_sha = ?2",
        )?;
        let offsets = stmt
            .query_map([account, sha], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(offsets)
    }

    /// Bytes of a content confirmed at or after `since` (Unix seconds): the recent upload speed.
    pub fn confirmed_since(&self, account: &str, sha: &str, since: i64) -> Result<u64> {
        Ok(query_one(
            &self.conn(),
            "SELECT COALESCE(SUM(len), 0) FROM confirmed_parts WHERE account = ?1 AND file_sha = ?2 \
             AND confirmed_at >= ?3",
            params![account, sha, since],
            |r| r.get(0),
        )?)
    }

    /// Record parts the account's service answered code 0 for. Call it only then.
    pub fn confirm_parts(
        &self,
        claim: Claim,
        upload: &Upload,
        parts: &[(u64, u64)],
        then: Option<FileState>,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = claimed(&mut conn, claim)?;
        insert_confirmed(&tx, upload, parts)?;
        if let Some(state) = then {
            exec(
                &tx,
                "UPDATE files SET state = ?2, updated_at = ?3 WHERE id = ?1",
                params![claim.key, state.as_str(), unix_now_i64()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Make the confirmed parts of a content exactly the ones the service listed: the service is
    /// the truth. Parts it lacks are forgotten (and will be re-sent); parts it holds are recorded.
    pub fn reconcile(
        &self,
        claim: Claim,
        upload: &Upload,
        held: &[(u64, u64)],
        signature: Option<&Signature>,
    ) -> Result<BTreeSet<u64>> {
        let mut conn = self.conn();
        let tx = claimed(&mut conn, claim)?;
        if let Some(signature) = signature {
            upsert_signature(&tx, upload, signature)?;
        }
        exec(
            &tx,
            "DELETE FROM confirmed_parts WHERE account = ?1 AND file_sha = ?2",
            [&upload.account, &upload.sha],
        )?;
        insert_confirmed(&tx, upload, held)?;
        exec(
            &tx,
            "UPDATE files SET state = 'uploading', updated_at = ?2 WHERE id = ?1",
            params![claim.key, unix_now_i64()],
        )?;
        tx.commit()?;
        Ok(held.iter().map(|(offset, _)| *offset).collect())
    }
}

/// Store the signature of the account's upload of a content (creating the upload's row).
fn upsert_signature(tx: &Connection, upload: &Upload, signature: &Signature) -> Result<()> {
    exec(
        tx,
        "INSERT INTO uploads (account, file_sha, size, part_size, signature, signature_expires) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (account, file_sha) DO UPDATE SET signature = ?5, signature_expires = ?6",
        params![
            upload.account,
            upload.sha,
            upload.size,
            upload.part_size,
            signature.encoded,
            signature.expires_at
        ],
    )?;
    Ok(())
}

fn insert_confirmed(tx: &Connection, upload: &Upload, parts: &[(u64, u64)]) -> Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO confirmed_parts (account, file_sha, offset, len, confirmed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let t = unix_now_i64();
    for (offset, len) in parts {
        insert.execute(params![upload.account, upload.sha, offset, len, t])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
