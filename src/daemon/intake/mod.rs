//! The intake: scans and watches the drop folders ([`watcher`]), waits for each file to be
//! complete (by the evidence rules of [`settle`], on the thread of [`settling`]), records it in the ledger and pokes the scheduler,
//! which claims it from there (with other nodes, on a shared ledger). A folder that
//! appears is scanned at once. Rescans on start, when events may have been lost, every
//! `rescan_interval`, and when the watch list is reloaded. An empty file is recorded as
//! `waiting`, so it shows; a path that stopped naming a regular file is said to.
//!
//! A file set aside as changed after it settled comes back through [`Again`]: its new version
//! may have settled while its row was busy, and is looked at now, not at the next rescan.
//!
//! The watch list: the intake watches for a new list wanted by the reloader (`wanted`), starts
//! watching its folders, and only once that worked publishes it (`watches`, read by the
//! scheduler) and rescans; a list whose folders cannot be watched is refused and the old one
//! kept, for both. The intake owns the published list, so the scheduler never sees a list that is
//! not being watched.

mod active;
mod settle;
mod settling;
mod watcher;

use super::folders;
use crate::config::Watch;
use crate::error::Error;
use crate::ledger::{FileIdentity, FileRecord, FileState, FileVersion, Ledger, WatchRoot};
use crate::shown::shown;
use crate::source::{self, Settled, SourceError};
use active::{activate, rule, rule_for, Active};
use settle::{Evidence, Polled};
use settling::Settling;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use watcher::{Noticed, RescanFlag};

/// How often a scan the ledger could not answer is tried again.
const LEDGER_RETRY: Duration = Duration::from_secs(2);
/// Settled files recorded in one ledger call, at most.
const TAKE_BATCH: usize = 256;
/// Events buffered between the notify thread and this task; past that, a rescan.
const EVENT_CHANNEL: usize = 4096;

pub struct Intake {
    /// This node's name: the ledger records which watches it refused under it.
    pub node: String,
    pub ledger: Ledger,
    /// The list the reloader wants watched next.
    pub wanted: watch::Receiver<Vec<Watch>>,
    /// The list being watched, published once its folders are.
    pub watches: watch::Sender<Vec<Watch>>,
    pub part_size: u64,
    pub rescan_interval: Duration,
    /// Poked once a file is queued.
    pub queued: Arc<Notify>,
    /// Paths to look at again ([`Again`]).
    pub again: mpsc::Receiver<PathBuf>,
}

/// Files set aside as changed after they settled (by their upload, or before their
/// after-upload action), handed back to the intake: a new version that settled while the row
/// was busy was not taken then (the path's row was not open to it), and would otherwise wait
/// for the next rescan.
#[derive(Debug, Clone)]
pub struct Again(mpsc::Sender<PathBuf>);

impl Again {
    /// Where to send them, and the intake's end.
    pub fn channel() -> (Again, mpsc::Receiver<PathBuf>) {
        let (tx, rx) = mpsc::channel(EVENT_CHANNEL);
        (Again(tx), rx)
    }

    /// Look at `path` again. Never waits: with the intake's inbox full, the next rescan finds it.
    pub fn look(&self, path: &Path) {
        if self.0.try_send(path.to_owned()).is_err() {
            debug!(path = %shown(path), "not looked at again now: the next rescan does");
        }
    }
}

impl Intake {
    /// The watches of `active` are the list now: published to the scheduler and told to the
    /// ledger; what was refused is recorded under this node so `vodup status` shows it. Returns
    /// the STATUS= line for systemd: what it watches, and what it refused.
    async fn publish(&self, active: &Active, refused: Vec<String>) -> String {
        let watches: Vec<Watch> = active.filters.iter().map(|(_, w)| w.clone()).collect();
        let roots: Vec<_> = watches.iter().map(WatchRoot::of).collect();
        self.ledger.know_watches(&roots);
        let mut status = format!("watching {} folder(s)", watches.len());
        self.watches.send_replace(watches);
        if !refused.is_empty() {
            status.push_str(&format!("; refused: {}", refused.join("; ")));
        }
        let text = (!refused.is_empty()).then(|| refused.join("\n"));
        if let Err(e) = self.ledger.node_refused(&self.node, text.as_deref()).await {
            warn!(error = %e, "refused watches not recorded in the ledger");
        }
        status
    }

