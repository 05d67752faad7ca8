//! One row mapping for both backends: the columns of a file's row and of a hook delivery, in
//! the order both backends select them, read through [`Columns`] into the records callers see.
//! Not the SQL around them, nor where a PostgreSQL row's path lies on this host (the backend
//! resolves the two location columns and hands the result in).

use super::{Delivery, DisposalFailed, Disposed, FileKey, FileRecord, FileState, HookKind};
use super::{Inode, RecordedError};
use crate::config::{AccountName, AfterUpload};
use std::path::PathBuf;
use std::sync::LazyLock;

/// What a row mapping needs of a backend's row: a value by position.
pub(super) trait Columns {
    type Error;
    fn int(&self, i: usize) -> Result<i64, Self::Error>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, Self::Error>;
    fn text(&self, i: usize) -> Result<String, Self::Error>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, Self::Error>;
    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>, Self::Error>;
    fn flag(&self, i: usize) -> Result<bool, Self::Error>;
}

/// A file row's columns as both backends select them: `id`, the two columns that locate the
/// file (SQLite: `path`, `origin`; PostgreSQL: `watch`, `rel`), then the rest. Rows are read by
/// position, since a lookup by name compares every column's name; [`check_order`] holds each
/// backend's select to this list when it opens.
pub(super) const FILE_COLUMNS: [&str; 33] = [
    "id",
    "location",
    "location",
    "size",
    "mtime_ns",
    "part_size",
    "state",
    "file_sha",
    "processing",
    "attempts",
    "error_code",
    "error_message",
    "error_desc",
    "file_id",
    "url",
    "instant",
    "disposed",
    "created_at",
    "updated_at",
    "finished_at",
    "confirmed_bytes",
    "disposal",
    "dev",
    "ino",
    "intent_target",
    "intent",
    "account",
    "node",
    "lease_until",
    "disposal_error",
    "disposal_failures",
    "disposal_retry_at",
    "hashed_ctime_ns",
];

/// The positions of the location columns in [`FILE_COLUMNS`].
pub(super) const LOCATION: (usize, usize) = (1, 2);

/// A hook delivery's columns, selected alike by both backends.
pub(super) const HOOK_COLUMNS: &str =
    "id, file_key, event, kind, target, payload, attempts, next_at, last_error, delivered_at";

/// A piece of SQL built once, on first use, and shown where a statement's text names it.
pub(super) struct Built(LazyLock<String>);

impl Built {
    pub(super) const fn new(build: fn() -> String) -> Built {
        Built(LazyLock::new(build))
    }
}

impl std::fmt::Display for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// [`FileState::ACTIVE`] as an SQL list.
pub(super) static ACTIVE: Built = Built::new(|| states(&FileState::ACTIVE));
/// [`FileState::OPEN`] as an SQL list.
pub(super) static OPEN: Built = Built::new(|| states(&FileState::OPEN));

/// `('queued', 'hashing')`: states as an SQL list.
pub(super) fn states(states: &[FileState]) -> String {
    let quoted: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
    format!("({})", quoted.join(", "))
}

/// The rows owed work a node may take, in one backend's dialect: an upload, or the after-upload
/// action of a file that ended. Only rows found in a watch (`watched`: that column is set), since
/// `vodup upload` runs its own files. `alias` prefixes each column (`o.`); `not_disposed` is the
/// dialect's test of the `disposed` flag. Each backend's partial index `files_owed` is this
/// predicate without an alias, and a test holds the two together.
pub(super) fn owed(alias: &str, watched: &str, not_disposed: &str) -> String {
    format!(
        "{alias}{watched} IS NOT NULL AND ({alias}state IN {active} \
         OR ({alias}state IN {ended} AND {not_disposed}))",
        active = states(&FileState::ACTIVE),
        ended = states(&FileState::TAKES_ACTION),
    )
}

/// What taking a file sets besides the claim, in either dialect (`now`: the parameter holding
/// this node's time, as every other write's `updated_at`): taking a file owed an upload begins an attempt, which is counted, and a file
/// never hashed is `hashing` from then on. A file taken for its after-upload action is left as
/// it is.
pub(super) fn begin_attempt(now: &str) -> String {
    format!(
        "attempts = attempts + CASE WHEN state IN {active} THEN 1 ELSE 0 END, \
         state = CASE WHEN state IN {active} AND file_sha IS NULL THEN '{hashing}' ELSE state END, \
         updated_at = CASE WHEN state IN {active} THEN {now} ELSE updated_at END",
        active = states(&FileState::ACTIVE),
        hashing = FileState::Hashing.as_str(),
    )
}

