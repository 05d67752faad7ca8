//! The ledger: what vodup knows about every file, behind one async boundary that speaks the
//! domain. It remembers every file version seen, its state, last error, the service's file id and
//! URL, the part MD5s of each content, the parts the service confirmed, the after-upload intent
//! and the hook deliveries, and which node holds each file.
//!
//! Two backends: SQLite ([`Sqlite`], embedded, one host; its blocking calls run on the blocking
//! pool) and PostgreSQL (`postgres`, a fleet of hosts on one shared folder). [`Ledger`] is the
//! one handle callers hold; it picks the backend from the config's `ledger` value.
//!
//! Invariants every backend keeps:
//! - An offset is written to the confirmed parts only after the service confirmed that part
//!   (a code 0, or a resume list). Nothing else writes there.
//! - A file under way is held by one node at a time through a [`Claim`]: taking a file writes the
//!   node, a lease expiry and a new epoch in one statement. Every write for that file takes the
//!   claim and is refused ([`LedgerError::Fenced`]) once the epoch moved on, so a node frozen past
//!   its lease never records, moves or deletes a file another node took over.

mod record;
mod sqlite;

pub use record::{
    Claim, Disposed, FileIdentity, FileKey, FileRecord, FileState, FileVersion, Inode, NewFile,
    NodeInfo, RecordedError, WatchRoot,
};
pub use sqlite::{Delivery, HookKind, NewDelivery, Sqlite};

use crate::config::AfterUpload;
use crate::protocol::Signature;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot open ledger {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("ledger {path}: {message}")]
    Schema { path: PathBuf, message: String },
    #[error("ledger: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("ledger: the blocking task was lost: {0}")]
    Task(String),
    /// A write under a claim that another node has taken over since (its lease had lapsed).
    #[error("file {key}: another node took it over (its claim lapsed); this node stops it")]
    Fenced { key: FileKey },
}

pub type Result<T> = std::result::Result<T, LedgerError>;

/// Who takes files: this node's name in the ledger, and how long a claim lasts unrenewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub node: String,
    pub length: Duration,
}

/// What [`Ledger::claim_next`] may take.
#[derive(Debug, Clone)]
pub struct Wanted<'a> {
    /// At most this many files.
    pub limit: usize,
    /// Only files of these watches (the ones this node watches).
    pub watches: &'a [WatchRoot],
    /// Only files queued before this (Unix seconds): the ones that waited long enough to run
    /// beside the files already running.
    pub queued_before: Option<i64>,
}

/// The ledger; cheap to clone, shared by every task.
#[derive(Debug, Clone)]
pub struct Ledger {
    store: Store,
}

#[derive(Debug, Clone)]
enum Store {
    Sqlite(Sqlite),
}

/// Run one call of the SQLite backend on the blocking pool.
macro_rules! sqlite {
    ($store:expr, |$s:ident| $call:expr) => {{
        let $s = $store.clone();
        tokio::task::spawn_blocking(move || $call)
            .await
            .map_err(|e| LedgerError::Task(e.to_string()))?
    }};
}

impl Ledger {
    /// Open (creating if needed) and migrate the SQLite ledger at `path`.
    pub fn open(path: &Path) -> Result<Ledger> {
        Ok(Ledger::from(Sqlite::open(path)?))
    }

    /// The SQLite backend, for blocking callers that hold one (tests, `vodup status`).
    pub fn sqlite(&self) -> Option<&Sqlite> {
        match &self.store {
            Store::Sqlite(s) => Some(s),
        }
    }

    // ---- reads ----

