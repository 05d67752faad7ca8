//! A file's hashes for its journey: the ones the ledger stored, while the file is unwritten
//! since, or a hashing pass now, recorded with the signature the ledger holds for its upload.

use super::{Journey, CHANGED};
use crate::config::AccountName;
use crate::hash::{self, HashError};
use crate::ledger::{Claim, FileRecord, FileState, Upload};
use crate::protocol::plan::plan;
use crate::protocol::{PartSize, Signature};
use crate::source::Source;
use crate::upload::job::Interrupt;
use crate::upload::Event;
use std::sync::Arc;
use tracing::info;

/// A content's hashes at one part size, and the signature stored for its upload to the file's
/// account.
pub(super) struct Hashes {
    pub sha: String,
    pub md5s: Vec<String>,
    pub signature: Option<Signature>,
    /// The bytes of a small file, as a pass now hashed them ([`hash::FileDigest::bytes`]).
    pub bytes: Option<bytes::Bytes>,
}

impl Journey {
    /// The SHA-1 and part MD5s at `part_size`, and the signature stored for the content's upload
    /// to `account`: stored hashes if the ledger has them, else hash the open file now.
    pub(super) async fn hashes(
        &self,
        claim: Claim,
        record: &FileRecord,
        account: &AccountName,
        source: &Arc<Source>,
        part_size: PartSize,
    ) -> Result<Hashes, Interrupt> {
        // A stored hash holds while no write reached the file since it was taken: a rewrite in
        // place that put the mtime back (while vodup was down, or between attempts) moved the
        // ctime, and the file is hashed again.
        let unwritten = record.hashed_ctime_ns == Some(source.changed_ns());
        if let Some(sha) = record.file_sha.clone().filter(|_| unwritten) {
            let parts = plan(record.size, part_size).len();
            let ledger = &self.inner.ledger;
            if let Some(md5s) = ledger.part_md5s(&sha, part_size.bytes(), parts).await? {
                let signature = ledger.signature(account.as_str(), &sha).await?;
                return Ok(Hashes {
                    sha,
                    md5s,
                    signature,
                    bytes: None,
                });
            }
        }
        // A file never hashed was marked hashing as its attempt began.
        if record.file_sha.is_some() {
            if !unwritten {
                info!("the file's status changed since its hash was taken (or the hash is older than its ctime's record): hashing it again");
            }
            self.inner
                .ledger
                .set_state(claim, FileState::Hashing)
                .await?;
        }
        self.hash_now(claim, record, account, source, part_size)
            .await
    }

    /// Hash the open file and record the pass (which answers with the stored signature).
    async fn hash_now(
        &self,
        claim: Claim,
        record: &FileRecord,
        account: &AccountName,
        source: &Arc<Source>,
        part_size: PartSize,
    ) -> Result<Hashes, Interrupt> {
        let (inner, key) = (&self.inner, record.key);
        let event = Event::Hashing { size: record.size };
        inner.progress.event(key, &record.path, event);
        let started = std::time::Instant::now();
        let (token, source, ctime) = (self.cancel.clone(), source.clone(), source.changed_ns());
        let (progress, path) = (inner.progress.clone(), record.path.clone());
        let digest = tokio::task::spawn_blocking(move || {
            let read = |bytes| progress.event(key, &path, Event::Hashed { bytes });
            hash::hash_source(&source, part_size, || token.is_cancelled(), read)
        })
        .await
        .expect("hashing does not panic")
        .map_err(|e| match e {
            HashError::Changed => Interrupt::Changed(CHANGED),
            HashError::Stopped => Interrupt::Stopped,
            e @ HashError::Io(_) => Interrupt::failed(e.to_string()),
        })?;
        let secs = started.elapsed().as_secs_f64();
        info!(fileSha = %digest.sha1, size = digest.size, secs, "hashed");
        let upload = Upload {
            account: account.as_str().to_owned(),
            sha: digest.sha1,
            size: record.size,
            part_size: part_size.bytes(),
        };
        let md5s = digest.part_md5s;
        let pass = inner
            .ledger
            .record_hash(claim, &upload, md5s.clone(), Some(ctime));
        let signature = pass.await?;
        Ok(Hashes {
            sha: upload.sha,
            md5s,
            signature,
            bytes: digest.bytes,
        })
    }
}
