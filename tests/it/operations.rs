//! Operating vodup: metrics that move, completion hooks delivered at least once (also across a
//! restart), and JSON logs that carry fileSha.

use crate::helpers::env::{
    dumped, env_dump_hook, free_port, refuse, send_signal, slow_parts, test_bytes, wait_until,
    Daemon, Env, PART, SECRET_KEY,
};
use axum::{extract::State, http::StatusCode, routing::post, Router};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vodup::config::Hook;
use vodup::emulator::Faults;

/// The value of one sample line of a Prometheus exposition (`name{labels} value`).
/// The value of `series` in an exposition, as if it had no `node` label: the daemon labels
/// every series with its node (`NODE` in these tests), which is checked once, here.
fn sample(text: &str, series: &str) -> Option<f64> {
    let node = format!("node=\"{NODE}\"");
    text.lines()
        .filter(|l| l.starts_with("vodup_"))
        .map(|l| {
            assert!(l.contains(&node), "a series without the node label: {l}");
            l.replace(&format!(",{node}"), "")
                .replace(&format!("{{{node}}}"), "")
                .replace(&format!("{node},"), "")
        })
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
}

/// The node name the metrics tests give their daemon.
const NODE: &str = "ingest-test";

#[tokio::test]
async fn metrics_move_during_and_after_an_upload() {
    let env = Env::with_faults(slow_parts(60)).await;
    let port = free_port();
    let mut config = env.config();
    config.metrics.listen = Some(([127, 0, 0, 1], port).into());
    config.node = Some(NODE.into());
    let daemon = Daemon::start(config).await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let data = test_bytes(16 * PART as usize, 50);
    env.write(&env.drop, "metered.mp4", &data);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let during = loop {
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        let confirmed = sample(&text, "vodup_bytes_confirmed_total").unwrap_or(0.0);
        if confirmed > 0.0 && confirmed < data.len() as f64 {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no scrape caught the upload in progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        sample(&during, "vodup_files{state=\"uploading\"}"),
        Some(1.0),
        "{during}"
    );
    assert!(sample(&during, "vodup_parts_in_flight").unwrap() >= 1.0);
    wait_until("done", Duration::from_secs(30), || async {
        env.done.join("metered.mp4").exists()
    })
    .await;
    let after = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert_eq!(
        sample(&after, "vodup_bytes_confirmed_total"),
        Some(data.len() as f64)
    );
    assert_eq!(
        sample(
            &after,
            "vodup_parts_total{outcome=\"confirmed\",code=\"0\"}"
        ),
        Some(16.0),
        "{after}"
    );
    assert_eq!(sample(&after, "vodup_files{state=\"done\"}"), Some(1.0));
    assert_eq!(
        sample(&after, "vodup_upload_duration_seconds_count"),
        Some(1.0)
    );
    assert_eq!(sample(&after, "vodup_parts_in_flight"), Some(0.0));
    assert_eq!(sample(&after, "vodup_instant_uploads_total"), Some(0.0));
    assert!(
        after.contains(&format!("vodup_build_info{{node=\"{NODE}\",version=")),
        "{after}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn retried_parts_are_counted_by_code() {
    let env = Env::with_faults(Faults {
        retryable_rate: 0.5,
        retryable_codes: vec![-10004],
        actions: vec!["UploadPartEx".into()],
        ..Faults::default()
    })
    .await;
    let port = free_port();
    let mut config = env.config();
    config.metrics.listen = Some(([127, 0, 0, 1], port).into());
    config.node = Some(NODE.into());
    let daemon = Daemon::start(config).await;
    env.write(&env.drop, "retried.mp4", &test_bytes(8 * PART as usize, 51));
    wait_until("done", Duration::from_secs(30), || async {
        env.done.join("retried.mp4").exists()
    })
    .await;
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        sample(
            &text,
            "vodup_parts_total{outcome=\"retried\",code=\"-10004\"}"
        )
        .unwrap()
            >= 1.0,
        "{text}"
    );
    assert!(sample(&text, "vodup_last_error_time_seconds").unwrap() > 1.0e9);
    daemon.stop().await;
}

/// A webhook receiver that answers 500 while `failing` is set and records what it accepted.
#[derive(Clone, Default)]
struct Receiver {
    failing: Arc<std::sync::atomic::AtomicBool>,
    refused: Arc<AtomicUsize>,
    accepted: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    async fn start(self) -> String {
        let app = Router::new().route(
            "/hook",
            post(|State(r): State<Receiver>, body: String| async move {
                if r.failing.load(Ordering::SeqCst) {
                    r.refused.fetch_add(1, Ordering::SeqCst);
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                r.accepted
                    .lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap());
                StatusCode::OK
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app.with_state(self)).await.unwrap() });
        url
    }
}

#[tokio::test]
async fn hooks_get_every_field_and_a_failing_webhook_is_delivered_after_a_restart() {
    let env = Env::new().await;
    let receiver = Receiver::default();
    receiver.failing.store(true, Ordering::SeqCst);
    let url = receiver.clone().start().await;
    let out = env.dir.path().join("hook-out");
    let mut config = env.config();
    config.watch[0].on_done = Some(Hook {
        command: vec![
            "sh".into(),
            "-c".into(),
            format!(
                "env | grep ^VODUP_ | sort > {0}.env; cat > {0}.json",
                out.display()
            ),
        ],
        webhook: Some(url),
        ..Hook::default()
    });
    let data = test_bytes(3 * PART as usize, 52);
    let dropped = env.write(&env.drop, "hooked.mp4", &data);
    let daemon = Daemon::start(config.clone()).await;
    let json_out = out.with_extension("json");
    wait_until("the command hook", Duration::from_secs(30), || async {
        json_out.exists()
    })
    .await;
    wait_until("a refused webhook", Duration::from_secs(30), || async {
        receiver.refused.load(Ordering::SeqCst) >= 1
    })
    .await;
    daemon.stop().await;
    assert!(receiver.accepted.lock().unwrap().is_empty());

    let record = env.record(&dropped).unwrap();
    let stdin: Value = serde_json::from_slice(&std::fs::read(&json_out).unwrap()).unwrap();
    assert_eq!(stdin["event"], "done");
    assert_eq!(stdin["fileId"], record.file_id.clone().unwrap());
    assert_eq!(stdin["url"], record.url.clone().unwrap());
    assert_eq!(stdin["path"], dropped.display().to_string());
    assert_eq!(stdin["size"], data.len());
    assert_eq!(stdin["fileSha"], vodup::hash::sha1_hex(&data));
    assert!(stdin["duration"].is_u64());
    assert_eq!(
        stdin["movedTo"],
        env.done.join("hooked.mp4").display().to_string()
    );
    let vars = std::fs::read_to_string(out.with_extension("env")).unwrap();
    assert!(
        vars.contains(&format!(
            "VODUP_FILE_ID={}",
            record.file_id.clone().unwrap()
        )),
        "{vars}"
    );
    assert!(
        vars.contains(&format!("VODUP_FILE_SHA={}", vodup::hash::sha1_hex(&data))),
        "{vars}"
    );
    assert!(vars.contains("VODUP_EVENT=done"), "{vars}");
    assert_eq!(
        env.ledger().pending_hooks().unwrap(),
        1,
        "the webhook is still owed"
    );

    receiver.failing.store(false, Ordering::SeqCst);
    let daemon = Daemon::start(config).await;
    wait_until(
        "the webhook after the restart",
        Duration::from_secs(30),
        || async { !receiver.accepted.lock().unwrap().is_empty() },
    )
    .await;
    daemon.stop().await;
    let accepted = receiver.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 1);
    assert_eq!(
        accepted[0], stdin,
        "the webhook and the command get the same document"
    );
    assert_eq!(env.ledger().pending_hooks().unwrap(), 0);
}

