//! The PostgreSQL ledger's listings and counts: a page of files as `vodup status` and the page
//! select them, how many, and the figures of the health gauges.

use super::files::{records, FILE_COLUMNS, OWED};
use super::{unsigned, Postgres};
use crate::ledger::{row, FileKey, FileRecord, FileState, Health, Listing, Result};
use tokio_postgres::types::ToSql;

impl Postgres {
    /// See [`crate::ledger::Ledger::list`].
    pub async fn list(&self, listing: &Listing<'_>) -> Result<Vec<FileRecord>> {
        let limit = i64::try_from(listing.limit).unwrap_or(i64::MAX);
        let (filter, mut params) = listing_filter(listing);
        params.push(Box::new(limit));
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files f WHERE {filter} ORDER BY f.id DESC LIMIT ${}",
            params.len()
        );
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
        let client = self.client().await?;
        records(&client, &sql, &refs, &self.roots(&[])).await
    }

    /// See [`crate::ledger::Ledger::count`].
    pub async fn count(&self, listing: &Listing<'_>) -> Result<u64> {
        let (filter, params) = listing_filter(&Listing {
            before: None,
            ..listing.clone()
        });
        let sql = format!("SELECT COUNT(*) AS n FROM files f WHERE {filter}");
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
        let client = self.client().await?;
        let stmt = client.prepare_cached(&sql).await?;
        let row = client.query_one(&stmt, &refs).await?;
        Ok(unsigned(row.try_get("n")?))
    }

    /// See [`crate::ledger::Sqlite::recent`].
    pub async fn recent(&self, limit: usize, before: Option<FileKey>) -> Result<Vec<FileRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let before = before.unwrap_or(FileKey(i64::MAX)).0;
        self.select("f.id < $1 ORDER BY f.id DESC LIMIT $2", &[&before, &limit])
            .await
    }

    /// How many files are in each state.
    pub async fn count_by_state(&self) -> Result<Vec<(FileState, u64)>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT state, COUNT(*) AS n FROM files GROUP BY state")
            .await?;
        let mut counts = Vec::new();
        for row in client.query(&stmt, &[]).await? {
            if let Some(state) = FileState::parse(&row.try_get::<_, String>("state")?) {
                counts.push((state, unsigned(row.try_get("n")?)));
            }
        }
        Ok(counts)
    }

    /// See [`crate::ledger::Ledger::health`].
    pub async fn health(&self) -> Result<Health> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT (SELECT COUNT(*) FROM files o WHERE {OWED} \
                         AND o.disposal_error IS NOT NULL) AS failing, \
                        (SELECT MIN(created_at) FROM files WHERE state = 'queued') AS queued, \
                        (SELECT MIN(created_at) FROM hook_deliveries \
                         WHERE delivered_at IS NULL AND NOT held) AS hook"
            ))
            .await?;
        let row = client.query_one(&stmt, &[]).await?;
        Ok(Health {
            disposals_failing: unsigned(row.try_get("failing")?),
            oldest_queued_at: row.try_get("queued")?,
            oldest_pending_hook_at: row.try_get("hook")?,
        })
    }
}

/// The `WHERE` of a [`Listing`] on `f`, and its parameters (`$1`, `$2`... in order).
fn listing_filter(listing: &Listing<'_>) -> (String, Vec<Box<dyn ToSql + Sync>>) {
    let mut filter = vec!["TRUE".to_owned()];
    let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::new();
    // As keys found by the indexes (`files_state`, `files_owed`): the open files are few in a
    // ledger of millions, and a predicate on the row would read every one to find them.
    let open = format!(
        "f.id IN (SELECT id FROM files WHERE state IN {open} \
         UNION SELECT o.id FROM files o WHERE {OWED})",
        open = row::OPEN
    );
    match listing.open {
        Some(true) => filter.push(open),
        Some(false) => filter.push(format!("NOT {open}")),
        None => {}
    }
    if !listing.states.is_empty() {
        let states: Vec<String> = listing.states.iter().map(|s| s.as_str().into()).collect();
        params.push(Box::new(states));
        filter.push(format!("f.state = ANY(${})", params.len()));
    }
    if let Some(since) = listing.since {
        params.push(Box::new(since));
        filter.push(format!("f.updated_at >= ${}", params.len()));
    }
    if let Some(watch) = listing.watch {
        params.push(Box::new(watch.name.clone()));
        filter.push(format!("f.watch = ${}", params.len()));
    }
    if let Some(before) = listing.before {
        params.push(Box::new(before.0));
        filter.push(format!("f.id < ${}", params.len()));
    }
    (filter.join(" AND "), params)
}
