//! The ledger: what vodup knows about every file, behind one async boundary that speaks the
//! domain. It remembers every file version seen, its state, last error, the service's file id and
//! URL, the part MD5s of each content, the parts the service confirmed, the after-upload intent
//! and the hook deliveries, and which node holds each file.
//!
//! Two backends: SQLite ([`Sqlite`], embedded, one host; its blocking calls run on the ledger's
//! own thread) and PostgreSQL ([`Postgres`], a fleet of hosts on one shared folder; async, a pool of
//! connections). [`Ledger`] is the one handle callers hold; [`Ledger::connect`] picks the backend
//! from the config's `ledger` value. Every method of the facade dispatches to both, with the same
//! contract.
//!
//! Invariants every backend keeps:
//! - An offset is written to the confirmed parts only after the service confirmed that part
//!   (a code 0, or a resume list). Nothing else writes there.
//! - A file under way is held by one node at a time through a [`Claim`]: taking a file writes the
//!   node, a lease expiry and a new epoch in one statement. Every write for that file takes the
//!   claim and is refused ([`LedgerError::Fenced`]) once the epoch moved on, so a node frozen past
//!   its lease never records, moves or deletes a file another node took over.

mod error;
mod postgres;
mod record;
mod row;
mod sqlite;

pub use error::{LedgerError, Result};
pub use postgres::{Postgres, SchemaState};
pub use record::{
    instance, Claim, Delivery, DisposalFailed, Disposed, FileIdentity, FileKey, FileRecord,
    FileState, FileVersion, Health, HookKind, Inode, Lease, Listing, NewDelivery, NewFile,
    NodeInfo, NodeStart, RecordedError, Upload, Wanted, WatchRoot,
};
pub use sqlite::Sqlite;
use sqlite::Worker;

use crate::config::{AfterUpload, Config, LedgerLocation};
use crate::protocol::Signature;
use std::collections::BTreeSet;
use std::path::Path;

/// The ledger; cheap to clone, shared by every task.
#[derive(Debug, Clone)]
pub struct Ledger {
    store: Store,
}

#[derive(Debug, Clone)]
enum Store {
    Sqlite(Worker),
    Postgres(Postgres),
}

/// Run one call of the SQLite backend on its thread.
macro_rules! sqlite {
    ($worker:expr, |$s:ident| $call:expr) => {
        $worker.run(move |$s| $call).await
    };
}

/// A [`Listing`] that can go to the SQLite thread.
struct OwnedListing {
    open: Option<bool>,
    states: Vec<FileState>,
    since: Option<i64>,
    watch: Option<WatchRoot>,
    before: Option<FileKey>,
    limit: usize,
}

impl OwnedListing {
    fn of(l: &Listing<'_>) -> OwnedListing {
        OwnedListing {
            open: l.open,
            states: l.states.to_vec(),
            since: l.since,
            watch: l.watch.cloned(),
            before: l.before,
            limit: l.limit,
        }
    }

    fn listing(&self) -> Listing<'_> {
        Listing {
            open: self.open,
            states: &self.states,
            since: self.since,
            watch: self.watch.as_ref(),
            before: self.before,
            limit: self.limit,
        }
    }
}

/// One call of either backend: SQLite's on its thread, PostgreSQL's awaited.
macro_rules! dispatch {
    ($ledger:expr, |$s:ident| $sqlite:expr, |$p:ident| $postgres:expr) => {
        match &$ledger.store {
            Store::Sqlite(s) => sqlite!(s, |$s| $sqlite),
            Store::Postgres($p) => $postgres.await,
        }
    };
}

impl Ledger {
    /// Open (creating if needed) and migrate the SQLite ledger at `path`.
    pub fn open(path: &Path) -> Result<Ledger> {
        Ok(Ledger::from(Sqlite::open(path)?))
    }

    /// Open the ledger the config names: the SQLite file (created if needed), or the PostgreSQL
    /// database (its schema migrated, once however many nodes start together), which is told
    /// this host's watch folders.
    pub async fn connect(config: &Config) -> Result<Ledger> {
        match &config.ledger {
            LedgerLocation::Sqlite(path) => Ledger::open(path),
            LedgerLocation::Postgres(url) => {
                let ledger = Ledger::from(Postgres::open(url).await?);
                let roots: Vec<WatchRoot> = config.watch.iter().map(WatchRoot::of).collect();
                ledger.know_watches(&roots);
                Ok(ledger)
            }
        }
    }

