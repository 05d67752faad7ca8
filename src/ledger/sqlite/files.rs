//! The `files` table: one row per file version vodup has seen, its state, last error, the
//! service's file id and URL, the after-upload intent, and its claim. Enqueueing, the queries
//! callers see as [`FileRecord`]s, and every change of a row's state. Not claims (`claims.rs`),
//! the content's parts, hashes and signature (`mod.rs`) nor the hook deliveries (`hooks.rs`).

use super::{begin, claimed, exec, query_one, Sqlite};
use crate::clock::unix_now_i64;
use crate::config::AccountName;
use crate::ledger::row::{self, path_bytes, path_from};
use crate::ledger::{
    Claim, FileIdentity, FileKey, FileRecord, FileState, Health, Listing, NewFile, RecordedError,
    Result,
};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use std::path::Path;

pub(super) const FILE_COLUMNS: &str =
    "f.id, f.path, f.origin, f.size, f.mtime_ns, f.part_size, f.state, f.file_sha, \
     f.processing, f.attempts, f.error_code, f.error_message, f.error_desc, f.file_id, \
     f.url, f.instant, f.disposed, f.created_at, f.updated_at, f.finished_at, \
     CASE WHEN f.state = 'done' THEN f.size \
     ELSE (SELECT COALESCE(SUM(c.len), 0) FROM confirmed_parts c \
           WHERE c.file_sha = f.file_sha AND c.account = f.account) END AS confirmed_bytes, \
     f.disposal, f.dev, f.ino, f.intent_target, f.intent, f.account, f.node, f.lease_until, \
     f.disposal_error, f.disposal_failures, f.disposal_retry_at, f.hashed_ctime_ns";

/// Rows owed work a node may take ([`row::owed`]), as the partial index `files_owed` (migration
/// 0006) has them: the claim walks that index in id order (`INDEXED BY`: left to itself the
/// planner sorts every queued row for each claim), never the done rows.
pub(super) static OWED: row::Built = row::Built::new(|| row::owed("", "origin", "disposed = 0"));

/// A row of [`FILE_COLUMNS`] as a record.
pub(super) fn file_from_row(row: &Row<'_>) -> rusqlite::Result<FileRecord> {
    let path = path_from(row.get(row::LOCATION.0)?);
    let origin: Option<Vec<u8>> = row.get(row::LOCATION.1)?;
    row::file(row, (path, origin.map(path_from)))
}

/// The done row of `identity` (under a path other than `except`, if given).
fn uploaded_as(
    conn: &rusqlite::Connection,
    identity: &FileIdentity,
    except: Option<&[u8]>,
) -> rusqlite::Result<Option<FileRecord>> {
    let sql = format!(
        "SELECT {FILE_COLUMNS} FROM files f WHERE f.dev = ?1 AND f.ino = ?2 AND f.size = ?3 \
         AND f.mtime_ns = ?4 AND f.state = 'done' AND (?5 IS NULL OR f.path != ?5) \
         ORDER BY f.id DESC LIMIT 1"
    );
    let FileIdentity { inode, version } = identity;
    conn.prepare_cached(&sql)?
        .query_row(
            params![
                inode.dev as i64,
                inode.ino as i64,
                version.size,
                version.mtime_ns,
                except
            ],
            file_from_row,
        )
        .optional()
}

impl Sqlite {
    /// Record a file version (idempotent on path + size + mtime) and return it as it stands. A
    /// row of this version that had become `waiting`, `superseded` or `gone` is taken again: the
    /// file settled anew at this very version (its stored hash kept only if it is the same inode).
    /// A new version drops the path's `waiting` rows. A file already uploaded under another path
    /// (moved or renamed within the drop folder after a `keep`, or a hard link) is that upload:
    /// its row is returned and nothing is recorded, so it is neither uploaded nor announced twice.
    pub fn enqueue(&self, new: &NewFile) -> Result<FileRecord> {
        let mut conn = self.conn();
        let tx = begin(&mut conn, TransactionBehavior::Deferred)?;
        let record = enqueue_in(&tx, new, unix_now_i64())?;
        tx.commit()?;
        Ok(record)
    }

