//! Rendering the ledger for people (`vodup status`) and programs (`--json`, where each file's
//! `account` is always shown).

use crate::ledger::{Delivery, FileRecord, FileState};
use crate::shown::{line, shown};
use serde::Serialize;

/// One file as `vodup status --json` shows it.
#[derive(Debug, Serialize)]
pub struct FileStatus<'a> {
    #[serde(flatten)]
    pub record: &'a FileRecord,
    pub percent: f64,
    /// Upload speed over the last seconds, bytes/s (0 when idle).
    pub speed: u64,
    /// Completion hook deliveries still owed for this file.
    pub pending_hooks: Vec<&'a Delivery>,
}

/// One row of the status: a file, its recent speed, and its undelivered hooks.
pub type Row = (FileRecord, u64, Vec<Delivery>);

/// The ledger counts a done file as wholly confirmed, so this needs no special case.
pub fn percent(record: &FileRecord) -> f64 {
    if record.size == 0 {
        return 100.0;
    }
    (confirmed(record) as f64 * 100.0 / record.size as f64).min(100.0)
}

pub fn to_json(records: &[Row]) -> String {
    let rows: Vec<FileStatus<'_>> = records
        .iter()
        .map(|(record, speed, hooks)| FileStatus {
            record,
            percent: percent(record),
            speed: *speed,
            pending_hooks: hooks.iter().collect(),
        })
        .collect();
    serde_json::to_string_pretty(&rows).expect("status serializes")
}

/// A table for people. Each file's account is shown when the files went to more than one.
pub fn to_table(records: &[Row]) -> String {
    let accounts: std::collections::BTreeSet<_> = records
        .iter()
        .filter_map(|(r, ..)| r.account.as_ref())
        .collect();
    let mut out = format!(
        "{:<10} {:>6} {:>21} {:>10} {:<20} {}\n",
        "STATE", "DONE", "BYTES", "SPEED", "FILE ID", "PATH / ERROR"
    );
    for (r, speed, hooks) in records {
        let bytes = format!("{}/{}", human(confirmed(r)), human(r.size));
        let speed = if *speed > 0 {
            format!("{}/s", human(*speed))
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
            shown(&r.path)
        ));
        if let Some(url) = r.url.as_deref() {
            out.push_str(&format!("{:>71} {}\n", "url", line(url)));
        }
        if let Some(account) = r.account.as_ref().filter(|_| accounts.len() > 1) {
            out.push_str(&format!("{:>71} {}\n", "account", line(account.as_str())));
        }
        if let (Some(to), true) = (&r.intent_target, r.disposed) {
            out.push_str(&format!("{:>71} {}\n", "moved to", shown(to)));
        }
        if let Some(skipped) = r
            .disposal
            .as_deref()
            .and_then(|d| d.strip_prefix("skipped: "))
        {
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
    out
}

fn confirmed(r: &FileRecord) -> u64 {
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
