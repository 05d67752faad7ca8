//! The ledger's error: the few things a caller acts on (a write fenced because another node took
//! the file over, a row that vanished while it was recorded, a file outside its watch), and
//! [`BackendError`], what went wrong opening or reaching either backend, which callers log and
//! retry. No variant ever holds a password: PostgreSQL URLs are kept and shown without theirs.

use super::FileKey;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A write under a claim that another node has taken over since (its lease had lapsed).
    #[error("file {key}: another node took it over (its claim lapsed); this node stops it")]
    Fenced { key: FileKey },
    /// A watch's file whose path is not in the watch's folder (a caller's mistake).
    #[error("file {}: not in the folder of watch {watch}", crate::shown::shown(.path))]
    OutsideWatch { path: PathBuf, watch: String },
    /// The row of a file being recorded was removed meanwhile (another node recorded a newer
    /// version of the path); recording it again settles it.
    #[error("file {}: its row changed while it was recorded; try again", crate::shown::shown(.path))]
    Vanished { path: PathBuf },
    /// The backend could not do what was asked.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// What went wrong in a backend: opening it, its schema, a statement, the connection or pool
/// under it, the SQLite thread. Callers do not tell these apart: they log and retry.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot open ledger {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("ledger {path}: {message}")]
    Schema { path: PathBuf, message: String },
    #[error("ledger: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("ledger: the blocking task was lost: {0}")]
    Task(String),
    /// The PostgreSQL URL (shown without its password) does not parse.
    #[error("ledger {url}: not a PostgreSQL URL: {source}")]
    PostgresUrl {
        url: String,
        source: tokio_postgres::Error,
    },
    /// No connection to the PostgreSQL ledger could be had when it was opened.
    #[error("cannot connect to the ledger {url}: {}", causes(source))]
    Unreachable {
        url: String,
        source: deadpool_postgres::PoolError,
    },
    #[error("ledger {url}: {message}")]
    PostgresSchema { url: String, message: String },
    #[error("ledger: the PostgreSQL connection pool: {0}")]
    PostgresPool(String),
    /// A statement failed, or the connection under it (PostgreSQL restarting, say): the caller
    /// retries.
    #[error("ledger: {}", causes(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection from the pool (the server is down, or every connection busy too long).
    #[error("ledger: no PostgreSQL connection: {}", causes(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
}

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> LedgerError {
        BackendError::Sql(e).into()
    }
}

impl From<tokio_postgres::Error> for LedgerError {
    fn from(e: tokio_postgres::Error) -> LedgerError {
        BackendError::Postgres(e).into()
    }
}

impl From<deadpool_postgres::PoolError> for LedgerError {
    fn from(e: deadpool_postgres::PoolError) -> LedgerError {
        BackendError::Pool(e).into()
    }
}

pub type Result<T> = std::result::Result<T, LedgerError>;

/// An error and its sources, each once (a TLS handshake's error says why only in its source:
/// `invalid peer certificate: UnknownIssuer`).
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = cause.source();
    }
    text
}
