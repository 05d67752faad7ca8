//! Rendering the ledger for people (`vodup status`) and programs (`--json`): the table shows a
//! moved file where it is now (and where it came `from`); the JSON keeps `path` (the drop path)
//! and `movedTo`. Also what the status page shows of a file ([`speed`], [`moved_to`]).
//! `--json` always shows each file's `account`.

use crate::ledger::{Delivery, DisposalFailed, Disposed, FileKey, FileRecord, FileState, Ledger};
use crate::ledger::{LedgerError, NodeInfo, RecordedError};
use crate::shown::{line, shown};
use serde::Serialize;
use std::path::PathBuf;

/// One file as `vodup status --json` shows it.
#[derive(Debug, Serialize)]
pub struct FileStatus<'a> {
    #[serde(flatten)]
    pub record: FileJson<'a>,
    pub percent: f64,
    /// Upload speed over the last seconds, bytes/s (0 when idle).
    pub speed: u64,
    /// Completion hook deliveries still owed for this file.
    pub pending_hooks: Vec<&'a Delivery>,
}

/// A file as `vodup status --json` shows it: the ledger's record, paths escaped by
/// [`crate::shown`], with the names the JSON has always had.
#[derive(Debug, Serialize)]
pub struct FileJson<'a> {
    pub key: &'a FileKey,
    #[serde(serialize_with = "crate::shown::serialize_path")]
    pub path: &'a PathBuf,
    pub size: &'a u64,
    pub mtime_ns: &'a i64,
    pub part_size: &'a u64,
    pub state: &'a FileState,
    #[serde(rename = "fileSha")]
    pub file_sha: &'a Option<String>,
    #[serde(serialize_with = "crate::shown::serialize_opt_path")]
    pub origin: &'a Option<PathBuf>,
    pub processing: &'a String,
    pub attempts: &'a u32,
    pub error: &'a Option<RecordedError>,
    #[serde(rename = "fileId")]
    pub file_id: &'a Option<String>,
    pub url: &'a Option<String>,
    pub instant: &'a bool,
    pub disposed: &'a bool,
    pub created_at: &'a i64,
    pub updated_at: &'a i64,
    pub finished_at: &'a Option<i64>,
    pub confirmed_bytes: &'a u64,
    pub disposal: &'a Option<Disposed>,
    #[serde(rename = "disposalFailed")]
    pub disposal_failed: &'a Option<DisposalFailed>,
    #[serde(
        rename = "movedTo",
        serialize_with = "crate::shown::serialize_opt_path"
    )]
    pub intent_target: &'a Option<PathBuf>,
    pub account: &'a Option<crate::config::AccountName>,
    pub node: &'a Option<String>,
    pub lease_until: &'a Option<i64>,
}

impl<'a> From<&'a FileRecord> for FileJson<'a> {
    fn from(r: &'a FileRecord) -> FileJson<'a> {
        FileJson {
            key: &r.key,
            path: &r.path,
            size: &r.size,
            mtime_ns: &r.mtime_ns,
            part_size: &r.part_size,
            state: &r.state,
            file_sha: &r.file_sha,
            origin: &r.origin,
            processing: &r.processing,
            attempts: &r.attempts,
            error: &r.error,
            file_id: &r.file_id,
            url: &r.url,
            instant: &r.instant,
            disposed: &r.disposed,
            created_at: &r.created_at,
            updated_at: &r.updated_at,
            finished_at: &r.finished_at,
            confirmed_bytes: &r.confirmed_bytes,
            disposal: &r.disposal,
            disposal_failed: &r.disposal_failed,
            intent_target: &r.intent_target,
            account: &r.account,
            node: &r.node,
            lease_until: &r.lease_until,
        }
    }
}

/// One row of the status: a file, its recent speed, and its undelivered hooks.
pub type Row = (FileRecord, u64, Vec<Delivery>);

/// How many seconds of confirmed parts [`speed`] averages over.
const SPEED_WINDOW: i64 = 10;

/// A file's upload speed over the last seconds, bytes/s: the parts the service confirmed in that
/// time (0 unless it is uploading).
pub async fn speed(ledger: &Ledger, record: &FileRecord) -> Result<u64, LedgerError> {
    Ok(match (&record.account, &record.file_sha, record.state) {
        (Some(account), Some(sha), FileState::Uploading) => {
            let since = crate::clock::unix_now_i64() - SPEED_WINDOW;
            let bytes = ledger.confirmed_since(account.as_str(), sha, since).await?;
            bytes / SPEED_WINDOW as u64
        }
        _ => 0,
    })
}

/// The ledger counts a done file as wholly confirmed, so this needs no special case.
pub fn percent(record: &FileRecord) -> f64 {
    if record.size == 0 {
        return 100.0;
    }
    (confirmed(record) as f64 * 100.0 / record.size as f64).min(100.0)
}

/// Files read from the ledger at a time by [`Printer::print_all`]: what the memory of `vodup
/// status` is bounded by, whatever the ledger holds.
pub const PAGE: usize = 500;

