//! Schema migrations of the PostgreSQL ledger: the files of `migrations/postgres/`, embedded,
//! applied in order inside one transaction that holds a transaction-level advisory lock, so that
//! several nodes starting at once migrate once (the others wait, then find nothing to do). The
//! `schema_migrations` table records each version applied. A schema newer than this binary knows
//! is refused rather than misread. Also the state of the schema, for `vodup check-config`, which
//! looks without migrating.

use tokio_postgres::{Client, GenericClient};

/// Every migration, in order. Append only.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/postgres/0001_initial.sql"),
    include_str!("../../../migrations/postgres/0002_waiting_large.sql"),
    include_str!("../../../migrations/postgres/0003_disposal_failures.sql"),
    include_str!("../../../migrations/postgres/0004_hashed_ctime.sql"),
    include_str!("../../../migrations/postgres/0005_node_instance.sql"),
];

/// The advisory lock key of migrations ("vodupmig"): one migration at a time per database.
const LOCK: i64 = 0x766f_6475_706d_6967;

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations ( \
     version    BIGINT      PRIMARY KEY, \
     applied_at TIMESTAMPTZ NOT NULL DEFAULT now())";

/// How far a database's schema is from this binary's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaState {
    /// Migrations applied to the database.
    pub applied: usize,
    /// Migrations this binary knows.
    pub known: usize,
}

impl SchemaState {
    /// Whether this binary must refuse the database (written by a newer vodup).
    pub fn is_newer(&self) -> bool {
        self.applied > self.known
    }
}

impl std::fmt::Display for SchemaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let SchemaState { applied, known } = *self;
        match applied.cmp(&known) {
            std::cmp::Ordering::Equal => write!(f, "schema version {applied}, up to date"),
            std::cmp::Ordering::Less => write!(
                f,
                "schema version {applied} of {known}: {} migration(s) pending, applied when vodup \
                 next starts",
                known - applied
            ),
            std::cmp::Ordering::Greater => write!(
                f,
                "schema version {applied} is newer than this vodup knows ({known}): refused"
            ),
        }
    }
}

/// Bring the schema up to date. Running it again (or on several nodes at once) is a no-op. A
/// database written by a newer vodup is refused (`Ok(Err(message))`).
pub async fn migrate(client: &mut Client) -> Result<Result<(), String>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await?;
    tx.batch_execute(VERSION_TABLE).await?;
    let state = applied(&tx).await?;
    if state.is_newer() {
        return Ok(Err(state.to_string()));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(state.applied) {
        tx.batch_execute(sql).await?;
        let version = i64::try_from(i + 1).expect("few migrations");
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Ok(()))
}

/// The schema's state, without changing anything (a database never migrated has applied none).
pub async fn state(client: &impl GenericClient) -> Result<SchemaState, tokio_postgres::Error> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('schema_migrations') IS NOT NULL AS present",
            &[],
        )
        .await?
        .try_get("present")?;
    if !exists {
        return Ok(SchemaState {
            applied: 0,
            known: MIGRATIONS.len(),
        });
    }
    applied(client).await
}

async fn applied(client: &impl GenericClient) -> Result<SchemaState, tokio_postgres::Error> {
    let version: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) AS version FROM schema_migrations",
            &[],
        )
        .await?
        .try_get("version")?;
    Ok(SchemaState {
        applied: usize::try_from(version).unwrap_or(usize::MAX),
        known: MIGRATIONS.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_says_what_it_means() {
        let state = |applied| SchemaState { applied, known: 2 }.to_string();
        assert_eq!(state(2), "schema version 2, up to date");
        assert!(state(1).contains("1 migration(s) pending"), "{}", state(1));
        assert!(state(3).contains("newer") && state(3).contains("refused"));
    }
}
