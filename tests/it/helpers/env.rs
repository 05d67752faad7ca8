//! `Env`: one test's world for vodup itself: a temp dir, a running emulator, drop/done/failed
//! folders, and a config (in-process or as a TOML file for the real binary) pointing at both.

use super::{start_emulator, TestEmulator};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vodup::config::{AfterUpload, Config, Watch};
use vodup::emulator::Faults;
use vodup::ledger::{Claim, FileKey, FileRecord, Ledger, Sqlite, WatchRoot};
use vodup::protocol::{RetryPolicy, SecretKey, Timeouts};

pub use super::{test_bytes, wait_until, SECRET_ID, SECRET_KEY};

pub const PART: u64 = 524_288;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub emu: TestEmulator,
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
        let emu = start_emulator(faults).await;
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

    /// The ledger, blocking, for reading what the code under test recorded.
    pub fn ledger(&self) -> Sqlite {
        Sqlite::open(&self.ledger_path()).unwrap()
    }

    /// `drop` as the ledger knows the config's watch of it.
    pub fn drop_root(&self) -> WatchRoot {
        WatchRoot {
            name: self.drop.to_string_lossy().into_owned(),
            path: self.drop.clone(),
        }
    }

    /// Record `path` as the intake of the config's watch does.
    pub async fn enqueue(&self, ledger: &Ledger, path: &Path) -> FileRecord {
        let root = Some(self.drop_root());
        vodup::source::enqueue(ledger, path, root, PART, "{}".into(), None)
            .await
            .unwrap()
    }

    /// A claim on `key` for this host's node, as the code under test would hold it.
    pub fn claim(&self, key: FileKey) -> Claim {
        let lease = vodup::ledger::Lease::of(&self.config());
        self.ledger().claim(key, &lease).unwrap().unwrap().0
    }

    /// A config for in-process runs: small parts, fast retries, one watch of `drop`.
    pub fn config(&self) -> Config {
        let mut watch = Watch::new(self.drop.clone());
        watch.after_upload = AfterUpload::Move;
        watch.done_dir = Some(self.done.clone());
        watch.failed_dir = Some(self.failed.clone());
        watch.settle = Duration::from_millis(300);
        watch.settle_unseen = Duration::from_secs(1);
        Config {
            endpoint: self.emu.endpoint.clone(),
            secret_id: SECRET_ID.into(),
            secret_key: Some(SecretKey::new(SECRET_KEY)),
            ledger: self.ledger_path().into(),
            part_size: PART,
            parts_in_flight: vodup::config::PartsInFlight::Fixed(4),
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
             [[watch]]\npath = {:?}\nafter_upload = \"move\"\ndone_dir = {:?}\nfailed_dir = {:?}\nsettle = \"300ms\"\nsettle_unseen = \"1s\"\n",
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

/// A hook command that writes its whole environment to `out` (whole once it exists).
pub fn env_dump_hook(out: &std::path::Path) -> Vec<String> {
    let out = out.display();
    let script = format!("env > {out}.tmp && mv {out}.tmp {out}");
    vec!["sh".into(), "-c".into(), script]
}

/// The variables of an `env` dump, by name.
pub fn dumped(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
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

/// After a kill and a resume: every one of `parts` parts arrived, and no more than `in_flight`
/// (the parts in flight when the process died) arrived twice.
#[track_caller]
pub fn assert_resent_at_most(stats: &vodup::emulator::Stats, parts: u64, in_flight: u64) {
    assert!(
        stats.duplicate_parts <= in_flight,
        "{} parts re-sent, more than the {in_flight} in flight",
        stats.duplicate_parts
    );
    assert_eq!(
        stats.parts_accepted - stats.duplicate_parts,
        parts,
        "every part exactly once, re-sends aside"
    );
}

/// Faults that refuse every `action` call with `code` and canRetry 0.
pub fn refuse(action: &str, code: i64) -> Faults {
    Faults {
        final_rate: 1.0,
        final_codes: vec![code],
        actions: vec![action.into()],
        ..Faults::default()
    }
}

/// Faults that slow every part by `ms`, so a test can act in the middle of an upload.
pub fn slow_parts(ms: u64) -> Faults {
    Faults {
        latency_ms: ms,
        actions: vec!["UploadPartEx".into()],
        ..Faults::default()
    }
}

/// The daemon running in-process; `stop` shuts it down and checks it stopped cleanly.
pub struct Daemon {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), vodup::error::Error>>,
}

impl Daemon {
    /// Start it and wait until it watches.
    pub async fn start(config: Config) -> Daemon {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, watching) = tokio::sync::oneshot::channel();
        let options = vodup::daemon::Options {
            reload_from: None,
            ready: Some(ready),
        };
        let task = tokio::spawn(vodup::daemon::run_with(config, options, async move {
            let _ = stopped.await;
        }));
        tokio::time::timeout(Duration::from_secs(10), watching)
            .await
            .expect("daemon ready in time")
            .expect("daemon ready");
        Daemon {
            stop: Some(stop),
            task,
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().expect("stopped once").send(());
        (&mut self.task)
            .await
            .unwrap()
            .expect("daemon stops cleanly");
    }
}

/// A loopback port free a moment ago (for a listener the code under test binds).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `kill -SIGNAL pid`, asserted to work.
pub fn send_signal(pid: i32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{signal} {pid}");
}

/// `vodup --config CONFIG ARGS` run to its end, outside systemd (no journal prefixes): whether
/// it succeeded, its stdout and its stderr.
pub async fn run_vodup(config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vodup"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .env_remove("INVOCATION_ID")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("vodup runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The objects of `vodup status --json`'s output, one a line.
pub fn json_lines(text: &[u8]) -> Vec<serde_json::Value> {
    std::str::from_utf8(text)
        .expect("UTF-8")
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not one JSON object: {line}: {e}"))
        })
        .collect()
}
