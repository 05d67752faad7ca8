//! Retention on SQLite: forgetting old rows a batch at a time, and giving the pages they held
//! back to the file system. Which rows may go is [`row::forgettable`]; when, the daemon's
//! retention task.

use super::{begin, exec, query_one, Sqlite};
use crate::ledger::row;
use crate::ledger::{FileKey, Forgetting, Result};
use rusqlite::{params, TransactionBehavior};
use std::collections::BTreeSet;

/// [`row::forgettable`] in SQLite's words, for a row of `files` not aliased.
static FORGETTABLE: row::Built = row::Built::new(|| row::forgettable("origin", "disposed = 1"));

impl Sqlite {
    /// Look at the `batch` rows after `after` (in key order) and forget those that may be
    /// forgotten ([`row::forgettable`]), unchanged since before `ended_before` (Unix seconds) and
    /// with no hook delivery still owed: the row, its delivered hooks, and what is left of the
    /// part hashes, confirmed parts and signature of a content no row names any more (a done
    /// file's went at its finish). The walk ends at the first batch that reaches rows created
    /// since `ended_before`: none after them can be older.
    pub fn forget(&self, ended_before: i64, after: FileKey, batch: usize) -> Result<Forgetting> {
        let mut conn = self.conn();
        let tx = begin(&mut conn, TransactionBehavior::Immediate)?;
        let (last, newest): (Option<FileKey>, Option<i64>) = query_one(
            &tx,
            "SELECT MAX(id), MAX(created_at) FROM \
             (SELECT id, created_at FROM files WHERE id > ?1 ORDER BY id LIMIT ?2)",
            params![after, batch as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let sql = format!(
            "SELECT id, file_sha, account FROM files WHERE id > ?1 AND id <= ?2 AND updated_at < ?3 \
             AND {FORGETTABLE} AND NOT EXISTS (SELECT 1 FROM hook_deliveries h \
             WHERE h.file_key = files.id AND h.delivered_at IS NULL)"
        );
        type Old = (i64, Option<String>, Option<String>);
        let old: Vec<Old> = tx
            .prepare_cached(&sql)?
            .query_map(params![after, last.unwrap_or(after), ended_before], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        for (key, _, _) in &old {
            exec(
                &tx,
                "DELETE FROM hook_deliveries WHERE file_key = ?1",
                [key],
            )?;
            exec(&tx, "DELETE FROM files WHERE id = ?1", [key])?;
        }
        // A content's rows go once no row names it: its part hashes by content, its confirmed
        // parts and signature by account and content (their keys).
        let contents: BTreeSet<(&String, Option<&String>)> = old
            .iter()
            .filter_map(|(_, sha, account)| Some((sha.as_ref()?, account.as_ref())))
            .collect();
        let unnamed = "NOT EXISTS (SELECT 1 FROM files WHERE file_sha = ?1)";
        for (sha, account) in contents {
            let sql = format!("DELETE FROM part_hashes WHERE file_sha = ?1 AND {unnamed}");
            exec(&tx, &sql, [sha])?;
            for table in ["confirmed_parts", "uploads"] {
                let sql = format!(
                    "DELETE FROM {table} WHERE account = ?2 AND file_sha = ?1 AND {unnamed}"
                );
                exec(&tx, &sql, params![sha, account])?;
            }
        }
        tx.commit()?;
        let forgotten = old.len() as u64;
        Ok(Forgetting::of_batch(
            forgotten,
            (last, newest),
            ended_before,
        ))
    }

    /// Give up to `pages` free pages back to the file system (a ledger made before retention
    /// existed keeps its free pages for new rows instead: SQLite can return them only once the
    /// file is rebuilt). How many free pages are left.
    pub fn give_back_space(&self, pages: u32) -> Result<u64> {
        let conn = self.conn();
        let incremental: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
        if incremental == 2 {
            // Each step of the pragma frees one page.
            let mut vacuum = conn.prepare(&format!("PRAGMA incremental_vacuum({pages})"))?;
            let mut steps = vacuum.query([])?;
            while steps.next()?.is_some() {}
        }
        let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        Ok(row::unsigned(free))
    }
}
