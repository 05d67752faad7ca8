//! Claims on the SQLite ledger: which node holds each file, until when, at which epoch, and the
//! nodes that took files. SQLite serves one host, but keeps the fleet's rules so both ledgers
//! behave alike; leases are judged by this host's clock, and SQLite's single writer makes each
//! claim atomic (an immediate transaction).

use super::files::{file_from_row, FILE_COLUMNS, OWED};
use super::{begin, exec, path_bytes, query_one, Sqlite};
use crate::clock::unix_now_i64;
use crate::ledger::row;
use crate::ledger::{instance, Claim, FileKey, FileRecord, Lease, NodeInfo, NodeStart, Result};
use rusqlite::OptionalExtension as _;
use rusqlite::{params, Connection, TransactionBehavior};

impl Sqlite {
    /// See [`crate::ledger::Ledger::start_node`].
    pub fn start_node(
        &self,
        lease: &Lease,
        seen_before: Option<i64>,
        accounts: &str,
    ) -> Result<NodeStart> {
        let (t, node, me) = (unix_now_i64(), lease.node.as_str(), instance());
        let mut conn = self.conn();
        let tx = begin(&mut conn, TransactionBehavior::Immediate)?;
        let taken = exec(
            &tx,
            "INSERT INTO nodes (name, started_at, seen_at, instance, accounts) \
             VALUES (?1, ?2, ?2, ?3, ?6) \
             ON CONFLICT (name) DO UPDATE SET started_at = ?2, seen_at = ?2, instance = ?3, \
             accounts = ?6 \
             WHERE nodes.instance IS NULL OR nodes.instance = ?3 OR nodes.seen_at <= ?2 - ?4 \
             OR nodes.seen_at IS ?5",
            params![node, t, me, lease_secs(lease), seen_before, accounts],
        )? == 1;
        if !taken {
            let (other, seen_at) = tx
                .query_row(
                    "SELECT instance, seen_at FROM nodes WHERE name = ?1",
                    [node],
                    |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?)),
                )
                .optional()?
                .unwrap_or_default();
            return Ok(NodeStart::InUse {
                instance: other.unwrap_or_default(),
                seen_at,
                age: t - seen_at,
            });
        }
        exec(
            &tx,
            "UPDATE files SET lease_until = NULL WHERE node = ?1 AND lease_until IS NOT NULL",
            [node],
        )?;
        tx.commit()?;
        Ok(NodeStart::Started)
    }

    /// See [`crate::ledger::Ledger::owed_accounts`].
    pub fn owed_accounts(&self) -> Result<Vec<(String, u64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT account, COUNT(*) FROM files WHERE account IS NOT NULL \
             AND state IN {} GROUP BY account",
            row::ACTIVE
        ))?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// See [`crate::ledger::Ledger::stop_node`].
    pub fn stop_node(&self, node: &str) -> Result<()> {
        exec(
            &self.conn(),
            "UPDATE nodes SET instance = NULL WHERE name = ?1 AND instance = ?2",
            params![node, instance()],
        )?;
        Ok(())
    }

    /// See [`crate::ledger::Ledger::claim_next`]. SQLite serves one host: a file whose watch was
    /// removed from the config is still uploaded (as before claims), but its after-upload action
    /// waits for its watch to come back (the action needs the watch's folders), so such a row is
    /// not taken again and again for nothing.
    pub fn claim_next(
        &self,
        lease: &Lease,
        limit: usize,
        watches: &[crate::ledger::WatchRoot],
        queued_before: Option<i64>,
        one_part: bool,
    ) -> Result<Vec<(Claim, FileRecord)>> {
        let t = unix_now_i64();
        let roots: Vec<&[u8]> = watches.iter().map(|w| path_bytes(&w.path)).collect();
        let mut conn = self.conn();
        let tx = begin(&mut conn, TransactionBehavior::Immediate)?;
        let keys: Vec<FileKey> = {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT id, state, origin, size, part_size FROM files INDEXED BY files_owed WHERE {OWED} \
                 AND (lease_until IS NULL OR lease_until < ?1) \
                 AND (disposal_retry_at IS NULL OR disposal_retry_at <= ?1) \
                 AND (?2 IS NULL OR created_at <= ?2) ORDER BY id"
            ))?;
            let mut rows = stmt.query(params![t, queued_before])?;
            let mut keys = Vec::new();
            while keys.len() < limit {
                let Some(row) = rows.next()? else { break };
                let state: String = row.get("state")?;
                let origin: Vec<u8> = row.get("origin")?;
                let ended = matches!(state.as_str(), "done" | "failed");
                if one_part {
                    // Only files of one part, and none queued after a larger file that waits
                    // (rows come oldest first).
                    let (size, part_size): (i64, i64) = (row.get("size")?, row.get("part_size")?);
                    match (size <= part_size, ended) {
                        (true, _) => {}
                        (false, false) => break,
                        (false, true) => continue,
                    }
                }
                if !ended || roots.contains(&origin.as_slice()) {
                    keys.push(row.get("id")?);
                }
            }
            keys
        };
        let mut taken = Vec::with_capacity(keys.len());
        for key in keys {
            taken.push(take(&tx, key, lease, t)?);
        }
        tx.commit()?;
        Ok(taken)
    }

    /// See [`crate::ledger::Ledger::claim`]: a claim of this node's is taken over too (a
    /// `vodup upload` of a file its daemon holds; a rerun after a crash).
    pub fn claim(&self, key: FileKey, lease: &Lease) -> Result<Option<(Claim, FileRecord)>> {
        let t = unix_now_i64();
        let mut conn = self.conn();
        let tx = begin(&mut conn, TransactionBehavior::Immediate)?;
        let free: bool = query_one(
            &tx,
            "SELECT COUNT(*) FROM files WHERE id = ?1 \
             AND (lease_until IS NULL OR lease_until < ?2 OR node = ?3)",
            params![key, t, lease.node],
            |r| r.get::<_, i64>(0),
        )? == 1;
        let taken = match free {
            true => Some(take(&tx, key, lease, t)?),
            false => None,
        };
        tx.commit()?;
        Ok(taken)
    }

    /// See [`crate::ledger::Ledger::renew`].
    pub fn renew(&self, lease: &Lease, claims: &[Claim]) -> Result<Vec<Claim>> {
        let t = unix_now_i64();
        let until = t + lease_secs(lease);
        let mut conn = self.conn();
        let tx = begin(&mut conn, TransactionBehavior::Deferred)?;
        exec(
            &tx,
            "INSERT INTO nodes (name, started_at, seen_at) VALUES (?1, ?2, ?2) \
             ON CONFLICT (name) DO UPDATE SET seen_at = ?2 \
             WHERE nodes.instance IS NULL OR nodes.instance = ?3",
            params![lease.node, t, instance()],
        )?;
        let mut held = Vec::with_capacity(claims.len());
        for claim in claims {
            let renewed = exec(
                &tx,
                "UPDATE files SET lease_until = ?4 WHERE id = ?1 AND epoch = ?2 AND node = ?3 \
                 AND lease_until IS NOT NULL",
                params![claim.key, claim.epoch, lease.node, until],
            )?;
            if renewed == 1 {
                held.push(*claim);
            }
        }
        tx.commit()?;
        Ok(held)
    }

    /// See [`crate::ledger::Ledger::node_refused`].
    pub fn node_refused(&self, node: &str, refused: Option<&str>) -> Result<()> {
        let t = unix_now_i64();
        exec(
            &self.conn(),
            "INSERT INTO nodes (name, started_at, seen_at, refused) VALUES (?1, ?2, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET refused = ?3",
            params![node, t, refused],
        )?;
        Ok(())
    }

    /// See [`crate::ledger::Ledger::release`].
    pub fn release(&self, claim: Claim) -> Result<()> {
        exec(
            &self.conn(),
            "UPDATE files SET lease_until = NULL WHERE id = ?1 AND epoch = ?2",
            params![claim.key, claim.epoch],
        )?;
        Ok(())
    }

    /// See [`crate::ledger::Ledger::nodes`].
    pub fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT n.name, n.started_at, n.seen_at, n.refused, n.instance, n.accounts, \
             (SELECT COUNT(*) FROM files f WHERE f.node = n.name AND f.lease_until >= ?1) AS holds \
             FROM nodes n ORDER BY n.name",
        )?;
        let rows = stmt.query_map([unix_now_i64()], |r| {
            Ok(NodeInfo {
                name: r.get("name")?,
                started_at: r.get("started_at")?,
                seen_at: r.get("seen_at")?,
                holds: r.get("holds")?,
                refused: r.get("refused")?,
                instance: r.get("instance")?,
                accounts: r.get("accounts")?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// A lease's length in whole seconds (at least one).
fn lease_secs(lease: &Lease) -> i64 {
    i64::try_from(lease.length.as_secs())
        .unwrap_or(i64::MAX / 2)
        .max(1)
}

/// Give `key` to the lease's node at a new epoch (beginning an attempt if it is owed an upload,
/// [`row::begin_attempt`]); the claim and the row as taken.
fn take(tx: &Connection, key: FileKey, lease: &Lease, t: i64) -> Result<(Claim, FileRecord)> {
    let sql = format!(
        "UPDATE files SET node = ?2, lease_until = ?3, epoch = epoch + 1, {} WHERE id = ?1 \
         RETURNING epoch",
        row::begin_attempt("?4")
    );
    let epoch = query_one(
        tx,
        &sql,
        params![key, lease.node, t + lease_secs(lease), t],
        |r| r.get(0),
    )?;
    let select = format!("SELECT {FILE_COLUMNS} FROM files f WHERE f.id = ?1");
    let record = query_one(tx, &select, [key], file_from_row)?;
    Ok((Claim { key, epoch }, record))
}
