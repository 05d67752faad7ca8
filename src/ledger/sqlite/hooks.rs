//! The ledger's side of completion hooks: deliveries written with the file's disposal, the due
//! list, and each delivery's outcome. At-least-once: a delivery leaves the due list only once
//! [`Sqlite::hook_delivered`] ran after the receiver accepted it.

use super::{begin, claimed, exec, path_bytes, query_one, Sqlite};
use crate::clock::unix_now_i64;
use crate::config::AfterUpload;
use crate::ledger::row::{self, HOOK_COLUMNS};
use crate::ledger::BackendError;
use crate::ledger::{Claim, Delivery, Disposed, FileKey, NewDelivery, Result};
use rusqlite::{params, Connection};
use std::path::Path;

impl Sqlite {
    /// The after-upload action about to run on a file: `intent` (`keep`, `delete` or `move`), its
    /// target, and the hook deliveries its outcome will release, held until then. Committed with
    /// `synchronous=FULL`, so after a power cut recovery knows what was being done and can tell
    /// "moved by us" from "vanished". Whether it was recorded: not for a file already disposed
    /// of, nor for one that is no longer done or failed (re-queued meanwhile).
    pub fn intend_disposal(
        &self,
        claim: Claim,
        intent: AfterUpload,
        target: Option<&Path>,
        hooks: &[NewDelivery],
    ) -> Result<bool> {
        let key = claim.key;
        // In a batch, the ledger thread commits it with FULL, if this call was queued as durable.
        if self.in_transaction() && !self.batch_is_durable() {
            let why = "an after-upload intent must be queued as durable";
            return Err(BackendError::Task(why.into()).into());
        }
        let mut conn = self.conn();
        let alone = conn.is_autocommit();
        if alone {
            conn.pragma_update(None, "synchronous", "FULL")?;
        }
        let result = (|| {
            let tx = claimed(&mut conn, claim)?;
            let changed = exec(
                &tx,
                "UPDATE files SET intent = ?2, intent_target = ?3, updated_at = ?4 \
                 WHERE id = ?1 AND disposed = 0 AND state IN ('done', 'failed')",
                params![key, intent.as_str(), target.map(path_bytes), unix_now_i64()],
            )?;
            if changed == 1 {
                exec(
                    &tx,
                    "DELETE FROM hook_deliveries WHERE file_key = ?1 AND held = 1",
                    [key],
                )?;
                insert_deliveries(&tx, key, hooks, true)?;
            }
            tx.commit()?;
            Ok(changed == 1)
        })();
        if alone {
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        result
    }

    /// The after-upload action ran and did `disposal`, moving the file to `moved_to` (where it
    /// really went: a name taken meanwhile gets another): mark the file disposed of and release
    /// its held deliveries, or replace them by `hooks` when the outcome differs from the intent.
    /// One transaction, so a crash can neither lose the hooks nor run the action twice.
    pub fn mark_disposed(
        &self,
        claim: Claim,
        disposed: &Disposed,
        moved_to: Option<&Path>,
        hooks: Option<&[NewDelivery]>,
    ) -> Result<()> {
        let (key, t) = (claim.key, unix_now_i64());
        let mut conn = self.conn();
        let tx = claimed(&mut conn, claim)?;
        let changed = exec(
            &tx,
            "UPDATE files SET disposed = 1, disposal = ?3, lease_until = NULL, \
             intent_target = COALESCE(?4, intent_target), updated_at = ?2, \
             disposal_error = NULL, disposal_retry_at = NULL \
             WHERE id = ?1 AND disposed = 0 AND state IN ('done', 'failed')",
            params![key, t, disposed.as_text(), moved_to.map(path_bytes)],
        )?;
        if changed == 1 {
            match hooks {
                Some(hooks) => {
                    exec(
                        &tx,
                        "DELETE FROM hook_deliveries WHERE file_key = ?1 AND held = 1",
                        [key],
                    )?;
                    insert_deliveries(&tx, key, hooks, false)?;
                }
                None => {
                    exec(&tx,
                        "UPDATE hook_deliveries SET held = 0, next_at = ?2 WHERE file_key = ?1 AND held = 1",
                        params![key, t],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// See [`crate::ledger::Ledger::disposal_failed`].
    pub fn disposal_failed(&self, claim: Claim, reason: &str, retry_in: i64) -> Result<()> {
        let t = unix_now_i64();
        let mut conn = self.conn();
        let tx = claimed(&mut conn, claim)?;
        exec(
            &tx,
            "UPDATE files SET disposal_error = ?2, disposal_failures = disposal_failures + 1, \
             disposal_retry_at = ?3, lease_until = NULL, updated_at = ?4 \
             WHERE id = ?1 AND disposed = 0",
            params![claim.key, reason, t.saturating_add(retry_in), t],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Deliveries due at `at` (Unix seconds), oldest first.
    pub fn due_hooks(&self, at: i64, limit: usize) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {HOOK_COLUMNS} FROM hook_deliveries WHERE delivered_at IS NULL AND held = 0 AND next_at <= ?1 \
             ORDER BY next_at, id LIMIT ?2"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![at, limit as i64], |r| row::delivery(r))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// See [`crate::ledger::Ledger::take_due_hooks`].
    pub fn take_due_hooks(&self, at: i64, limit: usize, hold: i64) -> Result<Vec<Delivery>> {
        let mut conn = self.conn();
        let tx = begin(&mut conn, rusqlite::TransactionBehavior::Immediate)?;
        let due = {
            let sql = format!(
                "SELECT {HOOK_COLUMNS} FROM hook_deliveries WHERE delivered_at IS NULL AND held = 0 \
                 AND next_at <= ?1 ORDER BY next_at, id LIMIT ?2"
            );
            let mut stmt = tx.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![at, limit as i64], |r| row::delivery(r))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        for d in &due {
            exec(
                &tx,
                "UPDATE hook_deliveries SET next_at = ?2 WHERE id = ?1",
                params![d.id, at.saturating_add(hold)],
            )?;
        }
        tx.commit()?;
        Ok(due)
    }

    pub fn pending_hooks(&self) -> Result<u64> {
        Ok(query_one(
            &self.conn(),
            "SELECT COUNT(*) FROM hook_deliveries WHERE delivered_at IS NULL AND held = 0",
            [],
            |r| r.get(0),
        )?)
    }

    /// The earliest `next_at` of an undelivered delivery.
    pub fn next_hook_at(&self) -> Result<Option<i64>> {
        Ok(query_one(
            &self.conn(),
            "SELECT MIN(next_at) FROM hook_deliveries WHERE delivered_at IS NULL AND held = 0",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn hook_delivered(&self, id: i64) -> Result<()> {
        exec(&self.conn(),
            "UPDATE hook_deliveries SET delivered_at = ?2, attempts = attempts + 1, last_error = NULL \
             WHERE id = ?1",
            params![id, unix_now_i64()],
        )?;
        Ok(())
    }

    pub fn hook_failed(&self, id: i64, error: &str, next_at: i64) -> Result<()> {
        exec(&self.conn(),
            "UPDATE hook_deliveries SET attempts = attempts + 1, last_error = ?2, next_at = ?3 WHERE id = ?1",
            params![id, error, next_at],
        )?;
        Ok(())
    }
}

fn insert_deliveries(
    tx: &Connection,
    key: FileKey,
    hooks: &[NewDelivery],
    held: bool,
) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO hook_deliveries (file_key, event, kind, target, payload, next_at, created_at, held) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
    )?;
    let t = unix_now_i64();
    for hook in hooks {
        insert.execute(params![
            key,
            hook.event,
            hook.kind.as_str(),
            hook.target,
            hook.payload,
            t,
            held
        ])?;
    }
    Ok(())
}