/// Variables a hook command may see: what vodup passes on, and what `sh` sets for itself.
const HOOK_MAY_SEE: [&str; 7] = ["PATH", "HOME", "LANG", "PWD", "OLDPWD", "SHLVL", "_"];

#[tokio::test]
async fn hook_commands_get_only_the_result_variables_and_path_home_lang() {
    let inherited: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| !HOOK_MAY_SEE.contains(&k.as_str()))
        .collect();
    assert!(
        !inherited.is_empty(),
        "the test process has variables a hook could inherit"
    );
    let env = Env::new().await;
    let out = env.dir.path().join("hook-env");
    let mut config = env.config();
    config.watch[0].on_done = Some(Hook {
        command: env_dump_hook(&out),
        webhook: None,
        ..Hook::default()
    });
    let daemon = Daemon::start(config).await;
    env.write(&env.drop, "env.mp4", &test_bytes(1000, 55));
    wait_until("the command hook", Duration::from_secs(30), || async {
        out.exists()
    })
    .await;
    daemon.stop().await;
    let text = std::fs::read_to_string(&out).unwrap();
    let vars = dumped(&text);
    for (name, _) in &vars {
        let result = name.starts_with("VODUP_") && name != "VODUP_SECRET_KEY";
        assert!(
            result || HOOK_MAY_SEE.contains(&name.as_str()),
            "the hook got {name}: {text}"
        );
    }
    for name in &inherited {
        assert!(
            !vars.iter().any(|(k, _)| k == name),
            "{name} leaked: {text}"
        );
    }
    for name in vodup::hooks::PASSED_ON {
        if let Ok(ours) = std::env::var(name) {
            assert!(
                vars.contains(&(name.to_owned(), ours)),
                "{name} is passed on: {text}"
            );
        }
    }
    assert!(
        vars.iter().any(|(k, v)| k == "VODUP_EVENT" && v == "done"),
        "{text}"
    );
    assert!(!text.contains(SECRET_KEY), "{text}");
}

