//! The ledger: the one place with SQL. It remembers every file version vodup has seen, its state,
//! its last error, the service's file id and URL, the part MD5s of each content and the parts the
//! service confirmed. Each method is one transaction.
//!
//! The invariant that makes resume safe: an offset is written to `confirmed_parts` only after the
//! service confirmed that part ([`Ledger::confirm_part`] after a code 0, [`Ledger::reconcile`] from
//! a resume list). Nothing else writes there.
//!
//! Methods are blocking (SQLite); async code calls them through [`Ledger::run`], which moves the call
//! to the blocking pool.

mod hooks;
mod migrate;
mod record;

pub use hooks::{Delivery, HookKind, NewDelivery};
pub use record::{
    FileIdentity, FileKey, FileRecord, FileState, FileVersion, Inode, NewFile, RecordedError,
};

use crate::config::AfterUpload;
use rusqlite::{params, Connection, OptionalExtension, Row};
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

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

const FILE_COLUMNS: &str = "f.id, f.path, f.size, f.mtime_ns, f.part_size, f.state, f.file_sha, \
     f.origin, f.processing, f.attempts, f.error_code, f.error_message, f.error_desc, f.file_id, \
     f.url, f.instant, f.disposed, f.created_at, f.updated_at, f.finished_at, \
     CASE WHEN f.state = 'done' THEN f.size \
     ELSE (SELECT COALESCE(SUM(c.len), 0) FROM confirmed_parts c WHERE c.file_sha = f.file_sha) END, \
     f.disposal, f.dev, f.ino, f.intent_target, f.intent";

/// The states of rows an upload is owed for, as SQL.
const ACTIVE: &str = "('queued', 'hashing', 'uploading', 'finishing')";

fn file_from_row(row: &Row<'_>) -> rusqlite::Result<FileRecord> {
    let state: String = row.get(5)?;
    let code: Option<i64> = row.get(10)?;
    Ok(FileRecord {
        key: row.get(0)?,
        path: path_from(row.get(1)?),
        size: row.get(2)?,
        mtime_ns: row.get(3)?,
        part_size: row.get(4)?,
        state: FileState::parse(&state).unwrap_or(FileState::Failed),
        file_sha: row.get(6)?,
        origin: row.get::<_, Option<Vec<u8>>>(7)?.map(path_from),
        processing: row.get(8)?,
        attempts: row.get(9)?,
        error: code
            .map(|code| -> rusqlite::Result<RecordedError> {
                Ok(RecordedError {
                    code,
                    message: row.get::<_, Option<String>>(11)?.unwrap_or_default(),
                    code_desc: row.get::<_, Option<String>>(12)?.unwrap_or_default(),
                })
            })
            .transpose()?,
        file_id: row.get(13)?,
        url: row.get(14)?,
        instant: row.get(15)?,
        disposed: row.get(16)?,
        created_at: row.get(17)?,
        updated_at: row.get(18)?,
        finished_at: row.get(19)?,
        confirmed_bytes: row.get(20)?,
        disposal: row.get(21)?,
        inode: match (
            row.get::<_, Option<i64>>(22)?,
            row.get::<_, Option<i64>>(23)?,
        ) {
            (Some(dev), Some(ino)) => Some(Inode {
                dev: dev as u64,
                ino: ino as u64,
            }),
            _ => None,
        },
        intent_target: row.get::<_, Option<Vec<u8>>>(24)?.map(path_from),
        intent: row
            .get::<_, Option<String>>(25)?
            .and_then(|i| AfterUpload::parse(&i)),
    })
}