    pub async fn run(
        mut self,
        cancel: CancellationToken,
        ready: oneshot::Sender<()>,
    ) -> Result<(), Error> {
        let (events_tx, mut events) = mpsc::channel(EVENT_CHANNEL);
        let rescan = Arc::new(RescanFlag::default());
        let first = self.watches.borrow().clone();
        let (mut active, refused) = activate(first, events_tx.clone(), rescan.clone()).await?;
        super::systemd::status(&self.publish(&active, refused).await);
        let (settler, mut settled) = Settling::start().map_err(|e| Error::Watch {
            path: PathBuf::new(),
            message: format!("cannot start the settling thread: {e}"),
        })?;
        // A scan the ledger could not answer (a PostgreSQL ledger restarting) is owed, and run
        // again every LEDGER_RETRY until it gets through; so is one after a file could not be
        // recorded.
        let mut scan_owed = self.scan(&active, &settler).await.is_err();
        let _ = ready.send(());
        let mut owed = tokio::time::interval(LEDGER_RETRY);
        let period = if self.rescan_interval.is_zero() {
            Duration::from_secs(86_400 * 365)
        } else {
            self.rescan_interval
        };
        let mut periodic = tokio::time::interval_at(Instant::now() + period, period);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                Some(noticed) = events.recv() => noticed_one(&active, &settler, noticed).await,
                () = rescan.raised() => {
                    if rescan.take() {
                        warn!("file events may have been lost: rescanning");
                        settler.evidence_lost();
                        scan_owed = self.scan(&active, &settler).await.is_err();
                    }
                }
                _ = periodic.tick() => {
                    self.take_up_refused(&mut active, &events_tx, &rescan).await;
                    scan_owed = self.scan(&active, &settler).await.is_err();
                }
                _ = owed.tick(), if scan_owed => {
                    scan_owed = self.scan(&active, &settler).await.is_err();
                }
                Ok(()) = self.wanted.changed() => {
                    if self.reload(&mut active, &events_tx, &rescan).await {
                        scan_owed = self.scan(&active, &settler).await.is_err();
                    }
                }
                Some(polled) = settled.recv() => {
                    scan_owed |= self.settled(&active, polled).await.is_err();
                }
                Some(path) = self.again.recv() => {
                    scan_owed |= self.look_again(&active, &settler, path).await.is_err();
                }
            }
        }
    }

    /// A refused watch whose folders are writable now (a mount that came late, a folder made or
    /// granted) is taken up without a reload.
    async fn take_up_refused(
        &self,
        active: &mut Active,
        events: &mpsc::Sender<Noticed>,
        rescan: &Arc<RescanFlag>,
    ) {
        if !self.a_refused_watch_passes(active).await {
            return;
        }
        let watches = self.wanted.borrow().clone();
        if let Ok((now, refused)) = activate(watches, events.clone(), rescan.clone()).await {
            info!(
                watches = now.filters.len(),
                "a refused watch's folders are writable now: watching it"
            );
            *active = now;
            super::systemd::status(&self.publish(active, refused).await);
        }
    }

    /// The reloader wants a new watch list: watch it, or keep the old one if it cannot be
    /// watched. Whether it is watched now (and wants a scan).
    async fn reload(
        &mut self,
        active: &mut Active,
        events: &mpsc::Sender<Noticed>,
        rescan: &Arc<RescanFlag>,
    ) -> bool {
        let watches = self.wanted.borrow_and_update().clone();
        match activate(watches, events.clone(), rescan.clone()).await {
            Ok((reloaded, refused)) => {
                info!(watches = reloaded.filters.len(), "watch list reloaded");
                *active = reloaded;
                super::systemd::reloaded(&self.publish(active, refused).await);
                true
            }
            Err(e) => {
                error!(error = %e, "reload refused: watch list not reloaded; keeping the old one");
                super::systemd::reloaded(&format!(
                    "reload refused: {e}; the previous watch list still runs"
                ));
                false
            }
        }
    }

    /// Whether a watch of the wanted list that `active` lacks (refused) passes the folder check
    /// now; quietly, so a watch still refused logs nothing every period.
    async fn a_refused_watch_passes(&self, active: &Active) -> bool {
        let refused: Vec<Watch> = self
            .wanted
            .borrow()
            .iter()
            .filter(|w| !active.filters.iter().any(|(_, a)| a.path == w.path))
            .cloned()
            .collect();
        if refused.is_empty() {
            return false;
        }
        tokio::task::spawn_blocking(move || {
            refused.iter().any(|w| folders::check(w).refused.is_none())
        })
        .await
        .expect("checking folders does not panic")
    }

    /// Files the settler found complete (or empty, to show): record them, in batches.
    async fn settled(&self, active: &Active, polled: Polled) -> Result<(), Error> {
        for path in &polled.empty {
            info!(path = %shown(path), "empty file: shown as waiting until it has content");
        }
        let settled: Vec<PathBuf> = polled.empty.into_iter().chain(polled.ready).collect();
        let mut taken = Ok(());
        for batch in settled.chunks(TAKE_BATCH) {
            if let Err(e) = self.take(active, batch).await {
                taken = Err(e);
            }
        }
        taken
    }

    /// Every matching file not already uploaded (or failed) in its current version starts settling.
    async fn scan(&self, active: &Active, settler: &Settling) -> Result<(), Error> {
        let scanned = self.scan_now(active, settler).await;
        if let Err(e) = &scanned {
            warn!(error = %e, "scan not finished; trying again shortly");
        }
        scanned
    }

    async fn scan_now(&self, active: &Active, settler: &Settling) -> Result<(), Error> {
        let filters = active.filters.clone();
        let listed = tokio::task::spawn_blocking(move || {
            let mut listed = Vec::new();
            for (filter, watch) in &filters {
                for path in filter.scan() {
                    let identity = FileIdentity::at(&path);
                    listed.push((path, identity, rule(watch)));
                }
            }
            listed
        })
        .await
        .expect("scan does not panic");
        let mut found = Vec::new();
        for (path, identity, rule) in listed {
            if !is_settled_already(&self.ledger, &path, identity).await? {
                found.push((path, identity, rule));
            }
        }
        debug!(files = found.len(), "scan found files to consider");
        let now = Instant::now();
        for (path, identity, rule) in found {
            settler.found(path, identity.map(|i| i.version), rule, now);
        }
        Ok(())
    }

    /// A file set aside as changed: its version now settles as one a scan found (no evidence of
    /// how it was written), unless it is gone, has a newer row already, or this version ended.
    async fn look_again(
        &self,
        active: &Active,
        settler: &Settling,
        path: PathBuf,
    ) -> Result<(), Error> {
        let Some(rule) = rule_for(active, &path) else {
            return Ok(());
        };
        let at = path.clone();
        let identity = tokio::task::spawn_blocking(move || FileIdentity::at(&at));
        let identity = identity.await.expect("stat does not panic");
        let latest = self.ledger.latest_for_path(&path).await?;
        if latest.is_some_and(|r| r.state != FileState::Superseded) {
            return Ok(());
        }
        if !is_settled_already(&self.ledger, &path, identity).await? {
            debug!(path = %shown(&path), "set aside as changed: its version now settles");
            settler.found(path, identity.map(|i| i.version), rule, Instant::now());
        }
        Ok(())
    }

    /// Settled files: record them and queue them, unless a file's very version is already done
    /// or failed. The ledger's trouble fails the batch, which a scan finds again.
    async fn take(&self, active: &Active, paths: &[PathBuf]) -> Result<(), Error> {
        let taken = self.take_now(active, paths).await;
        if let Err(e) = &taken {
            match paths {
                [path] => {
                    warn!(path = %shown(path), error = %e, "settled file not recorded; a scan finds it again shortly")
                }
                _ => {
                    warn!(files = paths.len(), error = %e, "settled files not recorded; a scan finds them again shortly")
                }
            }
        }
        taken
    }

    async fn take_now(&self, active: &Active, paths: &[PathBuf]) -> Result<(), Error> {
        let settled: Vec<Settled> = paths
            .iter()
            .filter_map(|path| {
                let (filter, watch) = active.watch_for(path)?;
                Some(Settled {
                    path: path.clone(),
                    watch: Some(WatchRoot {
                        name: watch.ledger_name(),
                        path: filter.root().to_owned(),
                    }),
                    processing: serde_json::to_string(&watch.processing)
                        .expect("processing serializes"),
                    account: watch.account_name.clone(),
                })
            })
            .collect();
        let (mut queued, mut owed) = (false, None);
        for (path, found) in source::enqueue_all(&self.ledger, settled, self.part_size).await? {
            let found = match found {
                // A failed file moved to the failed folder and moved back in: the operator
                // retries it.
                Ok(record) if moved_back(&record) => {
                    info!(path = %shown(&record.path), "failed file moved back in: retrying it");
                    let requeued = self.ledger.requeue(record.key).await?;
                    let state = if requeued {
                        FileState::Queued
                    } else {
                        record.state
                    };
                    Ok(FileRecord { state, ..record })
                }
                other => other,
            };
            match found {
                Ok(record) if record.state.is_active() => {
                    info!(path = %shown(&record.path), size = record.size, "file settled: queued");
                    queued = true;
                }
                Ok(_) => {}
                Err(SourceError::Gone { .. }) => self.gone(path).await?,
                Err(e @ SourceError::NotRegular { .. }) => warn!(error = %e, "not taken"),
                // Said by the caller, which owes a scan shortly.
                Err(e) if passing(&e) => {
                    owed.get_or_insert(e);
                }
                Err(e) => warn!(path = %shown(&path), error = %e, "cannot take a settled file"),
            }
        }
        if queued {
            self.queued.notify_one();
        }
        match owed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// A file that settled is no longer at its path: say what happened to it.
    async fn gone(&self, path: PathBuf) -> Result<(), Error> {
        let shown_path = shown(&path).to_string();
        let last = self.ledger.latest_for_path(&path).await?;
        match last {
            Some(r) if r.disposed && r.intent_target.is_some() => {
                let to = r.intent_target.as_deref().map(|t| shown(t).to_string());
                debug!(path = %shown_path, to, "already uploaded and moved by us")
            }
            Some(r) if r.disposed => {
                debug!(path = %shown_path, disposal = ?r.disposal, "already uploaded and disposed of")
            }
            _ => info!(path = %shown_path, "the file went away before it settled"),
        }
        Ok(())
    }
}

