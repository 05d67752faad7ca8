//! The one-shot commands: `upload` ([`upload`]), `status`, `nodes`, `retry` and `check-config`
//! ([`check`]). `demo` is [`crate::demo`].

mod check;
mod upload;

pub use check::check_config;
pub use upload::upload;

use crate::config::{AccountName, Config};
use crate::error::Error;
use crate::ledger::{FileRecord, FileState, Ledger};
use crate::shown::shown;
use std::path::Path;
use std::process::ExitCode;

/// Record a file named on the command line: the path as given, made absolute (a symlink the
/// caller names is their choice), then opened without following one.
pub async fn enqueue_named(
    ledger: &Ledger,
    path: &Path,
    part_size: u64,
    processing: &str,
    account: Option<&AccountName>,
) -> Result<FileRecord, Error> {
    let path = std::fs::canonicalize(path).map_err(|source| Error::Io {
        what: "cannot open",
        path: path.to_owned(),
        source,
    })?;
    let (processing, account) = (processing.to_owned(), account.cloned());
    Ok(crate::source::enqueue(ledger, &path, None, part_size, processing, account).await?)
}

/// What `vodup status` shows.
#[derive(Debug, Default)]
pub struct StatusQuery {
    pub json: bool,
    pub all: bool,
    pub states: Vec<FileState>,
    pub since: Option<std::time::Duration>,
    pub watch: Option<String>,
    pub limit: Option<usize>,
}

/// Files that ended shown by default.
pub const STATUS_ENDED: usize = 50;

/// `vodup status`: by default every file still owed something and the latest that ended (with
/// how many older ones there are); `--all`, `--state`, `--since`, `--watch` and `--limit`
/// select. Read a page at a time and printed as it is read, so memory stays flat whatever the
/// ledger holds; `--json` prints one object per line.
pub async fn status(config: &Config, query: &StatusQuery) -> Result<ExitCode, Error> {
    use crate::ledger::Listing;
    use std::io::Write as _;
    let ledger = Ledger::connect(config).await?;
    let watch = match &query.watch {
        Some(name) => Some(watch_named(config, name)?),
        None => None,
    };
    let nodes = ledger.nodes().await?;
    let refused = crate::status::refused_lines(&nodes);
    let mut printer = crate::status::Printer::new(
        query.json,
        crate::status::TableContext {
            accounts: config.accounts().len(),
            nodes: nodes.len(),
        },
        ledger.undelivered_hooks().await?,
    );
    let mut out = std::io::stdout().lock();
    // What was refused goes on stderr with --json, which stays one object per line.
    aside(query.json, &mut out, &refused);
    printer.header(&mut out);
    let filtered =
        query.all || !query.states.is_empty() || query.since.is_some() || watch.is_some();
    let base = Listing {
        states: &query.states,
        since: query
            .since
            .map(|d| crate::clock::unix_now_i64() - i64::try_from(d.as_secs()).unwrap_or(0)),
        watch: watch.as_ref(),
        ..Listing::default()
    };
    if filtered {
        let limit = query.limit.unwrap_or(usize::MAX);
        printer.print_all(&ledger, &mut out, &base, limit).await?;
    } else {
        let limit = query.limit.unwrap_or(STATUS_ENDED);
        let older = print_default(&mut printer, &ledger, &mut out, &base, limit).await?;
        if older > 0 {
            let note = format!(
                "{older} older file(s) not shown: vodup status --all (or --since, --state, \
                 --watch, --limit)\n"
            );
            aside(query.json, &mut out, &note);
        }
    }
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}

/// The default view: every open file, then the latest `limit` that ended. How many older ones
/// were left out.
async fn print_default(
    printer: &mut crate::status::Printer,
    ledger: &Ledger,
    out: &mut std::io::StdoutLock<'_>,
    base: &crate::ledger::Listing<'_>,
    limit: usize,
) -> Result<u64, Error> {
    use crate::ledger::Listing;
    let open = Listing {
        open: Some(true),
        ..base.clone()
    };
    printer.print_all(ledger, out, &open, usize::MAX).await?;
    let ended = Listing {
        open: Some(false),
        ..base.clone()
    };
    let shown = printer.print_all(ledger, out, &ended, limit).await?;
    // All less the open ones: a count the indexes answer, where counting the ended ones would
    // read every row.
    let (all, open) = (ledger.count(base).await?, ledger.count(&open).await?);
    Ok(all.saturating_sub(open).saturating_sub(shown))
}

/// A note beside the listing: on stdout with the table, on stderr with `--json`.
fn aside(json: bool, out: &mut impl std::io::Write, note: &str) {
    if json {
        eprint!("{note}");
    } else {
        let _ = write!(out, "{note}");
    }
}

/// The config's watch whose ledger name is `name`.
fn watch_named(config: &Config, name: &str) -> Result<crate::ledger::WatchRoot, Error> {
    let watch = config.watch.iter().find(|w| w.ledger_name() == name);
    watch
        .map(crate::ledger::WatchRoot::of)
        .ok_or_else(|| Error::Watch {
            path: name.into(),
            message: "no watch of this name in the config".into(),
        })
}

/// `vodup nodes`: the nodes that share the ledger, their last renewal and what each holds.
pub async fn nodes(config: &Config, json: bool) -> Result<ExitCode, Error> {
    let ledger = Ledger::connect(config).await?;
    let nodes = ledger.nodes().await?;
    if json {
        let text = serde_json::to_string_pretty(&nodes).expect("nodes serialize");
        println!("{text}");
    } else {
        print!("{}", crate::status::nodes_table(&nodes, config.lease));
    }
    Ok(ExitCode::SUCCESS)
}

/// `vodup retry FILE|--failed`: re-queue failed files still at their path. A file moved to the
/// failed folder is retried by moving it back into its drop folder.
pub async fn retry(config: &Config, file: Option<&Path>) -> Result<ExitCode, Error> {
    let ledger = Ledger::connect(config).await?;
    let wanted = file.map(|f| std::fs::canonicalize(f).unwrap_or_else(|_| f.to_owned()));
    let failed =
        ledger.files().await?.into_iter().filter(|r| {
            r.state == FileState::Failed && wanted.as_ref().is_none_or(|w| &r.path == w)
        });
    let (mut count, mut moved, mut busy) = (0, Vec::new(), Vec::new());
    for record in failed {
        if record.intent.is_some() && !record.disposed {
            busy.push(record.path);
        } else if record.path.is_file() {
            count += ledger.requeue_failed(Some(&record.path)).await?;
        } else {
            moved.push(record.path);
        }
    }
    println!("{count} failed file(s) re-queued");
    for path in &moved {
        println!("{}: not at its path (moved to the failed folder?): move it back into its drop folder to retry it", shown(path));
    }
    for path in &busy {
        println!(
            "{}: its after-upload action is under way: retry it in a moment",
            shown(path)
        );
    }
    Ok(if count == 0 && file.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