/// What a table's rows show beyond the file: its account when the config has more than one, its
/// node when the ledger has more than one (a fleet).
#[derive(Debug, Clone, Copy)]
pub struct TableContext {
    pub accounts: usize,
    pub nodes: usize,
}

/// `vodup status`'s output, written as the ledger is read: a table, or one JSON object a line.
pub struct Printer {
    json: bool,
    context: TableContext,
    /// Undelivered hook deliveries by file (few: delivered ones are not read).
    hooks: std::collections::HashMap<crate::ledger::FileKey, Vec<Delivery>>,
}

impl Printer {
    pub fn new(json: bool, context: TableContext, hooks: Vec<Delivery>) -> Printer {
        let mut by_file = std::collections::HashMap::<_, Vec<Delivery>>::new();
        for hook in hooks {
            by_file.entry(hook.file_key).or_default().push(hook);
        }
        Printer {
            json,
            context,
            hooks: by_file,
        }
    }

    /// The table's header (nothing for JSON).
    pub fn header(&self, out: &mut impl std::io::Write) {
        if !self.json {
            let _ = out.write_all(table_header().as_bytes());
        }
    }

    /// Print the files `listing` selects, newest first, at most `limit`, [`PAGE`] at a time; how
    /// many were printed. A closed stdout (`| head`) ends the output quietly.
    pub async fn print_all(
        &mut self,
        ledger: &Ledger,
        out: &mut impl std::io::Write,
        listing: &crate::ledger::Listing<'_>,
        limit: usize,
    ) -> Result<u64, LedgerError> {
        let (mut before, mut shown) = (None, 0usize);
        while shown < limit {
            let want = (limit - shown).min(PAGE);
            let page = ledger
                .list(&crate::ledger::Listing {
                    before,
                    limit: want,
                    ..listing.clone()
                })
                .await?;
            let full = page.len() == want;
            before = page.last().map(|r| r.key);
            let now = crate::clock::unix_now_i64();
            for record in page {
                let speed = speed(ledger, &record).await?;
                let hooks = self.hooks.remove(&record.key).unwrap_or_default();
                let text = match self.json {
                    true => json_line(&record, speed, &hooks),
                    false => table_row(&record, speed, &hooks, self.context, now),
                };
                if out.write_all(text.as_bytes()).is_err() {
                    return Ok(shown as u64);
                }
                shown += 1;
            }
            if !full {
                break;
            }
        }
        Ok(shown as u64)
    }
}

/// One file as a line of `--json`: one object, then a newline.
pub fn json_line(record: &FileRecord, speed: u64, hooks: &[Delivery]) -> String {
    let status = FileStatus {
        record: FileJson::from(record),
        percent: percent(record),
        speed,
        pending_hooks: hooks.iter().collect(),
    };
    serde_json::to_string(&status).expect("status serializes") + "\n"
}

fn table_header() -> String {
    format!(
        "{:<10} {:>6} {:>21} {:>10} {:<20} {}\n",
        "STATE", "DONE", "BYTES", "SPEED", "FILE ID", "PATH / ERROR"
    )
}

/// A table for people of `records` alone. Each file's account is shown when the files went to
/// more than one; the node that holds a file under way is shown, and the node that handled each
/// file when more than one node did (a fleet).
pub fn to_table(records: &[Row]) -> String {
    let accounts: std::collections::BTreeSet<_> = records
        .iter()
        .filter_map(|(r, ..)| r.account.as_ref())
        .collect();
    let nodes: std::collections::BTreeSet<_> = records
        .iter()
        .filter_map(|(r, ..)| r.node.as_ref())
        .collect();
    let context = TableContext {
        accounts: accounts.len(),
        nodes: nodes.len(),
    };
    let now = crate::clock::unix_now_i64();
    let mut out = table_header();
    for (r, speed, hooks) in records {
        out.push_str(&table_row(r, *speed, hooks, context, now));
    }
    out
}

/// One file's lines in the table.
fn table_row(
    r: &FileRecord,
    speed: u64,
    hooks: &[Delivery],
    context: TableContext,
    now: i64,
) -> String {
    let mut out = String::new();
    first_line(&mut out, r, speed);
    where_lines(&mut out, r, context, now);
    trouble_lines(&mut out, r, now);
    hook_lines(&mut out, hooks);
    out
}

/// State, progress, speed, file id and path.
fn first_line(out: &mut String, r: &FileRecord, speed: u64) {
    let bytes = format!("{}/{}", human(confirmed(r)), human(r.size));
    let speed = if speed > 0 {
        format!("{}/s", human(speed))
    } else {
        "-".into()
    };
    out.push_str(&format!(
        "{:<10} {:>5.1}% {:>21} {:>10} {:<20} {}\n",
        r.state.as_str(),
        percent(r),
        bytes,
        speed,
        r.file_id.as_deref().unwrap_or("-"),
        shown(moved_to(r).unwrap_or(&r.path))
    ));
}

