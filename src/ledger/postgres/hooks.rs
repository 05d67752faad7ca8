//! The PostgreSQL ledger's side of completion hooks: deliveries written with the file's disposal
//! (held while the after-upload action runs), the due list, and each delivery's outcome; the same
//! contracts as the SQLite backend's (`sqlite/hooks.rs`). At-least-once: a delivery leaves the
//! due list only once [`Postgres::hook_delivered`] ran after the receiver accepted it.

use super::{path_bytes, unsigned, Postgres, NOW};
use crate::clock::unix_now_i64;
use crate::config::AfterUpload;
use crate::ledger::row::{self, HOOK_COLUMNS};
use crate::ledger::{Claim, Delivery, Disposed, NewDelivery, Result};
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
        let sql = format!(
            "WITH f AS (UPDATE files SET intent = $3, intent_target = $4, updated_at = $5 \
                 WHERE id = $1 AND epoch = $2 AND NOT disposed AND state IN ('done', 'failed') \
                 RETURNING id), \
             dropped AS (DELETE FROM hook_deliveries h USING f WHERE h.file_key = f.id AND h.held), \
             {ADDED} SELECT id FROM f"
        );
        let (intent, target, t) = (intent.as_str(), target.map(path_bytes), unix_now_i64());
        let added = Added::of(hooks, true);
        let mut params: Vec<&(dyn ToSql + Sync)> =
            vec![&claim.key.0, &claim.epoch, &intent, &target, &t];
        params.extend(added.params());
        Ok(!self.fenced(claim, &sql, &params).await?.is_empty())
    }

    /// See [`crate::ledger::Sqlite::mark_disposed`]: one statement, so a crash can neither lose
    /// the hooks nor run the action twice; it ends the file's work, so its claim is released.
    pub async fn mark_disposed(
        &self,
        claim: Claim,
        disposed: &Disposed,
        moved_to: Option<&Path>,
        hooks: Option<&[NewDelivery]>,
    ) -> Result<()> {
        let sql = format!(
            "WITH f AS (UPDATE files SET disposed = TRUE, disposal = $3, lease_until = NULL, \
                 intent_target = COALESCE($4, intent_target), updated_at = $5, \
                 disposal_error = NULL, disposal_retry_at = NULL \
                 WHERE id = $1 AND epoch = $2 AND NOT disposed AND state IN ('done', 'failed') \
                 RETURNING id), \
             released AS (UPDATE hook_deliveries h SET held = FALSE, next_at = $5 FROM f \
                 WHERE h.file_key = f.id AND h.held AND NOT $11), \
             dropped AS (DELETE FROM hook_deliveries h USING f \
                 WHERE h.file_key = f.id AND h.held AND $11), \
             {ADDED} SELECT id FROM f"
        );
        let (disposal, moved_to) = (disposed.as_text(), moved_to.map(path_bytes));
        let (t, replace) = (unix_now_i64(), hooks.is_some());
        let added = Added::of(hooks.unwrap_or_default(), false);
        let mut params: Vec<&(dyn ToSql + Sync)> =
            vec![&claim.key.0, &claim.epoch, &disposal, &moved_to, &t];
        params.extend(added.params());
        params.push(&replace);
        self.fenced(claim, &sql, &params).await.map(drop)
    }

    /// See [`crate::ledger::Ledger::disposal_failed`]: `retry_in` counts from the server's
    /// clock, which the claim compares it with.
    pub async fn disposal_failed(&self, claim: Claim, reason: &str, retry_in: i64) -> Result<()> {
        let sql = format!(
            "UPDATE files SET disposal_error = $3, disposal_failures = disposal_failures + 1, \
             disposal_retry_at = {NOW} + $4, lease_until = NULL, updated_at = $5 \
             WHERE id = $1 AND epoch = $2 AND NOT disposed RETURNING id"
        );
        let t = unix_now_i64();
        let params: [&(dyn ToSql + Sync); 5] = [&claim.key.0, &claim.epoch, &reason, &retry_in, &t];
        self.fenced(claim, &sql, &params).await.map(drop)
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

/// The deliveries a write adds for the file its `f` wrote, in their order, at the time `$5`
/// (`$6`..`$10`: events, kinds, targets, payloads, held).
const ADDED: &str = "added AS (INSERT INTO hook_deliveries (file_key, event, kind, target, \
     payload, next_at, created_at, held) \
     SELECT f.id, d.event, d.kind, d.target, d.payload, $5, $5, $10 \
     FROM f, unnest($6::text[], $7::text[], $8::text[], $9::text[]) \
     WITH ORDINALITY AS d(event, kind, target, payload, n) ORDER BY d.n)";

/// The values of [`ADDED`]'s parameters.
struct Added<'a> {
    events: Vec<&'a str>,
    kinds: Vec<&'a str>,
    targets: Vec<&'a str>,
    payloads: Vec<&'a str>,
    held: bool,
}

impl<'a> Added<'a> {
    fn of(hooks: &'a [NewDelivery], held: bool) -> Added<'a> {
        Added {
            events: hooks.iter().map(|h| h.event).collect(),
            kinds: hooks.iter().map(|h| h.kind.as_str()).collect(),
            targets: hooks.iter().map(|h| h.target.as_str()).collect(),
            payloads: hooks.iter().map(|h| h.payload.as_str()).collect(),
            held,
        }
    }

    /// `$6`..`$10`, in order.
    fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        [
            &self.events,
            &self.kinds,
            &self.targets,
            &self.payloads,
            &self.held,
        ]
    }
}