    /// [`Sqlite::enqueue`] for several files, in one transaction: a burst of small files costs
    /// one commit, not one each.
    pub fn enqueue_all(&self, new: &[NewFile]) -> Result<Vec<FileRecord>> {
        let mut conn = self.conn();
        let tx = begin(&mut conn, TransactionBehavior::Deferred)?;
        let t = unix_now_i64();
        let records = new
            .iter()
            .map(|new| enqueue_in(&tx, new, t))
            .collect::<Result<Vec<_>>>()?;
        tx.commit()?;
        Ok(records)
    }

    /// The done row of this very file (inode and version), if it was uploaded (under any path).
    pub fn uploaded(&self, identity: &FileIdentity) -> Result<Option<FileRecord>> {
        Ok(uploaded_as(&self.conn(), identity, None)?)
    }

    pub fn file(&self, key: FileKey) -> Result<Option<FileRecord>> {
        let sql = format!("SELECT {FILE_COLUMNS} FROM files f WHERE f.id = ?1");
        Ok(query_one(&self.conn(), &sql, [key], file_from_row).optional()?)
    }

    /// Every file, newest first.
    pub fn files(&self) -> Result<Vec<FileRecord>> {
        self.select("1 = 1 ORDER BY f.id DESC", [])
    }

    /// A page of files, newest first: at most `limit` of those with a key below `before` (all,
    /// without it). The next page is the one before the last key of this one.
    pub fn recent(&self, limit: usize, before: Option<FileKey>) -> Result<Vec<FileRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.select(
            "f.id < ?1 ORDER BY f.id DESC LIMIT ?2",
            params![before.unwrap_or(FileKey(i64::MAX)), limit],
        )
    }

    /// See [`crate::ledger::Ledger::list`].
    pub fn list(&self, listing: &Listing<'_>) -> Result<Vec<FileRecord>> {
        let (filter, mut values) = listing_filter(listing);
        values.push(Value::Integer(
            i64::try_from(listing.limit).unwrap_or(i64::MAX),
        ));
        let limit = values.len();
        self.select(
            &format!("{filter} ORDER BY f.id DESC LIMIT ?{limit}"),
            rusqlite::params_from_iter(values),
        )
    }

    /// See [`crate::ledger::Ledger::count`].
    pub fn count(&self, listing: &Listing<'_>) -> Result<u64> {
        let (filter, values) = listing_filter(&Listing {
            before: None,
            ..listing.clone()
        });
        let sql = format!("SELECT COUNT(*) FROM files f WHERE {filter}");
        Ok(query_one(
            &self.conn(),
            &sql,
            rusqlite::params_from_iter(values),
            |r| r.get(0),
        )?)
    }

    /// The most recent version of a path, whatever its state.
    pub fn latest_for_path(&self, path: &Path) -> Result<Option<FileRecord>> {
        Ok(self
            .select("f.path = ?1 ORDER BY f.id DESC LIMIT 1", [path_bytes(path)])?
            .into_iter()
            .next())
    }

    fn select<P: rusqlite::Params>(&self, filter: &str, params: P) -> Result<Vec<FileRecord>> {
        let sql = format!("SELECT {FILE_COLUMNS} FROM files f WHERE {filter}");
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params, file_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn set_state(&self, claim: Claim, state: FileState) -> Result<()> {
        self.claimed_update(
            claim,
            "UPDATE files SET state = ?2, updated_at = ?3 WHERE id = ?1",
            params![claim.key, state.as_str(), unix_now_i64()],
        )
    }

    /// One statement under `claim`.
    fn claimed_update<P: rusqlite::Params>(
        &self,
        claim: Claim,
        sql: &str,
        params: P,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = claimed(&mut conn, claim)?;
        exec(&tx, sql, params)?;
        tx.commit()?;
        Ok(())
    }

    /// The service confirmed the file: record its id and URL, clear the last error, and forget the
    /// content's parts. The row as it stands then.
    pub fn finish(
        &self,
        claim: Claim,
        file_id: &str,
        url: Option<&str>,
        instant: bool,
    ) -> Result<FileRecord> {
        let (key, t) = (claim.key, unix_now_i64());
        let mut conn = self.conn();
        let tx = claimed(&mut conn, claim)?;
        exec(&tx,
            "UPDATE files SET state = 'done', file_id = ?2, url = ?3, instant = ?4, error_code = NULL, \
             error_message = NULL, error_desc = NULL, updated_at = ?5, finished_at = ?5 WHERE id = ?1",
            params![key, file_id, url, instant, t],
        )?;
        // The account's service holds the content now: its parts, hashes and signature are not
        // needed again (a copy completes by instant upload), so the ledger does not grow with
        // them. Another account's upload of the same content keeps its own.
        for table in ["confirmed_parts", "uploads"] {
            exec(
                &tx,
                &format!(
                    "DELETE FROM {table} WHERE (account, file_sha) = \
                          (SELECT account, file_sha FROM files WHERE id = ?1)"
                ),
                [key],
            )?;
        }
        exec(
            &tx,
            "DELETE FROM part_hashes WHERE file_sha = (SELECT file_sha FROM files WHERE id = ?1)",
            [key],
        )?;
        let select = format!("SELECT {FILE_COLUMNS} FROM files f WHERE f.id = ?1");
        let done = query_one(&tx, &select, [key], file_from_row)?;
        tx.commit()?;
        Ok(done)
    }

    /// Record an error, and the state `Failed` when the file failed for good (else a retry is
    /// coming). A done file keeps its state.
    pub fn write_error(
        &self,
        claim: Claim,
        e: &RecordedError,
        state: Option<FileState>,
    ) -> Result<()> {
        self.claimed_update(
            claim,
            "UPDATE files SET error_code = ?2, error_message = ?3, error_desc = ?4, \
             state = COALESCE(?5, state), updated_at = ?6 WHERE id = ?1 AND state != 'done'",
            params![
                claim.key,
                e.code,
                e.message,
                e.code_desc,
                state.map(FileState::as_str),
                unix_now_i64()
            ],
        )
    }

    /// See [`crate::ledger::Ledger::set_account`].
    pub fn set_account(&self, claim: Claim, account: &AccountName) -> Result<()> {
        self.claimed_update(
            claim,
            "UPDATE files SET account = ?2, updated_at = ?3 WHERE id = ?1",
            params![claim.key, account.as_str(), unix_now_i64()],
        )
    }

    /// This row no longer describes a file to upload (`Superseded` or `Gone`), for `why`. Not a
    /// failure: no failed hook, no failed folder. A row already done keeps its file id and URL.
    pub fn set_aside(&self, claim: Claim, state: FileState, why: &str) -> Result<()> {
        debug_assert!(matches!(state, FileState::Superseded | FileState::Gone));
        self.claimed_update(
            claim,
            "UPDATE files SET state = ?2, error_code = 0, error_message = ?3, error_desc = NULL, \
             updated_at = ?4 WHERE id = ?1",
            params![claim.key, state.as_str(), why, unix_now_i64()],
        )
    }

    /// Put this failed file back in the queue; whether it was failed. Its account is forgotten:
    /// the upload takes its watch's account (or the top-level one) as the config says now.
    pub fn requeue(&self, key: FileKey) -> Result<bool> {
        Ok(exec(&self.conn(),
            "UPDATE files SET state = 'queued', attempts = 0, disposed = 0, disposal = NULL, disposal_error = NULL, disposal_failures = 0, disposal_retry_at = NULL, intent = NULL, intent_target = NULL, account = NULL, \
             updated_at = ?2 WHERE id = ?1 AND state = 'failed' AND (intent IS NULL OR disposed = 1)",
            params![key, unix_now_i64()],
        )? == 1)
    }

    /// Put failed files back in the queue (all of them, or the one at `path`). Only the latest
    /// version of a path is re-queued: older versions no longer exist on disk. Returns how many.
    pub fn requeue_failed(&self, path: Option<&Path>) -> Result<usize> {
        Ok(exec(&self.conn(),
            "UPDATE files SET state = 'queued', attempts = 0, disposed = 0, disposal = NULL, disposal_error = NULL, disposal_failures = 0, disposal_retry_at = NULL, intent = NULL, intent_target = NULL, account = NULL, \
             updated_at = ?2 WHERE state = 'failed' AND (?1 IS NULL OR path = ?1) \
             AND (intent IS NULL OR disposed = 1) \
             AND id = (SELECT MAX(v.id) FROM files v WHERE v.path = files.path)",
            params![path.map(path_bytes), unix_now_i64()],
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

    /// See [`crate::ledger::Ledger::health`].
    pub fn health(&self) -> Result<Health> {
        let sql = format!(
            "SELECT (SELECT COUNT(*) FROM files INDEXED BY files_owed WHERE {OWED} \
                     AND disposal_error IS NOT NULL), \
                    (SELECT MIN(created_at) FROM files WHERE state = 'queued'), \
                    (SELECT MIN(created_at) FROM hook_deliveries \
                     WHERE delivered_at IS NULL AND held = 0)"
        );
        Ok(query_one(&self.conn(), &sql, [], |r| {
            Ok(Health {
                disposals_failing: r.get(0)?,
                oldest_queued_at: r.get(1)?,
                oldest_pending_hook_at: r.get(2)?,
            })
        })?)
    }
}

/// The `WHERE` of a [`Listing`] on `f`, and its parameters (`?1`, `?2`... in order).
fn listing_filter(listing: &Listing<'_>) -> (String, Vec<Value>) {
    let mut filter = vec!["1 = 1".to_owned()];
    let mut values = Vec::new();
    // As keys found by the indexes (`files_state`, `files_owed`): the open files are few in a
    // ledger of millions, and a predicate on the row would read every one to find them.
    let open = format!(
        "f.id IN (SELECT id FROM files WHERE state IN {open} \
         UNION SELECT id FROM files INDEXED BY files_owed WHERE {OWED})",
        open = row::OPEN
    );
    match listing.open {
        Some(true) => filter.push(open),
        Some(false) => filter.push(format!("NOT {open}")),
        None => {}
    }
    if !listing.states.is_empty() {
        let states: Vec<String> = listing
            .states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        filter.push(format!("f.state IN ({})", states.join(", ")));
    }
    let mut param = |filter: &mut Vec<String>, sql: &str, value: Value| {
        values.push(value);
        filter.push(sql.replace('?', &format!("?{}", values.len())));
    };
    if let Some(since) = listing.since {
        param(&mut filter, "f.updated_at >= ?", Value::Integer(since));
    }
    if let Some(watch) = listing.watch {
        let root = path_bytes(&watch.path).to_vec();
        param(&mut filter, "f.origin = ?", Value::Blob(root));
    }
    if let Some(before) = listing.before {
        param(&mut filter, "f.id < ?", Value::Integer(before.0));
    }
    (filter.join(" AND "), values)
}

/// Record one file version in `tx` (see [`Sqlite::enqueue`]).
fn enqueue_in(tx: &Connection, new: &NewFile, t: i64) -> Result<FileRecord> {
    let FileIdentity { inode, version } = new.identity;
    let path = path_bytes(&new.path);
    if let Some(uploaded) = uploaded_as(tx, &new.identity, Some(path))? {
        return Ok(uploaded);
    }
    tx.prepare_cached(
            "DELETE FROM files WHERE path = ?1 AND state = 'waiting' AND (size != ?2 OR mtime_ns != ?3)",
        )?
        .execute(params![path, version.size, version.mtime_ns])?;
    tx.prepare_cached(
            "INSERT INTO files (path, size, mtime_ns, dev, ino, part_size, state, origin, processing, \
             created_at, updated_at, account) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11) \
             ON CONFLICT (path, size, mtime_ns) DO UPDATE SET state = excluded.state, \
             file_sha = CASE WHEN files.dev IS excluded.dev AND files.ino IS excluded.ino \
                        THEN files.file_sha END, \
             dev = excluded.dev, ino = excluded.ino, account = excluded.account, \
             error_code = NULL, error_message = NULL, \
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
            new.watch.as_ref().map(|w| path_bytes(&w.path)),
            new.processing,
            t,
            new.account.as_ref().map(AccountName::as_str),
        ])?;
    let sql = format!(
        "SELECT {FILE_COLUMNS} FROM files f WHERE f.path = ?1 AND f.size = ?2 AND f.mtime_ns = ?3"
    );
    let record = tx
        .prepare_cached(&sql)?
        .query_row(params![path, version.size, version.mtime_ns], file_from_row)?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_select_out_of_the_row_mappings_order_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Sqlite::open(&dir.path().join("ledger.db")).unwrap();
        let conn = ledger.conn();
        let swapped = FILE_COLUMNS.replacen("f.size, f.mtime_ns", "f.mtime_ns, f.size", 1);
        let stmt = conn
            .prepare(&format!("SELECT {swapped} FROM files f"))
            .unwrap();
        let refused = row::check_order(stmt.column_names(), ["path", "origin"]);
        assert_eq!(
            refused,
            Err("file column 3 is \"mtime_ns\", not \"size\"".into())
        );
    }
}
