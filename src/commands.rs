//! The one-shot commands: `upload`, `status`, `retry`, `check-config`, and `demo`.

use crate::config::{AccountName, Config, LedgerLocation};
use crate::daemon::folders;
use crate::error::Error;
use crate::ledger::{FileRecord, FileState, Ledger};
use crate::progress::{Bars, Counted, Lines, Summary};
use crate::shown::{line, shown};
use crate::upload::{Engine, EngineError, Outcome, Progress};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Exit code of an interrupted `vodup upload` (128 + SIGINT).
const INTERRUPTED: u8 = 130;

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

/// `vodup upload FILE...`: upload in the foreground, print each result and a summary. On a
/// terminal (without `--json`) each file has a bar until its result line replaces it; otherwise
/// the results are printed at the end, in the order given.
pub async fn upload(config: Config, files: Vec<PathBuf>, json: bool) -> Result<ExitCode, Error> {
    let ledger = Ledger::connect(&config).await?;
    let bars = crate::progress::use_bars(json).then(|| Arc::new(Bars::default()));
    let shown: Arc<dyn Progress> = match &bars {
        Some(bars) => bars.clone(),
        None => Arc::new(Lines::default()),
    };
    let counted = Arc::new(Counted::new(shown));
    let engine = Engine::new(&config, ledger.clone(), counted.clone())?;
    let cancel = CancellationToken::new();
    // This command's claims stay alive as long as it runs.
    let renewing = CancellationToken::new();
    let renewer = tokio::spawn(engine.holder().clone().renew(renewing.clone()));
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            crate::logging::shutdown_signal().await;
            cancel.cancel();
        }
    });
    let processing = serde_json::to_string(&config.processing).expect("processing serializes");
    let account = config.default_account().name;
    let files_at_once = Arc::new(Semaphore::new(config.files_in_flight));
    let mut tasks = JoinSet::new();
    let (mut ok, mut summary) = (true, Summary::default());
    let print = |f: &dyn Fn()| match &bars {
        Some(bars) => bars.suspend(f),
        None => f(),
    };
    for (index, path) in files.into_iter().enumerate() {
        let found = enqueue_named(
            &ledger,
            &path,
            config.part_size,
            &processing,
            Some(&account),
        )
        .await;
        let record = match found {
            Ok(record) if record.state == FileState::Failed => {
                // The user asks again for a file that failed: try it again.
                ledger.requeue(record.key).await?;
                record
            }
            Ok(record) => record,
            Err(e) => {
                ok = false;
                summary.refused();
                print(&|| print_error(json, &path, None, &e.to_string()));
                continue;
            }
        };
        let (engine, cancel, gate) = (engine.clone(), cancel.clone(), files_at_once.clone());
        tasks.spawn(async move {
            let _turn = gate.acquire_owned().await.expect("never closed");
            let outcome = engine.upload(record.key, &cancel).await;
            (index, path, record, outcome)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (index, path, record, outcome) = joined.expect("an upload task does not panic");
        let outcome = match outcome {
            Err(e @ EngineError::HeldElsewhere(_)) => {
                ok = false;
                summary.refused();
                let why = e.to_string();
                match &bars {
                    Some(bars) => bars.ended(record.key, || print_error(json, &path, None, &why)),
                    None => print_error(json, &path, None, &why),
                }
                continue;
            }
            other => other?,
        };
        summary.add(&outcome, record.size);
        match &bars {
            // As each file ends, its result line takes its bar's place.
            Some(bars) => bars.ended(record.key, || ok &= report(json, &path, outcome)),
            None => results.push((index, path, outcome)),
        }
    }
    results.sort_by_key(|(index, ..)| *index);
    for (_, path, outcome) in results {
        ok &= report(json, &path, outcome);
    }
    renewing.cancel();
    renewer.await.expect("the claims renewer does not panic")?;
    if !json {
        // On stdout after the results: stderr stays the log's (JSON lines under --log-format json).
        println!("{}", summary.line(counted.sent()));
    }
    if cancel.is_cancelled() {
        eprintln!("vodup: interrupted; run the same command again to resume");
        return Ok(ExitCode::from(INTERRUPTED));
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn report(json: bool, path: &Path, outcome: Outcome) -> bool {
    match outcome {
        Outcome::Done(f) if json => {
            let mut value = serde_json::to_value(&f).expect("serializes");
            value["path"] = shown(path).to_string().into();
            println!("{value}");
            true
        }
        Outcome::Done(f) => {
            let how = if f.instant { " (instant upload)" } else { "" };
            let url = line(f.url.as_deref().unwrap_or("-"));
            let id = line(&f.file_id);
            println!("{}: fileId {id} url {url}{how}", shown(path));
            true
        }
        Outcome::Failed(e) => {
            let text = format!(
                "code {}: {} {}",
                e.code,
                line(&e.message),
                line(&e.code_desc)
            );
            if json {
                println!("{}", error_json(path, e.code, &e.message, &e.code_desc));
            } else {
                println!("{}: failed: {}", shown(path), text.trim_end());
            }
            false
        }
        Outcome::Stopped => {
            print_error(json, path, Some(0), "interrupted");
            false
        }
        Outcome::TakenOver => {
            let why = "another node took it over (this command's claim lapsed)";
            print_error(json, path, Some(0), why);
            false
        }
        Outcome::SetAside(state, why) => {
            print_error(
                json,
                path,
                Some(0),
                &format!("not uploaded ({}): {why}", state.as_str()),
            );
            false
        }
    }
}

fn print_error(json: bool, path: &Path, code: Option<i64>, message: &str) {
    if json {
        println!("{}", error_json(path, code.unwrap_or(0), message, ""));
    } else {
        println!("{}: {message}", shown(path));
    }
}

/// The `--json` line of a file that did not upload.
fn error_json(path: &Path, code: i64, message: &str, code_desc: &str) -> serde_json::Value {
    serde_json::json!({
        "path": shown(path).to_string(),
        "error": { "code": code, "message": message, "codeDesc": code_desc },
    })
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
        Some(name) => Some(
            config
                .watch
                .iter()
                .find(|w| &w.ledger_name() == name)
                .map(crate::ledger::WatchRoot::of)
                .ok_or_else(|| Error::Watch {
                    path: name.into(),
                    message: "no watch of this name in the config".into(),
                })?,
        ),
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
    if query.json {
        eprint!("{refused}");
    } else {
        let _ = write!(out, "{refused}");
    }
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
        let open = Listing {
            open: Some(true),
            ..base.clone()
        };
        printer
            .print_all(&ledger, &mut out, &open, usize::MAX)
            .await?;
        let ended = Listing {
            open: Some(false),
            ..base.clone()
        };
        let limit = query.limit.unwrap_or(STATUS_ENDED);
        let shown = printer.print_all(&ledger, &mut out, &ended, limit).await?;
        // All less the open ones: a count the indexes answer, where counting the ended ones
        // would read every row.
        let (all, open) = (ledger.count(&base).await?, ledger.count(&open).await?);
        let older = all.saturating_sub(open).saturating_sub(shown);
        if older > 0 {
            let note = format!(
                "{older} older file(s) not shown: vodup status --all (or --since, --state, \
                 --watch, --limit)\n"
            );
            if query.json {
                eprint!("{note}");
            } else {
                let _ = write!(out, "{note}");
            }
        }
    }
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
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

/// `vodup check-config`: beyond what loading validated, check the folders exist and are
/// writable, and warn when a file holding the secret key is readable by others. A SQLite
/// ledger's folder must be writable; a PostgreSQL ledger must answer, and its server version and
/// schema state are printed (never its password; nothing is migrated).
pub async fn check_config(path: &Path, config: &Config) -> Result<ExitCode, Error> {
    let mut problems = Vec::new();
    for (i, watch) in config.watch.iter().enumerate() {
        let dirs = [
            ("path", Some(&watch.path)),
            ("done_dir", watch.done_dir.as_ref()),
            ("failed_dir", watch.failed_dir.as_ref()),
        ];
        for (key, dir) in dirs {
            if let Some(dir) = dir {
                if let Err(why) = writable_dir(dir) {
                    problems.push(format!("watch[{i}].{key}: {}: {why}", dir.display()));
                }
            }
        }
    }
    match &config.ledger {
        LedgerLocation::Sqlite(db) => {
            let ledger_dir = db
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if let Err(why) = writable_dir(ledger_dir) {
                problems.push(format!("ledger: {}: {why}", ledger_dir.display()));
            }
        }
        LedgerLocation::Postgres(url) => match check_postgres(url).await {
            Ok(Ok(state)) => println!("ledger {}: {state}", url.as_str()),
            Ok(Err(refused)) => problems.push(format!("ledger {}: {refused}", url.as_str())),
            Err(e) => problems.push(e.to_string()),
        },
    }
    let warnings = config
        .warnings
        .iter()
        .cloned()
        .chain(secret_exposure(path, config))
        .chain(password_exposure(path, config))
        .chain(config.watch.iter().flat_map(folders::across_file_systems));
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    if problems.is_empty() {
        println!(
            "{}: ok ({} watch folder(s), endpoint {})",
            path.display(),
            config.watch.len(),
            config.endpoint
        );
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    Ok(ExitCode::FAILURE)
}

/// Connect to the PostgreSQL ledger: its server version and schema state as one line, or (the
/// inner error) why this vodup would refuse it. Nothing is migrated.
async fn check_postgres(
    url: &crate::config::PostgresUrl,
) -> Result<Result<String, String>, crate::ledger::LedgerError> {
    let ledger = crate::ledger::Postgres::connect(url)?;
    let version = ledger.server_version().await?;
    let schema = ledger.schema().await?;
    let link = match ledger.encryption().await? {
        Some(tls) => format!("over TLS ({tls}, certificate checked)"),
        None => "in CLEAR TEXT (no TLS: sslmode, or a server without ssl)".to_owned(),
    };
    let line = format!("PostgreSQL {version}, {schema}, {link}");
    Ok(if schema.is_newer() {
        Err(line)
    } else {
        Ok(line)
    })
}

/// The PostgreSQL ledger's password readable by others: in `ledger_password_file`, or in the
/// config file's `ledger` URL.
fn password_exposure(config_path: &Path, config: &Config) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let readable = |file: &Path, others: u32| {
        let mode = std::fs::metadata(file).ok()?.permissions().mode();
        (mode & others != 0).then_some(mode & 0o777)
    };
    let mut warnings = Vec::new();
    if let Some(file) = config.ledger_password_file.as_deref() {
        if let Some(mode) = readable(file, 0o044) {
            warnings.push(format!(
                "ledger_password_file {} is readable by others (mode {mode:o}); make it 0600",
                file.display()
            ));
        }
    }
    let in_url = std::fs::read_to_string(config_path).is_ok_and(|text| {
        let table: Option<toml::Table> = toml::from_str(&text).ok();
        let url = table.as_ref().and_then(|t| t.get("ledger")?.as_str());
        let url = url.and_then(|url| crate::config::PostgresUrl::parse(url).ok());
        url.is_some_and(|url| url.password().is_some())
    });
    if let Some(mode) = in_url.then(|| readable(config_path, 0o004)).flatten() {
        warnings.push(format!(
            "the config file {} holds the ledger password in its URL and is readable by others \
             (mode {mode:o}); make it 0600, or move the password to ledger_password_file or \
             ${}",
            config_path.display(),
            crate::config::LEDGER_PASSWORD_ENV
        ));
    }
    warnings
}

/// Whether `dir` is a folder this process can create files in (tried with a hidden file, which
/// the watcher ignores).
fn writable_dir(dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err("is not an existing folder".into());
    }
    let probe = dir.join(format!(".vodup-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| format!("is not writable: {e}"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Files holding a secret key (the top-level one, a watch's, a webhook's) that others can read.
fn secret_exposure(config_path: &Path, config: &Config) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let holder = config
        .secret_key_file
        .as_deref()
        .map(|f| ("secret_key_file".to_owned(), f, 0o044));
    let watch_holders = config.watch.iter().enumerate().flat_map(|(i, w)| {
        let key = w
            .secret_key_file
            .as_deref()
            .map(|f| (format!("watch[{i}].secret_key_file"), f, 0o044));
        let hooks = [("on_done", &w.on_done), ("on_failed", &w.on_failed)]
            .into_iter()
            .filter_map(move |(field, hook)| {
                let file = hook.as_ref()?.webhook_secret_file.as_deref()?;
                Some((
                    format!("watch[{i}].{field}.webhook_secret_file"),
                    file,
                    0o044,
                ))
            });
        key.into_iter().chain(hooks)
    });
    let in_config = std::fs::read_to_string(config_path)
        .map(|t| {
            t.lines().any(|l| {
                l.trim_start().starts_with("secret_key")
                    && l.contains('=')
                    && !l.trim_start().starts_with("secret_key_file")
            })
        })
        .unwrap_or(false);
    let mut warnings = Vec::new();
    let candidates = [
        in_config.then_some(("the config file".to_owned(), config_path, 0o004)),
        holder,
    ];
    for (what, file, others) in candidates.into_iter().flatten().chain(watch_holders) {
        if let Ok(meta) = std::fs::metadata(file) {
            let mode = meta.permissions().mode();
            if mode & others != 0 {
                warnings.push(format!(
                    "{what} {} holds the secret key and is readable by others (mode {:o}); \
                     make it 0600 (or move the key to secret_key_file with mode 0600)",
                    file.display(),
                    mode & 0o777
                ));
            }
        }
    }
    warnings
}
