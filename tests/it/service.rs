//! What the installed service depends on: watches whose folders the daemon cannot write are
//! refused and shown, a disposal that fails is visible and paced, systemd is told of reloads
//! (refused ones too), errors carry their journal priority and a refused signature its file, and
//! the shipped example config is refused until it is filled in.

use crate::helpers::env::*;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;
use vodup::config::{AfterUpload, Watch};

async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn a_move_that_fails_is_shown_with_its_reason_retried_with_backoff_and_done_once_it_can_be() {
    let env = Env::new().await;
    // A file where the move needs a folder: done/sub/clip.mp4 cannot be made.
    let blocker = env.done.join("sub");
    std::fs::write(&blocker, b"in the way").unwrap();
    let port = free_port();
    let mut config = env.config();
    config.http.listen = Some(([127, 0, 0, 1], port).into());
    let base = format!("http://127.0.0.1:{port}");
    let daemon = Daemon::start(config).await;
    let data = test_bytes(2 * PART as usize + 17, 91);
    let dropped = env.write(&env.drop, "sub/clip.mp4", &data);

    let failures = || env.record(&dropped).and_then(|r| r.disposal_failed);
    wait_until(
        "a recorded disposal failure",
        Duration::from_secs(30),
        || async { failures().is_some() },
    )
    .await;
    let first = Instant::now();
    let record = env.record(&dropped).unwrap();
    assert_eq!(record.state, vodup::ledger::FileState::Done);
    assert!(!record.disposed);
    assert_eq!(fetch(record.url.as_deref().unwrap()).await, data);
    assert!(dropped.exists(), "the file stays where it was dropped");
    let failed = failures().unwrap();
    assert!(
        failed.reason.contains("after-upload action failed"),
        "{}",
        failed.reason
    );

    // Retried, but paced by the retry policy (at least a second apart), not taken again in a
    // tight loop nor only once a lease lapsed.
    wait_until("two more attempts", Duration::from_secs(30), || async {
        failures().is_some_and(|f| f.failures >= failed.failures + 2)
    })
    .await;
    assert!(
        first.elapsed() >= Duration::from_millis(1500),
        "two retries within {:?}",
        first.elapsed()
    );

    // Shown: status (table and JSON), /files.json, metrics.
    let file = env.config_file("");
    let (_, table, _) = run_vodup(&file, &["status"]).await;
    // The file's line, then the reason on a line of its own under it.
    let mut lines = table.lines().skip_while(|l| !l.contains("clip.mp4"));
    assert!(lines.next().is_some_and(|l| l.contains("done")), "{table}");
    let line = lines
        .find(|l| l.contains("NOT DISPOSED"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("after-upload action failed"), "{line}");
    let (_, json, _) = run_vodup(&file, &["status", "--json"]).await;
    let rows: Vec<Value> = crate::helpers::env::json_lines(json.as_bytes());
    let row = rows
        .iter()
        .find(|r| r["path"] == dropped.display().to_string())
        .unwrap();
    assert!(
        row["disposalFailed"]["failures"].as_u64().unwrap() >= 3,
        "{row}"
    );
    let page: Value = reqwest::get(format!("{base}/files.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shown = page["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str().is_some_and(|p| p.ends_with("clip.mp4")))
        .unwrap_or_else(|| panic!("{page}"));
    assert!(
        shown["disposalFailed"]
            .as_str()
            .is_some_and(|s| s.contains("after-upload action failed")),
        "{shown}"
    );
    let metrics = get_text(&format!("{base}/metrics")).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("vodup_disposals_failing{") && l.ends_with("} 1")),
        "{metrics}"
    );

    // The way cleared, the next attempt moves it, once.
    std::fs::remove_file(&blocker).unwrap();
    let moved = env.done.join("sub/clip.mp4");
    wait_until("the move", Duration::from_secs(30), || async {
        env.record(&dropped).is_some_and(|r| r.disposed)
    })
    .await;
    assert_eq!(std::fs::read(&moved).unwrap(), data);
    assert!(!dropped.exists());
    assert!(env.record(&dropped).unwrap().disposal_failed.is_none());
    let metrics = get_text(&format!("{base}/metrics")).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("vodup_disposals_failing{") && l.ends_with("} 0")),
        "{metrics}"
    );
    daemon.stop().await;
    assert_eq!(env.emu.stats().await.finishes, 1, "uploaded once");
}

