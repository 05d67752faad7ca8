//! Retention on PostgreSQL: forgetting old rows a batch at a time, beside the other nodes
//! (a row another transaction holds is left for the next pass). Which rows may go is
//! [`row::forgettable`]; when, the daemon's retention task. The server's autovacuum gives the
//! space back.

use super::Postgres;
use crate::ledger::row;
use crate::ledger::{FileKey, Forgetting, Result};
use deadpool_postgres::Transaction;

/// [`row::forgettable`] in PostgreSQL's words, for a row of `files` not aliased.
static FORGETTABLE: row::Built = row::Built::new(|| row::forgettable("watch", "disposed"));

impl Postgres {
    /// See [`crate::ledger::Sqlite::forget`].
    pub async fn forget(
        &self,
        ended_before: i64,
        after: FileKey,
        batch: usize,
    ) -> Result<Forgetting> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let look = tx
            .prepare_cached(
                "SELECT MAX(id), MAX(created_at) FROM \
                 (SELECT id, created_at FROM files WHERE id > $1 ORDER BY id LIMIT $2) b",
            )
            .await?;
        let walked = tx.query_one(&look, &[&after.0, &(batch as i64)]).await?;
        let (last, newest): (Option<i64>, Option<i64>) = (walked.try_get(0)?, walked.try_get(1)?);
        let old = tx
            .prepare_cached(&format!(
                "SELECT id, file_sha FROM files WHERE id > $1 AND id <= $2 AND updated_at < $3 \
                 AND {FORGETTABLE} AND NOT EXISTS (SELECT 1 FROM hook_deliveries h \
                 WHERE h.file_key = files.id AND h.delivered_at IS NULL) \
                 FOR UPDATE SKIP LOCKED"
            ))
            .await?;
        let until = last.unwrap_or(after.0);
        let old = tx.query(&old, &[&after.0, &until, &ended_before]).await?;
        let keys: Vec<i64> = old
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        let shas: Vec<Option<String>> = old
            .iter()
            .map(|r| r.try_get(1))
            .collect::<std::result::Result<_, _>>()?;
        for sql in [
            "DELETE FROM hook_deliveries WHERE file_key = ANY($1)",
            "DELETE FROM files WHERE id = ANY($1)",
        ] {
            let stmt = tx.prepare_cached(sql).await?;
            tx.execute(&stmt, &[&keys]).await?;
        }
        forget_contents(&tx, shas).await?;
        tx.commit().await?;
        let walked = (last.map(FileKey), newest);
        Ok(Forgetting::of_batch(
            keys.len() as u64,
            walked,
            ended_before,
        ))
    }
}

/// The part hashes, confirmed parts and signatures of the contents `shas` that no row names any
/// more. A node that stores the same content's hashes at that moment may see them deleted under
/// READ COMMITTED (its upsert waits on the delete); that file is then hashed again, nothing worse.
async fn forget_contents(tx: &Transaction<'_>, shas: Vec<Option<String>>) -> Result<()> {
    let mut shas: Vec<String> = shas.into_iter().flatten().collect();
    shas.sort();
    shas.dedup();
    for table in ["part_hashes", "confirmed_parts", "uploads"] {
        let stmt = tx
            .prepare_cached(&format!(
                "DELETE FROM {table} c WHERE c.file_sha = ANY($1) \
                 AND NOT EXISTS (SELECT 1 FROM files f WHERE f.file_sha = c.file_sha)"
            ))
            .await?;
        tx.execute(&stmt, &[&shas]).await?;
    }
    Ok(())
}
