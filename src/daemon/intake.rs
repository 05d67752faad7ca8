//! The intake: scans and watches the drop folders, waits for each file to settle, records it in
//! the ledger and hands it to the scheduler. Rescans on start, when events may have been lost,
//! every `rescan_interval`, and when the watch list is reloaded.

use super::Watches;
use crate::commands::enqueue_path;
use crate::config::Watch;
use crate::error::Error;
use crate::ledger::{FileKey, FileRecord, FileState, Ledger};
use crate::stability::Settler;
use crate::watcher::{self, Filter, RescanFlag};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How often settling files are looked at.
const SETTLE_POLL: Duration = Duration::from_millis(250);
/// Events buffered between the notify thread and this task; past that, a rescan.
const EVENT_CHANNEL: usize = 4096;

pub struct Intake {
    pub ledger: Ledger,
    pub watches: Watches,
    pub part_size: u64,
    pub rescan_interval: Duration,
    pub to_scheduler: mpsc::Sender<FileKey>,
    pub reload: mpsc::Receiver<Vec<Watch>>,
}

/// The watches as the intake uses them: each with its filter.
struct Active {
    filters: Vec<(Filter, Watch)>,
    _watcher: notify::RecommendedWatcher,
}

impl Active {
    /// The watch (and its filter) that takes `path`, if any.
    fn watch_for(&self, path: &Path) -> Option<&(Filter, Watch)> {
        self.filters.iter().find(|(f, _)| f.matches(path))
    }
}

impl Intake {
    pub async fn run(
        mut self,
        cancel: CancellationToken,
        ready: oneshot::Sender<()>,
    ) -> Result<(), Error> {
        let (events_tx, mut events) = mpsc::channel(EVENT_CHANNEL);
        let rescan = Arc::new(RescanFlag::default());
        let mut active = activate(self.watches.get(), events_tx.clone(), rescan.clone()).await?;
        let mut settler = Settler::default();
        self.scan(&active, &mut settler).await?;
        let _ = ready.send(());
        let mut poll = tokio::time::interval(SETTLE_POLL);
        let period = if self.rescan_interval.is_zero() {
            Duration::from_secs(86_400 * 365)
        } else {
            self.rescan_interval
        };
        let mut periodic = tokio::time::interval_at(Instant::now() + period, period);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                Some(path) = events.recv() => {
                    if let Some(settle) = settle_for(&active, &path) {
                        settler.touch(path, settle, Instant::now());
                    }
                }
                () = rescan.raised() => {
                    if rescan.take() {
                        warn!("file events may have been lost: rescanning");
                        self.scan(&active, &mut settler).await?;
                    }
                }
                _ = periodic.tick() => self.scan(&active, &mut settler).await?,
                Some(watches) = self.reload.recv() => {
                    match activate(watches.clone(), events_tx.clone(), rescan.clone()).await {
                        Ok(reloaded) => {
                            info!(watches = watches.len(), "watch list reloaded");
                            active = reloaded;
                            self.watches.set(watches);
                            self.scan(&active, &mut settler).await?;
                        }
                        Err(e) => warn!(error = %e, "watch list not reloaded; keeping the old one"),
                    }
                }
                _ = poll.tick(), if !settler.is_empty() => {
                    let (back, ready) = poll_settler(std::mem::take(&mut settler)).await;
                    settler = back;
                    for path in ready {
                        self.take(&active, path).await?;
                    }
                }
            }
        }
    }

    /// Every matching file not already uploaded (or failed) in its current version starts settling.
    async fn scan(&self, active: &Active, settler: &mut Settler) -> Result<(), Error> {
        let filters = active.filters.clone();
        let ledger = self.ledger.clone();
        let found =
            tokio::task::spawn_blocking(move || -> Result<Vec<(PathBuf, Duration)>, Error> {
                let mut found = Vec::new();
                for (filter, watch) in &filters {
                    for path in filter.scan() {
                        if !is_settled_already(&ledger, &path)? {
                            found.push((path, watch.settle));
                        }
                    }
                }
                Ok(found)
            })
            .await
            .expect("scan does not panic")?;
        debug!(files = found.len(), "scan found files to consider");
        let now = Instant::now();
        for (path, settle) in found {
            if !settler.contains(&path) {
                settler.touch(path, settle, now);
            }
        }
        Ok(())
    }

    /// A settled file: record it and queue it, unless this very version is already done or failed.
    async fn take(&self, active: &Active, path: PathBuf) -> Result<(), Error> {
        let Some((filter, watch)) = active.watch_for(&path) else {
            return Ok(());
        };
        let origin = filter.root().to_owned();
        let processing = serde_json::to_string(&watch.processing).expect("processing serializes");
        let (ledger, part_size) = (self.ledger.clone(), self.part_size);
        let shown = path.clone();
        let found = tokio::task::spawn_blocking(move || {
            // A symlink (or a file under a symlinked folder) is never taken: its target may live
            // outside the drop folder, and the after-upload action would delete or move it.
            let regular = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
            if !regular || std::fs::canonicalize(&path).ok().as_ref() != Some(&path) {
                return Err(crate::error::Error::Watch {
                    path,
                    message: "not a regular file (symlinks are not taken)".into(),
                });
            }
            enqueue_path(&ledger, &path, part_size, Some(&origin), &processing)
        })
        .await
        .expect("enqueue does not panic");
        let found = match found {
            // A failed file moved to the failed folder and moved back in: the operator retries it.
            Ok(record) if moved_back(&record) => {
                info!(path = %record.path.display(), "failed file moved back in: retrying it");
                let key = record.key;
                let requeued = self.ledger.run(move |l| l.requeue(key)).await?;
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
            Ok(record) if !record.state.is_final() => {
                info!(path = %record.path.display(), size = record.size, "file settled: queued");
                let _ = self.to_scheduler.send(record.key).await;
            }
            Ok(_) => {}
            Err(e) => warn!(path = %shown.display(), error = %e, "cannot take a settled file"),
        }
        Ok(())
    }
}