/// The rows retention may forget, in one backend's dialect (`watched`: the watch column;
/// `disposed`: the dialect's test of the `disposed` flag): set aside (superseded, gone), or done
/// files of a watch whose after-upload action took the source away (deleted, moved). Never a
/// row owed work, a failed file (it waits for a person, and its alert counts it), a file left in
/// place (kept, copied), one whose action was skipped (its path or another name in the watch
/// may still hold that file) or a `vodup upload` file (never moved): a rescan would find that
/// file again, and only its row says it is uploaded.
pub(super) fn forgettable(watched: &str, disposed: &str) -> String {
    let outcomes = [
        Disposed::Kept,
        Disposed::Deleted,
        Disposed::Moved,
        Disposed::Copied,
    ];
    let away: Vec<String> = outcomes
        .iter()
        .filter(|d| d.left_the_path())
        .map(|d| format!("'{}'", d.as_text()))
        .collect();
    format!(
        "(state IN {set_aside} OR (state = '{done}' AND {watched} IS NOT NULL AND {disposed} \
         AND disposal IN ({away})))",
        set_aside = states(&FileState::SET_ASIDE),
        done = FileState::Done.as_str(),
        away = away.join(", "),
    )
}

/// Whether a select's column names are [`FILE_COLUMNS`], the two location columns being
/// `location`; the first name out of place otherwise.
pub(super) fn check_order<'a>(
    names: impl IntoIterator<Item = &'a str>,
    location: [&str; 2],
) -> Result<(), String> {
    let mut expected = FILE_COLUMNS;
    (expected[LOCATION.0], expected[LOCATION.1]) = (location[0], location[1]);
    let names: Vec<&str> = names.into_iter().collect();
    if names == expected {
        return Ok(());
    }
    let at = names.iter().zip(expected).position(|(n, e)| *n != e);
    Err(match at {
        Some(i) => format!("file column {i} is {:?}, not {:?}", names[i], expected[i]),
        None => format!("{} file columns, not {}", names.len(), expected.len()),
    })
}