#[tokio::test]
async fn failed_files_send_their_error_to_the_on_failed_hook() {
    let env = Env::with_faults(refuse("InitUploadEx", 4300)).await;
    let receiver = Receiver::default();
    let url = receiver.clone().start().await;
    let mut config = env.config();
    config.watch[0].on_failed = Some(Hook {
        command: vec![],
        webhook: Some(url),
        ..Hook::default()
    });
    let daemon = Daemon::start(config).await;
    env.write(&env.drop, "nope.mp4", &test_bytes(1000, 53));
    wait_until("the failure webhook", Duration::from_secs(30), || async {
        !receiver.accepted.lock().unwrap().is_empty()
    })
    .await;
    daemon.stop().await;
    let body = receiver.accepted.lock().unwrap()[0].clone();
    assert_eq!(body["event"], "failed");
    assert_eq!(body["error"]["code"], 4300);
    assert!(body["fileId"].is_null());
}

#[tokio::test]
async fn json_logs_parse_and_carry_file_sha_on_every_per_file_line() {
    let env = Env::with_faults(Faults {
        retryable_rate: 0.3,
        ..Faults::default()
    })
    .await;
    let data = test_bytes(6 * PART as usize, 54);
    let path = env.write(&env.src, "logged.mp4", &data);
    let config = env.config_file("");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vodup"))
        .args(["--config"])
        .arg(&config)
        .args(["--log-format", "json", "-v", "upload"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let sha = vodup::hash::sha1_hex(&data);
    let text = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let per_file: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["path"].is_string())
        .collect();
    assert!(per_file.len() > 5, "{text}");
    let mut hashed = false;
    for line in per_file {
        let carried = line["fileSha"] == sha || line["span"]["fileSha"] == sha;
        hashed |= carried;
        assert!(
            carried || !hashed,
            "a per-file line without fileSha after hashing: {line}"
        );
        assert!(
            carried || line["message"] == "hashing",
            "only the hashing line predates the sha: {line}"
        );
    }
    assert!(lines
        .iter()
        .any(|l| l["message"] == "retrying" && l["span"]["fileSha"] == sha));
}

#[tokio::test]
async fn webhooks_are_signed_with_the_key_of_their_secret_file_which_shows_nowhere() {
    use hmac::Mac as _;
    type Seen = Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>;
    let seen: Seen = Arc::default();
    let app = Router::new().route(
        "/hook",
        post(
            |State(seen): State<Seen>, headers: axum::http::HeaderMap, body: String| async move {
                seen.lock().unwrap().push((headers, body));
                StatusCode::OK
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn({
        let seen = seen.clone();
        async move { axum::serve(listener, app.with_state(seen)).await.unwrap() }
    });

    let env = Env::new().await;
    const KEY: &str = "whsec-0123456789abcdef";
    let key_file = env.dir.path().join("webhook.secret");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let config = env.config_file("");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[watch.on_done]\nwebhook = {url:?}\nwebhook_secret_file = {:?}\n",
        key_file.display().to_string()
    ));
    std::fs::write(&config, text).unwrap();
    let log = env.dir.path().join("log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vodup"))
        .arg("--config")
        .arg(&config)
        .args(["-v", "run"])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    env.write(&env.drop, "signed.mp4", &test_bytes(1000, 56));
    wait_until("the signed webhook", Duration::from_secs(30), || async {
        !seen.lock().unwrap().is_empty()
    })
    .await;
    send_signal(child.id().unwrap() as i32, "TERM");
    assert!(child.wait().await.unwrap().success());

    let (headers, body) = seen.lock().unwrap()[0].clone();
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("x-vodup-event").as_deref(), Some("done"));
    let id = header("x-vodup-delivery").expect("a delivery id");
    assert!(id.parse::<i64>().is_ok(), "{id}");
    let signature = header("x-vodup-signature").expect("signed");
    let (t, v1) = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap_or_else(|| panic!("{signature}"));
    let at: i64 = t.parse().unwrap();
    assert!(
        (vodup::clock::unix_now_i64() - at).abs() < 60,
        "{signature}"
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    assert_eq!(
        v1,
        hex::encode(mac.finalize().into_bytes()),
        "the HMAC-SHA256 of t.body"
    );
    let record: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(record["event"], "done");

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains(KEY), "the key is not logged");
    for file in ["ledger.db", "ledger.db-wal", "ledger.db-shm"] {
        let bytes = std::fs::read(env.dir.path().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "the key is not in {file}"
        );
    }
}

