//! The real `vodup` binary: `upload --json`, `status --json`, `check-config`, resume after
//! SIGKILL, and the secret key kept out of every log line and out of hook commands.

use crate::helpers::env::{
    assert_resent_at_most, dumped, env_dump_hook, fetch, slow_parts, test_bytes, wait_until, Env,
    PART, SECRET_KEY,
};
use serde_json::Value;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::process::Command;
use vodup::emulator::Faults;

fn vodup(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vodup"));
    cmd.arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

async fn run(cmd: &mut Command) -> Output {
    cmd.output().await.expect("vodup runs")
}

/// Run `vodup upload PATH` and SIGKILL it once the service accepted `parts` parts.
async fn upload_killed_after(env: &Env, config: &Path, path: &Path, parts: u64) {
    let mut child = vodup(config)
        .arg("upload")
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        "parts confirmed by the service",
        Duration::from_secs(30),
        || async { env.emu.stats().await.parts_accepted >= parts },
    )
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[tokio::test]
async fn a_final_error_fails_one_file_and_the_other_still_uploads() {
    let env = Env::new().await;
    let good = test_bytes(3 * PART as usize, 10);
    let bad = test_bytes(2 * PART as usize, 11);
    let good_path = env.write(&env.src, "good.mp4", &good);
    let bad_path = env.write(&env.src, "bad.mp4", &bad);
    env.emu
        .set_faults(&Faults {
            final_rate: 1.0,
            final_codes: vec![-10003],
            file_sha: Some(vodup::hash::sha1_hex(&bad)),
            actions: vec!["UploadPartEx".into()],
            ..Faults::default()
        })
        .await;
    let config = env.config_file("");
    let out = run(vodup(&config)
        .arg("upload")
        .arg("--json")
        .arg(&bad_path)
        .arg(&good_path))
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = json_lines(&out);
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["error"]["code"], -10003);
    assert!(results[0]["fileId"].is_null());
    assert_eq!(results[1]["instant"], false);
    assert_eq!(results[1]["fileSha"], vodup::hash::sha1_hex(&good));
    assert_eq!(fetch(results[1]["url"].as_str().unwrap()).await, good);

    let status = run(vodup(&config).args(["status", "--json"])).await;
    let rows: Vec<Value> = crate::helpers::env::json_lines(&status.stdout);
    let failed = rows
        .iter()
        .find(|r| r["path"] == bad_path.display().to_string())
        .unwrap();
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["error"]["code"], -10003);
    assert!(!failed["error"]["message"].as_str().unwrap().is_empty());
    let done = rows
        .iter()
        .find(|r| r["path"] == good_path.display().to_string())
        .unwrap();
    assert_eq!(done["state"], "done");
    assert_eq!(done["fileId"], results[1]["fileId"]);
}

#[tokio::test]
async fn resumes_after_sigkill_resending_at_most_the_parts_in_flight() {
    let env = Env::new().await;
    env.emu.set_faults(&slow_parts(60)).await;
    let data = test_bytes(40 * PART as usize + 99, 12);
    let path = env.write(&env.src, "big.mp4", &data);
    let config = env.config_file("");
    upload_killed_after(&env, &config, &path, 10).await;
    let before = env.emu.stats().await;
    assert!(before.parts_accepted < 41, "killed before the end");
    assert_eq!(before.finishes, 0);
    let confirmed = env.record(&path).unwrap().confirmed_bytes;
    assert!(
        confirmed <= before.parts_accepted * PART,
        "the ledger never runs ahead of the service"
    );

    env.emu.set_faults(&Faults::default()).await;
    let out = run(vodup(&config).arg("upload").arg("--json").arg(&path)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = &json_lines(&out)[0];
    assert_eq!(fetch(result["url"].as_str().unwrap()).await, data);
    let after = env.emu.stats().await;
    assert_resent_at_most(&after, 41, 4);
    assert_eq!(after.finishes, 1);
}

#[tokio::test]
async fn resumes_from_the_emulator_state_after_the_emulator_restarts() {
    let mut env = Env::new().await;
    env.emu.set_faults(&slow_parts(50)).await;
    let data = test_bytes(20 * PART as usize, 13);
    let path = env.write(&env.src, "restart.mp4", &data);
    let config = env.config_file("");
    upload_killed_after(&env, &config, &path, 5).await;
    let held_before = env.emu.stats().await.parts_accepted;
    env.emu.restart().await;
    let out = run(vodup(&config).arg("upload").arg("--json").arg(&path)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fetch(json_lines(&out)[0]["url"].as_str().unwrap()).await,
        data
    );
    let after = env.emu.stats().await;
    assert!(
        after.parts_accepted <= 20 - held_before + 4,
        "sent {} after the restart",
        after.parts_accepted
    );
}

#[tokio::test]
async fn check_config_names_the_bad_key() {
    let env = Env::new().await;
    let config = env.config_file("part_size = 1000000");
    let out = run(vodup(&config).arg("check-config")).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("part_size"), "{err}");
    let good = env.config_file("");
    assert!(run(vodup(&good).arg("check-config")).await.status.success());
}