/// Whether a settled file could not be opened for a reason that passes (out of descriptors or
/// memory): its scan is then owed and run again shortly, instead of at the next rescan.
fn passing(error: &SourceError) -> bool {
    matches!(error, SourceError::Io { source, .. }
        if matches!(source.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EAGAIN | libc::EINTR)))
}

/// What the watcher noticed, told to the settler (a folder that appeared is scanned first).
async fn noticed_one(active: &Active, settler: &Settling, noticed: Noticed) {
    match noticed {
        Noticed::File(path, evidence, version) => {
            if let Some(rule) = rule_for(active, &path) {
                settler.note(path, evidence, version, rule);
            }
        }
        Noticed::Folder(path, evidence) => scan_folder(active, path, evidence, settler).await,
        Noticed::Renamed { from, to } => settler.renamed(from, to),
    }
}

/// A folder appeared: every file in it starts settling now, with the folder's evidence (a
/// folder moved in whole brings closed files; a new folder, files not seen being written).
async fn scan_folder(active: &Active, folder: PathBuf, evidence: Evidence, settler: &Settling) {
    let Some((filter, watch)) = active.filters.iter().find(|(f, _)| f.takes_folder(&folder)) else {
        return;
    };
    let (filter, rule) = (filter.clone(), rule(watch));
    let shown_folder = shown(&folder).to_string();
    let found = tokio::task::spawn_blocking(move || {
        let found = filter.scan_from(&folder);
        found
            .into_iter()
            .map(|path| (FileVersion::at(&path), path))
            .collect::<Vec<_>>()
    })
    .await
    .expect("scan does not panic");
    info!(folder = %shown_folder, files = found.len(), "folder appeared: scanned");
    let evidence = (evidence == Evidence::Closed).then_some(Evidence::Closed);
    for (version, path) in found {
        settler.note(path, evidence, version, rule);
    }
}

