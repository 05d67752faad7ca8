//! What is recorded without a claim (new file versions, re-queues, hook outcomes) and the
//! claims themselves: a node's start and stop, taking files, renewing and releasing them.

use super::{Claim, FileKey, FileRecord, Forgetting, Lease, Ledger, NewFile, NodeStart, Result};
use super::{Store, Wanted};
use std::path::Path;

impl Ledger {
    /// Record a file version (idempotent per watch, path and version) and return it as it stands;
    /// see [`Sqlite::enqueue`].
    pub async fn enqueue(&self, new: NewFile) -> Result<FileRecord> {
        match &self.store {
            Store::Sqlite(s) => s.run(move |s| s.enqueue(&new)).await,
            Store::Postgres(p) => p.enqueue(&new).await,
        }
    }

    /// Record several file versions at once, each as [`Ledger::enqueue`] does (one transaction
    /// for all of them on SQLite).
    pub async fn enqueue_all(&self, new: Vec<NewFile>) -> Result<Vec<FileRecord>> {
        match &self.store {
            Store::Sqlite(s) => s.run(move |s| s.enqueue_all(&new)).await,
            Store::Postgres(p) => p.enqueue_all(&new).await,
        }
    }

    /// Put this failed file back in the queue; whether it was failed.
    pub async fn requeue(&self, key: FileKey) -> Result<bool> {
        self.either(move |s| s.requeue(key), async |p| p.requeue(key).await)
            .await
    }

    /// Put failed files back in the queue (all, or the one at `path`). Returns how many.
    pub async fn requeue_failed(&self, path: Option<&Path>) -> Result<usize> {
        let owned = path.map(Path::to_owned);
        self.either(
            move |s| s.requeue_failed(owned.as_deref()),
            async |p| p.requeue_failed(path).await,
        )
        .await
    }

    /// One batch of retention: of the `batch` rows after `after`, forget those unchanged since
    /// before `ended_before` (Unix seconds) that may go (see [`Sqlite::forget`]).
    pub async fn forget(
        &self,
        ended_before: i64,
        after: FileKey,
        batch: usize,
    ) -> Result<Forgetting> {
        self.either(
            move |s| s.forget(ended_before, after, batch),
            async |p| p.forget(ended_before, after, batch).await,
        )
        .await
    }

    /// Give up to `pages` free pages of a SQLite ledger back to the file system; how many are
    /// left. PostgreSQL's autovacuum does this on its own: always 0 there.
    pub async fn give_back_space(&self, pages: u32) -> Result<u64> {
        match &self.store {
            Store::Sqlite(s) => s.run(move |s| s.give_back_space(pages)).await,
            Store::Postgres(_) => Ok(0),
        }
    }

    pub async fn hook_delivered(&self, id: i64) -> Result<()> {
        self.either(
            move |s| s.hook_delivered(id),
            async |p| p.hook_delivered(id).await,
        )
        .await
    }

    pub async fn hook_failed(&self, id: i64, error: &str, next_at: i64) -> Result<()> {
        let owned = error.to_owned();
        self.either(
            move |s| s.hook_failed(id, &owned, next_at),
            async |p| p.hook_failed(id, error, next_at).await,
        )
        .await
    }

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
        self.either(
            move |s| s.start_node(&owned, seen_before, &listed),
            async |p| p.start_node(lease, seen_before, accounts).await,
        )
        .await
    }

    /// The accounts of files owed an upload, with how many each: what a node compares with its
    /// own to warn of files that only another node can upload.
    pub async fn owed_accounts(&self) -> Result<Vec<(String, u64)>> {
        self.either(
            move |s| s.owed_accounts(),
            async |p| p.owed_accounts().await,
        )
        .await
    }

    /// This node stops cleanly: the name is free for its next start at once.
    pub async fn stop_node(&self, lease: &Lease) -> Result<()> {
        let node = lease.node.clone();
        self.either(
            move |s| s.stop_node(&node),
            async |p| p.stop_node(&lease.node).await,
        )
        .await
    }

    /// Take up to `wanted.limit` files that are owed work (an upload, or the after-upload action
    /// of a file that ended) and that no live claim holds, oldest first: each gets this node, a
    /// lease and a new epoch, in one statement that skips rows another node is taking. Taking a
    /// file owed an upload begins an attempt: it is counted, and a file never hashed is
    /// `hashing` from then on (the rows come back so). Only files
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
        self.either(
            move |s| s.claim_next(&owned, limit, &roots, queued_before, one_part),
            async |p| {
                p.claim_next(lease, limit, watches, (queued_before, one_part), accounts)
                    .await
            },
        )
        .await
    }

    /// Take the file `key` (`vodup upload`), unless a live claim of another node holds it: the
    /// claim and the row as taken, its attempt begun as [`Ledger::claim_next`] does.
    pub async fn claim(&self, key: FileKey, lease: &Lease) -> Result<Option<(Claim, FileRecord)>> {
        let owned = lease.clone();
        self.either(
            move |s| s.claim(key, &owned),
            async |p| p.claim(key, lease).await,
        )
        .await
    }

    /// Extend this node's leases on `claims`, and note the node as alive. Returns the claims it
    /// still holds: one missing was taken over by another node.
    pub async fn renew(&self, lease: &Lease, claims: &[Claim]) -> Result<Vec<Claim>> {
        let (owned, held) = (lease.clone(), claims.to_vec());
        self.either(
            move |s| s.renew(&owned, &held),
            async |p| p.renew(lease, claims).await,
        )
        .await
    }

    /// Note the watch folders this node refused at its start or last reload (`None`: none), so
    /// `vodup status` and the page can show them.
    pub async fn node_refused(&self, node: &str, refused: Option<&str>) -> Result<()> {
        let (owned, text) = (node.to_owned(), refused.map(str::to_owned));
        self.either(
            move |s| s.node_refused(&owned, text.as_deref()),
            async |p| p.node_refused(node, refused).await,
        )
        .await
    }

    /// Let go of a file: its lease ends now (the node stays recorded as the last to hold it).
    pub async fn release(&self, claim: Claim) -> Result<()> {
        self.either(move |s| s.release(claim), async |p| p.release(claim).await)
            .await
    }
}
