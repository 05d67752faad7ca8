//! The writes under a claim: each is refused ([`super::LedgerError::Fenced`]) once another node
//! took the file over.

use super::{
    Claim, Disposed, FileRecord, FileState, Ledger, NewDelivery, RecordedError, Result, Store,
    Upload,
};
use crate::config::{AccountName, AfterUpload};
use crate::protocol::Signature;
use std::collections::BTreeSet;
use std::path::Path;

impl Ledger {
    pub async fn set_state(&self, claim: Claim, state: FileState) -> Result<()> {
        self.either(
            move |s| s.set_state(claim, state),
            async |p| p.set_state(claim, state).await,
        )
        .await
    }

    /// Record the account a file goes to, for a row that had none (queued before accounts were
    /// recorded, or re-queued).
    pub async fn set_account(&self, claim: Claim, account: &AccountName) -> Result<()> {
        let owned = account.clone();
        self.either(
            move |s| s.set_account(claim, &owned),
            async |p| p.set_account(claim, account).await,
        )
        .await
    }

    /// Store the hashing pass of `upload`'s content: its SHA-1 and part size, the MD5 of every
    /// part, and the file's `ctime` (ns) when it was opened for the pass. Answers with the
    /// signature stored for that upload, if an earlier one left it (read in the same write).
    pub async fn record_hash(
        &self,
        claim: Claim,
        upload: &Upload,
        md5s: Vec<String>,
        ctime_ns: Option<i64>,
    ) -> Result<Option<Signature>> {
        let owned = upload.clone();
        match &self.store {
            Store::Sqlite(s) => {
                s.run(move |s| s.record_hash(claim, &owned, &md5s, ctime_ns))
                    .await
            }
            Store::Postgres(p) => p.record_hash(claim, upload, &md5s, ctime_ns).await,
        }
    }

    pub async fn store_signature(
        &self,
        claim: Claim,
        upload: &Upload,
        signature: &Signature,
    ) -> Result<()> {
        let (u, sig) = (upload.clone(), signature.clone());
        self.either(
            move |s| s.store_signature(claim, &u, &sig),
            async |p| p.store_signature(claim, upload, signature).await,
        )
        .await
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
            Store::Sqlite(s) => {
                s.run(move |s| s.confirm_parts(claim, &u, &parts, then))
                    .await
            }
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
            Store::Sqlite(s) => {
                s.run(move |s| s.reconcile(claim, &u, &held, sig.as_ref()))
                    .await
            }
            Store::Postgres(p) => p.reconcile(claim, upload, &held, signature).await,
        }
    }

    /// The service confirmed the file: record its id and URL and forget the content's parts.
    /// The row as it stands then (what the after-upload step works from).
    pub async fn finish(
        &self,
        claim: Claim,
        file_id: &str,
        url: Option<&str>,
        instant: bool,
    ) -> Result<FileRecord> {
        let (id, u) = (file_id.to_owned(), url.map(str::to_owned));
        self.either(
            move |s| s.finish(claim, &id, u.as_deref(), instant),
            async |p| p.finish(claim, file_id, url, instant).await,
        )
        .await
    }

    /// Record an error without changing the state (a retry is coming).
    pub async fn note_error(&self, claim: Claim, error: &RecordedError) -> Result<()> {
        let owned = error.clone();
        self.either(
            move |s| s.write_error(claim, &owned, None),
            async |p| p.write_error(claim, error, None).await,
        )
        .await
    }

    /// The file failed for good with `error`.
    pub async fn fail(&self, claim: Claim, error: &RecordedError) -> Result<()> {
        let (owned, failed) = (error.clone(), Some(FileState::Failed));
        self.either(
            move |s| s.write_error(claim, &owned, failed),
            async |p| p.write_error(claim, error, failed).await,
        )
        .await
    }

    /// This row no longer describes a file to upload (`Superseded` or `Gone`), for `why`.
    pub async fn set_aside(&self, claim: Claim, state: FileState, why: &str) -> Result<()> {
        let owned = why.to_owned();
        self.either(
            move |s| s.set_aside(claim, state, &owned),
            async |p| p.set_aside(claim, state, why).await,
        )
        .await
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
        self.either(
            move |s| s.disposal_failed(claim, &owned, retry_in),
            async |p| p.disposal_failed(claim, reason, retry_in).await,
        )
        .await
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
            Store::Sqlite(s) => {
                s.run(move |s| {
                    s.mark_disposed(claim, &disposed, owned.as_deref(), hooks.as_deref())
                })
                .await
            }
            Store::Postgres(p) => {
                p.mark_disposed(claim, &disposed, moved_to, hooks.as_deref())
                    .await
            }
        }
    }
}
