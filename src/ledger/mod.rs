//! The ledger: the one place with SQL. It remembers every file version vodup has seen, its state,
//! its last error, the service's file id and URL, the part MD5s of each content and the parts the
//! service confirmed. Each method is one transaction. Signatures and confirmed parts belong to an
//! upload, which is a content (fileSha) *for an account*: the same content sent to two apps is
//! two uploads. Part hashes describe the content alone.
//!
//! The invariant that makes resume safe: an offset is written to `confirmed_parts` only after the
//! service confirmed that part ([`Ledger::confirm_part`] after a code 0, [`Ledger::reconcile`] from
//! a resume list). Nothing else writes there.
//!
//! Methods are blocking (SQLite); async code calls them through [`Ledger::run`], which moves the call
//! to the blocking pool.
//!
//! This file opens the ledger and owns each content's part hashes, signature and confirmed parts;
//! the `files` table (file versions and their states) is `files.rs`, hook deliveries `hooks.rs`,
//! the schema `migrate.rs`, the domain types callers see `record.rs`.

mod files;
mod hooks;
mod migrate;
mod record;

pub use hooks::{Delivery, HookKind, NewDelivery};
pub use record::{
    FileIdentity, FileKey, FileRecord, FileState, FileVersion, Inode, NewFile, RecordedError,
};

use crate::clock::unix_now_i64;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot open ledger {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("ledger {path}: {message}")]
    Schema { path: PathBuf, message: String },
    #[error("ledger: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("ledger: the blocking task was lost: {0}")]
    Task(String),
}

type Result<T> = std::result::Result<T, LedgerError>;

/// A handle on the ledger; cheap to clone, shared by every task.
#[derive(Debug, Clone)]
pub struct Ledger {
    conn: Arc<Mutex<Connection>>,
}

/// A path as the ledger stores it: the bytes of the name, lossless (UTF-8 or not).
fn path_bytes(path: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt as _;
    path.as_os_str().as_bytes()
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

fn path_from(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt as _;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

impl Ledger {
    /// Open (creating if needed) and migrate. WAL, `synchronous=NORMAL`, foreign keys, a busy
    /// timeout so a `vodup status` beside the daemon waits instead of failing.
    pub fn open(path: &Path) -> Result<Ledger> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let open_err = |source| LedgerError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        // Every statement the ledger runs stays parsed (there are a few dozen).
        conn.set_prepared_statement_cache_capacity(128);
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        migrate::migrate(&mut conn)
            .map_err(open_err)?
            .map_err(|message| LedgerError::Schema {
                path: path.to_owned(),
                message,
            })?;
        Ok(Ledger {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run blocking ledger work off the async workers.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Ledger) -> Result<T> + Send + 'static,
    {
        let ledger = self.clone();
        tokio::task::spawn_blocking(move || f(&ledger))
            .await
            .map_err(|e| LedgerError::Task(e.to_string()))?
    }

    /// Store the hashing pass: the file's SHA-1 and part size, and the MD5 of every part.
    pub fn record_hash(
        &self,
        key: FileKey,
        sha: &str,
        part_size: u64,
        md5s: &[String],
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        exec(
            &tx,
            "UPDATE files SET file_sha = ?2, part_size = ?3, updated_at = ?4 WHERE id = ?1",
            params![key, sha, part_size, unix_now_i64()],
        )?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO part_hashes (file_sha, part_size, offset, md5) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (i, md5) in md5s.iter().enumerate() {
                insert.execute(params![sha, part_size, i as u64 * part_size, md5])?;
            }
        }
        tx.commit()?;
        Ok(())
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

    /// The signature of a content's upload to an account, and its expiry, if one was stored.
    pub fn signature(&self, account: &str, sha: &str) -> Result<Option<(String, u64)>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT signature, signature_expires FROM uploads WHERE account = ?1 AND file_sha = ?2 \
                 AND signature IS NOT NULL",
                [account, sha],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    pub fn store_signature(
        &self,
        account: &str,
        sha: &str,
        size: u64,
        part_size: u64,
        signature: &str,
        expires: u64,
    ) -> Result<()> {
        exec(&self.conn(),
            "INSERT INTO uploads (account, file_sha, size, part_size, signature, signature_expires) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (account, file_sha) DO UPDATE SET signature = ?5, signature_expires = ?6",
            params![account, sha, size, part_size, signature, expires],
        )?;
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
        Ok(query_one(&self.conn(),
            "SELECT COALESCE(SUM(len), 0) FROM confirmed_parts WHERE account = ?1 AND file_sha = ?2 \
             AND confirmed_at >= ?3",
            params![account, sha, since],
            |r| r.get(0),
        )?)
    }

    /// Record that the account's service answered code 0 for the part at `offset`. Call it only
    /// then.
    pub fn confirm_part(&self, account: &str, sha: &str, offset: u64, len: u64) -> Result<()> {
        exec(
            &self.conn(),
            "INSERT OR IGNORE INTO confirmed_parts (account, file_sha, offset, len, confirmed_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![account, sha, offset, len, unix_now_i64()],
        )?;
        Ok(())
    }

    /// Make the confirmed parts of a content exactly the ones the service listed: the service is
    /// the truth. Parts it lacks are forgotten (and will be re-sent); parts it holds are recorded.
    pub fn reconcile(&self, account: &str, sha: &str, held: &[(u64, u64)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        exec(
            &tx,
            "DELETE FROM confirmed_parts WHERE account = ?1 AND file_sha = ?2",
            [account, sha],
        )?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO confirmed_parts (account, file_sha, offset, len, confirmed_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let t = unix_now_i64();
            for (offset, len) in held {
                insert.execute(params![account, sha, offset, len, t])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
