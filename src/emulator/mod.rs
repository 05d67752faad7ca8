//! The service emulator: a strict, local implementation of the UGC upload protocol (PROTOCOL.md),
//! with fault injection and counters for tests and benchmarks (§7).
//!
//! [`Emulator::bind`] opens the data directory and the listening socket; [`Emulator::run`] serves
//! until its token is cancelled. Inside: [`conn`] accepts connections, [`app`] routes requests,
//! [`handlers`] and [`part`] implement the three actions ([`body`] reads request bodies), [`state`] and [`disk`] remember uploads
//! across restarts, [`lanes`] verifies part MD5s several at once, [`faults`] and [`inject`] break requests on purpose, [`stats`] counts, [`admin`]
//! and [`files`] serve the extras. The client side of the protocol is not here: it is
//! `crate::protocol`.

mod admin;
mod answer;
mod app;
mod body;
mod conn;
mod disk;
mod faults;
mod files;
mod handlers;
mod inject;
mod lanes;
mod params;
mod part;
mod routes;
mod rules;
mod state;
mod stats;

pub use answer::{Answer, ListedPart};
pub use app::ENDPOINT_PATH;
pub use faults::{Faults, FaultsError, DEFAULT_FINAL_CODES, DEFAULT_RETRYABLE_CODES};
pub use stats::Stats;

use crate::protocol::SecretKey;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The verify key of `verify_content` unless one is set: the one of PROTOCOL.md's test vector.
pub const DEFAULT_VERIFY_KEY: &str = "6367c48dd193d56ea7b0baad25b19455e529f5ee";

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Address to listen on; port 0 picks a free port (see [`Emulator::local_addr`]).
    pub listen: SocketAddr,
    /// Where uploads, parts and finished files are kept; created if missing.
    pub data_dir: PathBuf,
    /// Known `(secret id, secret key)` pairs; signatures by any of them are accepted.
    pub secrets: Vec<(String, SecretKey)>,
    /// Faults in force at start.
    pub faults: Faults,
    /// Seed of the fault RNG.
    pub seed: u64,
}

/// Why an emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: disk::DiskError,
    },
    #[error("invalid faults: {0}")]
    Faults(#[from] FaultsError),
}

/// A bound emulator, ready to [`run`](Emulator::run).
#[derive(Debug)]
pub struct Emulator {
    listener: TcpListener,
    addr: SocketAddr,
    app: app::App,
}

impl Emulator {
    /// Load the data directory and bind the socket now.
    pub async fn bind(config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        config.faults.validate()?;
        let bind_error = |source| EmulatorError::Bind {
            addr: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let data_dir = config.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || state::Store::open(&data_dir))
            .await
            .expect("opening the store does not panic")
            .map_err(|source| EmulatorError::DataDir {
                path: config.data_dir.clone(),
                source,
            })?;
        tracing::info!(%addr, data = %config.data_dir.display(), "emulator bound");
        let app = app::App {
            store,
            faults: faults::FaultInjector::new(config.faults, config.seed),
            stats: stats::Recorder::default(),
            secrets: config.secrets.into_iter().collect(),
            verify_key: DEFAULT_VERIFY_KEY.to_owned(),
            base_url: format!("http://{addr}"),
            shutdown: CancellationToken::new(),
        };
        Ok(Emulator {
            listener,
            addr,
            app,
        })
    }

    /// Use this key for `verify_content` instead of [`DEFAULT_VERIFY_KEY`].
    pub fn with_verify_key(mut self, key: impl Into<String>) -> Emulator {
        self.app.verify_key = key.into();
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/v2/index.php`, the endpoint a client is configured with.
    pub fn endpoint(&self) -> String {
        format!("http://{}{}", self.addr, ENDPOINT_PATH)
    }

    /// Serve until `cancel` is cancelled, then close connections (see [`conn::SHUTDOWN_GRACE`]).
    /// Everything answered with code 0 is on disk by then.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), EmulatorError> {
        let mut app = self.app;
        app.shutdown = cancel.clone();
        let router = routes::router(Arc::new(app));
        conn::serve(self.listener, router, cancel).await;
        tracing::info!(addr = %self.addr, "emulator stopped");
        Ok(())
    }
}
