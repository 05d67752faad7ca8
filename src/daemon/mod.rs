//! The daemon (`vodup run`): opens the ledger, resumes every unfinished file, rescans and watches
//! the drop folders, and uploads what settles there, until its shutdown future resolves.
//!
//! Tasks: the intake (watch, settle, record) feeds the scheduler (queue, upload, after-upload
//! action) through a bounded channel. One cancellation token stops both; the scheduler then
//! drains parts in flight up to `shutdown_deadline`. SIGHUP reloads the watch list.

mod dispose;
mod intake;
mod scheduler;
mod systemd;

pub use dispose::{apply, plan, recover, Disposal, Plan};

use crate::config::{Config, Watch};
use crate::error::Error;
use crate::hooks::HookRunner;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::upload::{Engine, NoProgress};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The watch list, shared by the intake (which reloads it) and the scheduler (which needs a
/// file's watch for its after-upload action).
#[derive(Debug, Clone, Default)]
pub struct Watches(Arc<RwLock<Vec<Watch>>>);

impl Watches {
    fn get(&self) -> Vec<Watch> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, watches: Vec<Watch>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = watches;
    }

    /// The watch whose folder is `origin` (as recorded in the ledger: canonical).
    fn for_origin(&self, origin: &Path) -> Option<Watch> {
        self.get()
            .into_iter()
            .find(|w| std::fs::canonicalize(&w.path).unwrap_or_else(|_| w.path.clone()) == origin)
    }
}

/// Extra wiring for callers that need it: a config file to reload on SIGHUP, a signal when the
/// daemon watches.
#[derive(Debug, Default)]
pub struct Options {
    pub reload_from: Option<PathBuf>,
    pub ready: Option<oneshot::Sender<()>>,
}

/// Run the daemon until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    run_with(config, Options::default(), shutdown).await
}

pub async fn run_with(
    config: Config,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let ledger = Ledger::open(&config.ledger)?;
    let metrics = Metrics::new();
    let engine =
        Engine::new(&config, ledger.clone(), Arc::new(NoProgress))?.with_metrics(metrics.clone());
    let watches = Watches(Arc::new(RwLock::new(config.watch.clone())));
    let cancel = CancellationToken::new();
    let (to_scheduler, intake_rx) = mpsc::channel(1024);
    let (reload_tx, reload_rx) = mpsc::channel(4);
    let scheduler = scheduler::Scheduler {
        engine,
        ledger: ledger.clone(),
        watches: watches.clone(),
        files_in_flight: config.files_in_flight,
        shutdown_deadline: config.shutdown_deadline,
        interleave_after: config.interleave_after,
        intake: intake_rx,
        metrics: metrics.clone(),
    };
    // The scheduler runs first so resumed files queue ahead of new ones without filling the channel.
    let mut scheduler = tokio::spawn(scheduler.run(cancel.child_token()));
    if let Err(e) = resume(&ledger, &to_scheduler).await {
        cancel.cancel();
        let _ = scheduler.await;
        return Err(e);
    }
    let intake = intake::Intake {
        ledger: ledger.clone(),
        watches,
        part_size: config.part_size,
        rescan_interval: config.rescan_interval,
        to_scheduler,
        reload: reload_rx,
    };
    let (ready_tx, ready_rx) = oneshot::channel();
    let mut intake = tokio::spawn(intake.run(cancel.child_token(), ready_tx));
    tokio::spawn(announce_ready(ready_rx, options.ready));
    let side = SideTasks::spawn(
        &config,
        &ledger,
        &metrics,
        &cancel,
        options.reload_from,
        reload_tx,
    );
    tokio::pin!(shutdown);
    // Whichever ends first; a task that ended is not awaited again.
    let (mut intake_end, mut scheduler_end) = (None, None);
    tokio::select! {
        () = &mut shutdown => {}
        ended = &mut intake => intake_end = Some(flatten(ended)),
        ended = &mut scheduler => scheduler_end = Some(flatten(ended.map(|r| r.map_err(Error::from)))),
    }
    systemd::stopping();
    cancel.cancel();
    let intake_end = match intake_end {
        Some(end) => end,
        None => flatten(intake.await),
    };
    let scheduler_end = match scheduler_end {
        Some(end) => end,
        None => flatten(scheduler.await.map(|r| r.map_err(Error::from))),
    };
    side.stop().await;
    intake_end?;
    scheduler_end?;
    info!("stopped");
    Ok(())
}