/// Where it came from and went, its URL, account and node.
fn where_lines(out: &mut String, r: &FileRecord, context: TableContext, now: i64) {
    if moved_to(r).is_some() {
        out.push_str(&format!("{:>71} {}\n", "from", shown(&r.path)));
    }
    if let Some(url) = r.url.as_deref() {
        out.push_str(&format!("{:>71} {}\n", "url", line(url)));
    }
    if let Some(account) = r.account.as_ref().filter(|_| context.accounts > 1) {
        out.push_str(&format!("{:>71} {}\n", "account", line(account.as_str())));
    }
    if let Some(node) = &r.node {
        match r.lease_until {
            Some(until) if until >= now => out.push_str(&format!(
                "{:>71} {} (lease {}s left)\n",
                "node",
                line(node),
                until - now
            )),
            Some(_) => out.push_str(&format!(
                "{:>71} {} (lease lapsed: another node may take it over)\n",
                "node",
                line(node)
            )),
            None if context.nodes > 1 => out.push_str(&format!("{:>71} {}\n", "node", line(node))),
            None => {}
        }
    }
}

/// What stands in its way or set it aside.
fn trouble_lines(out: &mut String, r: &FileRecord, now: i64) {
    if let Some(failed) = r.disposal_failed.as_ref().filter(|_| !r.disposed) {
        let next = (failed.retry_at - now).max(0);
        out.push_str(&format!(
            "{:>71} {} ({} failure(s), next try in {next}s)\n",
            "NOT DISPOSED",
            line(&failed.reason),
            failed.failures
        ));
    }
    if let Some(Disposed::Skipped(skipped)) = &r.disposal {
        out.push_str(&format!("{:>71} {}\n", "left alone", line(skipped)));
    }
    if r.state == FileState::Waiting {
        out.push_str(&format!(
            "{:>71} empty: taken once it has content\n",
            "waiting"
        ));
    }
    match &r.error {
        Some(e) if matches!(r.state, FileState::Superseded | FileState::Gone) => {
            out.push_str(&format!("{:>71} {}\n", "why", line(&e.message)));
        }
        Some(e) => out.push_str(&format!(
            "{:>71} code {}: {} {}\n",
            "error",
            e.code,
            line(&e.message),
            line(&e.code_desc)
        )),
        None => {}
    }
}

/// Its hook deliveries still pending.
fn hook_lines(out: &mut String, hooks: &[Delivery]) {
    for hook in hooks {
        let error = hook
            .last_error
            .as_deref()
            .map(|e| format!(", last error: {}", line(e)));
        out.push_str(&format!(
            "{:>71} {:?} on {} pending, {} attempt(s){}\n",
            "hook",
            hook.kind,
            hook.event,
            hook.attempts,
            error.unwrap_or_default()
        ));
    }
}

/// The watch folders nodes refused (at their start or last reload), one line each, for the top
/// of `vodup status`; empty when none did.
pub fn refused_lines(nodes: &[NodeInfo]) -> String {
    let mut out = String::new();
    for node in nodes {
        for refused in node.refused.iter().flat_map(|r| r.lines()) {
            out.push_str(&format!(
                "REFUSED watch on node {}: {}\n",
                line(&node.name),
                line(refused)
            ));
        }
    }
    out
}

/// The nodes of the ledger for people: when each started and last renewed its claims, how many
/// files it holds, and whether it is presumed dead (not seen for longer than `lease`).
pub fn nodes_table(nodes: &[NodeInfo], lease: std::time::Duration) -> String {
    let now = crate::clock::unix_now_i64();
    let lease = i64::try_from(lease.as_secs()).unwrap_or(i64::MAX);
    let mut out = format!(
        "{:<24} {:<10} {:>14} {:>14} {:>6}\n",
        "NODE", "STATE", "STARTED", "LAST SEEN", "HOLDS"
    );
    for n in nodes {
        let ago = |t: i64| format!("{}s ago", (now - t).max(0));
        let state = match &n.instance {
            None => "stopped",
            Some(_) if now - n.seen_at > lease => "silent",
            Some(_) => "alive",
        };
        out.push_str(&format!(
            "{:<24} {:<10} {:>14} {:>14} {:>6}\n",
            line(&n.name),
            state,
            ago(n.started_at),
            ago(n.seen_at),
            n.holds
        ));
        if let Some(process) = &n.instance {
            out.push_str(&format!("{:<24} process {}\n", "", line(process)));
        }
        for account in n.accounts.iter().flat_map(|a| a.lines()) {
            out.push_str(&format!("{:<24} account {}\n", "", line(account)));
        }
        for refused in n.refused.iter().flat_map(|r| r.lines()) {
            out.push_str(&format!("{:<24} refused watch {}\n", "", line(refused)));
        }
    }
    out
}

/// Where the after-upload action moved (or copied) the file, once it did.
pub fn moved_to(r: &FileRecord) -> Option<&std::path::Path> {
    let moved = r.disposed && matches!(r.disposal, Some(Disposed::Moved | Disposed::Copied));
    r.intent_target.as_deref().filter(|_| moved)
}

pub fn confirmed(r: &FileRecord) -> u64 {
    r.confirmed_bytes.min(r.size)
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests;