#[tokio::test]
async fn a_watch_whose_folders_cannot_be_written_is_refused_shown_and_taken_up_once_they_can_be() {
    let env = Env::new().await;
    let root = env.dir.path().canonicalize().unwrap();
    let blocker = root.join("not-a-folder");
    std::fs::write(&blocker, b"a file").unwrap();
    let other = root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let mut config = env.config();
    let mut refused = Watch::new(other.clone());
    refused.after_upload = AfterUpload::Keep;
    refused.failed_dir = Some(blocker.join("failed"));
    refused.settle = Duration::from_millis(300);
    refused.settle_unseen = Duration::from_secs(1);
    config.watch.push(refused);
    let daemon = Daemon::start(config).await;

    let stray = env.write(&other, "stray.mp4", &test_bytes(PART as usize, 5));
    let data = test_bytes(PART as usize + 3, 6);
    let good = env.write(&env.drop, "good.mp4", &data);
    let done = env.done.join("good.mp4");
    // The file lands in the done folder a moment before the ledger records the move.
    wait_until(
        "the good watch's file moved and recorded so",
        Duration::from_secs(30),
        || async { done.exists() && env.record(&good).is_some_and(|r| r.disposed) },
    )
    .await;
    assert_eq!(std::fs::read(&done).unwrap(), data);
    // Long past the refused watch's settle time and a rescan.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        env.record(&stray).is_none(),
        "a refused watch's file is not taken"
    );

    let nodes = env.ledger().nodes().unwrap();
    let why = nodes[0]
        .refused
        .clone()
        .expect("the node records its refusal");
    assert!(why.contains("other"), "{why}");
    assert!(why.contains("failed_dir"), "{why}");
    assert!(why.contains("not-a-folder"), "{why}");
    let (_, out, _) = run_vodup(&env.config_file(""), &["status"]).await;
    let line = out
        .lines()
        .find(|l| l.contains("REFUSED"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("other"), "{line}");

    // The way cleared, the next rescan takes the watch up, without a reload.
    std::fs::remove_file(&blocker).unwrap();
    wait_until(
        "the refused watch taken up",
        Duration::from_secs(30),
        || async {
            env.record(&stray)
                .is_some_and(|r| r.state == vodup::ledger::FileState::Done)
        },
    )
    .await;
    assert!(blocker.join("failed").is_dir());
    assert!(env.ledger().nodes().unwrap()[0].refused.is_none());
    daemon.stop().await;
}

#[tokio::test]
async fn check_config_warns_of_a_done_folder_on_another_file_system() {
    let env = Env::new().await;
    let shm = Path::new("/dev/shm");
    let other_fs = |a: &Path, b: &Path| {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(a).unwrap().dev() != std::fs::metadata(b).unwrap().dev()
    };
    assert!(
        shm.is_dir() && other_fs(shm, &env.drop),
        "/dev/shm must be a file system of its own beside the temp dir for this test"
    );
    let done = tempfile::tempdir_in(shm).unwrap();
    let config = env.config_file("");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("done_dir = {:?}", env.done.display().to_string()),
        &format!("done_dir = {:?}", done.path().display().to_string()),
    );
    std::fs::write(&config, text).unwrap();
    let (ok, _, stderr) = run_vodup(&config, &["check-config"]).await;
    assert!(ok, "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.starts_with("warning:") && l.contains("another file system"))
        .unwrap_or_else(|| panic!("no warning of a copying move: {stderr}"));
    assert!(warning.contains("ReadWritePaths"), "{warning}");
    assert!(
        warning.contains(&done.path().display().to_string()),
        "{warning}"
    );
}

#[tokio::test]
async fn the_shipped_example_config_is_refused_until_its_placeholders_are_replaced() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let (ok, stdout, stderr) = run_vodup(&example, &["check-config"]).await;
    assert!(!ok, "check-config accepts the example: {stdout}");
    assert!(stderr.contains("placeholder"), "{stderr}");
    let (ok, _, stderr) = run_vodup(&example, &["run"]).await;
    assert!(!ok);
    assert!(stderr.contains("placeholder"), "{stderr}");
}

