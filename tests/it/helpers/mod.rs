//! Shared fixtures: an emulator on `127.0.0.1:0` in a temporary directory ([`start_emulator`]),
//! signatures for it, deterministic test bytes, and [`wait_until`]; [`env`] adds vodup's side
//! (folders, configs, the ledger) around one emulator; [`postgres`] a throwaway PostgreSQL for the
//! fleet tests.

#![allow(dead_code)]

pub mod env;
pub mod postgres;
pub mod raw;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vodup::clock::unix_now;
use vodup::emulator::{Emulator, EmulatorConfig, EmulatorError, Faults, Stats};
use vodup::protocol::{Claims, Processing, SecretKey};

pub const SECRET_ID: &str = "AKIDtestSecretId";
pub const SECRET_KEY: &str = "test-secret-key-0123456789";
/// How long a stopped emulator may take to return from `run`.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// An emulator serving in the background of the test's runtime. Dropping it stops it.
pub struct TestEmulator {
    pub dir: tempfile::TempDir,
    pub cancel: CancellationToken,
    pub addr: SocketAddr,
    pub endpoint: String,
    pub secret_id: String,
    pub secret_key: SecretKey,
    pub http: reqwest::Client,
    faults: Faults,
    task: Option<JoinHandle<Result<(), EmulatorError>>>,
}

/// Start an emulator with these faults, seed 1, in a fresh temporary data directory.
pub async fn start_emulator(faults: Faults) -> TestEmulator {
    start_emulator_as(faults, SECRET_ID, SECRET_KEY).await
}

/// [`start_emulator`] for an app whose only credentials are `secret_id` and `secret_key`.
pub async fn start_emulator_as(faults: Faults, secret_id: &str, secret_key: &str) -> TestEmulator {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut emulator = TestEmulator {
        dir,
        cancel: CancellationToken::new(),
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        endpoint: String::new(),
        secret_id: secret_id.to_owned(),
        secret_key: SecretKey::new(secret_key),
        http: reqwest::Client::new(),
        faults,
        task: None,
    };
    emulator.spawn().await;
    emulator
}

impl TestEmulator {
    async fn spawn(&mut self) {
        let config = EmulatorConfig {
            // Port 0 the first time; the same address after a restart, as a real service keeps
            // its address (clients configured with the endpoint keep working).
            listen: self.addr,
            data_dir: self.dir.path().to_owned(),
            secrets: vec![(self.secret_id.clone(), self.secret_key.clone())],
            faults: self.faults.clone(),
            seed: 1,
        };
        let emulator = Emulator::bind(config).await.expect("emulator binds");
        self.addr = emulator.local_addr();
        self.endpoint = emulator.endpoint();
        self.cancel = CancellationToken::new();
        self.task = Some(tokio::spawn(emulator.run(self.cancel.clone())));
        // A fresh client: pooled connections to the old emulator are gone.
        self.http = reqwest::Client::new();
    }

    /// Cancel the emulator and wait for `run` to return.
    pub async fn stop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(STOP_TIMEOUT, task)
                .await
                .expect("emulator stops in time")
                .expect("emulator task does not panic")
                .expect("emulator run succeeds");
        }
    }

    /// Stop, then start a new emulator on the same data directory and address.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    /// Whether `run` has returned.
    pub fn is_stopped(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// `http://ADDR`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stats(&self) -> Stats {
        let url = format!("{}/_admin/stats", self.base());
        let response = self.http.get(url).send().await.expect("stats request");
        assert_eq!(response.status(), 200);
        response.json().await.expect("stats json")
    }

    pub async fn reset_stats(&self) {
        let url = format!("{}/_admin/stats/reset", self.base());
        let response = self.http.post(url).send().await.expect("reset request");
        assert_eq!(response.status(), 200);
    }

    /// Replace the emulator's faults (and re-seed its RNG).
    pub async fn set_faults(&self, faults: &Faults) {
        let url = format!("{}/_admin/faults", self.base());
        let response = self
            .http
            .post(url)
            .json(faults)
            .send()
            .await
            .expect("faults request");
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }

    /// The faults in force, as `GET /_admin/faults` shows them.
    pub async fn faults(&self) -> Faults {
        let url = format!("{}/_admin/faults", self.base());
        let response = self.http.get(url).send().await.expect("faults request");
        response.json().await.expect("faults json")
    }

    /// Claims valid for an hour, with a fresh `r` so that no two signatures are equal.
    pub fn claims(&self, sha: &str, name: &str) -> Claims {
        static NONCE: AtomicU32 = AtomicU32::new(1);
        let now = unix_now();
        Claims {
            secret_id: self.secret_id.clone(),
            issued_at: now,
            expires_at: now + 3600,
            random: NONCE.fetch_add(1, Ordering::Relaxed),
            file_name: name.to_owned(),
            file_sha: sha.to_owned(),
            file_type: name.rsplit('.').next().unwrap_or("").to_owned(),
            uid: "1".to_owned(),
            processing: Processing::default(),
        }
    }

    /// A valid signature for this file.
    pub fn sign(&self, sha: &str, name: &str) -> String {
        self.claims(sha, name).sign(&self.secret_key).encoded
    }
}

impl Drop for TestEmulator {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// `len` deterministic pseudo-random bytes; different seeds give different bytes.
pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Poll `cond` every 10 ms until it holds; panic naming `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !cond().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
