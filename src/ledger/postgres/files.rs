//! The `files` table of the PostgreSQL ledger: enqueueing (one row however many nodes record the
//! same file at once), the queries callers see as [`FileRecord`]s, and every change of a row's
//! state. A row is keyed by its watch's name and its path relative to the watch folder, and shown
//! under this host's folder of that watch. Claims are `claims.rs`; the content's parts, hashes and
//! signature `mod.rs`; hook deliveries `hooks.rs`.

use super::{int, path_bytes, path_from, Postgres};
use crate::clock::unix_now_i64;
use crate::config::AccountName;
use crate::ledger::row;
use crate::ledger::{
    Claim, FileIdentity, FileKey, FileRecord, FileState, LedgerError, NewFile, RecordedError,
    Result,
};
use deadpool_postgres::GenericClient;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// Parameters of a statement.
pub(super) type Params<'a> = [&'a (dyn ToSql + Sync)];

pub(super) const FILE_COLUMNS: &str = "f.id, f.watch, f.rel, f.size, f.mtime_ns, f.part_size, \
     f.state, f.file_sha, f.processing, f.attempts, f.error_code, f.error_message, f.error_desc, \
     f.file_id, f.url, f.instant, f.disposed, f.created_at, f.updated_at, f.finished_at, \
     CASE WHEN f.state = 'done' THEN f.size \
     ELSE (SELECT COALESCE(SUM(c.len), 0)::bigint FROM confirmed_parts c \
           WHERE c.file_sha = f.file_sha AND c.account = f.account) END AS confirmed_bytes, \
     f.disposal, f.dev, f.ino, f.intent_target, f.intent, f.account, f.node, f.lease_until, \
     f.disposal_error, f.disposal_failures, f.disposal_retry_at, f.hashed_ctime_ns";

/// Rows owed work a node may take ([`row::owed`]), as `files_owed` indexes them.
pub(super) static OWED: row::Built = row::Built::new(|| row::owed("o.", "watch", "NOT o.disposed"));

/// A row of [`FILE_COLUMNS`] as a record, its path under this host's folder of its watch
/// (`roots`).
pub(super) fn file_from_row(row: &Row, roots: &HashMap<String, PathBuf>) -> Result<FileRecord> {
    let watch = row.try_get(row::LOCATION.0)?;
    let location = located(roots, watch, row.try_get(row::LOCATION.1)?);
    Ok(row::file(row, location)?)
}

/// Record `new` at its key (`watch`, `rel`), at `t`: a new row, or a row of the same version
/// that was waiting or set aside, revived (its hash kept only for the same inode).
async fn insert_or_revive(
    tx: &deadpool_postgres::Transaction<'_>,
    new: &NewFile,
    (watch, rel): (Option<&str>, &[u8]),
    t: i64,
) -> Result<()> {
    let FileIdentity { inode, version } = new.identity;
    let (size, mtime) = (int(version.size), version.mtime_ns);
    let insert = tx
        .prepare_cached(
            "INSERT INTO files (watch, rel, size, mtime_ns, dev, ino, part_size, state, \
             processing, created_at, updated_at, account) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11) \
             ON CONFLICT (watch, rel, size, mtime_ns) DO UPDATE SET state = excluded.state, \
             file_sha = CASE WHEN files.ino IS NOT DISTINCT FROM excluded.ino \
                        THEN files.file_sha END, \
             dev = excluded.dev, ino = excluded.ino, account = excluded.account, \
             error_code = NULL, error_message = NULL, error_desc = NULL, attempts = 0, \
             updated_at = excluded.updated_at \
             WHERE files.state IN ('waiting', 'superseded', 'gone') \
             AND files.state != excluded.state",
        )
        .await?;
    let (dev, ino) = (inode.dev as i64, inode.ino as i64);
    let account = new.account.as_ref().map(AccountName::as_str);
    let params: [&(dyn ToSql + Sync); 11] = [
        &watch,
        &rel,
        &size,
        &mtime,
        &dev,
        &ino,
        &int(new.part_size),
        &new.state.as_str(),
        &new.processing,
        &t,
        &account,
    ];
    tx.execute(&insert, &params).await?;
    Ok(())
}