/// Check the folders and start watching them, on the blocking pool (notify's recursive set-up
/// walks the whole tree).
async fn activate(
    watches: Vec<Watch>,
    events: mpsc::Sender<PathBuf>,
    rescan: Arc<RescanFlag>,
) -> Result<Active, Error> {
    tokio::task::spawn_blocking(move || activate_now(&watches, events, rescan))
        .await
        .expect("starting the watcher does not panic")
}

fn activate_now(
    watches: &[Watch],
    events: mpsc::Sender<PathBuf>,
    rescan: Arc<RescanFlag>,
) -> Result<Active, Error> {
    let mut filters = Vec::new();
    for watch in watches {
        if !watch.path.is_dir() {
            return Err(Error::Watch {
                path: watch.path.clone(),
                message: "is not a folder".into(),
            });
        }
        let filter = Filter::new(watch).map_err(|e| Error::Watch {
            path: watch.path.clone(),
            message: e.to_string(),
        })?;
        filters.push((filter, watch.clone()));
    }
    let only: Vec<Filter> = filters.iter().map(|(f, _)| f.clone()).collect();
    let watcher = watcher::watch(&only, events, rescan).map_err(|e| Error::Watch {
        path: watches.first().map(|w| w.path.clone()).unwrap_or_default(),
        message: e.to_string(),
    })?;
    Ok(Active {
        filters,
        _watcher: watcher,
    })
}

/// Stat every settling file on the blocking pool; the settler comes back with the ready paths.
async fn poll_settler(mut settler: Settler) -> (Settler, Vec<PathBuf>) {
    let now = Instant::now();
    tokio::task::spawn_blocking(move || {
        let ready = settler.poll(now, |p| crate::hash::stat(p).ok());
        (settler, ready)
    })
    .await
    .expect("polling the settler does not panic")
}

fn settle_for(active: &Active, path: &Path) -> Option<Duration> {
    active.watch_for(path).map(|(_, w)| w.settle)
}

/// A failed file that was moved to the failed folder (not copied, not kept) and is back at its
/// path: the operator moved it back to retry it.
fn moved_back(record: &FileRecord) -> bool {
    record.state == FileState::Failed && record.disposal.as_deref() == Some("moved")
}

/// Whether this version of the file (same size and mtime) already ended in the ledger (a failed
/// file moved back in has not).
fn is_settled_already(ledger: &Ledger, path: &Path) -> Result<bool, Error> {
    let Ok(now) = crate::hash::stat(path) else {
        return Ok(true);
    };
    Ok(ledger
        .latest_for_path(path)?
        .is_some_and(|r| r.state.is_final() && (r.size, r.mtime_ns) == now && !moved_back(&r)))
}
