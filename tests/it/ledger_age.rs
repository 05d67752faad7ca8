//! A ledger a year old: a million rows, built directly (not through uploads), and what people
//! read from it stays small: `vodup status` by default, and the status page.

use crate::helpers::env::{
    fetch, free_port, json_lines, test_bytes, wait_until, Daemon, Env, PART,
};
use std::process::Stdio;
use std::time::Duration;
use vodup::config::AfterUpload;
use vodup::ledger::FileState;

const ROWS: i64 = 1_000_000;

/// `ROWS` done files (moved long ago), then three queued ones and one failed whose move failed.
fn year_old_ledger(env: &Env) {
    let ledger = env.ledger(); // creates and migrates the schema
    drop(ledger);
    let conn = rusqlite::Connection::open(env.ledger_path()).unwrap();
    let origin = env.drop.display().to_string();
    let now = vodup::clock::unix_now_i64();
    conn.execute_batch(&format!(
        "BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
         INSERT INTO files (path, size, mtime_ns, part_size, state, file_sha, origin, processing,
                            file_id, url, instant, disposed, disposal, created_at, updated_at,
                            finished_at)
         SELECT CAST('{origin}/old/take-' || i || '.mp4' AS BLOB), 5000000 + i, i, 1048576,
                'done', printf('%040x', i), CAST('{origin}' AS BLOB), '{{}}', 'id' || i,
                'http://vod.example/' || i, 0, 1, 'moved', {now} - 400 * 86400 + i * 30,
                {now} - 400 * 86400 + i * 30, {now} - 400 * 86400 + i * 30
         FROM n;
         INSERT INTO files (path, size, mtime_ns, part_size, state, origin, processing,
                            created_at, updated_at)
         VALUES (CAST('{origin}/new-1.mp4' AS BLOB), 10, 1, 1048576, 'queued', CAST('{origin}' AS BLOB), '{{}}', {now}, {now}),
                (CAST('{origin}/new-2.mp4' AS BLOB), 10, 1, 1048576, 'queued', CAST('{origin}' AS BLOB), '{{}}', {now}, {now}),
                (CAST('{origin}/new-3.mp4' AS BLOB), 10, 1, 1048576, 'queued', CAST('{origin}' AS BLOB), '{{}}', {now}, {now});
         INSERT INTO files (path, size, mtime_ns, part_size, state, origin, processing,
                            created_at, updated_at, disposed, disposal_error, disposal_failures)
         VALUES (CAST('{origin}/stuck.mp4' AS BLOB), 10, 1, 1048576, 'failed', CAST('{origin}' AS BLOB), '{{}}', {now} - 7200, {now} - 7200,
                 0, 'after-upload action failed: Permission denied', 4);
         COMMIT;"
    ))
    .unwrap();
}