    pub async fn file(&self, key: FileKey) -> Result<Option<FileRecord>> {
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.file(key)),
        }
    }

    /// Every file, newest first.
    pub async fn files(&self) -> Result<Vec<FileRecord>> {
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.files()),
        }
    }

    /// A page of files, newest first: at most `limit` of those with a key below `before`.
    pub async fn recent(&self, limit: usize, before: Option<FileKey>) -> Result<Vec<FileRecord>> {
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.recent(limit, before)),
        }
    }

    /// The most recent version of a path, whatever its state.
    pub async fn latest_for_path(&self, path: &Path) -> Result<Option<FileRecord>> {
        let path = path.to_owned();
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.latest_for_path(&path)),
        }
    }

    /// The done row of this very file (inode and version), under any path.
    pub async fn uploaded(&self, identity: FileIdentity) -> Result<Option<FileRecord>> {
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.uploaded(&identity)),
        }
    }

    /// The stored part MD5s of a content at a part size, in offset order, if a pass stored them.
    pub async fn part_md5s(
        &self,
        sha: &str,
        part_size: u64,
        parts: usize,
    ) -> Result<Option<Vec<String>>> {
        let sha = sha.to_owned();
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.part_md5s(&sha, part_size, parts)),
        }
    }

    /// The signature of a content's upload to an account, if one was stored.
    pub async fn signature(&self, account: &str, sha: &str) -> Result<Option<Signature>> {
        let (account, sha) = (account.to_owned(), sha.to_owned());
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.signature(&account, &sha)),
        }
    }

    /// Offsets the account's service confirmed for a content.
    pub async fn confirmed(&self, account: &str, sha: &str) -> Result<BTreeSet<u64>> {
        let (account, sha) = (account.to_owned(), sha.to_owned());
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.confirmed(&account, &sha)),
        }
    }

    /// Bytes of a content confirmed at or after `since` (Unix seconds): the recent upload speed.
    pub async fn confirmed_since(&self, account: &str, sha: &str, since: i64) -> Result<u64> {
        let (account, sha) = (account.to_owned(), sha.to_owned());
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.confirmed_since(&account, &sha, since)),
        }
    }

    /// How many files are in each state.
    pub async fn count_by_state(&self) -> Result<Vec<(FileState, u64)>> {
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.count_by_state()),
        }
    }

    /// Deliveries due at `at` (Unix seconds), oldest first.
    pub async fn due_hooks(&self, at: i64, limit: usize) -> Result<Vec<Delivery>> {
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.due_hooks(at, limit)),
        }
    }

    /// Every delivery not yet delivered.
    pub async fn undelivered_hooks(&self) -> Result<Vec<Delivery>> {
        self.due_hooks(i64::MAX, 10_000).await
    }

    pub async fn pending_hooks(&self) -> Result<u64> {
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.pending_hooks()),
        }
    }

    /// The earliest `next_at` of an undelivered delivery.
    pub async fn next_hook_at(&self) -> Result<Option<i64>> {
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.next_hook_at()),
        }
    }

    /// The nodes that ever took a file, with their last renewal and how many files each holds.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.nodes()),
        }
    }

    // ---- writes that need no claim ----

    /// Record a file version (idempotent per watch, path and version) and return it as it stands;
    /// see [`Sqlite::enqueue`].
    pub async fn enqueue(&self, new: NewFile) -> Result<FileRecord> {
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.enqueue(&new)),
        }
    }

    /// Put this failed file back in the queue; whether it was failed.
    pub async fn requeue(&self, key: FileKey) -> Result<bool> {
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.requeue(key)),
        }
    }

    /// Put failed files back in the queue (all, or the one at `path`). Returns how many.
    pub async fn requeue_failed(&self, path: Option<&Path>) -> Result<usize> {
        let path = path.map(Path::to_owned);
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.requeue_failed(path.as_deref())),
        }
    }

    pub async fn hook_delivered(&self, id: i64) -> Result<()> {
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.hook_delivered(id)),
        }
    }

    pub async fn hook_failed(&self, id: i64, error: &str, next_at: i64) -> Result<()> {
        let error = error.to_owned();
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.hook_failed(id, &error, next_at)),
        }
    }

    // ---- claims ----

    /// This node starts: it is recorded (or seen again), and the claims a previous run of it
    /// left are released, since nothing of it runs any more.
    pub async fn start_node(&self, lease: &Lease) -> Result<()> {
        let node = lease.node.clone();
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.start_node(&node)),
        }
    }

    /// Take up to `wanted.limit` files that are owed work (an upload, or the after-upload action
    /// of a file that ended) and that no live claim holds, oldest first: each gets this node, a
    /// lease and a new epoch, in one statement that skips rows another node is taking.
    pub async fn claim_next(
        &self,
        lease: &Lease,
        wanted: Wanted<'_>,
    ) -> Result<Vec<(Claim, FileRecord)>> {
        let (lease, watches) = (lease.clone(), wanted.watches.to_vec());
        let (limit, before) = (wanted.limit, wanted.queued_before);
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.claim_next(&lease, limit, &watches, before)),
        }
    }

    /// Take the file `key` (`vodup upload`), unless a live claim of another node holds it.
    pub async fn claim(&self, key: FileKey, lease: &Lease) -> Result<Option<Claim>> {
        let lease = lease.clone();
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.claim(key, &lease)),
        }
    }

    /// Extend this node's leases on `claims`, and note the node as alive. Returns the claims it
    /// still holds: one missing was taken over by another node.
    pub async fn renew(&self, lease: &Lease, claims: &[Claim]) -> Result<Vec<Claim>> {
        let (lease, claims) = (lease.clone(), claims.to_vec());
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.renew(&lease, &claims)),
        }
    }

    /// Let go of a file: its lease ends now (the node stays recorded as the last to hold it).
    pub async fn release(&self, claim: Claim) -> Result<()> {
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.release(claim)),
        }
    }

    // ---- writes under a claim (refused once fenced) ----

    pub async fn set_state(&self, claim: Claim, state: FileState) -> Result<()> {
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.set_state(claim, state)),
        }
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
        let account = account.cloned();
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.begin_attempt(claim, account.as_ref(), hashing)),
        }
    }

    /// Store the hashing pass: the file's SHA-1 and part size, and the MD5 of every part.
    pub async fn record_hash(
        &self,
        claim: Claim,
        sha: &str,
        part_size: u64,
        md5s: Vec<String>,
    ) -> Result<()> {
        let sha = sha.to_owned();
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.record_hash(claim, &sha, part_size, &md5s)),
        }
    }

    pub async fn store_signature(
        &self,
        claim: Claim,
        upload: &Upload,
        signature: &Signature,
    ) -> Result<()> {
        let (upload, signature) = (upload.clone(), signature.clone());
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.store_signature(claim, &upload, &signature)),
        }
    }

    /// Record parts the account's service answered code 0 for, as (offset, length). Call it
    /// only then.
    pub async fn confirm_parts(
        &self,
        claim: Claim,
        upload: &Upload,
        parts: Vec<(u64, u64)>,
    ) -> Result<()> {
        let upload = upload.clone();
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.confirm_parts(claim, &upload, &parts)),
        }
    }

    /// Make the confirmed parts of a content exactly the ones the service listed, and mark the
    /// file `uploading`; the confirmed offsets.
    pub async fn reconcile(
        &self,
        claim: Claim,
        upload: &Upload,
        held: Vec<(u64, u64)>,
    ) -> Result<BTreeSet<u64>> {
        let upload = upload.clone();
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.reconcile(claim, &upload, &held)),
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
        let (file_id, url) = (file_id.to_owned(), url.map(str::to_owned));
        match &self.store {
            Store::Sqlite(s) => {
                sqlite!(s, |s| s.finish(claim, &file_id, url.as_deref(), instant))
            }
        }
    }

    /// Record an error without changing the state (a retry is coming).
    pub async fn note_error(&self, claim: Claim, error: &RecordedError) -> Result<()> {
        let error = error.clone();
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.write_error(claim, &error, None)),
        }
    }

    /// The file failed for good with `error`.
    pub async fn fail(&self, claim: Claim, error: &RecordedError) -> Result<()> {
        let error = error.clone();
        match &self.store {
            Store::Sqlite(s) => {
                sqlite!(s, |s| s.write_error(claim, &error, Some(FileState::Failed)))
            }
        }
    }

    /// This row no longer describes a file to upload (`Superseded` or `Gone`), for `why`.
    pub async fn set_aside(&self, claim: Claim, state: FileState, why: &str) -> Result<()> {
        let why = why.to_owned();
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.set_aside(claim, state, &why)),
        }
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
        let target = target.map(Path::to_owned);
        match &self.store {
            Store::Sqlite(s) => {
                sqlite!(s, |s| s.intend_disposal(
                    claim,
                    intent,
                    target.as_deref(),
                    &hooks
                ))
            }
        }
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
        let moved_to = moved_to.map(Path::to_owned);
        match &self.store {
            Store::Sqlite(s) => sqlite!(s, |s| s.mark_disposed(
                claim,
                &disposed,
                moved_to.as_deref(),
                hooks.as_deref()
            )),
        }
    }
}

impl From<Sqlite> for Ledger {
    fn from(s: Sqlite) -> Ledger {
        Ledger {
            store: Store::Sqlite(s),
        }
    }
}

/// An upload as the ledger keys it: a content (fileSha) for an account, with its size and part
/// size. The same content for two accounts is two uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub account: String,
    pub sha: String,
    pub size: u64,
    pub part_size: u64,
}
