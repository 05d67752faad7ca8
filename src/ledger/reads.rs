//! What the ledger is asked: files, their parts and signatures, hooks due, nodes, counts.

use super::{Delivery, FileIdentity, FileKey, FileRecord, FileState, Health, Ledger, Listing};
use super::{NodeInfo, OwnedListing, Result};
use crate::protocol::Signature;
use std::collections::BTreeSet;
use std::path::Path;

impl Ledger {
    pub async fn file(&self, key: FileKey) -> Result<Option<FileRecord>> {
        self.either(move |s| s.file(key), async |p| p.file(key).await)
            .await
    }

    /// Every file, newest first.
    pub async fn files(&self) -> Result<Vec<FileRecord>> {
        self.either(move |s| s.files(), async |p| p.files().await)
            .await
    }

    /// The files `listing` selects, newest first (at most `listing.limit`).
    pub async fn list(&self, listing: &Listing<'_>) -> Result<Vec<FileRecord>> {
        let owned = OwnedListing::of(listing);
        self.either(
            move |s| s.list(&owned.listing()),
            async |p| p.list(listing).await,
        )
        .await
    }

    /// How many files `listing` selects (its `before` and `limit` aside).
    pub async fn count(&self, listing: &Listing<'_>) -> Result<u64> {
        let owned = OwnedListing::of(listing);
        self.either(
            move |s| s.count(&owned.listing()),
            async |p| p.count(listing).await,
        )
        .await
    }

    /// A page of files, newest first: at most `limit` of those with a key below `before`.
    pub async fn recent(&self, limit: usize, before: Option<FileKey>) -> Result<Vec<FileRecord>> {
        self.either(
            move |s| s.recent(limit, before),
            async |p| p.recent(limit, before).await,
        )
        .await
    }

    /// The most recent version of a path, whatever its state.
    pub async fn latest_for_path(&self, path: &Path) -> Result<Option<FileRecord>> {
        let owned = path.to_owned();
        self.either(
            move |s| s.latest_for_path(&owned),
            async |p| p.latest_for_path(path).await,
        )
        .await
    }

    /// The done row of this very file (inode and version), under any path.
    pub async fn uploaded(&self, identity: FileIdentity) -> Result<Option<FileRecord>> {
        self.either(
            move |s| s.uploaded(&identity),
            async |p| p.uploaded(&identity).await,
        )
        .await
    }

    /// The stored part MD5s of a content at a part size, in offset order, if a pass stored them.
    pub async fn part_md5s(
        &self,
        sha: &str,
        part_size: u64,
        parts: usize,
    ) -> Result<Option<Vec<String>>> {
        let owned = sha.to_owned();
        self.either(
            move |s| s.part_md5s(&owned, part_size, parts),
            async |p| p.part_md5s(sha, part_size, parts).await,
        )
        .await
    }

    /// The signature of a content's upload to an account, if one was stored.
    pub async fn signature(&self, account: &str, sha: &str) -> Result<Option<Signature>> {
        let (a, h) = (account.to_owned(), sha.to_owned());
        self.either(
            move |s| s.signature(&a, &h),
            async |p| p.signature(account, sha).await,
        )
        .await
    }

    /// Offsets the account's service confirmed for a content.
    pub async fn confirmed(&self, account: &str, sha: &str) -> Result<BTreeSet<u64>> {
        let (a, h) = (account.to_owned(), sha.to_owned());
        self.either(
            move |s| s.confirmed(&a, &h),
            async |p| p.confirmed(account, sha).await,
        )
        .await
    }

    /// Bytes of a content confirmed at or after `since` (Unix seconds): the recent upload speed.
    pub async fn confirmed_since(&self, account: &str, sha: &str, since: i64) -> Result<u64> {
        let (a, h) = (account.to_owned(), sha.to_owned());
        self.either(
            move |s| s.confirmed_since(&a, &h, since),
            async |p| p.confirmed_since(account, sha, since).await,
        )
        .await
    }

    /// The alerting gauges' figures: failing disposals, the oldest queued file, the oldest
    /// undelivered hook.
    pub async fn health(&self) -> Result<Health> {
        self.either(move |s| s.health(), async |p| p.health().await)
            .await
    }

    /// How many files are in each state.
    pub async fn count_by_state(&self) -> Result<Vec<(FileState, u64)>> {
        self.either(
            move |s| s.count_by_state(),
            async |p| p.count_by_state().await,
        )
        .await
    }

    /// Deliveries due at `at` (Unix seconds), oldest first.
    pub async fn due_hooks(&self, at: i64, limit: usize) -> Result<Vec<Delivery>> {
        self.either(
            move |s| s.due_hooks(at, limit),
            async |p| p.due_hooks(at, limit).await,
        )
        .await
    }

    /// Take up to `limit` deliveries due at `at` (Unix seconds), oldest first, for delivery now:
    /// each is put off by `hold` seconds in the same transaction, so another node's hook runner
    /// does not deliver it meanwhile; if this node dies delivering, it is due again after that.
    pub async fn take_due_hooks(&self, at: i64, limit: usize, hold: i64) -> Result<Vec<Delivery>> {
        self.either(
            move |s| s.take_due_hooks(at, limit, hold),
            async |p| p.take_due_hooks(at, limit, hold).await,
        )
        .await
    }

    /// Every delivery not yet delivered.
    pub async fn undelivered_hooks(&self) -> Result<Vec<Delivery>> {
        self.due_hooks(i64::MAX, 10_000).await
    }

    pub async fn pending_hooks(&self) -> Result<u64> {
        self.either(
            move |s| s.pending_hooks(),
            async |p| p.pending_hooks().await,
        )
        .await
    }

    /// The earliest `next_at` of an undelivered delivery.
    pub async fn next_hook_at(&self) -> Result<Option<i64>> {
        self.either(move |s| s.next_hook_at(), async |p| p.next_hook_at().await)
            .await
    }

    /// The nodes that ever took a file, with their last renewal and how many files each holds.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        self.either(move |s| s.nodes(), async |p| p.nodes().await)
            .await
    }
}
