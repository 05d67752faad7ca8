//! `Env`: one test's world for vodup itself: a temp dir, a running emulator, drop/done/failed
//! folders, and a config (in-process or as a TOML file for the real binary) pointing at both.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vodup::config::{AfterUpload, Config, Watch};
use vodup::emulator::{Emulator, EmulatorConfig, Faults, Stats};
use vodup::ledger::{FileRecord, Ledger};
use vodup::protocol::{RetryPolicy, SecretKey, Timeouts};

pub const SECRET_ID: &str = "AKIDvodupTestId";
/// Distinctive so a test can grep logs for it.
pub const SECRET_KEY: &str = "SeCrEt-kEy-2f9c81-must-never-be-logged";
pub const PART: u64 = 524_288;

/// A running emulator that can be stopped and started again on the same port and data.
pub struct Emu {
    pub addr: SocketAddr,
    pub endpoint: String,
    pub data: PathBuf,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Emu {
    pub async fn start(data: &Path, addr: SocketAddr, faults: Faults) -> Emu {
        let emulator = Emulator::bind(EmulatorConfig {
            listen: addr,
            data_dir: data.to_owned(),
            secrets: vec![(SECRET_ID.into(), SecretKey::new(SECRET_KEY))],
            faults,
            seed: 7,
        })
        .await
        .expect("emulator binds");
        let (addr, endpoint) = (emulator.local_addr(), emulator.endpoint());
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let cancel = cancel.clone();
            async move { emulator.run(cancel).await.expect("emulator runs") }
        });
        Emu {
            addr,
            endpoint,
            data: data.to_owned(),
            cancel,
            task,
        }
    }

    /// Stop serving and start again on the same address and data, as a restarted service would.
    pub async fn restart(&mut self, faults: Faults) {
        self.cancel.cancel();
        let _ = (&mut self.task).await;
        *self = Emu::start(&self.data.clone(), self.addr, faults).await;
    }

    fn admin(&self, path: &str) -> String {
        format!("http://{}/_admin/{path}", self.addr)
    }

    pub async fn stats(&self) -> Stats {
        reqwest::get(self.admin("stats"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn set_faults(&self, faults: &Faults) {
        let r = reqwest::Client::new()
            .post(self.admin("faults"))
            .json(faults)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "faults accepted: {}", r.status());
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub emu: Emu,
    pub drop: PathBuf,
    pub done: PathBuf,
    pub failed: PathBuf,
    pub src: PathBuf,
}

impl Env {
    pub async fn new() -> Env {
        Env::with_faults(Faults::default()).await
    }

    pub async fn with_faults(faults: Faults) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let emu = Emu::start(&root.join("emulator"), ([127, 0, 0, 1], 0).into(), faults).await;
        let [drop, done, failed, src] = ["drop", "done", "failed", "src"].map(|d| root.join(d));
        for d in [&drop, &done, &failed, &src] {
            std::fs::create_dir_all(d).unwrap();
        }
        Env {
            dir,
            emu,
            drop,
            done,
            failed,
            src,
        }
    }

    pub fn ledger_path(&self) -> PathBuf {
        self.dir.path().join("ledger.db")
    }

    pub fn ledger(&self) -> Ledger {
        Ledger::open(&self.ledger_path()).unwrap()
    }

    /// A config for in-process runs: small parts, fast retries, one watch of `drop`.
    pub fn config(&self) -> Config {
        let mut watch = Watch::new(self.drop.clone());
        watch.after_upload = AfterUpload::Move;
        watch.done_dir = Some(self.done.clone());
        watch.failed_dir = Some(self.failed.clone());
        watch.settle = Duration::from_millis(300);
        Config {
            endpoint: self.emu.endpoint.clone(),
            secret_id: SECRET_ID.into(),
            secret_key: Some(SecretKey::new(SECRET_KEY)),
            ledger: self.ledger_path(),
            part_size: PART,
            parts_in_flight: 4,
            files_in_flight: 2,
            shutdown_deadline: Duration::from_secs(5),
            rescan_interval: Duration::from_secs(2),
            retry: fast_retry(),
            timeouts: Timeouts {
                connect: Duration::from_secs(2),
                request: Duration::from_secs(5),
            },
            watch: vec![watch],
            ..Config::default()
        }
    }

    /// The same config as a TOML file for the real binary; `extra` is appended (top-level keys
    /// must come before the tables, so it is inserted before `[retry]`).
    pub fn config_file(&self, extra: &str) -> PathBuf {
        let text = format!(
            "endpoint = {:?}\nsecret_id = {SECRET_ID:?}\nsecret_key = {SECRET_KEY:?}\nledger = {:?}\n\
             part_size = {PART}\nparts_in_flight = 4\nshutdown_deadline = \"5s\"\nrescan_interval = \"2s\"\n{extra}\n\
             [retry]\nbase = \"5ms\"\ncap = \"100ms\"\nmax_attempts = 60\nmax_elapsed = \"60s\"\nslow_base = \"20ms\"\n\
             [timeouts]\nconnect = \"2s\"\nrequest = \"5s\"\n\
             [[watch]]\npath = {:?}\nafter_upload = \"move\"\ndone_dir = {:?}\nfailed_dir = {:?}\nsettle = \"300ms\"\n",
            self.emu.endpoint,
            self.ledger_path().display().to_string(),
            self.drop.display().to_string(),
            self.done.display().to_string(),
            self.failed.display().to_string(),
        );
        let path = self.dir.path().join("vodup.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Write `bytes` as `dir/name` and return its canonical path.
    pub fn write(&self, dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    pub fn record(&self, path: &Path) -> Option<FileRecord> {
        self.ledger().latest_for_path(path).unwrap()
    }
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(5),
        slow_base: Duration::from_millis(20),
        cap: Duration::from_millis(100),
        max_attempts: 60,
        max_elapsed: Duration::from_secs(60),
        few_attempts: 3,
    }
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

/// What the emulator serves at a finished file's URL.
pub async fn fetch(url: &str) -> Vec<u8> {
    let response = reqwest::get(url).await.unwrap();
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response.bytes().await.unwrap().to_vec()
}

/// Poll `check` until it is true; panic naming `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