    /// This host's watch folders (name, canonical path), replacing the ones known before: the
    /// PostgreSQL ledger keys a watch's files on its name and their path in its folder, and
    /// shows them under this host's folder. Call it at start and after a reload. SQLite stores
    /// whole paths and needs none.
    pub fn know_watches(&self, roots: &[WatchRoot]) {
        match &self.store {
            Store::Sqlite(_) => {}
            Store::Postgres(p) => p.know_watches(roots),
        }
    }

    // ---- reads ----

    pub async fn file(&self, key: FileKey) -> Result<Option<FileRecord>> {
        dispatch!(self, |s| s.file(key), |p| p.file(key))
    }

    /// Every file, newest first.
    pub async fn files(&self) -> Result<Vec<FileRecord>> {
        dispatch!(self, |s| s.files(), |p| p.files())
    }

    /// The files `listing` selects, newest first (at most `listing.limit`).
    pub async fn list(&self, listing: &Listing<'_>) -> Result<Vec<FileRecord>> {
        let owned = OwnedListing::of(listing);
        dispatch!(self, |s| s.list(&owned.listing()), |p| p.list(listing))
    }

    /// How many files `listing` selects (its `before` and `limit` aside).
    pub async fn count(&self, listing: &Listing<'_>) -> Result<u64> {
        let owned = OwnedListing::of(listing);
        dispatch!(self, |s| s.count(&owned.listing()), |p| p.count(listing))
    }

    /// A page of files, newest first: at most `limit` of those with a key below `before`.
    pub async fn recent(&self, limit: usize, before: Option<FileKey>) -> Result<Vec<FileRecord>> {
        dispatch!(self, |s| s.recent(limit, before), |p| p
            .recent(limit, before))
    }

    /// The most recent version of a path, whatever its state.
    pub async fn latest_for_path(&self, path: &Path) -> Result<Option<FileRecord>> {
        let owned = path.to_owned();
        dispatch!(self, |s| s.latest_for_path(&owned), |p| p
            .latest_for_path(path))
    }

    /// The done row of this very file (inode and version), under any path.
    pub async fn uploaded(&self, identity: FileIdentity) -> Result<Option<FileRecord>> {
        dispatch!(self, |s| s.uploaded(&identity), |p| p.uploaded(&identity))
    }

    /// The stored part MD5s of a content at a part size, in offset order, if a pass stored them.
    pub async fn part_md5s(
        &self,
        sha: &str,
        part_size: u64,
        parts: usize,
    ) -> Result<Option<Vec<String>>> {
        let owned = sha.to_owned();
        dispatch!(self, |s| s.part_md5s(&owned, part_size, parts), |p| p
            .part_md5s(sha, part_size, parts))
    }

    /// The signature of a content's upload to an account, if one was stored.
    pub async fn signature(&self, account: &str, sha: &str) -> Result<Option<Signature>> {
        let (a, h) = (account.to_owned(), sha.to_owned());
        dispatch!(self, |s| s.signature(&a, &h), |p| p.signature(account, sha))
    }

    /// Offsets the account's service confirmed for a content.
    pub async fn confirmed(&self, account: &str, sha: &str) -> Result<BTreeSet<u64>> {
        let (a, h) = (account.to_owned(), sha.to_owned());
        dispatch!(self, |s| s.confirmed(&a, &h), |p| p.confirmed(account, sha))
    }

    /// Bytes of a content confirmed at or after `since` (Unix seconds): the recent upload speed.
    pub async fn confirmed_since(&self, account: &str, sha: &str, since: i64) -> Result<u64> {
        let (a, h) = (account.to_owned(), sha.to_owned());
        dispatch!(self, |s| s.confirmed_since(&a, &h, since), |p| p
            .confirmed_since(account, sha, since))
    }

    /// The alerting gauges' figures: failing disposals, the oldest queued file, the oldest
    /// undelivered hook.
    pub async fn health(&self) -> Result<Health> {
        dispatch!(self, |s| s.health(), |p| p.health())
    }

    /// How many files are in each state.
    pub async fn count_by_state(&self) -> Result<Vec<(FileState, u64)>> {
        dispatch!(self, |s| s.count_by_state(), |p| p.count_by_state())
    }

    /// Deliveries due at `at` (Unix seconds), oldest first.
    pub async fn due_hooks(&self, at: i64, limit: usize) -> Result<Vec<Delivery>> {
        dispatch!(self, |s| s.due_hooks(at, limit), |p| p.due_hooks(at, limit))
    }

