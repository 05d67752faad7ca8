//! The PostgreSQL ledger's side of completion hooks: deliveries written with the file's disposal
//! (held while the after-upload action runs), the due list, and each delivery's outcome; the same
//! contracts as the SQLite backend's (`sqlite/hooks.rs`). At-least-once: a delivery leaves the
//! due list only once [`Postgres::hook_delivered`] ran after the receiver accepted it.

use super::{claimed, path_bytes, unsigned, Postgres, NOW};
use crate::clock::unix_now_i64;
use crate::config::AfterUpload;
use crate::ledger::row::{self, HOOK_COLUMNS};
use crate::ledger::{Claim, Delivery, Disposed, NewDelivery, Result};
use deadpool_postgres::Transaction;
use std::path::Path;
use tokio_postgres::types::ToSql;

impl Postgres {
    /// See [`crate::ledger::Sqlite::intend_disposal`]. The durability point before the action:
    /// a PostgreSQL commit is durable (with the server's default `synchronous_commit`).
    pub async fn intend_disposal(
        &self,
        claim: Claim,
        intent: AfterUpload,
        target: Option<&Path>,
        hooks: &[NewDelivery],
    ) -> Result<bool> {
        let key = claim.key.0;
        let mut client = self.client().await?;
        let tx = claimed(&mut client, claim).await?;
        let intend = tx
            .prepare_cached(
                "UPDATE files SET intent = $2, intent_target = $3, updated_at = $4 \
                 WHERE id = $1 AND NOT disposed AND state IN ('done', 'failed')",
            )
            .await?;
        let target = target.map(path_bytes);
        let params: [&(dyn ToSql + Sync); 4] = [&key, &intent.as_str(), &target, &unix_now_i64()];
        let changed = tx.execute(&intend, &params).await? == 1;
        if changed {
            drop_held(&tx, key).await?;
            insert_deliveries(&tx, key, hooks, true).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// See [`crate::ledger::Sqlite::mark_disposed`]: one transaction, so a crash can neither lose
    /// the hooks nor run the action twice; it ends the file's work, so its claim is released.
    pub async fn mark_disposed(
        &self,
        claim: Claim,
        disposed: &Disposed,
        moved_to: Option<&Path>,
        hooks: Option<&[NewDelivery]>,
    ) -> Result<()> {
        let (key, t) = (claim.key.0, unix_now_i64());
        let mut client = self.client().await?;
        let tx = claimed(&mut client, claim).await?;
        let mark = tx
            .prepare_cached(
                "UPDATE files SET disposed = TRUE, disposal = $3, lease_until = NULL, \
                 intent_target = COALESCE($4, intent_target), updated_at = $2, \
                 disposal_error = NULL, disposal_retry_at = NULL \
                 WHERE id = $1 AND NOT disposed AND state IN ('done', 'failed')",
            )
            .await?;
        let (disposal, moved_to) = (disposed.as_text(), moved_to.map(path_bytes));
        let params: [&(dyn ToSql + Sync); 4] = [&key, &t, &disposal.as_ref(), &moved_to];
        if tx.execute(&mark, &params).await? == 1 {
            match hooks {
                Some(hooks) => {
                    drop_held(&tx, key).await?;
                    insert_deliveries(&tx, key, hooks, false).await?;
                }
                None => {
                    let release = tx
                        .prepare_cached(
                            "UPDATE hook_deliveries SET held = FALSE, next_at = $2 \
                             WHERE file_key = $1 AND held",
                        )
                        .await?;
                    tx.execute(&release, &[&key, &t]).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// See [`crate::ledger::Ledger::disposal_failed`]: `retry_in` counts from the server's
    /// clock, which the claim compares it with.
    pub async fn disposal_failed(&self, claim: Claim, reason: &str, retry_in: i64) -> Result<()> {
        let t = unix_now_i64();
        let mut client = self.client().await?;
        let tx = claimed(&mut client, claim).await?;
        let mark = tx
            .prepare_cached(&format!(
                "UPDATE files SET disposal_error = $2, disposal_failures = disposal_failures + 1, \
                 disposal_retry_at = {NOW} + $3, lease_until = NULL, updated_at = $4 \
                 WHERE id = $1 AND NOT disposed"
            ))
            .await?;
        tx.execute(&mark, &[&claim.key.0, &reason, &retry_in, &t])
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deliveries due at `at` (Unix seconds), oldest first.
    pub async fn due_hooks(&self, at: i64, limit: usize) -> Result<Vec<Delivery>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {HOOK_COLUMNS} FROM hook_deliveries \
                 WHERE delivered_at IS NULL AND NOT held AND next_at <= $1 \
                 ORDER BY next_at, id LIMIT $2"
            ))
            .await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client.query(&stmt, &[&at, &limit]).await?;
        rows.iter().map(|r| Ok(row::delivery(r)?)).collect()
    }

    /// See [`crate::ledger::Ledger::take_due_hooks`]: one statement, skipping deliveries another
    /// node is taking at the same moment.
    pub async fn take_due_hooks(&self, at: i64, limit: usize, hold: i64) -> Result<Vec<Delivery>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "UPDATE hook_deliveries SET next_at = $3 WHERE id IN (SELECT id FROM hook_deliveries \
                 WHERE delivered_at IS NULL AND NOT held AND next_at <= $1 \
                 ORDER BY next_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING {HOOK_COLUMNS}"
            ))
            .await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(&stmt, &[&at, &limit, &at.saturating_add(hold)])
            .await?;
        let mut due: Vec<Delivery> = rows
            .iter()
            .map(|r| Ok(row::delivery(r)?))
            .collect::<Result<_>>()?;
        due.sort_by_key(|d| d.id);
        Ok(due)
    }

    pub async fn pending_hooks(&self) -> Result<u64> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT COUNT(*) AS n FROM hook_deliveries WHERE delivered_at IS NULL AND NOT held",
            )
            .await?;
        Ok(unsigned(client.query_one(&stmt, &[]).await?.try_get("n")?))
    }

    /// The earliest `next_at` of an undelivered delivery.
    pub async fn next_hook_at(&self) -> Result<Option<i64>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT MIN(next_at) AS next_at FROM hook_deliveries \
                 WHERE delivered_at IS NULL AND NOT held",
            )
            .await?;
        Ok(client.query_one(&stmt, &[]).await?.try_get("next_at")?)
    }

    pub async fn hook_delivered(&self, id: i64) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE hook_deliveries SET delivered_at = $2, attempts = attempts + 1, \
                 last_error = NULL WHERE id = $1",
            )
            .await?;
        client.execute(&stmt, &[&id, &unix_now_i64()]).await?;
        Ok(())
    }

    pub async fn hook_failed(&self, id: i64, error: &str, next_at: i64) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE hook_deliveries SET attempts = attempts + 1, last_error = $2, \
                 next_at = $3 WHERE id = $1",
            )
            .await?;
        client.execute(&stmt, &[&id, &error, &next_at]).await?;
        Ok(())
    }
}

/// Forget the deliveries a previous intent held for the file.
async fn drop_held(tx: &Transaction<'_>, key: i64) -> Result<()> {
    let stmt = tx
        .prepare_cached("DELETE FROM hook_deliveries WHERE file_key = $1 AND held")
        .await?;
    tx.execute(&stmt, &[&key]).await?;
    Ok(())
}

async fn insert_deliveries(
    tx: &Transaction<'_>,
    key: i64,
    hooks: &[NewDelivery],
    held: bool,
) -> Result<()> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO hook_deliveries (file_key, event, kind, target, payload, next_at, \
             created_at, held) VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
        )
        .await?;
    let t = unix_now_i64();
    for hook in hooks {
        let params: [&(dyn ToSql + Sync); 7] = [
            &key,
            &hook.event,
            &hook.kind.as_str(),
            &hook.target,
            &hook.payload,
            &t,
            &held,
        ];
        tx.execute(&insert, &params).await?;
    }
    Ok(())
}