/// A failed file that was moved to the failed folder (not copied, not kept) and is back at its
/// path: the operator moved it back to retry it.
fn moved_back(record: &FileRecord) -> bool {
    record.state == FileState::Failed && record.disposal == Some(crate::ledger::Disposed::Moved)
}

/// Whether this version of the file at `path` (found as `identity`: same size and mtime) already
/// ended in the ledger, or is shown as waiting (a failed file moved back in has not ended).
async fn is_settled_already(
    ledger: &Ledger,
    path: &Path,
    identity: Option<FileIdentity>,
) -> Result<bool, Error> {
    let Some(now) = identity else {
        return Ok(true);
    };
    let ended_here = ledger.latest_for_path(path).await?.is_some_and(|r| {
        let ended = matches!(
            r.state,
            FileState::Done | FileState::Failed | FileState::Waiting
        );
        ended && r.version() == now.version && !moved_back(&r)
    });
    // A file uploaded under another path and moved or renamed here since.
    Ok(ended_here || ledger.uploaded(now).await?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_descriptors_passes_and_a_refusal_does_not() {
        let io = |errno| SourceError::Io {
            path: PathBuf::from("/drop/a.mp4"),
            source: std::io::Error::from_raw_os_error(errno),
        };
        assert!(passing(&io(libc::EMFILE)));
        assert!(passing(&io(libc::ENFILE)));
        assert!(!passing(&io(libc::EACCES)));
        assert!(!passing(&SourceError::Gone {
            path: PathBuf::from("/drop/a.mp4")
        }));
    }
}
