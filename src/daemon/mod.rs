//! The daemon (`vodup run`): its named tasks (`tasks.rs`) until its shutdown future resolves:
//! the intake (watch, settle, record), the scheduler (claim, upload, the after-upload step), the
//! hook runner, retention (`forget_after`), the HTTP listener, the systemd watchdog and the
//! SIGHUP reloader. The reloader sends the watch list it read to the intake, which publishes it
//! to the scheduler only once it watches its folders. Not the upload itself ([`crate::upload`])
//! nor the ledger.

mod after;
pub mod folders;
mod intake;
mod retention;
mod scheduler;
mod systemd;
mod tasks;
mod watched;

pub use after::{apply, decide, plan, recover, Disposal, Plan};

use crate::config::{Account, Config, Watch};
use crate::error::Error;
use crate::hooks::HookRunner;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::upload::{Engine, NoProgress};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use tasks::Tasks;
use tokio::sync::{oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

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
    mut config: Config,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    config.resolve_accounts();
    raise_descriptor_limit();
    // Taken before anything slow (the ledger's connection): a SIGHUP from here on is a reload
    // once the daemon runs, never the default action, which ends the process.
    let hangups = options.reload_from.as_ref().map(|_| {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .expect("can install a SIGHUP handler")
    });
    let (ledger, metrics, engine) = open(&config).await?;
    let mut shutdown = std::pin::pin!(shutdown);
    let lease = engine.holder().lease().clone();
    let accounts = engine.account_names();
    let listed = accounts.join("\n");
    tokio::select! {
        started = start_node(&ledger, &lease, &listed) => started?,
        () = &mut shutdown => return Ok(()),
    }
    info!(node = %lease.node, instance = crate::ledger::instance(), "node started");
    warn_of_foreign_accounts(&ledger, &accounts).await;
    let cancel = CancellationToken::new();
    let mut tasks = Tasks::new(cancel.clone());
    let wanted_tx = spawn_files(
        &mut tasks,
        &cancel,
        &config,
        engine,
        &metrics,
        options.ready,
    );
    if let Some(listen) = config.http_listen() {
        spawn_http(
            &mut tasks,
            &cancel,
            &config,
            listen,
            metrics,
            ledger.clone(),
        );
    }
    let stop = cancel.child_token();
    tasks.spawn("watchdog", until_cancelled(stop.clone(), feed_watchdog()));
    let reloader = reload_on_hangup(
        options.reload_from.zip(hangups),
        config.accounts(),
        wanted_tx,
    );
    tasks.spawn("reloader", until_cancelled(stop, reloader));
    tasks.until(shutdown).await;
    systemd::stopping();
    tasks.shut_down(config.shutdown_deadline).await?;
    stopped(&ledger, &lease).await;
    Ok(())
}

/// Tell the ledger this node stopped cleanly: the name is free for the next start at once (a
/// run that ends otherwise makes it wait).
async fn stopped(ledger: &Ledger, lease: &crate::ledger::Lease) {
    if let Err(e) = ledger.stop_node(lease).await {
        warn!(error = %e, "the ledger was not told this node stopped: its next start waits a renewal period");
    }
    info!("stopped");
}

/// The ledger, this node's metrics, and the engine that uploads with both.
async fn open(config: &Config) -> Result<(Ledger, Metrics, Engine), Error> {
    let ledger = Ledger::connect(config).await?;
    let metrics = Metrics::for_node(&crate::ledger::Lease::of(config).node);
    metrics.set_lease(config.lease);
    let engine = Engine::new(config, ledger.clone(), Arc::new(NoProgress))?;
    Ok((ledger, metrics.clone(), engine.with_metrics(metrics)))
}