/// The path and origin of a row: under this host's folder of its watch; `<watch>/<rel>` (and no
/// origin) for a watch this host does not have; the absolute path of a `vodup upload` row.
fn located(
    roots: &HashMap<String, PathBuf>,
    watch: Option<String>,
    rel: Vec<u8>,
) -> (PathBuf, Option<PathBuf>) {
    let rel = path_from(rel);
    match watch {
        None => (rel, None),
        Some(name) => match roots.get(&name) {
            Some(root) => (root.join(rel), Some(root.clone())),
            None => (PathBuf::from(name).join(rel), None),
        },
    }
}

/// Where a new file is stored: its watch's name and its path in the watch folder, or (no watch)
/// its absolute path.
fn key_of(new: &NewFile) -> Result<(Option<&str>, &[u8])> {
    let Some(watch) = &new.watch else {
        return Ok((None, path_bytes(&new.path)));
    };
    match new.path.strip_prefix(&watch.path) {
        Ok(rel) if !rel.as_os_str().is_empty() => Ok((Some(&watch.name), path_bytes(rel))),
        _ => Err(LedgerError::OutsideWatch {
            path: new.path.clone(),
            watch: watch.name.clone(),
        }),
    }
}

/// Rows of a statement, as records.
pub(super) async fn records(
    client: &impl GenericClient,
    sql: &str,
    params: &Params<'_>,
    roots: &HashMap<String, PathBuf>,
) -> Result<Vec<FileRecord>> {
    let stmt = client.prepare_cached(sql).await?;
    let rows = client.query(&stmt, params).await?;
    rows.iter().map(|row| file_from_row(row, roots)).collect()
}

/// The done row of `identity` (under a key other than `except`, if given). Matched on the inode
/// number and version, not the device: the hosts of a shared folder number its mount each their
/// own way, while the inode number is the file server's (see `FileRecord::is`).
async fn uploaded_as(
    client: &impl GenericClient,
    identity: &FileIdentity,
    except: Option<(Option<&str>, &[u8])>,
    roots: &HashMap<String, PathBuf>,
) -> Result<Option<FileRecord>> {
    let sql = format!(
        "SELECT {FILE_COLUMNS} FROM files f WHERE f.ino = $1 AND f.size = $2 \
         AND f.mtime_ns = $3 AND f.state = 'done' \
         AND NOT ($4 AND f.watch IS NOT DISTINCT FROM $5 AND f.rel = $6) \
         ORDER BY f.id DESC LIMIT 1"
    );
    let FileIdentity { inode, version } = identity;
    let (ino, size) = (inode.ino as i64, int(version.size));
    let (watch, rel) = except.unwrap_or((None, &[]));
    let params: [&(dyn ToSql + Sync); 6] = [
        &ino,
        &size,
        &version.mtime_ns,
        &except.is_some(),
        &watch,
        &rel,
    ];
    Ok(records(client, &sql, &params, roots).await?.pop())
}

impl Postgres {
    /// See [`crate::ledger::Sqlite::enqueue_all`]: one transaction per file here, so the rows of
    /// a burst are shared with the other nodes as they are recorded.
    pub async fn enqueue_all(&self, new: &[NewFile]) -> Result<Vec<FileRecord>> {
        let mut records = Vec::with_capacity(new.len());
        for new in new {
            records.push(self.enqueue(new).await?);
        }
        Ok(records)
    }