/// A datagram socket in `dir` for `NOTIFY_SOCKET`, and what arrives on it.
struct Notify {
    socket: tokio::net::UnixDatagram,
    got: Vec<String>,
}

impl Notify {
    fn bind(dir: &Path) -> (Notify, std::path::PathBuf) {
        let path = dir.join("notify.sock");
        let socket = tokio::net::UnixDatagram::bind(&path).unwrap();
        (
            Notify {
                socket,
                got: Vec::new(),
            },
            path,
        )
    }

    /// Wait for a message that `wanted` accepts; return it.
    async fn until(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = vec![0; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(Ok(n)) = tokio::time::timeout(left, self.socket.recv(&mut buf)).await else {
                panic!("no {what} from vodup; it sent {:?}", self.got);
            };
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.got.push(message.clone());
            if wanted(&message) {
                return message;
            }
        }
    }
}

#[tokio::test]
async fn systemd_hears_ready_reloading_and_a_refused_reload_and_errors_carry_their_priority() {
    let env = Env::new().await;
    let config = env.config_file("");
    let (mut notify, socket) = Notify::bind(env.dir.path());
    let stderr_path = env.dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vodup"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env_remove("RUST_LOG")
        .env("NOTIFY_SOCKET", &socket)
        .env("JOURNAL_STREAM", "8:12345")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap() as i32;
    notify.until("READY=1", |m| m.contains("READY=1")).await;
    assert!(
        notify
            .got
            .iter()
            .any(|m| m.contains("STATUS=watching 1 folder")),
        "{:?}",
        notify.got
    );

    // A good reload: RELOADING=1 first, then READY=1.
    send_signal(pid, "HUP");
    notify
        .until("RELOADING=1", |m| m.contains("RELOADING=1"))
        .await;
    let ready = notify.until("READY=1", |m| m.contains("READY=1")).await;
    assert!(!ready.contains("refused"), "{ready}");

    // A broken config: RELOADING=1, READY=1 with the refusal in STATUS=, and an error line with
    // priority 3; the daemon runs on.
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{good}\nthis is = = not toml\n")).unwrap();
    send_signal(pid, "HUP");
    notify
        .until("RELOADING=1", |m| m.contains("RELOADING=1"))
        .await;
    let refused = notify.until("READY=1", |m| m.contains("READY=1")).await;
    assert!(refused.contains("STATUS=reload refused"), "{refused}");
    assert!(child.try_wait().unwrap().is_none(), "vodup runs on");
    let data = test_bytes(PART as usize, 8);
    env.write(&env.drop, "after-refusal.mp4", &data);
    let done = env.done.join("after-refusal.mp4");
    wait_until(
        "the upload under the old config",
        Duration::from_secs(30),
        || async { done.exists() },
    )
    .await;

    send_signal(pid, "TERM");
    let exit = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit}");
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    let error = log
        .lines()
        .find(|l| l.contains("reload refused"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(error.starts_with("<3>"), "{error}");
    assert!(
        log.lines().all(|l| l.starts_with('<')),
        "every line has a priority: {log}"
    );
    assert!(
        log.lines().any(|l| l.starts_with("<6>")),
        "info lines have priority 6: {log}"
    );
}

#[tokio::test]
async fn a_refused_signature_is_an_error_that_names_the_file_and_the_key() {
    let env = Env::new().await;
    let config = env.config_file("");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("secret_key = {SECRET_KEY:?}"),
        "secret_key = \"not-the-key-the-service-has\"",
    );
    std::fs::write(&config, text).unwrap();
    let data = test_bytes(PART as usize, 9);
    let file = env.write(&env.src, "signed.mp4", &data);
    let out = Command::new(env!("CARGO_BIN_EXE_vodup"))
        .arg("--config")
        .arg(&config)
        .arg("upload")
        .arg(&file)
        .env_remove("RUST_LOG")
        .env("JOURNAL_STREAM", "8:12345")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.contains("refused the signature"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.starts_with("<3>"), "{line}");
    assert!(line.contains("secret_id"), "{line}");
    assert!(line.contains("signed.mp4"), "{line}");
    assert!(line.contains(&vodup::hash::sha1_hex(&data)), "{line}");
    assert!(!log.contains("not-the-key"), "the key never shows: {log}");
}
