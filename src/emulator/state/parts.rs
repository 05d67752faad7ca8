//! Receiving one part: the checks against the upload before the body is read, then the MD5 check
//! and the write, filed under the upload only if it is still the same one.

use super::prefix::Fed;
use super::{HeldPart, Store};
use crate::emulator::disk::DiskError;
use crate::emulator::lanes::Coming;
use crate::emulator::params::PartParams;
use crate::emulator::rules;
use bytes::Bytes;

/// Permission to receive a part, taken before its body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartTicket {
    generation: u64,
    /// The same part is already held with the same MD5: nothing to write.
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartCheck {
    Ready(PartTicket),
    NoUpload,
    StaleSignature,
    BadOffset(String),
    BadSize(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartReceived {
    Stored,
    Duplicate,
    Md5Mismatch {
        actual: String,
    },
    /// The upload was finished, discarded or re-sized while the body was read.
    Gone,
}

impl Store {
    /// Check a part request against the upload before its body is read.
    pub async fn check_part(&self, p: &PartParams) -> PartCheck {
        let Some(entry) = self.find(&p.file_sha) else {
            return PartCheck::NoUpload;
        };
        let state = entry.lock().await;
        let Some(upload) = state.record.upload else {
            return PartCheck::NoUpload;
        };
        if state.record.latest_signature.as_deref() != Some(p.signature.as_str()) {
            return PartCheck::StaleSignature;
        }
        let (size, part) = (upload.file_size, upload.part_size);
        if p.offset % part != 0 || p.offset >= size {
            return PartCheck::BadOffset(format!(
                "offset {} is not a multiple of the part size {part} below the file size {size}",
                p.offset
            ));
        }
        if !rules::is_part(size, part, p.offset, p.data_size) {
            let expected = part.min(size - p.offset);
            return PartCheck::BadSize(format!(
                "dataSize {} at offset {} must be {expected}",
                p.data_size, p.offset
            ));
        }
        let held = state.parts.get(&p.offset);
        PartCheck::Ready(PartTicket {
            generation: state.generation,
            duplicate: held.is_some_and(|h| h.md5 == p.data_md5),
        })
    }

    /// A part of `len` bytes was admitted: its body is on its way (see [`Coming`]).
    pub fn body_coming(&self, len: u64) -> Coming {
        self.md5.coming(len)
    }

    /// Verify a part's body against its MD5 and hold it (written to disk before this returns).
    pub async fn receive_part(
        &self,
        p: &PartParams,
        ticket: PartTicket,
        body: Vec<Bytes>,
        coming: Coming,
    ) -> Result<PartReceived, DiskError> {
        let md5 = p.data_md5.clone();
        let duplicate = ticket.duplicate;
        let bytes = body.clone();
        let actual = self.md5.md5(&body, coming).await;
        if actual != md5 {
            return Ok(PartReceived::Md5Mismatch { actual });
        }
        if duplicate {
            return Ok(PartReceived::Duplicate);
        }
        let temp = self
            .on_disk(move |d| d.write_part_temp(&md5, &body))
            .await?;
        let entry = self.find(&p.file_sha).expect("an entry is never removed");
        let mut state = entry.lock().await;
        if state.generation != ticket.generation {
            self.on_disk(move |d| d.remove_temp(&temp)).await;
            return Ok(PartReceived::Gone);
        }
        let (sha, offset) = (p.file_sha.clone(), p.offset);
        self.on_disk(move |d| d.commit_part(&temp, &sha, offset))
            .await?;
        let held = HeldPart {
            len: p.data_size,
            md5: p.data_md5.clone(),
        };
        state.parts.insert(p.offset, held);
        let (prefix, generation) = (state.prefix.clone(), state.generation);
        drop(state);
        let fed = Fed {
            generation,
            offset: p.offset,
            md5: p.data_md5.clone(),
            bytes,
        };
        // Not awaited: the part is held, so it is answered now (see `prefix`).
        tokio::task::spawn_blocking(move || prefix.feed(fed));
        Ok(PartReceived::Stored)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;
    use crate::hash::{md5_hex, sha1_hex};
    use crate::protocol::plan::PartSize;

    #[tokio::test]
    async fn parts_must_match_the_latest_signature_and_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let data = data();
        let store = Store::open(dir.path()).unwrap();
        let mut p = PartParams {
            file_sha: sha1_hex(&data),
            offset: 0,
            data_size: HALF,
            data_md5: md5_hex(b""),
            signature: "s1".into(),
        };
        assert_eq!(store.check_part(&p).await, PartCheck::NoUpload);
        store
            .init(&init_params(&data, "s1", HALF), PartSize::HalfMiB)
            .await
            .unwrap();
        store
            .init(&init_params(&data, "s2", HALF), PartSize::HalfMiB)
            .await
            .unwrap();
        assert_eq!(store.check_part(&p).await, PartCheck::StaleSignature);
        p.signature = "s2".into();
        p.offset = 1;
        assert!(matches!(
            store.check_part(&p).await,
            PartCheck::BadOffset(_)
        ));
        p.offset = HALF * 2;
        assert!(matches!(store.check_part(&p).await, PartCheck::BadSize(_)));
        p.data_size = HALF / 2;
        assert!(matches!(store.check_part(&p).await, PartCheck::Ready(_)));
    }
}
