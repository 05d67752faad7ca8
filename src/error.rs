//! The crate's fatal errors: the ones that end a command or the daemon. Errors of one file or one
//! part never come here: they are recorded in the ledger and end that file only.

use crate::config::ConfigError;
use crate::ledger::LedgerError;
use crate::upload::EngineError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{what} {}: {source}", crate::shown::shown(.path))]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The demo's emulator could not start.
    #[error("emulator: {0}")]
    Emulator(#[from] crate::emulator::EmulatorError),
    #[error("watch {}: {message}", crate::shown::shown(.path))]
    Watch { path: PathBuf, message: String },
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// Another process runs under this node name: starting too would take its files from it.
    #[error(
        "node {node:?} is in use: another vodup process ({instance}) renews its claims under this \
         name (last {age} s ago, and again while this one waited). Give each host its own `node` \
         in the config (default: the host name), or stop the other process"
    )]
    NodeInUse {
        node: String,
        instance: String,
        age: i64,
    },
    /// A daemon task failed: the daemon stopped because of it.
    #[error("{task}: {error}")]
    Task {
        task: &'static str,
        error: Box<Error>,
    },
}

impl From<crate::source::EnqueueError> for Error {
    fn from(e: crate::source::EnqueueError) -> Error {
        match e {
            crate::source::EnqueueError::Ledger(e) => Error::Ledger(e),
            crate::source::EnqueueError::Source(e) => Error::Source(e),
        }
    }
}