/// `vodup ARGS` on `env`'s config: its stdout, stderr, and peak resident memory (KiB, the
/// kernel's high-water mark `VmHWM`, read while it runs: the last reading before it exits).
fn vodup(env: &Env, args: &[&str]) -> (Vec<u8>, String, u64) {
    use std::io::Read as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vodup"))
        .arg("--config")
        .arg(env.config_file(""))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).unwrap();
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak = peak.max(hwm.unwrap_or(0));
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "{stderr}");
    assert!(peak > 0, "its memory was read");
    (stdout, stderr, peak)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_files_the_default_status_shows_the_open_ones_and_the_latest_in_flat_memory() {
    let env = Env::new().await;
    year_old_ledger(&env);

    let (out, _, rss_kib) = vodup(&env, &["status"]);
    let table = String::from_utf8(out).unwrap();
    assert!(
        table.contains("new-1.mp4") && table.contains("new-3.mp4"),
        "{table}"
    );
    assert!(
        table.contains("stuck.mp4") && table.contains("NOT DISPOSED"),
        "{table}"
    );
    let ended = table.lines().filter(|l| l.starts_with("done ")).count();
    assert_eq!(ended, vodup::commands::STATUS_ENDED, "{table}");
    assert!(
        table.contains(&format!("take-{ROWS}.mp4")),
        "the latest done file is shown: {table}"
    );
    let older = ROWS as usize - vodup::commands::STATUS_ENDED;
    assert!(
        table.contains(&format!("{older} older file(s) not shown")),
        "{table}"
    );
    assert!(
        table.lines().count() < 400,
        "{} lines",
        table.lines().count()
    );
    assert!(rss_kib < 64 * 1024, "peak RSS {rss_kib} KiB");

    // --json: one object a line, the same files.
    let (out, stderr, _) = vodup(&env, &["status", "--json"]);
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 4 + vodup::commands::STATUS_ENDED, "{stderr}");
    assert!(stderr.contains("older file(s) not shown"), "{stderr}");
    // Selections: a state, a window of time, a limit.
    let (out, ..) = vodup(&env, &["status", "--json", "--state", "queued"]);
    assert_eq!(json_lines(&out).len(), 3);
    let (out, ..) = vodup(&env, &["status", "--json", "--since", "1h"]);
    let recent = json_lines(&out);
    assert_eq!(
        recent.len(),
        3,
        "the queued files; the failed one is 2 h old"
    );
    let (out, ..) = vodup(&env, &["status", "--json", "--all", "--limit", "1200"]);
    assert_eq!(json_lines(&out).len(), 1200, "pages beyond the first");

    // --all streams: memory stays flat however many rows it prints (200 pages here; every row
    // of the million in bench/ledger_year.sh, which a debug build would take a minute over).
    let (out, _, rss_kib) = vodup(&env, &["status", "--json", "--all", "--limit", "100000"]);
    let lines = out.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(lines, 100_000);
    assert!(
        rss_kib < 64 * 1024,
        "peak RSS {rss_kib} KiB for 100,000 rows"
    );

    // The page reads a page of files, not the ledger.
    let port = free_port();
    let mut config = env.config();
    config.http.listen = Some(([127, 0, 0, 1], port).into());
    let daemon = Daemon::start(config).await;
    let page = reqwest::get(format!("http://127.0.0.1:{port}/files.json?limit=50"))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page: serde_json::Value = page.json().await.unwrap();
    assert_eq!(page["files"].as_array().unwrap().len(), 50, "{page}");
    let _ = tokio::time::timeout(Duration::from_secs(30), daemon.stop()).await;
}

/// With `forget_after`, the row of a file moved away is forgotten once that long passed; the row
/// of a file kept in its watch stays, so rescans do not upload it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_row_of_a_moved_file_is_forgotten_and_a_kept_file_is_not_uploaded_again() {
    let env = Env::new().await;
    let keep = env.dir.path().canonicalize().unwrap().join("keep");
    std::fs::create_dir_all(&keep).unwrap();
    let mut config = env.config();
    config.forget_after = Duration::from_secs(2);
    let port = free_port();
    config.http.listen = Some(([127, 0, 0, 1], port).into());
    let mut kept_watch = config.watch[0].clone();
    kept_watch.path = keep.clone();
    kept_watch.after_upload = AfterUpload::Keep;
    config.watch.push(kept_watch);
    let daemon = Daemon::start(config).await;
    let moved = env.write(&env.drop, "moved.mp4", &test_bytes(PART as usize + 5, 1));
    let kept = env.write(&keep, "kept.mp4", &test_bytes(PART as usize + 7, 2));
    let landed = env.done.join("moved.mp4");
    wait_until("the moved file lands", Duration::from_secs(30), || async {
        landed.exists()
    })
    .await;
    // A file's row, found by its drop path or where it was moved.
    let row_of = |path: &std::path::Path| {
        let rows = env.ledger().files().unwrap();
        rows.into_iter()
            .find(|r| r.path == path || r.intent_target.as_deref() == Some(path))
    };
    wait_until(
        "the moved file's row is forgotten",
        Duration::from_secs(30),
        || async { row_of(&moved).is_none() && row_of(&landed).is_none() },
    )
    .await;
    let kept_row = row_of(&kept).expect("the kept file's row stays");
    assert_eq!(kept_row.state, FileState::Done);
    // Two rescans later, the kept file is still the one upload.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(row_of(&kept).map(|r| r.key), Some(kept_row.key));
    let stats = env.emu.stats().await;
    assert_eq!(stats.finishes, 2, "one upload of each file");
    let metrics = fetch(&format!("http://127.0.0.1:{port}/metrics")).await;
    let metrics = String::from_utf8(metrics).unwrap();
    let forgotten = metrics
        .lines()
        .find(|l| l.starts_with("vodup_ledger_forgotten_rows_total"))
        .expect("the retention counter");
    assert!(forgotten.ends_with(" 1"), "{forgotten}");
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        test_bytes(PART as usize + 7, 2)
    );
    daemon.stop().await;
}
