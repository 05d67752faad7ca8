//! Completion hooks: what is sent when a file from a watched folder is done or failed, and the
//! task that delivers it at least once: a command (argv, no shell) with the result in environment
//! variables and as JSON on stdin, and/or a JSON POST to a webhook. A command gets a minimal
//! environment: the `VODUP_*` result variables and [`PASSED_ON`], nothing else of the daemon's.
//! Deliveries live in the ledger and are retried across restarts, forever, with the crate's
//! [`RetryPolicy`] (full jitter, 2 s doubling up to an hour); they never block uploads. The task
//! sleeps until the ledger's next due delivery, or until the scheduler pokes it after recording a
//! disposal (whose deliveries are due at once); it never polls.

use crate::clock::unix_now_i64;
use crate::config::Hook;
use crate::ledger::{Delivery, FileRecord, FileState, HookKind, Ledger, LedgerError, NewDelivery};
use crate::metrics::Metrics;
use crate::protocol::{Attempts, Pace, RetryPolicy, SecretKey};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long a command or a webhook may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Deliveries taken from the ledger at a time (and delivered one after another).
const BATCH: usize = 4;
/// How long the runner waits before asking a ledger that could not be read again.
const LEDGER_RETRY: Duration = Duration::from_secs(2);
/// The longest sleep, however far the next delivery: a wall clock set back is noticed by then.
const LONGEST_SLEEP: Duration = Duration::from_secs(60);
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

/// The backoff between the attempts of one delivery: 2 s doubling up to an hour, full jitter,
/// and no limit: a delivery is retried until it succeeds.
pub fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_secs(2),
        slow_base: Duration::from_secs(2),
        cap: Duration::from_secs(3600),
        max_attempts: u32::MAX,
        max_elapsed: Duration::ZERO,
        few_attempts: u32::MAX,
    }
}

/// The delivery task.
pub struct HookRunner {
    pub ledger: Ledger,
    pub metrics: Metrics,
    /// Poked when deliveries may have become due (a disposal was recorded).
    pub poke: Arc<Notify>,
    /// The watches as configured now (reloads included): where a webhook's signing key is.
    pub watches: tokio::sync::watch::Receiver<Vec<crate::config::Watch>>,
}

impl HookRunner {
    /// Deliver until cancelled, up to [`BATCH`] deliveries at once, each taken as soon as a
    /// place frees: a hook that hangs holds its own place until its timeout, never the others'.
    /// A ledger that cannot be reached (a PostgreSQL restart) is asked again a little later;
    /// nothing is lost, the deliveries wait in it. On cancel, the deliveries under way are let
    /// finish and recorded (dropped between the receiver's answer and the record, one would be
    /// sent twice); the shutdown deadline bounds the wait.
    pub async fn run(self, cancel: CancellationToken) {
        use futures::StreamExt as _;
        let http = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            // The payload goes to the configured URL only: a redirect is a failed delivery.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an http client with a timeout builds");
        let mut under_way = futures::stream::FuturesUnordered::new();
        loop {
            if cancel.is_cancelled() {
                while let Some(recorded) = under_way.next().await {
                    self.recorded(recorded);
                }
                return;
            }
            let next = match self.take_due(BATCH - under_way.len()).await {
                Ok((due, next)) => {
                    for delivery in due {
                        under_way.push(self.deliver_one(&http, delivery));
                    }
                    next
                }
                Err(e) => {
                    warn!(error = %e, "hook deliveries wait: the ledger cannot be read");
                    Some(unix_now_i64() + LEDGER_RETRY.as_secs() as i64)
                }
            };
            tokio::select! {
                () = cancel.cancelled() => {}
                Some(recorded) = under_way.next(), if !under_way.is_empty() => self.recorded(recorded),
                () = idle(next, unix_now_i64(), &self.poke), if under_way.len() < BATCH => {}
            }
        }
    }

    /// Up to `places` deliveries that are due, and when the next one is due.
    async fn take_due(&self, places: usize) -> Result<(Vec<Delivery>, Option<i64>), LedgerError> {
        let due = if places > 0 {
            // Taken for as long as a delivery may take, so no other node delivers them
            // meanwhile; if this node dies, they are due again after that.
            let hold = DELIVERY_TIMEOUT.as_secs() as i64 * 2;
            self.ledger
                .take_due_hooks(unix_now_i64(), places, hold)
                .await?
        } else {
            Vec::new()
        };
        Ok((due, self.ledger.next_hook_at().await?))
    }

    async fn deliver_one(
        &self,
        http: &reqwest::Client,
        delivery: Delivery,
    ) -> Result<(), LedgerError> {
        let secret = self.secret_for(&delivery);
        let result = deliver(http, &delivery, secret.as_ref()).await;
        self.record(delivery, result).await
    }

    /// A delivery's outcome that the ledger could not take: it is due again once its hold
    /// lapses, so it is sent again (at least once).
    fn recorded(&self, recorded: Result<(), LedgerError>) {
        if let Err(e) = recorded {
            warn!(error = %e, "a hook delivery's outcome was not recorded: it is sent again later");
        }
    }

