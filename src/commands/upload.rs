//! `vodup upload FILE...`: upload in the foreground, print each result and a summary.

use super::enqueue_named;
use crate::config::Config;
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
    let mut run = Run {
        json,
        bars,
        ok: true,
        summary: Summary::default(),
    };
    let tasks = run.start(&config, &ledger, &engine, &cancel, files).await?;
    run.collect(tasks).await?;
    renewing.cancel();
    renewer.await.expect("the claims renewer does not panic");
    if !json {
        // On stdout after the results: stderr stays the log's (JSON lines under --log-format json).
        println!("{}", run.summary.line(counted.sent()));
    }
    if cancel.is_cancelled() {
        eprintln!("vodup: interrupted; run the same command again to resume");
        return Ok(ExitCode::from(INTERRUPTED));
    }
    Ok(if run.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One `vodup upload`'s results as they come.
struct Run {
    json: bool,
    bars: Option<Arc<Bars>>,
    ok: bool,
    summary: Summary,
}

/// A file's upload task: its place on the command line, its path, its row, its outcome.
type Ended = (usize, PathBuf, FileRecord, Result<Outcome, EngineError>);

impl Run {
    /// Record each file and start its upload, `files_in_flight` at a time; a file that cannot
    /// be recorded is said to at once.
    async fn start(
        &mut self,
        config: &Config,
        ledger: &Ledger,
        engine: &Engine,
        cancel: &CancellationToken,
        files: Vec<PathBuf>,
    ) -> Result<JoinSet<Ended>, Error> {
        let processing = serde_json::to_string(&config.processing).expect("processing serializes");
        let account = config.default_account().name;
        let files_at_once = Arc::new(Semaphore::new(config.files_in_flight));
        let mut tasks = JoinSet::new();
        for (index, path) in files.into_iter().enumerate() {
            let part_size = config.part_size;
            let found = enqueue_named(ledger, &path, part_size, &processing, Some(&account)).await;
            let record = match found {
                Ok(record) if record.state == FileState::Failed => {
                    // The user asks again for a file that failed: try it again.
                    ledger.requeue(record.key).await?;
                    record
                }
                Ok(record) => record,
                Err(e) => {
                    self.refused(&path, &e.to_string(), None);
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
        Ok(tasks)
    }

    /// Report each file as it ends: on a terminal its result line takes its bar's place;
    /// otherwise the results are printed at the end, in the order given.
    async fn collect(&mut self, mut tasks: JoinSet<Ended>) -> Result<(), Error> {
        let mut results = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (index, path, record, outcome) = joined.expect("an upload task does not panic");
            let outcome = match outcome {
                Err(e @ EngineError::HeldElsewhere(_)) => {
                    self.refused(&path, &e.to_string(), Some(record.key));
                    continue;
                }
                other => other?,
            };
            self.summary.add(&outcome, record.size);
            match &self.bars {
                Some(bars) => {
                    let (json, ok) = (self.json, &mut self.ok);
                    bars.ended(record.key, || *ok &= report(json, &path, outcome));
                }
                None => results.push((index, path, outcome)),
            }
        }
        results.sort_by_key(|(index, ..)| *index);
        for (_, path, outcome) in results {
            self.ok &= report(self.json, &path, outcome);
        }
        Ok(())
    }

    /// A file not uploaded for `why`; its bar (`key`'s), if it has one, gives way to the line.
    fn refused(&mut self, path: &Path, why: &str, key: Option<crate::ledger::FileKey>) {
        self.ok = false;
        self.summary.refused();
        let json = self.json;
        match (&self.bars, key) {
            (Some(bars), Some(key)) => bars.ended(key, || print_error(json, path, None, why)),
            (Some(bars), None) => bars.suspend(|| print_error(json, path, None, why)),
            (None, _) => print_error(json, path, None, why),
        }
    }
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
