//! This node's claims on the files it works on, kept alive: one renewal for all of them every
//! third of the lease, so a node that is alive never loses a file, and one that was frozen or cut
//! off from the ledger past its lease finds out and stops those files at once (their writes would
//! be refused anyway: see [`crate::ledger::Claim`]). A node also fences itself by its own
//! monotonic clock ([`Holder::fence`]): before a call to the service for a file it checks how
//! long ago the claim was last confirmed, so a node thawed after a freeze renews (and finds the
//! file lost) before it says anything to the service.

use crate::ledger::{Claim, FileKey, Lease, Ledger, LedgerError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The claims this node holds, each with a token cancelled when it is lost and the instant its
/// lease was last confirmed from (the instant the confirming request was *sent*, so the server's
/// lease never ends before ours).
#[derive(Debug)]
pub struct Holder {
    ledger: Ledger,
    lease: Lease,
    held: Mutex<HashMap<FileKey, HeldClaim>>,
}

#[derive(Debug)]
struct HeldClaim {
    claim: Claim,
    lost: CancellationToken,
    confirmed: Instant,
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
            .is_some_and(|h| h.claim == self.claim)
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

    /// Keep `claim` alive until the returned guard is dropped. `claim` was taken (or last
    /// renewed) a moment ago: its lease counts from now.
    pub fn hold(self: &Arc<Holder>, claim: Claim) -> Held {
        let lost = CancellationToken::new();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let confirmed = Instant::now();
        let entry = HeldClaim {
            claim,
            lost: lost.clone(),
            confirmed,
        };
        held.insert(claim.key, entry);
        Held {
            holder: self.clone(),
            claim,
            lost,
        }
    }

    /// Renew every held claim every third of the lease, until cancelled. A failed renewal is
    /// logged and tried again at the next tick: the lease leaves room for two misses.
    pub async fn renew(self: Arc<Holder>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.lease.length / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.renew_now().await {
                warn!(error = %e, "claims not renewed; trying again");
            }
        }
    }

    /// Before a call to the service for `claim`'s file: if the claim was last confirmed longer
    /// ago than [`Holder::trusted_for`] by this node's monotonic clock (which goes on counting
    /// while the process is frozen), renew it first. `Fenced` (and the claim's token cancelled)
    /// when another node took the file over; a ledger error when it cannot be renewed, so a node
    /// cut off from the ledger past the margin stops calling the service.
    pub async fn fence(&self, claim: Claim) -> Result<(), LedgerError> {
        let confirmed = {
            let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            held.get(&claim.key)
                .filter(|h| h.claim == claim)
                .map(|h| h.confirmed)
        };
        // A claim not held here (`vodup upload` outside the holder, tests) is fenced by the
        // ledger's writes alone.
        let Some(confirmed) = confirmed else {
            return Ok(());
        };
        if confirmed.elapsed() < self.trusted_for() {
            return Ok(());
        }
        warn!(
            since_ms = confirmed.elapsed().as_millis() as u64,
            "this node's claim on the file was last confirmed too long ago: renewing before the next call"
        );
        self.renew_these(vec![claim]).await?;
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        match held.get(&claim.key) {
            Some(h) if h.claim == claim && !h.lost.is_cancelled() => Ok(()),
            _ => Err(LedgerError::Fenced { key: claim.key }),
        }
    }

    /// How long after its last confirmation a claim is trusted for a call to the service: two
    /// thirds of the lease, which leaves the last third for the call to reach the service.
    /// Renewals every third of the lease keep a live node well inside it.
    pub fn trusted_for(&self) -> std::time::Duration {
        self.lease.length * 2 / 3
    }

    async fn renew_now(&self) -> Result<(), LedgerError> {
        let claims: Vec<Claim> = {
            let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            held.values().map(|h| h.claim).collect()
        };
        self.renew_these(claims).await
    }

    /// Renew `claims`: those still held get the instant the request went out as their new
    /// confirmation; those lost have their token cancelled.
    async fn renew_these(&self, claims: Vec<Claim>) -> Result<(), LedgerError> {
        let sent = Instant::now();
        let still = self.ledger.renew(&self.lease, &claims).await?;
        debug!(held = still.len(), "claims renewed");
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for claim in &claims {
            let Some(h) = held.get_mut(&claim.key).filter(|h| h.claim == *claim) else {
                continue;
            };
            if still.contains(claim) {
                h.confirmed = h.confirmed.max(sent);
            } else if !h.lost.is_cancelled() {
                warn!(file = %claim.key, "claim lost: another node took this file over");
                h.lost.cancel();
            }
        }
        Ok(())
    }
}