    /// See [`crate::ledger::Sqlite::enqueue`]; the key is the watch's name and the path in its
    /// folder. Nodes recording the same file at once make one row: the insert is an upsert on
    /// the key, and the row is read back after it.
    pub async fn enqueue(&self, new: &NewFile) -> Result<FileRecord> {
        let roots = self.roots(new.watch.as_slice());
        let (watch, rel) = key_of(new)?;
        let t = unix_now_i64();
        let version = new.identity.version;
        let (size, mtime) = (int(version.size), version.mtime_ns);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if let Some(uploaded) = uploaded_as(&tx, &new.identity, Some((watch, rel)), &roots).await? {
            return Ok(uploaded);
        }
        let drop_waiting = tx
            .prepare_cached(
                "DELETE FROM files WHERE watch IS NOT DISTINCT FROM $1 AND rel = $2 \
                 AND state = 'waiting' AND (size != $3 OR mtime_ns != $4)",
            )
            .await?;
        tx.execute(&drop_waiting, &[&watch, &rel, &size, &mtime])
            .await?;
        insert_or_revive(&tx, new, (watch, rel), t).await?;
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files f WHERE f.watch IS NOT DISTINCT FROM $1 \
             AND f.rel = $2 AND f.size = $3 AND f.mtime_ns = $4"
        );
        let params: [&(dyn ToSql + Sync); 4] = [&watch, &rel, &size, &mtime];
        let record = records(&tx, &sql, &params, &roots).await?.pop();
        tx.commit().await?;
        record.ok_or_else(|| LedgerError::Vanished {
            path: new.path.clone(),
        })
    }

    /// The done row of this very file (inode and version), if it was uploaded (under any path).
    pub async fn uploaded(&self, identity: &FileIdentity) -> Result<Option<FileRecord>> {
        let client = self.client().await?;
        uploaded_as(&client, identity, None, &self.roots(&[])).await
    }

    pub async fn file(&self, key: FileKey) -> Result<Option<FileRecord>> {
        Ok(self.select("f.id = $1", &[&key.0]).await?.pop())
    }

    /// Every file, newest first.
    pub async fn files(&self) -> Result<Vec<FileRecord>> {
        self.select("TRUE ORDER BY f.id DESC", &[]).await
    }

    /// The most recent version of a path, whatever its state: under any watch of this host whose
    /// folder holds it, or as a `vodup upload` of it.
    pub async fn latest_for_path(&self, path: &Path) -> Result<Option<FileRecord>> {
        let (names, rels) = self.keys_of(path);
        let filter = "(f.watch IS NULL AND f.rel = $1) \
             OR (f.watch, f.rel) IN (SELECT * FROM unnest($2::text[], $3::bytea[])) \
             ORDER BY f.id DESC LIMIT 1";
        Ok(self
            .select(filter, &[&path_bytes(path), &names, &rels])
            .await?
            .pop())
    }

    pub(super) async fn select(
        &self,
        filter: &str,
        params: &Params<'_>,
    ) -> Result<Vec<FileRecord>> {
        let sql = format!("SELECT {FILE_COLUMNS} FROM files f WHERE {filter}");
        let client = self.client().await?;
        records(&client, &sql, params, &self.roots(&[])).await
    }

    /// One update of the file's row under `claim` ([`Postgres::fenced`]): `$1` the key, `$2` the
    /// epoch, `sets` the columns it sets from `$3` on.
    async fn claimed_update(&self, claim: Claim, sets: &str, params: &Params<'_>) -> Result<()> {
        let sql = format!("UPDATE files SET {sets} WHERE id = $1 AND epoch = $2 RETURNING id");
        let fence: [&(dyn ToSql + Sync); 2] = [&claim.key.0, &claim.epoch];
        let all: Vec<_> = fence.iter().chain(params).copied().collect();
        self.fenced(claim, &sql, &all).await.map(drop)
    }

    pub async fn set_state(&self, claim: Claim, state: FileState) -> Result<()> {
        let sets = "state = $3, updated_at = $4";
        let params: [&(dyn ToSql + Sync); 2] = [&state.as_str(), &unix_now_i64()];
        self.claimed_update(claim, sets, &params).await
    }

    /// See [`crate::ledger::Sqlite::finish`]: one statement, which forgets the content's parts,
    /// hashes and signature with the row's update. (The account's service holds the content
    /// now; another account's upload of the same content keeps its own.)
    pub async fn finish(
        &self,
        claim: Claim,
        file_id: &str,
        url: Option<&str>,
        instant: bool,
    ) -> Result<FileRecord> {
        let sql = format!(
            "WITH f AS (UPDATE files f SET state = 'done', file_id = $3, url = $4, instant = $5, \
                 error_code = NULL, error_message = NULL, error_desc = NULL, updated_at = $6, \
                 finished_at = $6 WHERE f.id = $1 AND f.epoch = $2 RETURNING {FILE_COLUMNS}), \
             parts AS (DELETE FROM confirmed_parts c USING f \
                 WHERE c.account = f.account AND c.file_sha = f.file_sha), \
             signed AS (DELETE FROM uploads u USING f \
                 WHERE u.account = f.account AND u.file_sha = f.file_sha), \
             hashes AS (DELETE FROM part_hashes h USING f WHERE h.file_sha = f.file_sha) \
             SELECT * FROM f"
        );
        let params: [&(dyn ToSql + Sync); 6] = [
            &claim.key.0,
            &claim.epoch,
            &file_id,
            &url,
            &instant,
            &unix_now_i64(),
        ];
        let rows = self.fenced(claim, &sql, &params).await?;
        let row = rows.first().ok_or(LedgerError::Fenced { key: claim.key })?;
        file_from_row(row, &self.roots(&[]))
    }

    /// See [`crate::ledger::Sqlite::write_error`].
    pub async fn write_error(
        &self,
        claim: Claim,
        e: &RecordedError,
        state: Option<FileState>,
    ) -> Result<()> {
        let sql = "UPDATE files SET error_code = $3, error_message = $4, error_desc = $5, \
             state = COALESCE($6::text, state), updated_at = $7 \
             WHERE id = $1 AND epoch = $2 AND state != 'done' RETURNING id";
        let state = state.map(FileState::as_str);
        let params: [&(dyn ToSql + Sync); 7] = [
            &claim.key.0,
            &claim.epoch,
            &e.code,
            &e.message,
            &e.code_desc,
            &state,
            &unix_now_i64(),
        ];
        self.fenced(claim, sql, &params).await.map(drop)
    }

    /// See [`crate::ledger::Ledger::set_account`].
    pub async fn set_account(&self, claim: Claim, account: &AccountName) -> Result<()> {
        let sets = "account = $3, updated_at = $4";
        let params: [&(dyn ToSql + Sync); 2] = [&account.as_str(), &unix_now_i64()];
        self.claimed_update(claim, sets, &params).await
    }

    /// See [`crate::ledger::Sqlite::set_aside`].
    pub async fn set_aside(&self, claim: Claim, state: FileState, why: &str) -> Result<()> {
        debug_assert!(matches!(state, FileState::Superseded | FileState::Gone));
        let sets = "state = $3, error_code = 0, error_message = $4, error_desc = NULL, \
             updated_at = $5";
        let params: [&(dyn ToSql + Sync); 3] = [&state.as_str(), &why, &unix_now_i64()];
        self.claimed_update(claim, sets, &params).await
    }

    /// See [`crate::ledger::Sqlite::requeue`].
    pub async fn requeue(&self, key: FileKey) -> Result<bool> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "{REQUEUE} WHERE id = $2 AND state = 'failed' AND (intent IS NULL OR disposed)"
            ))
            .await?;
        Ok(client.execute(&stmt, &[&unix_now_i64(), &key.0]).await? == 1)
    }

    /// See [`crate::ledger::Sqlite::requeue_failed`]; `path` is found as in
    /// [`Postgres::latest_for_path`].
    pub async fn requeue_failed(&self, path: Option<&Path>) -> Result<usize> {
        let (names, rels) = path.map(|p| self.keys_of(p)).unwrap_or_default();
        let abs = path.map(path_bytes).unwrap_or_default();
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "{REQUEUE} WHERE state = 'failed' AND (intent IS NULL OR disposed) \
                 AND ($2 OR (watch IS NULL AND rel = $3) \
                      OR (watch, rel) IN (SELECT * FROM unnest($4::text[], $5::bytea[]))) \
                 AND id = (SELECT MAX(v.id) FROM files v \
                           WHERE v.watch IS NOT DISTINCT FROM files.watch AND v.rel = files.rel)"
            ))
            .await?;
        let params: [&(dyn ToSql + Sync); 5] =
            [&unix_now_i64(), &path.is_none(), &abs, &names, &rels];
        let n = client.execute(&stmt, &params).await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

/// A failed file back in the queue, its account forgotten; `$1` is the time.
const REQUEUE: &str = "UPDATE files SET state = 'queued', attempts = 0, disposed = FALSE, \
     disposal = NULL, disposal_error = NULL, disposal_failures = 0, disposal_retry_at = NULL, intent = NULL, intent_target = NULL, account = NULL, updated_at = $1";
