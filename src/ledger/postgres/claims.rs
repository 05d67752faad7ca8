//! Claims on the PostgreSQL ledger: which node holds each file, until when, at which epoch, and
//! the nodes of the fleet. Leases are set and judged by the server's clock ([`super::NOW`]), so
//! hosts whose clocks drift still agree on which claim lapsed. Taking files is one statement
//! that locks the rows it takes and skips rows another node is taking (`FOR UPDATE SKIP
//! LOCKED`): two nodes claiming at once never get the same file.

use super::files::{file_from_row, FILE_COLUMNS, OWED};
use super::{Postgres, NOW};
use crate::clock::unix_now_i64;
use crate::ledger::row;
use crate::ledger::{
    instance, Claim, FileKey, FileRecord, Lease, NodeInfo, NodeStart, Result, WatchRoot,
};
use tokio_postgres::types::ToSql;

/// A file of one part queued before every larger file of these watches still waiting (see
/// [`crate::ledger::Wanted::one_part`]); the first of those is found on `files_waiting_large`.
fn one_part_sql() -> String {
    format!(
        "o.size <= o.part_size AND o.id < (SELECT COALESCE(MIN(b.id), 9223372036854775807) \
         FROM files b WHERE b.watch IS NOT NULL AND b.watch = ANY($3) \
         AND b.state IN {active} \
         AND (b.lease_until IS NULL OR b.lease_until < {NOW}) AND b.size > b.part_size)",
        active = row::ACTIVE
    )
}

/// A lease's length in whole seconds (at least one).
fn lease_secs(lease: &Lease) -> i64 {
    i64::try_from(lease.length.as_secs())
        .unwrap_or(i64::MAX / 2)
        .max(1)
}

impl Postgres {
    /// See [`crate::ledger::Ledger::start_node`]. The node's times are the server's.
    pub async fn start_node(
        &self,
        lease: &Lease,
        seen_before: Option<i64>,
        accounts: &str,
    ) -> Result<NodeStart> {
        let (node, me) = (lease.node.as_str(), instance());
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let seen = tx
            .prepare_cached(&format!(
                "INSERT INTO nodes (name, started_at, seen_at, instance, accounts) \
                 VALUES ($1, {NOW}, {NOW}, $2, $5) \
                 ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at, \
                 seen_at = excluded.seen_at, instance = excluded.instance, \
                 accounts = excluded.accounts \
                 WHERE nodes.instance IS NULL OR nodes.instance = $2 \
                 OR nodes.seen_at <= {NOW} - $3 OR nodes.seen_at IS NOT DISTINCT FROM $4"
            ))
            .await?;
        let params: [&(dyn ToSql + Sync); 5] =
            [&node, &me, &lease_secs(lease), &seen_before, &accounts];
        if tx.execute(&seen, &params).await? == 0 {
            let held = tx
                .prepare_cached(&format!(
                    "SELECT instance, seen_at, {NOW} - seen_at AS age FROM nodes WHERE name = $1"
                ))
                .await?;
            let row = tx.query_one(&held, &[&node]).await?;
            return Ok(NodeStart::InUse {
                instance: row
                    .try_get::<_, Option<String>>("instance")?
                    .unwrap_or_default(),
                seen_at: row.try_get("seen_at")?,
                age: row.try_get("age")?,
            });
        }
        let release = tx
            .prepare_cached(
                "UPDATE files SET lease_until = NULL WHERE node = $1 AND lease_until IS NOT NULL",
            )
            .await?;
        tx.execute(&release, &[&node]).await?;
        tx.commit().await?;
        Ok(NodeStart::Started)
    }