/// A file's row as a [`FileRecord`], at `location` (its path, and the watch folder it is in).
pub(super) fn file<R: Columns>(
    row: &R,
    (path, origin): (PathBuf, Option<PathBuf>),
) -> Result<FileRecord, R::Error> {
    let inode = match (row.opt_int(22)?, row.opt_int(23)?) {
        (Some(dev), Some(ino)) => Some(Inode {
            dev: dev as u64,
            ino: ino as u64,
        }),
        _ => None,
    };
    let error = match row.opt_int(10)? {
        Some(code) => Some(RecordedError {
            code,
            message: row.opt_text(11)?.unwrap_or_default(),
            code_desc: row.opt_text(12)?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(FileRecord {
        key: FileKey(row.int(0)?),
        path,
        origin,
        size: unsigned(row.int(3)?),
        mtime_ns: row.int(4)?,
        part_size: unsigned(row.int(5)?),
        state: FileState::parse(&row.text(6)?).unwrap_or(FileState::Failed),
        file_sha: row.opt_text(7)?,
        processing: row.text(8)?,
        attempts: count(row.int(9)?),
        error,
        file_id: row.opt_text(13)?,
        url: row.opt_text(14)?,
        instant: row.flag(15)?,
        disposed: row.flag(16)?,
        created_at: row.int(17)?,
        updated_at: row.int(18)?,
        finished_at: row.opt_int(19)?,
        confirmed_bytes: unsigned(row.int(20)?),
        disposal: row.opt_text(21)?.map(|d| Disposed::parse(&d)),
        inode,
        intent_target: row.opt_bytes(24)?.map(path_from),
        intent: row.opt_text(25)?.and_then(|i| AfterUpload::parse(&i)),
        account: row.opt_text(26)?.map(AccountName::new),
        node: row.opt_text(27)?,
        lease_until: row.opt_int(28)?,
        disposal_failed: DisposalFailed::from_columns(
            row.opt_text(29)?,
            row.int(30)?,
            row.opt_int(31)?,
        ),
        hashed_ctime_ns: row.opt_int(32)?,
    })
}

/// A row of [`HOOK_COLUMNS`] as a [`Delivery`].
pub(super) fn delivery<R: Columns>(row: &R) -> Result<Delivery, R::Error> {
    Ok(Delivery {
        id: row.int(0)?,
        file_key: FileKey(row.int(1)?),
        event: row.text(2)?,
        kind: HookKind::parse(&row.text(3)?),
        target: row.text(4)?,
        payload: row.text(5)?,
        attempts: count(row.int(6)?),
        next_at: row.int(7)?,
        last_error: row.opt_text(8)?,
        delivered: row.opt_int(9)?.is_some(),
    })
}

/// A path as both backends store it: the bytes of the name, lossless (UTF-8 or not).
pub(super) fn path_bytes(path: &std::path::Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt as _;
    path.as_os_str().as_bytes()
}

pub(super) fn path_from(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt as _;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

/// A stored integer read back as a size (a negative one, which no write makes, as 0).
pub(super) fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Columns for rusqlite::Row<'_> {
    type Error = rusqlite::Error;
    fn int(&self, i: usize) -> rusqlite::Result<i64> {
        self.get(i)
    }
    fn opt_int(&self, i: usize) -> rusqlite::Result<Option<i64>> {
        self.get(i)
    }
    fn text(&self, i: usize) -> rusqlite::Result<String> {
        self.get(i)
    }
    fn opt_text(&self, i: usize) -> rusqlite::Result<Option<String>> {
        self.get(i)
    }
    fn opt_bytes(&self, i: usize) -> rusqlite::Result<Option<Vec<u8>>> {
        self.get(i)
    }
    fn flag(&self, i: usize) -> rusqlite::Result<bool> {
        self.get(i)
    }
}

impl Columns for tokio_postgres::Row {
    type Error = tokio_postgres::Error;
    fn int(&self, i: usize) -> Result<i64, Self::Error> {
        self.try_get(i)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, Self::Error> {
        self.try_get(i)
    }
    fn text(&self, i: usize) -> Result<String, Self::Error> {
        self.try_get(i)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, Self::Error> {
        self.try_get(i)
    }
    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>, Self::Error> {
        self.try_get(i)
    }
    fn flag(&self, i: usize) -> Result<bool, Self::Error> {
        self.try_get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(sql: &str) -> String {
        sql.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The claim's predicate is each backend's partial index, word for word: SQLite uses the
    /// index only for a query whose WHERE is the index's.
    #[test]
    fn the_owed_predicate_is_each_backends_index() {
        let sqlite = include_str!("../../migrations/0006_claims.sql");
        let postgres = include_str!("../../migrations/postgres/0001_initial.sql");
        for (migration, predicate) in [
            (sqlite, owed("", "origin", "disposed = 0")),
            (postgres, owed("", "watch", "NOT disposed")),
        ] {
            let index = format!("CREATE INDEX files_owed ON files (id) WHERE {predicate};");
            assert!(words(migration).contains(&words(&index)), "{index}");
        }
    }

    /// What retention forgets is what left the path: every outcome [`Disposed::left_the_path`]
    /// names is in the predicate, and no other; no state owed work, nor a failed one.
    #[test]
    fn a_row_is_forgettable_only_once_its_source_left_the_path() {
        let sql = forgettable("watch", "disposed");
        let outcomes = [
            Disposed::Kept,
            Disposed::Deleted,
            Disposed::Moved,
            Disposed::Copied,
            Disposed::Skipped("gone".into()),
        ];
        for outcome in outcomes {
            let named = sql.contains(&format!("'{}'", outcome.as_text()));
            assert_eq!(named, outcome.left_the_path(), "{}", outcome.as_text());
        }
        assert!(!sql.contains("skipped"));
        for state in FileState::OPEN.iter().chain([&FileState::Failed]) {
            assert!(!sql.contains(&format!("'{}'", state.as_str())), "{state:?}");
        }
    }

    #[test]
    fn owed_work_is_the_active_states_and_an_ended_rows_action() {
        for state in FileState::OPEN {
            assert_eq!(state.is_active(), state != FileState::Waiting, "{state:?}");
        }
        for state in FileState::TAKES_ACTION {
            assert!(state.is_final());
        }
        assert_eq!(
            owed("o.", "watch", "NOT o.disposed"),
            "o.watch IS NOT NULL AND (o.state IN ('queued', 'hashing', 'uploading', 'finishing') \
             OR (o.state IN ('done', 'failed') AND NOT o.disposed))"
        );
    }
}
