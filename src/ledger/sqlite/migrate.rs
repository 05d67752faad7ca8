//! Schema migrations: the files of `migrations/`, embedded, applied in order inside one exclusive
//! transaction, with `PRAGMA user_version` recording how many have run.

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior};

/// Every migration, in order. Append only.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/0001_initial.sql"),
    include_str!("../../../migrations/0002_hooks.sql"),
    include_str!("../../../migrations/0003_disposal.sql"),
    include_str!("../../../migrations/0004_identity.sql"),
    include_str!("../../../migrations/0005_account.sql"),
    include_str!("../../../migrations/0006_claims.sql"),
    include_str!("../../../migrations/0007_disposal_failures.sql"),
    include_str!("../../../migrations/0008_hashed_ctime.sql"),
    include_str!("../../../migrations/0009_node_instance.sql"),
    include_str!("../../../migrations/0010_hook_file_index.sql"),
];

/// Bring the schema up to date. Running it again is a no-op. A ledger written by a newer vodup
/// (more migrations than this binary knows) is refused rather than misread.
///
/// Foreign keys are off while migrations run (a migration may rebuild a table others refer to,
/// as SQLite's own procedure for schema changes asks) and checked before the commit.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<Result<(), String>> {
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let result = migrate_now(conn);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    result
}

fn migrate_now(conn: &mut Connection) -> rusqlite::Result<Result<(), String>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    let version: usize = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > MIGRATIONS.len() {
        return Ok(Err(format!(
            "ledger schema version {version} is newer than this vodup knows ({})",
            MIGRATIONS.len()
        )));
    }
    for sql in &MIGRATIONS[version..] {
        tx.execute_batch(sql)?;
    }
    let broken: Option<String> = tx
        .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
        .optional()?;
    if let Some(table) = broken {
        return Ok(Err(format!(
            "migration left a dangling reference in {table}"
        )));
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len())?;
    tx.commit()?;
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap().unwrap();
        migrate(&mut conn).unwrap().unwrap();
        let version: usize = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
    }

    #[test]
    fn paths_written_as_text_by_version_3_are_kept_as_bytes() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute_batch(
            "INSERT INTO files (path, size, mtime_ns, part_size, state, origin, processing, \
             created_at, updated_at) VALUES ('/drop/é.mp4', 1, 2, 524288, 'done', '/drop', '{}', 0, 0); \
             INSERT INTO hook_deliveries (file_key, event, kind, target, payload, next_at, created_at) \
             VALUES (1, 'done', 'command', '[]', '{}', 0, 0);",
        )
        .unwrap();
        migrate(&mut conn).unwrap().unwrap();
        let (path, origin): (Vec<u8>, Vec<u8>) = conn
            .query_row("SELECT path, origin FROM files", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(path, "/drop/é.mp4".as_bytes());
        assert_eq!(origin, b"/drop");
        let held: i64 = conn
            .query_row(
                "SELECT held FROM hook_deliveries WHERE file_key = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(held, 0);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(migrate(&mut conn).unwrap().is_err());
    }
}