/// A path as the ledger stores it: the bytes of the name, lossless (UTF-8 or not).
fn path_bytes(path: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt as _;
    path.as_os_str().as_bytes()
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

    /// Record a file version (idempotent on path + size + mtime) and return it as it stands. A
    /// row of this version that had become `waiting`, `superseded` or `gone` is taken again: the
    /// file settled anew at this very version. A new version drops the path's `waiting` rows.
    pub fn enqueue(&self, new: &NewFile<'_>) -> Result<FileRecord> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let t = now();
        let FileIdentity { inode, version } = new.identity;
        let path = path_bytes(new.path);
        tx.prepare_cached(
            "DELETE FROM files WHERE path = ?1 AND state = 'waiting' AND (size != ?2 OR mtime_ns != ?3)",
        )?
        .execute(params![path, version.size, version.mtime_ns])?;
        tx.prepare_cached(
            "INSERT INTO files (path, size, mtime_ns, dev, ino, part_size, state, origin, processing, \
             created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10) \
             ON CONFLICT (path, size, mtime_ns) DO UPDATE SET state = excluded.state, \
             dev = excluded.dev, ino = excluded.ino, error_code = NULL, error_message = NULL, \
             error_desc = NULL, attempts = 0, updated_at = excluded.updated_at \
             WHERE files.state IN ('waiting', 'superseded', 'gone') AND files.state != excluded.state",
        )?
        .execute(params![
            path,
            version.size,
            version.mtime_ns,
            inode.dev as i64,
            inode.ino as i64,
            new.part_size,
            new.state.as_str(),
            new.origin.map(path_bytes),
            new.processing,
            t
        ])?;
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files f WHERE f.path = ?1 AND f.size = ?2 AND f.mtime_ns = ?3"
        );
        let record = tx
            .prepare_cached(&sql)?
            .query_row(params![path, version.size, version.mtime_ns], file_from_row)?;
        tx.commit()?;
        Ok(record)
    }

    pub fn file(&self, key: FileKey) -> Result<Option<FileRecord>> {
        let sql = format!("SELECT {FILE_COLUMNS} FROM files f WHERE f.id = ?1");
        Ok(self
            .conn()
            .query_row(&sql, [key], file_from_row)
            .optional()?)
    }

    /// Every file, newest first.
    pub fn files(&self) -> Result<Vec<FileRecord>> {
        self.select("1 = 1 ORDER BY f.id DESC", [])
    }

    /// Files not done or failed, oldest first: what a start must resume.
    pub fn unfinished(&self) -> Result<Vec<FileRecord>> {
        self.select(&format!("f.state IN {ACTIVE} ORDER BY f.id"), [])
    }

    /// The most recent version of a path, whatever its state.
    pub fn latest_for_path(&self, path: &Path) -> Result<Option<FileRecord>> {
        Ok(self
            .select("f.path = ?1 ORDER BY f.id DESC LIMIT 1", [path_bytes(path)])?
            .into_iter()
            .next())
    }

    /// Done files whose after-upload action has not run yet.
    pub fn undisposed(&self) -> Result<Vec<FileRecord>> {
        self.select(
            "f.state IN ('done', 'failed') AND f.disposed = 0 AND f.origin IS NOT NULL ORDER BY f.id",
            [],
        )
    }

    fn select<P: rusqlite::Params>(&self, filter: &str, params: P) -> Result<Vec<FileRecord>> {
        let sql = format!("SELECT {FILE_COLUMNS} FROM files f WHERE {filter}");
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params, file_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn set_state(&self, key: FileKey, state: FileState) -> Result<()> {
        self.conn().execute(
            "UPDATE files SET state = ?2, updated_at = ?3 WHERE id = ?1",
            params![key, state.as_str(), now()],
        )?;
        Ok(())
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
        tx.execute(
            "UPDATE files SET file_sha = ?2, part_size = ?3, updated_at = ?4 WHERE id = ?1",
            params![key, sha, part_size, now()],
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

    /// The signature of a content and its expiry, if one was stored.
    pub fn signature(&self, sha: &str) -> Result<Option<(String, u64)>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT signature, signature_expires FROM uploads WHERE file_sha = ?1 AND signature IS NOT NULL",
                [sha],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    pub fn store_signature(
        &self,
        sha: &str,
        size: u64,
        part_size: u64,
        signature: &str,
        expires: u64,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO uploads (file_sha, size, part_size, signature, signature_expires) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (file_sha) DO UPDATE SET signature = ?4, signature_expires = ?5",
            params![sha, size, part_size, signature, expires],
        )?;
        Ok(())
    }

    /// Offsets the service confirmed for a content.
    pub fn confirmed(&self, sha: &str) -> Result<BTreeSet<u64>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT offset FROM confirmed_parts WHERE file_sha = ?1")?;
        let offsets = stmt
            .query_map([sha], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(offsets)
    }

    /// Bytes of a content confirmed at or after `since` (Unix seconds): the recent upload speed.
    pub fn confirmed_since(&self, sha: &str, since: i64) -> Result<u64> {
        Ok(self.conn().query_row(
            "SELECT COALESCE(SUM(len), 0) FROM confirmed_parts WHERE file_sha = ?1 AND confirmed_at >= ?2",
            params![sha, since],
            |r| r.get(0),
        )?)
    }

    /// Record that the service answered code 0 for the part at `offset`. Call it only then.
    pub fn confirm_part(&self, sha: &str, offset: u64, len: u64) -> Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO confirmed_parts (file_sha, offset, len, confirmed_at) VALUES (?1, ?2, ?3, ?4)",
            params![sha, offset, len, now()],
        )?;
        Ok(())
    }

    /// Make the confirmed parts of a content exactly the ones the service listed: the service is
    /// the truth. Parts it lacks are forgotten (and will be re-sent); parts it holds are recorded.
    pub fn reconcile(&self, sha: &str, held: &[(u64, u64)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM confirmed_parts WHERE file_sha = ?1", [sha])?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO confirmed_parts (file_sha, offset, len, confirmed_at) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let t = now();
            for (offset, len) in held {
                insert.execute(params![sha, offset, len, t])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The service confirmed the file: record its id and URL, clear the last error, and forget the
    /// content's parts.
    pub fn finish(
        &self,
        key: FileKey,
        file_id: &str,
        url: Option<&str>,
        instant: bool,
    ) -> Result<()> {
        let t = now();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE files SET state = 'done', file_id = ?2, url = ?3, instant = ?4, error_code = NULL, \
             error_message = NULL, error_desc = NULL, updated_at = ?5, finished_at = ?5 WHERE id = ?1",
            params![key, file_id, url, instant, t],
        )?;
        // The service holds the content now: its parts, hashes and signature are not needed
        // again (a copy completes by instant upload), so the ledger does not grow with them.
        for table in ["confirmed_parts", "part_hashes", "uploads"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE file_sha = (SELECT file_sha FROM files WHERE id = ?1)"),
                [key],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Record an error without changing the state (a retry is coming).
    pub fn note_error(&self, key: FileKey, error: &RecordedError) -> Result<()> {
        self.write_error(key, error, None)
    }

    /// The file failed for good with `error`.
    pub fn fail(&self, key: FileKey, error: &RecordedError) -> Result<()> {
        self.write_error(key, error, Some(FileState::Failed))
    }

    fn write_error(&self, key: FileKey, e: &RecordedError, state: Option<FileState>) -> Result<()> {
        self.conn().execute(
            "UPDATE files SET error_code = ?2, error_message = ?3, error_desc = ?4, \
             state = COALESCE(?5, state), updated_at = ?6 WHERE id = ?1 AND state != 'done'",
            params![
                key,
                e.code,
                e.message,
                e.code_desc,
                state.map(FileState::as_str),
                now()
            ],
        )?;
        Ok(())
    }

    /// One more attempt at the file begins.
    pub fn begin_attempt(&self, key: FileKey) -> Result<()> {
        self.conn().execute(
            "UPDATE files SET attempts = attempts + 1, updated_at = ?2 WHERE id = ?1",
            params![key, now()],
        )?;
        Ok(())
    }

    /// This row no longer describes a file to upload (`Superseded` or `Gone`), for `why`. Not a
    /// failure: no failed hook, no failed folder. A row already done keeps its file id and URL.
    pub fn set_aside(&self, key: FileKey, state: FileState, why: &str) -> Result<()> {
        debug_assert!(matches!(state, FileState::Superseded | FileState::Gone));
        self.conn().execute(
            "UPDATE files SET state = ?2, error_code = 0, error_message = ?3, error_desc = NULL, \
             updated_at = ?4 WHERE id = ?1",
            params![key, state.as_str(), why, now()],
        )?;
        Ok(())
    }

    /// Put this failed file back in the queue; whether it was failed.
    pub fn requeue(&self, key: FileKey) -> Result<bool> {
        Ok(self.conn().execute(
            "UPDATE files SET state = 'queued', attempts = 0, disposed = 0, disposal = NULL, intent = NULL, intent_target = NULL, \
             updated_at = ?2 WHERE id = ?1 AND state = 'failed'",
            params![key, now()],
        )? == 1)
    }

    /// Put failed files back in the queue (all of them, or the one at `path`). Only the latest
    /// version of a path is re-queued: older versions no longer exist on disk. Returns how many.
    pub fn requeue_failed(&self, path: Option<&Path>) -> Result<usize> {
        Ok(self.conn().execute(
            "UPDATE files SET state = 'queued', attempts = 0, disposed = 0, disposal = NULL, intent = NULL, intent_target = NULL, \
             updated_at = ?2 WHERE state = 'failed' AND (?1 IS NULL OR path = ?1) \
             AND id = (SELECT MAX(v.id) FROM files v WHERE v.path = files.path)",
            params![path.map(path_bytes), now()],
        )?)
    }

    /// How many files are in each state.
    pub fn count_by_state(&self) -> Result<Vec<(FileState, u64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT state, COUNT(*) FROM files GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
        let mut counts = Vec::new();
        for row in rows {
            let (state, count) = row?;
            if let Some(state) = FileState::parse(&state) {
                counts.push((state, count));
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests;
