//! Retention (`forget_after`): every so often, forget the rows of done files that left the watch
//! and of versions set aside, unchanged that long, a batch at a time so the ledger's other calls
//! go on between batches, then give the freed pages of a SQLite ledger back to the file system.
//! Which rows may go is the ledger's to say.

use crate::clock::unix_now_i64;
use crate::ledger::{FileKey, Ledger};
use crate::metrics::Metrics;
use std::time::Duration;
use tracing::{info, warn};

/// Rows looked at in one batch (one short transaction).
const BATCH: usize = 1000;
/// Free pages given back in one call (4 MiB of 4 KiB pages).
const PAGES: u32 = 1024;
/// The pause between two batches: the uploads' ledger calls go first.
const PAUSE: Duration = Duration::from_millis(20);

pub struct Retention {
    pub ledger: Ledger,
    pub metrics: Metrics,
    /// `forget_after`: more than zero.
    pub after: Duration,
}

impl Retention {
    /// A pass at the start, then one every eighth of `forget_after` (at least a second, at most
    /// an hour), until cancelled.
    pub async fn run(self) {
        let every = (self.after / 8).clamp(Duration::from_secs(1), Duration::from_secs(3600));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.pass().await;
        }
    }

    /// One walk over the ledger; how many rows it forgot.
    pub async fn pass(&self) -> u64 {
        let age = i64::try_from(self.after.as_secs()).unwrap_or(i64::MAX);
        let ended_before = unix_now_i64().saturating_sub(age);
        let (mut after, mut forgotten) = (FileKey(0), 0);
        loop {
            match self.ledger.forget(ended_before, after, BATCH).await {
                Ok(batch) => {
                    forgotten += batch.forgotten;
                    self.metrics.rows_forgotten(batch.forgotten);
                    let Some(next) = batch.next else { break };
                    after = next;
                }
                Err(e) => {
                    warn!(error = %e, "forgetting old files stopped; the next pass goes on");
                    break;
                }
            }
            tokio::time::sleep(PAUSE).await;
        }
        if forgotten > 0 {
            info!(
                forgotten,
                "forgot the files that ended more than {} ago",
                shown(self.after)
            );
            self.give_back_space().await;
        }
        forgotten
    }

    /// Give free pages back a few at a time until none is left, or the ledger keeps them (one
    /// made before retention existed reuses them for new rows instead).
    async fn give_back_space(&self) {
        let mut left = u64::MAX;
        loop {
            match self.ledger.give_back_space(PAGES).await {
                Ok(free) if free == 0 || free >= left => return,
                Ok(free) => left = free,
                Err(e) => {
                    warn!(error = %e, "the ledger's free pages were not given back");
                    return;
                }
            }
            tokio::time::sleep(PAUSE).await;
        }
    }
}

/// `forget_after` as people write it: whole days as days ("90d"), else as humantime has it.
fn shown(after: Duration) -> String {
    match after.as_secs() {
        secs if secs >= 86_400 && secs % 86_400 == 0 => format!("{}d", secs / 86_400),
        _ => humantime::format_duration(after).to_string(),
    }
}