    /// Take up to `limit` deliveries due at `at` (Unix seconds), oldest first, for delivery now:
    /// each is put off by `hold` seconds in the same transaction, so another node's hook runner
    /// does not deliver it meanwhile; if this node dies delivering, it is due again after that.
    pub async fn take_due_hooks(&self, at: i64, limit: usize, hold: i64) -> Result<Vec<Delivery>> {
        dispatch!(self, |s| s.take_due_hooks(at, limit, hold), |p| p
            .take_due_hooks(at, limit, hold))
    }

    /// Every delivery not yet delivered.
    pub async fn undelivered_hooks(&self) -> Result<Vec<Delivery>> {
        self.due_hooks(i64::MAX, 10_000).await
    }

    pub async fn pending_hooks(&self) -> Result<u64> {
        dispatch!(self, |s| s.pending_hooks(), |p| p.pending_hooks())
    }

    /// The earliest `next_at` of an undelivered delivery.
    pub async fn next_hook_at(&self) -> Result<Option<i64>> {
        dispatch!(self, |s| s.next_hook_at(), |p| p.next_hook_at())
    }

    /// The nodes that ever took a file, with their last renewal and how many files each holds.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        dispatch!(self, |s| s.nodes(), |p| p.nodes())
    }

    // ---- writes that need no claim ----

    /// Record a file version (idempotent per watch, path and version) and return it as it stands;
    /// see [`Sqlite::enqueue`].
    pub async fn enqueue(&self, new: NewFile) -> Result<FileRecord> {
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.enqueue(&new)),
            Store::Postgres(p) => p.enqueue(&new).await,
        }
    }

    /// Record several file versions at once, each as [`Ledger::enqueue`] does (one transaction
    /// for all of them on SQLite).
    pub async fn enqueue_all(&self, new: Vec<NewFile>) -> Result<Vec<FileRecord>> {
        dispatch!(self, |s| s.enqueue_all(&new), |p| p.enqueue_all(&new))
    }

    /// Put this failed file back in the queue; whether it was failed.
    pub async fn requeue(&self, key: FileKey) -> Result<bool> {
        dispatch!(self, |s| s.requeue(key), |p| p.requeue(key))
    }

    /// Put failed files back in the queue (all, or the one at `path`). Returns how many.
    pub async fn requeue_failed(&self, path: Option<&Path>) -> Result<usize> {
        let owned = path.map(Path::to_owned);
        dispatch!(self, |s| s.requeue_failed(owned.as_deref()), |p| p
            .requeue_failed(path))
    }

    pub async fn hook_delivered(&self, id: i64) -> Result<()> {
        dispatch!(self, |s| s.hook_delivered(id), |p| p.hook_delivered(id))
    }

    pub async fn hook_failed(&self, id: i64, error: &str, next_at: i64) -> Result<()> {
        let owned = error.to_owned();
        dispatch!(self, |s| s.hook_failed(id, &owned, next_at), |p| p
            .hook_failed(id, error, next_at))
    }

    // ---- claims ----

    /// This node starts as this process ([`instance`]): it is recorded, and the claims a
    /// previous run of it left are released, since nothing of it runs any more. Unless another
    /// process holds the name and renewed within the lease (at a time other than `seen_before`,
    /// what an earlier [`NodeStart::InUse`] said): then nothing is changed, and the caller
    /// waits a renewal period to tell a live process from a run that died.
    /// `accounts` (one per line) is what `vodup nodes` shows the node has.
    pub async fn start_node(
        &self,
        lease: &Lease,
        seen_before: Option<i64>,
        accounts: &str,
    ) -> Result<NodeStart> {
        let (owned, listed) = (lease.clone(), accounts.to_owned());
        dispatch!(self, |s| s.start_node(&owned, seen_before, &listed), |p| p
            .start_node(lease, seen_before, accounts))
    }

    /// The accounts of files owed an upload, with how many each: what a node compares with its
    /// own to warn of files that only another node can upload.
    pub async fn owed_accounts(&self) -> Result<Vec<(String, u64)>> {
        dispatch!(self, |s| s.owed_accounts(), |p| p.owed_accounts())
    }

    /// This node stops cleanly: the name is free for its next start at once.
    pub async fn stop_node(&self, lease: &Lease) -> Result<()> {
        let node = lease.node.clone();
        dispatch!(self, |s| s.stop_node(&node), |p| p.stop_node(&lease.node))
    }

    /// Take up to `wanted.limit` files that are owed work (an upload, or the after-upload action
    /// of a file that ended) and that no live claim holds, oldest first: each gets this node, a
    /// lease and a new epoch, in one statement that skips rows another node is taking. Only files
    /// of `wanted.watches` (PostgreSQL; SQLite serves one host, which has every watch its rows
    /// name).
    pub async fn claim_next(
        &self,
        lease: &Lease,
        wanted: Wanted<'_>,
    ) -> Result<Vec<(Claim, FileRecord)>> {
        let Wanted {
            limit,
            watches,
            queued_before,
            one_part,
            accounts,
        } = wanted;
        let (owned, roots) = (lease.clone(), watches.to_vec());
        dispatch!(
            self,
            |s| s.claim_next(&owned, limit, &roots, queued_before, one_part),
            |p| p.claim_next(lease, limit, watches, (queued_before, one_part), accounts)
        )
    }

    /// Take the file `key` (`vodup upload`), unless a live claim of another node holds it.
    pub async fn claim(&self, key: FileKey, lease: &Lease) -> Result<Option<Claim>> {
        let owned = lease.clone();
        dispatch!(self, |s| s.claim(key, &owned), |p| p.claim(key, lease))
    }

    /// Extend this node's leases on `claims`, and note the node as alive. Returns the claims it
    /// still holds: one missing was taken over by another node.
    pub async fn renew(&self, lease: &Lease, claims: &[Claim]) -> Result<Vec<Claim>> {
        let (owned, held) = (lease.clone(), claims.to_vec());
        dispatch!(self, |s| s.renew(&owned, &held), |p| p.renew(lease, claims))
    }

    /// Note the watch folders this node refused at its start or last reload (`None`: none), so
    /// `vodup status` and the page can show them.
    pub async fn node_refused(&self, node: &str, refused: Option<&str>) -> Result<()> {
        let (owned, text) = (node.to_owned(), refused.map(str::to_owned));
        dispatch!(self, |s| s.node_refused(&owned, text.as_deref()), |p| p
            .node_refused(node, refused))
    }

    /// Let go of a file: its lease ends now (the node stays recorded as the last to hold it).
    pub async fn release(&self, claim: Claim) -> Result<()> {
        dispatch!(self, |s| s.release(claim), |p| p.release(claim))
    }

    // ---- writes under a claim (refused once fenced) ----

    pub async fn set_state(&self, claim: Claim, state: FileState) -> Result<()> {
        dispatch!(self, |s| s.set_state(claim, state), |p| p
            .set_state(claim, state))
    }

    /// One more attempt at the file begins: count it, record the account it goes to if the row
    /// had none (queued before accounts were recorded, or re-queued), and mark it `hashing` if it
    /// is about to be hashed.
    pub async fn begin_attempt(
        &self,
        claim: Claim,
        account: Option<&crate::config::AccountName>,
        hashing: bool,
    ) -> Result<()> {
        let owned = account.cloned();
        dispatch!(
            self,
            |s| s.begin_attempt(claim, owned.as_ref(), hashing),
            |p| p.begin_attempt(claim, account, hashing)
        )
    }

    /// Store the hashing pass: the file's SHA-1 and part size, the MD5 of every part, and the
    /// file's `ctime` (ns) when it was opened for the pass.
    pub async fn record_hash(
        &self,
        claim: Claim,
        sha: &str,
        part_size: u64,
        md5s: Vec<String>,
        ctime_ns: Option<i64>,
    ) -> Result<()> {
        let owned = sha.to_owned();
        match &self.store {
            Store::Sqlite(s) => {
                sqlite!(s, |s| s
                    .record_hash(claim, &owned, part_size, &md5s, ctime_ns))
            }
            Store::Postgres(p) => p.record_hash(claim, sha, part_size, &md5s, ctime_ns).await,
        }
    }

    pub async fn store_signature(
        &self,
        claim: Claim,
        upload: &Upload,
        signature: &Signature,
    ) -> Result<()> {
        let (u, sig) = (upload.clone(), signature.clone());
        dispatch!(self, |s| s.store_signature(claim, &u, &sig), |p| p
            .store_signature(claim, upload, signature))
    }

    /// Record parts the account's service answered code 0 for, as (offset, length). Call it
    /// only then. With `then`, the file moves to that state in the same write (the last parts
    /// of a round and `Finishing`).
    pub async fn confirm_parts(
        &self,
        claim: Claim,
        upload: &Upload,
        parts: Vec<(u64, u64)>,
        then: Option<FileState>,
    ) -> Result<()> {
        let u = upload.clone();
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.confirm_parts(claim, &u, &parts, then)),
            Store::Postgres(p) => p.confirm_parts(claim, upload, &parts, then).await,
        }
    }

    /// Make the confirmed parts of a content exactly the ones the service listed, and mark the
    /// file `uploading`; the confirmed offsets. `signature`, the one the init was made with, is
    /// stored in the same write, so a later resume signs again only once it expires.
    pub async fn reconcile(
        &self,
        claim: Claim,
        upload: &Upload,
        held: Vec<(u64, u64)>,
        signature: Option<&Signature>,
    ) -> Result<BTreeSet<u64>> {
        let (u, sig) = (upload.clone(), signature.cloned());
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.reconcile(claim, &u, &held, sig.as_ref())),
            Store::Postgres(p) => p.reconcile(claim, upload, &held, signature).await,
        }
    }

    /// The service confirmed the file: record its id and URL and forget the content's parts.
    pub async fn finish(
        &self,
        claim: Claim,
        file_id: &str,
        url: Option<&str>,
        instant: bool,
    ) -> Result<()> {
        let (id, u) = (file_id.to_owned(), url.map(str::to_owned));
        dispatch!(self, |s| s.finish(claim, &id, u.as_deref(), instant), |p| p
            .finish(claim, file_id, url, instant))
    }

    /// Record an error without changing the state (a retry is coming).
    pub async fn note_error(&self, claim: Claim, error: &RecordedError) -> Result<()> {
        let owned = error.clone();
        dispatch!(self, |s| s.write_error(claim, &owned, None), |p| p
            .write_error(claim, error, None))
    }

    /// The file failed for good with `error`.
    pub async fn fail(&self, claim: Claim, error: &RecordedError) -> Result<()> {
        let (owned, failed) = (error.clone(), Some(FileState::Failed));
        dispatch!(self, |s| s.write_error(claim, &owned, failed), |p| p
            .write_error(claim, error, failed))
    }

    /// This row no longer describes a file to upload (`Superseded` or `Gone`), for `why`.
    pub async fn set_aside(&self, claim: Claim, state: FileState, why: &str) -> Result<()> {
        let owned = why.to_owned();
        dispatch!(self, |s| s.set_aside(claim, state, &owned), |p| p
            .set_aside(claim, state, why))
    }

    /// The after-upload action about to run, and the hook deliveries its outcome will release,
    /// held until then; committed durably. Whether it was recorded (not for a file already
    /// disposed of, nor one re-queued meanwhile).
    pub async fn intend_disposal(
        &self,
        claim: Claim,
        intent: AfterUpload,
        target: Option<&Path>,
        hooks: Vec<NewDelivery>,
    ) -> Result<bool> {
        let owned = target.map(Path::to_owned);
        match &self.store {
            // Durable: committed with synchronous=FULL before the caller acts on it.
            Store::Sqlite(s) => {
                s.run_durable(move |s| s.intend_disposal(claim, intent, owned.as_deref(), &hooks))
                    .await
            }
            Store::Postgres(p) => p.intend_disposal(claim, intent, target, &hooks).await,
        }
    }

    /// The after-upload action failed with `reason`: record it (counted, shown by `status` and
    /// the page), release the claim, and leave the file unclaimed for `retry_in` seconds.
    pub async fn disposal_failed(&self, claim: Claim, reason: &str, retry_in: i64) -> Result<()> {
        let owned = reason.to_owned();
        dispatch!(self, |s| s.disposal_failed(claim, &owned, retry_in), |p| p
            .disposal_failed(claim, reason, retry_in))
    }

    /// The after-upload action ran and did `disposed` (to `moved_to`): mark the file disposed of
    /// and release its held deliveries, or replace them by `hooks`. This ends the file's work:
    /// its claim is released in the same transaction.
    pub async fn mark_disposed(
        &self,
        claim: Claim,
        disposed: Disposed,
        moved_to: Option<&Path>,
        hooks: Option<Vec<NewDelivery>>,
    ) -> Result<()> {
        let owned = moved_to.map(Path::to_owned);
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.mark_disposed(
                claim,
                &disposed,
                owned.as_deref(),
                hooks.as_deref()
            )),
            Store::Postgres(p) => {
                p.mark_disposed(claim, &disposed, moved_to, hooks.as_deref())
                    .await
            }
        }
    }
}

impl From<Sqlite> for Ledger {
    fn from(s: Sqlite) -> Ledger {
        Ledger {
            store: Store::Sqlite(Worker::start(s)),
        }
    }
}

impl From<Postgres> for Ledger {
    fn from(p: Postgres) -> Ledger {
        Ledger {
            store: Store::Postgres(p),
        }
    }
}