fn sh_hook(script: String) -> Option<Hook> {
    Some(Hook {
        command: vec!["sh".into(), "-c".into(), script],
        ..Hook::default()
    })
}

#[tokio::test]
async fn a_hook_that_floods_its_stderr_leaves_a_short_error_and_its_children_are_ended() {
    let env = Env::new().await;
    let pid_file = env.dir.path().join("child.pid");
    let mut config = env.config();
    // 10 MB on stderr; a child left running; a failure.
    config.watch[0].on_done = sh_hook(format!(
        "sleep 300 & echo $! > {}; head -c 10000000 /dev/zero | tr '\\0' x >&2; exit 3",
        pid_file.display()
    ));
    let daemon = Daemon::start(config).await;
    env.write(&env.drop, "loud.mp4", &test_bytes(1000, 57));
    wait_until(
        "the failed hook recorded",
        Duration::from_secs(30),
        || async {
            env.ledger()
                .due_hooks(i64::MAX, 10)
                .unwrap()
                .iter()
                .any(|d| d.last_error.is_some())
        },
    )
    .await;
    daemon.stop().await;
    let owed = env.ledger().due_hooks(i64::MAX, 10).unwrap();
    let error = owed[0].last_error.clone().unwrap();
    assert!(error.contains("exit status: 3"), "{error}");
    assert!(error.contains("it said: xxxx"), "{error}");
    assert!(error.len() < 2300, "{} bytes kept", error.len());
    let child: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let alive = || {
        std::path::Path::new(&format!("/proc/{child}")).exists()
            && !std::fs::read_to_string(format!("/proc/{child}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    };
    assert!(!alive(), "the hook's child {child} still runs");
}

#[tokio::test]
async fn a_hook_that_hangs_does_not_hold_up_another_files_hook() {
    let env = Env::new().await;
    let marker = env.dir.path().join("hooks.log");
    let mut config = env.config();
    config.watch[0].on_done = sh_hook(format!(
        "echo \"start $VODUP_PATH\" >> {0}; case \"$VODUP_PATH\" in *hang*) sleep 300;; esac; \
         echo \"end $VODUP_PATH\" >> {0}",
        marker.display()
    ));
    let daemon = Daemon::start(config).await;
    let log = || std::fs::read_to_string(&marker).unwrap_or_default();
    env.write(&env.drop, "hang.mp4", &test_bytes(1000, 58));
    wait_until(
        "the hanging hook started",
        Duration::from_secs(30),
        || async { log().contains("start") },
    )
    .await;
    env.write(&env.drop, "quick.mp4", &test_bytes(1000, 59));
    wait_until("the other file's hook", Duration::from_secs(20), || async {
        log().contains("end") && log().contains("quick.mp4")
    })
    .await;
    assert!(!log().contains(&format!("end {}", env.drop.join("hang.mp4").display())));
    daemon.stop().await;
}