/// The tasks that take files in and through: the scheduler, the intake (its readiness
/// announced once its first scan is done), and the hook runner. Returns where a reload sends
/// the watch list it wants.
fn spawn_files(
    tasks: &mut Tasks,
    cancel: &CancellationToken,
    config: &Config,
    engine: Engine,
    metrics: &Metrics,
    ready: Option<oneshot::Sender<()>>,
) -> watch::Sender<Vec<Watch>> {
    let ledger = engine.ledger().clone();
    let queued = Arc::new(Notify::new());
    let (wanted_tx, wanted) = watch::channel(config.watch.clone());
    let hook_watches = wanted.clone();
    let (watches, watches_rx) = watch::channel(config.watch.clone());
    let poke_hooks = Arc::new(Notify::new());
    let (again, look_again) = intake::Again::channel();
    let scheduler = scheduler::Scheduler {
        engine,
        ledger: ledger.clone(),
        watches: watches_rx,
        files_in_flight: config.files_in_flight,
        interleave_after: config.interleave_after,
        queued: queued.clone(),
        hooks: poke_hooks.clone(),
        metrics: metrics.clone(),
        retry: config.retry.clone(),
        again,
    };
    tasks.spawn_infallible("scheduler", scheduler.run(cancel.child_token()));
    let intake = intake::Intake {
        node: crate::ledger::Lease::of(config).node,
        ledger: ledger.clone(),
        wanted,
        watches,
        part_size: config.part_size,
        rescan_interval: config.rescan_interval,
        queued,
        again: look_again,
    };
    let (ready_tx, ready_rx) = oneshot::channel();
    tasks.spawn("intake", intake.run(cancel.child_token(), ready_tx));
    tasks.spawn("ready", announce_ready(ready_rx, ready));
    let runner = HookRunner {
        ledger: ledger.clone(),
        metrics: metrics.clone(),
        poke: poke_hooks,
        watches: hook_watches,
    };
    tasks.spawn_infallible("hooks", runner.run(cancel.child_token()));
    if !config.forget_after.is_zero() {
        let retention = retention::Retention {
            ledger,
            metrics: metrics.clone(),
            after: config.forget_after,
        };
        let forget = until_cancelled(cancel.child_token(), retention.run());
        tasks.spawn("retention", forget);
    }
    wanted_tx
}

/// The status page and metrics listener: uploads go on without it if it fails.
fn spawn_http(
    tasks: &mut Tasks,
    cancel: &CancellationToken,
    config: &Config,
    listen: std::net::SocketAddr,
    metrics: Metrics,
    ledger: Ledger,
) {
    let access = crate::http::Access {
        allowed_hosts: config.http.allowed_hosts.clone(),
        token: config.http.token.clone(),
    };
    let serve = crate::http::serve(
        listen,
        access,
        metrics,
        ledger.clone(),
        cancel.child_token(),
    );
    tasks.spawn("http", async move {
        // Uploads go on without the page and metrics; the operator sees why in the log.
        if let Err(e) = serve.await {
            tracing::error!(%listen, error = %e, "http listener failed");
        }
        Ok::<_, Error>(())
    });
}

/// Take this node's name for this process. The claims a previous run of it left are its own:
/// nothing of that run goes on. A name another process renewed within the lease is either a run
/// that died without stopping (it renews no more) or a live process elsewhere with the same
/// `node` (a copied config): wait one renewal period and look again, and refuse to start if it
/// renewed meanwhile.
async fn start_node(
    ledger: &Ledger,
    lease: &crate::ledger::Lease,
    accounts: &str,
) -> Result<(), Error> {
    use crate::ledger::NodeStart;
    let first = ledger.start_node(lease, None, accounts).await?;
    let NodeStart::InUse {
        instance,
        seen_at,
        age,
    } = first
    else {
        return Ok(());
    };
    let wait = lease.length / 3 + std::time::Duration::from_secs(2);
    warn!(
        node = %lease.node,
        other = %instance,
        seen_secs_ago = age,
        wait_secs = wait.as_secs(),
        "another process ran under this node name until moments ago (a run that did not stop \
         cleanly, or another host with the same `node`): waiting to see whether it still renews"
    );
    systemd::status(&format!(
        "waiting {} s: node name {} was renewed {age} s ago by {instance}",
        wait.as_secs(),
        lease.node
    ));
    tokio::time::sleep(wait).await;
    match ledger.start_node(lease, Some(seen_at), accounts).await? {
        NodeStart::Started => Ok(()),
        NodeStart::InUse { instance, age, .. } => Err(Error::NodeInUse {
            node: lease.node.clone(),
            instance,
            age,
        }),
    }
}

