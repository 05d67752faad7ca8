//! This node's claims on the files it works on, kept alive: one renewal for all of them every
//! third of the lease, so a node that is alive never loses a file, and one that was frozen or cut
//! off from the ledger past its lease finds out and stops those files at once (their writes would
//! be refused anyway: see [`crate::ledger::Claim`]).

use crate::ledger::{Claim, FileKey, Lease, Ledger, LedgerError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The claims this node holds, each with a token cancelled when it is lost.
#[derive(Debug)]
pub struct Holder {
    ledger: Ledger,
    lease: Lease,
    held: Mutex<HashMap<FileKey, (Claim, CancellationToken)>>,
}

/// One held claim; dropping it stops renewing it (release it first, if the file is over).
#[derive(Debug)]
pub struct Held {
    holder: Arc<Holder>,
    pub claim: Claim,
    lost: CancellationToken,
}

impl Held {
    /// Cancelled once another node took the file over.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.holder.held.lock().unwrap_or_else(|p| p.into_inner());
        if held
            .get(&self.claim.key)
            .is_some_and(|(c, _)| *c == self.claim)
        {
            held.remove(&self.claim.key);
        }
    }
}

impl Holder {
    pub fn new(ledger: Ledger, lease: Lease) -> Arc<Holder> {
        Arc::new(Holder {
            ledger,
            lease,
            held: Mutex::default(),
        })
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Keep `claim` alive until the returned guard is dropped.
    pub fn hold(self: &Arc<Holder>, claim: Claim) -> Held {
        let lost = CancellationToken::new();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(claim.key, (claim, lost.clone()));
        Held {
            holder: self.clone(),
            claim,
            lost,
        }
    }

    /// Renew every held claim every third of the lease, until cancelled. A failed renewal is
    /// logged and tried again at the next tick: the lease leaves room for two misses.
    pub async fn renew(self: Arc<Holder>, cancel: CancellationToken) -> Result<(), LedgerError> {
        let mut tick = tokio::time::interval(self.lease.length / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            if let Err(e) = self.renew_now().await {
                warn!(error = %e, "claims not renewed; trying again");
            }
        }
    }

    async fn renew_now(&self) -> Result<(), LedgerError> {
        let claims: Vec<Claim> = {
            let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            held.values().map(|(c, _)| *c).collect()
        };
        let still = self.ledger.renew(&self.lease, &claims).await?;
        debug!(held = still.len(), "claims renewed");
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for claim in claims.iter().filter(|c| !still.contains(c)) {
            if let Some((c, lost)) = held.get(&claim.key) {
                if c == claim {
                    warn!(file = %claim.key, "claim lost: another node took this file over");
                    lost.cancel();
                }
            }
        }
        Ok(())
    }
}
