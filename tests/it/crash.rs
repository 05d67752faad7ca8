//! The real daemon binary killed and stopped in the middle of uploads.

use crate::helpers::env::{
    assert_resent_at_most, send_signal, slow_parts, test_bytes, wait_until, Env, PART,
};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

fn daemon(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_vodup"))
        .arg("--config")
        .arg(config)
        .arg("run")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("vodup run starts")
}

const FILES: usize = 4;
const PARTS: usize = 10;

async fn slow_env() -> (Env, Vec<Vec<u8>>) {
    let env = Env::with_faults(slow_parts(40)).await;
    let contents: Vec<Vec<u8>> = (0..FILES)
        .map(|i| test_bytes(PARTS * PART as usize - i, 40 + i as u64))
        .collect();
    for (i, data) in contents.iter().enumerate() {
        env.write(&env.drop, &format!("v{i}.mp4"), data);
    }
    (env, contents)
}

async fn all_done(env: &Env, contents: &[Vec<u8>]) {
    for (i, data) in contents.iter().enumerate() {
        let moved = env.done.join(format!("v{i}.mp4"));
        wait_until(
            &format!("v{i}.mp4 moved to done"),
            Duration::from_secs(60),
            || async { moved.exists() },
        )
        .await;
        assert_eq!(&std::fs::read(&moved).unwrap(), data);
    }
    let names: Vec<_> = walk(&env.done);
    assert_eq!(
        names.len(),
        FILES,
        "each file moved exactly once: {names:?}"
    );
    assert!(
        walk(&env.drop).is_empty(),
        "nothing left in the drop folder"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[tokio::test]
async fn sigkill_in_the_middle_of_uploads_then_restart_completes_everything_once() {
    let (env, contents) = slow_env().await;
    let config = env.config_file("files_in_flight = 2");
    let mut first = daemon(&config);
    wait_until("parts in progress", Duration::from_secs(30), || async {
        env.emu.stats().await.parts_accepted >= 8
    })
    .await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let mut second = daemon(&config);
    all_done(&env, &contents).await;
    second.start_kill().unwrap();
    second.wait().await.unwrap();
    let stats = env.emu.stats().await;
    assert_resent_at_most(&stats, (FILES * PARTS) as u64, 4);
    for data in &contents {
        let sha = vodup::hash::sha1_hex(data);
        assert!(stats.parts_by_sha[&sha] >= PARTS as u64);
    }
    let ledger = env.ledger();
    assert!(ledger
        .files()
        .unwrap()
        .iter()
        .all(|r| r.state == vodup::ledger::FileState::Done && r.disposed));
}

#[tokio::test]
async fn sigterm_drains_within_the_deadline_exits_zero_and_the_restart_finishes() {
    let (env, contents) = slow_env().await;
    let config = env.config_file("files_in_flight = 2");
    let mut first = daemon(&config);
    wait_until("parts in progress", Duration::from_secs(30), || async {
        env.emu.stats().await.parts_accepted >= 6
    })
    .await;
    let pid = first.id().unwrap() as i32;
    let asked = Instant::now();
    send_signal(pid, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(15), first.wait())
        .await
        .expect("exits")
        .unwrap();
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
    assert!(
        asked.elapsed() < Duration::from_secs(5 + 3),
        "within shutdown_deadline (5s) and margin"
    );
    let mut second = daemon(&config);
    all_done(&env, &contents).await;
    second.start_kill().unwrap();
    second.wait().await.unwrap();
    let stats = env.emu.stats().await;
    assert_eq!(
        stats.duplicate_parts, 0,
        "a drained shutdown re-sends nothing"
    );
}

/// Send a signal with kill(1): the crate forbids `unsafe`, and tokio only sends SIGKILL.
#[tokio::test]
async fn sighup_reloads_the_watch_list() {
    let env = Env::new().await;
    let config = env.config_file("");
    let mut running = daemon(&config);
    let second = env.dir.path().join("second-drop");
    let second_done = env.dir.path().join("second-done");
    std::fs::create_dir_all(&second).unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[watch]]\npath = {:?}\nafter_upload = \"move\"\ndone_dir = {:?}\nsettle = \"300ms\"\nsettle_unseen = \"1s\"\n",
        second.display().to_string(),
        second_done.display().to_string()
    ));
    // Wait until the daemon watches (its first scan takes the file already there).
    env.write(&env.drop, "first.mp4", &test_bytes(1000, 60));
    wait_until("the first file", Duration::from_secs(30), || async {
        env.done.join("first.mp4").exists()
    })
    .await;
    std::fs::write(&config, text).unwrap();
    send_signal(running.id().unwrap() as i32, "HUP");
    let data = test_bytes(PART as usize, 61);
    let dropped = second.join("new-folder.mp4");
    std::fs::write(&dropped, &data).unwrap();
    let moved = second_done.join("new-folder.mp4");
    wait_until(
        "the file in the reloaded folder",
        Duration::from_secs(30),
        || async { moved.exists() },
    )
    .await;
    assert_eq!(std::fs::read(&moved).unwrap(), data);
    running.start_kill().unwrap();
    running.wait().await.unwrap();
}

#[tokio::test]
async fn sigterm_while_a_large_file_is_hashed_exits_promptly() {
    let env = Env::new().await;
    let config = env.config_file("");
    let big = std::fs::File::create(env.drop.join("huge.mp4")).unwrap();
    big.set_len(6 << 30).unwrap(); // 6 GiB, sparse: hashing it takes many seconds of CPU
    drop(big);
    let mut running = daemon(&config);
    wait_until("hashing under way", Duration::from_secs(30), || async {
        env.record(&env.drop.join("huge.mp4"))
            .is_some_and(|r| r.state == vodup::ledger::FileState::Hashing)
    })
    .await;
    let asked = Instant::now();
    send_signal(running.id().unwrap() as i32, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(20), running.wait())
        .await
        .expect("exits")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "took {:?} to stop while hashing",
        asked.elapsed()
    );
}

#[tokio::test]
async fn a_sighup_while_the_ledger_is_still_connecting_is_not_the_end_of_the_daemon() {
    let env = Env::new().await;
    // A PostgreSQL that takes connections and never answers: the start waits on it.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let config = env.config_file("");
    let sqlite = format!("ledger = {:?}", env.ledger_path().display().to_string());
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &sqlite,
        &format!("ledger = \"postgres://vodup@127.0.0.1:{port}/vodup?connect_timeout=30\""),
    );
    std::fs::write(&config, text).unwrap();
    let mut running = daemon(&config);
    let pid = running.id().unwrap() as i32;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(running.try_wait().unwrap().is_none(), "still starting");
    send_signal(pid, "HUP");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        running.try_wait().unwrap().is_none(),
        "a SIGHUP during the start ended the daemon: {:?}",
        running.try_wait()
    );
    send_signal(pid, "KILL");
    let _ = running.wait().await;
    held.abort();
}