/// Files owed an upload to an account this node does not have are left to the nodes that have
/// it: say so once at start, so a fleet whose configs disagree is noticed.
async fn warn_of_foreign_accounts(ledger: &Ledger, ours: &[String]) {
    let Ok(owed) = ledger.owed_accounts().await else {
        return;
    };
    for (account, files) in owed.iter().filter(|(a, _)| !ours.contains(a)) {
        warn!(
            account = %crate::shown::line(account),
            files,
            "files wait for an account this node does not have: they are left to a node whose \
             config has it (vodup nodes shows each node's accounts)"
        );
    }
}

/// Once the intake watches: tell systemd, and the caller if it asked.
async fn announce_ready(
    watching: oneshot::Receiver<()>,
    caller: Option<oneshot::Sender<()>>,
) -> Result<(), Error> {
    if watching.await.is_ok() {
        info!("watching");
        // The intake said what it watches in STATUS= already.
        systemd::ready();
        if let Some(tx) = caller {
            let _ = tx.send(());
        }
    }
    Ok(())
}

/// A task with nothing to finish: dropped at the cancellation.
async fn until_cancelled(
    cancel: CancellationToken,
    task: impl Future<Output = ()>,
) -> Result<(), Error> {
    cancel.run_until_cancelled(task).await;
    Ok(())
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

/// On SIGHUP, read the config file again and tell the intake its watch list is wanted, unless
/// it needs an account the engine does not have (the engine's accounts are fixed at start).
async fn reload_on_hangup(
    from: Option<(PathBuf, tokio::signal::unix::Signal)>,
    accounts: Vec<Account>,
    wanted: watch::Sender<Vec<Watch>>,
) {
    let Some((path, mut hangups)) = from else {
        return;
    };
    while hangups.recv().await.is_some() {
        systemd::reloading();
        let file = path.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::load(&file))
            .await
            .expect("loading the config does not panic");
        let refused = match loaded {
            Ok(config) => {
                for warning in &config.warnings {
                    warn!("SIGHUP: {warning}");
                }
                match config
                    .accounts()
                    .into_iter()
                    .find(|a| !accounts.contains(a))
                {
                    Some(new) => {
                        error!(account = %new.name, "SIGHUP: reload refused: the watch list uses an \
                            account vodup did not start with (new, or its credentials changed); \
                            restart vodup");
                        format!(
                            "it uses an account vodup did not start with ({}): restart vodup",
                            new.name
                        )
                    }
                    None => {
                        // The intake tells systemd it is ready again once it watches the list.
                        wanted.send_replace(config.watch);
                        continue;
                    }
                }
            }
            Err(e) => {
                error!(error = %e, "SIGHUP: reload refused: config not reloaded");
                e.to_string()
            }
        };
        systemd::reloaded(&format!(
            "reload refused: {refused}; the previous config still runs"
        ));
    }
}

/// Raise the soft limit of open descriptors to the hard one (systemd gives services 1024 soft,
/// 524288 hard): each file in flight, watched folder and page connection holds one, and running
/// out fails files that settled (`Too many open files`).
fn raise_descriptor_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let from = limit.current;
        limit.current = limit.maximum;
        match setrlimit(Resource::Nofile, limit) {
            Ok(()) => tracing::debug!(?from, to = ?limit.current, "open descriptor limit raised"),
            Err(e) => tracing::debug!(error = %e, "open descriptor limit not raised"),
        }
    }
}