    /// See [`crate::ledger::Ledger::owed_accounts`].
    pub async fn owed_accounts(&self) -> Result<Vec<(String, u64)>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT account, COUNT(*) AS n FROM files WHERE account IS NOT NULL \
                 AND state IN {} GROUP BY account",
                row::ACTIVE
            ))
            .await?;
        let rows = client.query(&stmt, &[]).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("account")?, super::unsigned(r.try_get("n")?))))
            .collect()
    }

    /// See [`crate::ledger::Ledger::stop_node`].
    pub async fn stop_node(&self, node: &str) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("UPDATE nodes SET instance = NULL WHERE name = $1 AND instance = $2")
            .await?;
        client.execute(&stmt, &[&node, &instance()]).await?;
        Ok(())
    }

    /// See [`crate::ledger::Ledger::claim_next`]: only files of `watches` (by name), since this
    /// node can reach no other; they are shown under these folders.
    pub async fn claim_next(
        &self,
        lease: &Lease,
        limit: usize,
        watches: &[WatchRoot],
        (queued_before, one_part): (Option<i64>, bool),
        accounts: &[String],
    ) -> Result<Vec<(Claim, FileRecord)>> {
        let sql = format!(
            "UPDATE files f SET node = $1, lease_until = {NOW} + $2, epoch = f.epoch + 1, {begin} \
             WHERE f.id IN (SELECT o.id FROM files o WHERE {OWED} AND o.watch = ANY($3) \
                 AND (o.lease_until IS NULL OR o.lease_until < {NOW}) \
                 AND (o.disposal_retry_at IS NULL OR o.disposal_retry_at <= {NOW}) \
                 AND ($4::bigint IS NULL OR o.created_at <= $4) \
                 AND (NOT $6 OR {one_part}) \
                 AND (o.account IS NULL OR o.account = ANY($7)) \
                 ORDER BY o.id LIMIT $5 FOR UPDATE SKIP LOCKED) \
             RETURNING {FILE_COLUMNS}, f.epoch",
            one_part = one_part_sql(),
            begin = row::begin_attempt("$8"),
        );
        let names: Vec<&str> = watches.iter().map(|w| w.name.as_str()).collect();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let params: [&(dyn ToSql + Sync); 8] = [
            &lease.node,
            &lease_secs(lease),
            &names,
            &queued_before,
            &limit,
            &one_part,
            &accounts,
            &unix_now_i64(),
        ];
        let client = self.client().await?;
        let stmt = client.prepare_cached(&sql).await?;
        let rows = client.query(&stmt, &params).await?;
        let roots = self.roots(watches);
        let mut taken = rows
            .iter()
            .map(|row| {
                let record = file_from_row(row, &roots)?;
                let claim = Claim {
                    key: record.key,
                    epoch: row.try_get("epoch")?,
                };
                Ok((claim, record))
            })
            .collect::<Result<Vec<_>>>()?;
        taken.sort_by_key(|(claim, _)| claim.key);
        Ok(taken)
    }

    /// See [`crate::ledger::Sqlite::claim`]: one statement, taken unless a live claim of another
    /// node holds the file.
    pub async fn claim(&self, key: FileKey, lease: &Lease) -> Result<Option<(Claim, FileRecord)>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "UPDATE files f SET node = $2, lease_until = {NOW} + $3, epoch = f.epoch + 1, \
                 {begin} WHERE f.id = $1 \
                 AND (f.lease_until IS NULL OR f.lease_until < {NOW} OR f.node = $2) \
                 RETURNING {FILE_COLUMNS}, f.epoch",
                begin = row::begin_attempt("$4"),
            ))
            .await?;
        let params: [&(dyn ToSql + Sync); 4] =
            [&key.0, &lease.node, &lease_secs(lease), &unix_now_i64()];
        let row = client.query_opt(&stmt, &params).await?;
        let Some(row) = row else { return Ok(None) };
        let record = file_from_row(&row, &self.roots(&[]))?;
        let claim = Claim {
            key,
            epoch: row.try_get("epoch")?,
        };
        Ok(Some((claim, record)))
    }

    /// See [`crate::ledger::Ledger::renew`]: the node is seen now, and every claim it still
    /// holds (same epoch, same node) is extended, in one statement.
    pub async fn renew(&self, lease: &Lease, claims: &[Claim]) -> Result<Vec<Claim>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let seen = tx
            .prepare_cached(&format!(
                "INSERT INTO nodes (name, started_at, seen_at) VALUES ($1, {NOW}, {NOW}) \
                 ON CONFLICT (name) DO UPDATE SET seen_at = excluded.seen_at \
                 WHERE nodes.instance IS NULL OR nodes.instance = $2"
            ))
            .await?;
        tx.execute(&seen, &[&lease.node, &instance()]).await?;
        let extend = tx
            .prepare_cached(&format!(
                "UPDATE files f SET lease_until = {NOW} + $4 \
                 FROM unnest($1::bigint[], $2::bigint[]) AS c(id, epoch) \
                 WHERE f.id = c.id AND f.epoch = c.epoch AND f.node = $3 AND f.lease_until IS NOT NULL \
                 RETURNING f.id, f.epoch"
            ))
            .await?;
        let (keys, epochs): (Vec<i64>, Vec<i64>) =
            claims.iter().map(|c| (c.key.0, c.epoch)).unzip();
        let params: [&(dyn ToSql + Sync); 4] = [&keys, &epochs, &lease.node, &lease_secs(lease)];
        let rows = tx.query(&extend, &params).await?;
        tx.commit().await?;
        let renewed = rows
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("epoch")?)))
            .collect::<Result<std::collections::HashSet<(i64, i64)>>>()?;
        Ok(claims
            .iter()
            .filter(|c| renewed.contains(&(c.key.0, c.epoch)))
            .copied()
            .collect())
    }

    /// See [`crate::ledger::Ledger::node_refused`].
    pub async fn node_refused(&self, node: &str, refused: Option<&str>) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "INSERT INTO nodes (name, started_at, seen_at, refused) VALUES ($1, {NOW}, {NOW}, $2) \
                 ON CONFLICT (name) DO UPDATE SET refused = excluded.refused"
            ))
            .await?;
        client.execute(&stmt, &[&node, &refused]).await?;
        Ok(())
    }

    /// See [`crate::ledger::Ledger::release`].
    pub async fn release(&self, claim: Claim) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("UPDATE files SET lease_until = NULL WHERE id = $1 AND epoch = $2")
            .await?;
        client.execute(&stmt, &[&claim.key.0, &claim.epoch]).await?;
        Ok(())
    }

    /// See [`crate::ledger::Ledger::nodes`]: a live claim is one whose lease has not lapsed by
    /// the server's clock.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT n.name, n.started_at, n.seen_at, n.refused, n.instance, n.accounts, \
                 (SELECT COUNT(*) FROM files f WHERE f.node = n.name AND f.lease_until >= {NOW}) \
                 AS holds FROM nodes n ORDER BY n.name"
            ))
            .await?;
        let rows = client.query(&stmt, &[]).await?;
        rows.iter()
            .map(|r| {
                Ok(NodeInfo {
                    name: r.try_get("name")?,
                    started_at: r.try_get("started_at")?,
                    seen_at: r.try_get("seen_at")?,
                    holds: super::unsigned(r.try_get("holds")?),
                    refused: r.try_get("refused")?,
                    instance: r.try_get("instance")?,
                    accounts: r.try_get("accounts")?,
                })
            })
            .collect()
    }
}