    /// The key a webhook delivery is signed with: that of a configured hook with its URL.
    fn secret_for(&self, delivery: &Delivery) -> Option<SecretKey> {
        if delivery.kind != HookKind::Webhook {
            return None;
        }
        let watches = self.watches.borrow();
        let secret = watches
            .iter()
            .flat_map(|w| [w.on_done.as_ref(), w.on_failed.as_ref()])
            .flatten()
            .filter(|h| h.webhook.as_deref() == Some(delivery.target.as_str()))
            .find_map(|h| h.webhook_secret.clone());
        secret
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
                self.ledger.hook_delivered(id).await
            }
            Err(error) => {
                let wait = retry_in(delivery.attempts, &mut rand::thread_rng());
                warn!(kind = ?delivery.kind, attempts = delivery.attempts + 1, retry_in = wait, %error, "hook delivery failed");
                let next = unix_now_i64() + wait;
                self.ledger.hook_failed(id, &error, next).await
            }
        }
    }
}

/// Whole seconds to wait before the next attempt of a delivery that failed `attempts` times
/// before this failure; at least one.
fn retry_in(attempts: u32, rng: &mut impl rand::Rng) -> i64 {
    let policy = retry_policy();
    let mut so_far = Attempts::after(attempts);
    let delay = policy
        .next_delay(&mut so_far, Pace::Normal, rng)
        .unwrap_or(policy.cap);
    (delay.as_millis().div_ceil(1000) as i64).max(1)
}

/// Wait until `next` (Unix seconds; none: no delivery owed), or until poked, at most
/// [`LONGEST_SLEEP`]. A poke while the runner was busy is kept by the `Notify`, so it is not lost.
async fn idle(next: Option<i64>, now: i64, poke: &Notify) {
    let wait = match next {
        Some(at) => Duration::from_secs(at.saturating_sub(now).max(0) as u64),
        None => LONGEST_SLEEP,
    };
    tokio::select! {
        () = tokio::time::sleep(wait.min(LONGEST_SLEEP)) => {}
        () = poke.notified() => {}
    }
}

/// Deliver once. A webhook POST carries `X-Vodup-Delivery` (the delivery's id: the same on
/// every attempt, for a receiver to drop a repeat; delivery is at least once), `X-Vodup-Event`,
/// and with a key `X-Vodup-Signature: t=UNIX,v1=HEX`, HEX being HMAC-SHA256 of `UNIX.BODY`
/// under the key (a receiver checks it, and that UNIX is recent).
async fn deliver(
    http: &reqwest::Client,
    delivery: &Delivery,
    secret: Option<&SecretKey>,
) -> Result<(), String> {
    match delivery.kind {
        HookKind::Webhook => {
            let mut request = http
                .post(&delivery.target)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-Vodup-Delivery", delivery.id.to_string())
                .header("X-Vodup-Event", delivery.event.as_str());
            if let Some(secret) = secret {
                let at = unix_now_i64();
                let signed = format!("{at}.{}", delivery.payload);
                let mac = secret.hmac_sha256_hex(signed.as_bytes());
                request = request.header("X-Vodup-Signature", format!("t={at},v1={mac}"));
            }
            let response = request
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
        .stderr(Stdio::piped())
        // A group of its own: what it leaves running is ended with it (below).
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    // Its children too, if it left some behind, timed out with them, or the delivery is dropped
    // (a shutdown past its deadline).
    let group = KillGroup(
        child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32)),
    );
    // Its stderr is read to the end (a writer is never blocked) and kept up to STDERR_KEPT
    // bytes: a hook that prints a gigabyte does not flood the log.
    let stderr = child
        .stderr
        .take()
        .map(|out| tokio::spawn(kept_output(out)));
    if let Some(mut stdin) = child.stdin.take() {
        // A command that ignores its stdin may close it early: that is not a failure.
        let _ = stdin.write_all(delivery.payload.as_bytes()).await;
    }
    let waited = tokio::time::timeout(DELIVERY_TIMEOUT, child.wait()).await;
    drop(group);
    // A child that left the group (setsid) may hold stderr open: not waited for long.
    let said = match stderr {
        Some(task) => tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
        None => String::new(),
    };
    let said = match said.trim() {
        "" => String::new(),
        text => format!("; it said: {text}"),
    };
    match waited {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("{program} exited with {status}{said}")),
        Ok(Err(e)) => Err(format!("{program}: {e}{said}")),
        Err(_) => Err(format!("{program} timed out{said}")),
    }
}

/// A hook command's process group, killed when this is dropped.
struct KillGroup(Option<rustix::process::Pid>);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// How much of a hook command's stderr is kept for its error and the log.
const STDERR_KEPT: usize = 2048;

/// Read `out` to its end; the first [`STDERR_KEPT`] bytes, as text, with a mark if more came.
async fn kept_output(mut out: impl tokio::io::AsyncRead + Unpin) -> String {
    use tokio::io::AsyncReadExt as _;
    let (mut kept, mut buf, mut more) = (Vec::new(), vec![0; 8192], false);
    loop {
        match out.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = STDERR_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                more |= n > room;
            }
        }
    }
    let mut text = crate::shown::line(&String::from_utf8_lossy(&kept)).to_string();
    if more {
        text.push_str(" […]");
    }
    text
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

#[cfg(test)]
mod tests;
