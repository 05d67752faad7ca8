//! The watches the intake runs: each watch whose folders pass the check, with its filter and
//! the one watcher over all of them; the refused ones, with why. Not what is done with what
//! they notice (the intake's task).

use super::settle::Rule;
use super::watcher::{self, Filter, Noticed, RescanFlag};
use crate::config::Watch;
use crate::daemon::folders;
use crate::error::Error;
use crate::shown::shown;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::{error, warn};

/// The watches as the intake uses them: each with its filter.
pub struct Active {
    pub filters: Vec<(Filter, Watch)>,
    _watcher: notify::RecommendedWatcher,
}

impl Active {
    /// The watch (and its filter) that takes `path`, if any.
    pub fn watch_for(&self, path: &Path) -> Option<&(Filter, Watch)> {
        self.filters.iter().find(|(f, _)| f.matches(path))
    }
}

/// Watch `watches`, but those whose folders this process cannot make or write (see
/// [`folders::check`]): those are refused, each with its reason (returned, and logged at ERROR),
/// and the others run. On the blocking pool: notify's recursive set-up walks the whole tree.
pub async fn activate(
    watches: Vec<Watch>,
    events: mpsc::Sender<Noticed>,
    rescan: Arc<RescanFlag>,
) -> Result<(Active, Vec<String>), Error> {
    tokio::task::spawn_blocking(move || activate_now(&watches, events, rescan))
        .await
        .expect("starting the watcher does not panic")
}

fn activate_now(
    watches: &[Watch],
    events: mpsc::Sender<Noticed>,
    rescan: Arc<RescanFlag>,
) -> Result<(Active, Vec<String>), Error> {
    let mut filters = Vec::new();
    let mut refused = Vec::new();
    for watch in watches {
        // Made where missing; a folder that cannot be made or written refuses this watch only,
        // so the service starts (and says why) whatever one watch's folders are.
        let checked = folders::check(watch);
        if let Some(why) = checked.refused {
            error!(watch = %shown(&watch.path), why, "watch refused: its files are not taken");
            refused.push(format!("{}: {why}", shown(&watch.path)));
            continue;
        }
        for warning in checked.warnings {
            warn!("{warning}");
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
    let active = Active {
        filters,
        _watcher: watcher,
    };
    Ok((active, refused))
}

pub fn rule(watch: &Watch) -> Rule {
    Rule {
        settle: watch.settle,
        settle_unseen: watch.settle_unseen,
    }
}

pub fn rule_for(active: &Active, path: &Path) -> Option<Rule> {
    active.watch_for(path).map(|(_, w)| rule(w))
}
