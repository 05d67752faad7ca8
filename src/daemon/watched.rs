//! The watch list as the intake publishes it, with each watch's root as the ledger records it
//! (canonical), worked out once per list rather than at every claim and disposal. Read by the
//! scheduler and by every file's after-upload step; not the watching itself (the intake).

use crate::config::Watch;
use crate::ledger::WatchRoot;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The watch list the intake publishes, with each watch's root as the ledger records it
/// (canonical), worked out once per list rather than at every claim and disposal. Shared by the
/// scheduler and every file's task.
pub struct Watched {
    published: Mutex<(watch::Receiver<Vec<Watch>>, Arc<WatchList>)>,
}

/// One published watch list and its roots.
#[derive(Default)]
pub struct WatchList {
    pub roots: Vec<WatchRoot>,
    pub watches: Vec<Watch>,
}

impl Watched {
    pub fn new(mut published: watch::Receiver<Vec<Watch>>) -> Watched {
        let list = WatchList::of(published.borrow_and_update().clone());
        Watched {
            published: Mutex::new((published, Arc::new(list))),
        }
    }

    /// The list as published now.
    pub fn current(&self) -> Arc<WatchList> {
        let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        let (receiver, list) = &mut *published;
        if receiver.has_changed().unwrap_or(false) {
            *list = Arc::new(WatchList::of(receiver.borrow_and_update().clone()));
        }
        list.clone()
    }
}

impl WatchList {
    fn of(watches: Vec<Watch>) -> WatchList {
        WatchList {
            roots: watches.iter().map(WatchRoot::of).collect(),
            watches,
        }
    }

    /// The watch whose folder is `origin` (as a row records it: canonical).
    pub fn of_origin(&self, origin: &Path) -> Option<&Watch> {
        let at = self.roots.iter().position(|r| r.path == origin)?;
        self.watches.get(at)
    }
}
