//! Completion hooks: what is sent when a file from a watched folder is done or failed, and the
//! task that delivers it at least once: a command (argv, no shell) with the result in environment
//! variables and as JSON on stdin, and/or a JSON POST to a webhook. A command gets a minimal
//! environment: the `VODUP_*` result variables and [`PASSED_ON`], nothing else of the daemon's. Deliveries live in the ledger
//! and are retried with backoff across restarts; they never block uploads.

use crate::config::Hook;
use crate::ledger::{Delivery, FileRecord, FileState, HookKind, Ledger, LedgerError, NewDelivery};
use crate::metrics::Metrics;
use rand::Rng;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long a command or a webhook may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);
const FIRST_RETRY_SECS: u64 = 2;
const MAX_RETRY_SECS: u64 = 3600;
const IDLE_POLL: Duration = Duration::from_secs(1);
/// The only variables of the daemon's own environment a hook command gets (when they are set).
pub const PASSED_ON: [&str; 3] = ["PATH", "HOME", "LANG"];

/// The hook event of a file's outcome.
fn event(record: &FileRecord) -> &'static str {
    if record.state == FileState::Done {
        "done"
    } else {
        "failed"
    }
}

/// The JSON document of a file's outcome.
pub fn payload(record: &FileRecord, moved_to: Option<&Path>) -> Value {
    let duration = record
        .finished_at
        .unwrap_or(record.updated_at)
        .saturating_sub(record.created_at);
    let mut value = json!({
        "event": event(record),
        "path": crate::shown::shown(&record.path).to_string(),
        "size": record.size,
        "fileSha": record.file_sha,
        "duration": duration,
    });
    if let Some(to) = moved_to {
        value["movedTo"] = crate::shown::shown(to).to_string().into();
    }
    if record.state == FileState::Done {
        value["fileId"] = record.file_id.clone().into();
        value["url"] = record.url.clone().into();
        value["instant"] = record.instant.into();
    } else if let Some(e) = &record.error {
        value["error"] = json!({ "code": e.code, "message": e.message, "codeDesc": e.code_desc });
    }
    value
}

/// The deliveries a hook config asks for, for one outcome.
pub fn deliveries(
    hook: Option<&Hook>,
    record: &FileRecord,
    moved_to: Option<&Path>,
) -> Vec<NewDelivery> {
    let Some(hook) = hook else { return Vec::new() };
    let body = payload(record, moved_to);
    let event = event(record);
    let payload = body.to_string();
    let mut out = Vec::new();
    if !hook.command.is_empty() {
        out.push(NewDelivery {
            event,
            kind: HookKind::Command,
            target: serde_json::to_string(&hook.command).expect("argv serializes"),
            payload: payload.clone(),
        });
    }
    if let Some(url) = &hook.webhook {
        out.push(NewDelivery {
            event,
            kind: HookKind::Webhook,
            target: url.clone(),
            payload,
        });
    }
    out
}

/// The delivery task.
pub struct HookRunner {
    pub ledger: Ledger,
    pub metrics: Metrics,
}

impl HookRunner {
    pub async fn run(self, cancel: CancellationToken) -> Result<(), LedgerError> {
        let http = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .build()
            .expect("an http client with a timeout builds");
        loop {
            let now = crate::clock::unix_now_i64();
            let due = self.ledger.run(move |l| l.due_hooks(now, 16)).await?;
            for delivery in due {
                if cancel.is_cancelled() {
                    return Ok(());
                }
                let result = tokio::select! {
                    result = deliver(&http, &delivery) => result,
                    () = cancel.cancelled() => return Ok(()),
                };
                self.record(delivery, result).await?;
            }
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }

    async fn record(
        &self,
        delivery: Delivery,
        result: Result<(), String>,
    ) -> Result<(), LedgerError> {
        let id = delivery.id;
        self.metrics.hook_delivered(result.is_ok());
        match result {
            Ok(()) => {
                info!(kind = ?delivery.kind, event = %delivery.event, "hook delivered");
                self.ledger.run(move |l| l.hook_delivered(id)).await
            }
            Err(error) => {
                let ceiling = FIRST_RETRY_SECS
                    .saturating_mul(1 << delivery.attempts.min(20))
                    .min(MAX_RETRY_SECS);
                let wait = rand::thread_rng().gen_range(1..=ceiling.max(1));
                warn!(kind = ?delivery.kind, attempts = delivery.attempts + 1, retry_in = wait, %error, "hook delivery failed");
                let next = crate::clock::unix_now_i64() + wait as i64;
                self.ledger
                    .run(move |l| l.hook_failed(id, &error, next))
                    .await
            }
        }
    }
}

async fn deliver(http: &reqwest::Client, delivery: &Delivery) -> Result<(), String> {
    match delivery.kind {
        HookKind::Webhook => {
            let response = http
                .post(&delivery.target)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(delivery.payload.clone())
                .send()
                .await
                .map_err(|e| format!("webhook: {}", e.without_url()))?;
            match response.status() {
                s if s.is_success() => Ok(()),
                s => Err(format!("webhook answered {s}")),
            }
        }
        HookKind::Command => run_command(delivery).await,
    }
}

async fn run_command(delivery: &Delivery) -> Result<(), String> {
    let argv: Vec<String> = serde_json::from_str(&delivery.target).map_err(|e| e.to_string())?;
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let body: Value = serde_json::from_str(&delivery.payload).map_err(|e| e.to_string())?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(passed_on())
        .envs(environment(&body))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that ignores its stdin may close it early: that is not a failure.
        let _ = stdin.write_all(delivery.payload.as_bytes()).await;
    }
    match tokio::time::timeout(DELIVERY_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("{program} exited with {status}")),
        Ok(Err(e)) => Err(format!("{program}: {e}")),
        Err(_) => Err(format!("{program} timed out")),
    }
}

/// The variables of [`PASSED_ON`] that the daemon has.
fn passed_on() -> Vec<(&'static str, std::ffi::OsString)> {
    PASSED_ON
        .iter()
        .filter_map(|&name| Some((name, std::env::var_os(name)?)))
        .collect()
}

/// `VODUP_*` variables for a command hook.
pub fn environment(body: &Value) -> Vec<(String, String)> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut vars = Vec::new();
    for (key, name) in [
        ("event", "VODUP_EVENT"),
        ("path", "VODUP_PATH"),
        ("size", "VODUP_SIZE"),
        ("fileSha", "VODUP_FILE_SHA"),
        ("duration", "VODUP_DURATION"),
        ("movedTo", "VODUP_MOVED_TO"),
        ("fileId", "VODUP_FILE_ID"),
        ("url", "VODUP_URL"),
        ("instant", "VODUP_INSTANT"),
    ] {
        if let Some(v) = body.get(key) {
            vars.push((name.to_owned(), text(v)));
        }
    }
    if let Some(e) = body.get("error") {
        vars.push(("VODUP_ERROR_CODE".into(), text(&e["code"])));
        vars.push(("VODUP_ERROR_MESSAGE".into(), text(&e["message"])));
        vars.push(("VODUP_ERROR_CODE_DESC".into(), text(&e["codeDesc"])));
    }
    vars
}