#[tokio::test]
async fn the_secret_key_never_appears_in_trace_logs_or_output() {
    let env = Env::with_faults(Faults {
        retryable_rate: 0.2,
        ..Faults::default()
    })
    .await;
    let config = env.config_file("");
    for (seed, format) in [(14, "human"), (15, "json")] {
        let path = env.write(
            &env.src,
            &format!("secret-{format}.mp4"),
            &test_bytes(3 * PART as usize, seed),
        );
        let out = run(vodup(&config)
            .args(["-vv", "--log-format", format, "upload", "--json"])
            .arg(&path))
        .await;
        assert!(out.status.success());
        let all = [out.stdout, out.stderr].concat();
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.contains("TRACE") || text.contains("\"level\":\"TRACE\""),
            "trace level is on"
        );
        assert!(
            !text.contains(SECRET_KEY),
            "the secret key leaked in {format} logs"
        );
    }
    let ledger = std::fs::read(env.ledger_path()).unwrap();
    assert!(
        !String::from_utf8_lossy(&ledger).contains(SECRET_KEY),
        "the secret key is in the ledger"
    );
}

#[tokio::test]
async fn a_secret_key_from_the_environment_never_reaches_a_hook_command() {
    let env = Env::new().await;
    let config = env.config_file("");
    let out = env.dir.path().join("hook-env");
    let mut text = std::fs::read_to_string(&config).unwrap();
    let line = format!("secret_key = {SECRET_KEY:?}\n");
    assert!(text.contains(&line));
    text = text.replace(&line, "");
    text.push_str(&format!(
        "[watch.on_done]\ncommand = {:?}\n",
        env_dump_hook(&out)
    ));
    std::fs::write(&config, text).unwrap();
    let mut daemon = vodup(&config)
        .arg("run")
        .env(vodup::config::SECRET_KEY_ENV, SECRET_KEY)
        .env("VODUP_LEDGER_PASSWORD", "ledger-pa55word")
        .env("UNRELATED_TO_VODUP", "not-for-hooks")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let dropped = env.write(&env.drop, "keyed.mp4", &test_bytes(1000, 16));
    wait_until("the command hook", Duration::from_secs(30), || async {
        out.exists()
    })
    .await;
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();
    let record = env.record(&dropped).unwrap();
    assert_eq!(
        record.state,
        vodup::ledger::FileState::Done,
        "signed with the key from the environment"
    );
    let dump = std::fs::read_to_string(&out).unwrap();
    let names: Vec<String> = dumped(&dump).into_iter().map(|(k, _)| k).collect();
    for leaked in [
        "VODUP_SECRET_KEY",
        "VODUP_LEDGER_PASSWORD",
        "UNRELATED_TO_VODUP",
    ] {
        assert!(!names.iter().any(|k| k == leaked), "{leaked}: {dump}");
    }
    for value in [SECRET_KEY, "ledger-pa55word", "not-for-hooks"] {
        assert!(!dump.contains(value), "{value}: {dump}");
    }
}

#[tokio::test]
async fn a_newline_in_a_file_name_forges_no_line_in_output_logs_or_status() {
    let env = Env::new().await;
    let config = env.config_file("");
    let name = "clip\nERROR forged line\u{1b}[2J.mp4";
    let path = env.write(&env.src, name, &test_bytes(PART as usize, 70));
    let out = run(vodup(&config)
        .args(["--log-format", "human", "upload"])
        .arg(&path))
    .await;
    assert!(out.status.success(), "{out:?}");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    // The file's result line, then the summary.
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stdout
        .lines()
        .nth(1)
        .unwrap()
        .starts_with("vodup: 1 file uploaded"));
    assert!(
        stdout.contains("clip\\nERROR forged line\\e[2J.mp4"),
        "{stdout}"
    );
    for text in [&stdout, &stderr] {
        assert!(
            !text.lines().any(|l| l.starts_with("ERROR forged")),
            "{text}"
        );
        assert!(
            !text.contains('\u{1b}'),
            "no raw escape reaches a terminal: {text:?}"
        );
    }
    let status = run(vodup(&config).arg("status")).await;
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        !table.lines().any(|l| l.starts_with("ERROR forged")),
        "{table}"
    );
    assert!(table.contains("clip\\nERROR forged line"), "{table}");
}