/// Queue every unfinished file, oldest first.
async fn resume(
    ledger: &Ledger,
    to_scheduler: &mpsc::Sender<crate::ledger::FileKey>,
) -> Result<(), Error> {
    let resumed = ledger.run(|l| l.unfinished()).await?;
    info!(files = resumed.len(), "resuming unfinished files");
    for record in &resumed {
        let _ = to_scheduler.send(record.key).await;
    }
    Ok(())
}

/// Once the intake watches: tell systemd, and the caller if it asked.
async fn announce_ready(watching: oneshot::Receiver<()>, caller: Option<oneshot::Sender<()>>) {
    if watching.await.is_ok() {
        info!("watching");
        systemd::ready();
        systemd::status("watching");
        if let Some(tx) = caller {
            let _ = tx.send(());
        }
    }
}

/// The tasks beside the intake and the scheduler: watchdog, hook deliveries, metrics, SIGHUP.
struct SideTasks {
    watchdog: JoinHandle<()>,
    reloader: JoinHandle<()>,
    hooks: JoinHandle<Result<(), crate::ledger::LedgerError>>,
    exporter: Option<JoinHandle<()>>,
}

impl SideTasks {
    fn spawn(
        config: &Config,
        ledger: &Ledger,
        metrics: &Metrics,
        cancel: &CancellationToken,
        reload_from: Option<PathBuf>,
        reload: mpsc::Sender<Vec<Watch>>,
    ) -> SideTasks {
        let runner = HookRunner {
            ledger: ledger.clone(),
            metrics: metrics.clone(),
        };
        let exporter = config.metrics.listen.map(|listen| {
            let serve = crate::metrics::serve(
                listen,
                metrics.clone(),
                ledger.clone(),
                cancel.child_token(),
            );
            tokio::spawn(async move {
                // Uploads go on without metrics; the operator sees why in the log.
                if let Err(e) = serve.await {
                    tracing::error!(%listen, error = %e, "metrics listener failed");
                }
            })
        });
        SideTasks {
            watchdog: tokio::spawn(feed_watchdog()),
            reloader: tokio::spawn(reload_on_hangup(reload_from, reload)),
            hooks: tokio::spawn(runner.run(cancel.child_token())),
            exporter,
        }
    }

    /// After the cancellation: let the hook runner and the exporter finish, stop the rest.
    async fn stop(self) {
        self.reloader.abort();
        self.watchdog.abort();
        if let Ok(Err(e)) = self.hooks.await {
            warn!(error = %e, "hook runner stopped on a ledger error");
        }
        if let Some(exporter) = self.exporter {
            let _ = exporter.await;
        }
    }
}

fn flatten(joined: Result<Result<(), Error>, tokio::task::JoinError>) -> Result<(), Error> {
    match joined {
        Ok(result) => result,
        Err(e) => panic!("daemon task panicked: {e}"),
    }
}

async fn feed_watchdog() {
    let Some(every) = systemd::watchdog_interval() else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        systemd::feed_watchdog();
    }
}

/// On SIGHUP, read the config file again and send its watch list to the intake.
async fn reload_on_hangup(path: Option<PathBuf>, tx: mpsc::Sender<Vec<Watch>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Some(path) = path else { return };
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return;
    };
    while hangups.recv().await.is_some() {
        let file = path.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::load(&file))
            .await
            .expect("loading the config does not panic");
        match loaded {
            Ok(config) => {
                let _ = tx.send(config.watch).await;
            }
            Err(e) => warn!(error = %e, "SIGHUP: config not reloaded"),
        }
    }
}
