//! Finishing an upload: the preconditions, the SHA-1 check over the parts in order, and the
//! finished file (the parts, moved) or the discarded parts that result.

use super::{EntryState, Store};
use crate::emulator::disk::{DiskError, FinishedRecord, UploadRecord};
use crate::emulator::params::FinishParams;
use crate::emulator::rules;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishOutcome {
    Done {
        file: FinishedRecord,
        repeated: bool,
    },
    NoUpload,
    StaleSignature,
    Missing {
        missing: Vec<u64>,
        total: usize,
    },
    /// The parts were discarded.
    ShaMismatch {
        actual: String,
    },
}

impl Store {
    /// FinishUploadEx; `file_name` is the signature's `f`.
    pub async fn finish(
        &self,
        p: &FinishParams,
        file_name: &str,
    ) -> Result<FinishOutcome, DiskError> {
        let Some(entry) = self.find(&p.file_sha) else {
            return Ok(FinishOutcome::NoUpload);
        };
        let mut state = entry.lock().await;
        let latest = state.record.latest_signature.as_deref() == Some(p.signature.as_str());
        if let Some(file) = &state.record.finished {
            return Ok(match latest {
                true => FinishOutcome::Done {
                    file: file.clone(),
                    repeated: true,
                },
                false => FinishOutcome::StaleSignature,
            });
        }
        let Some(upload) = state.record.upload else {
            return Ok(FinishOutcome::NoUpload);
        };
        if !latest {
            return Ok(FinishOutcome::StaleSignature);
        }
        let all: Vec<(u64, u64)> = rules::parts(upload.file_size, upload.part_size).collect();
        let missing: Vec<u64> = all
            .iter()
            .filter(|(offset, len)| state.parts.get(offset).map(|h| h.len) != Some(*len))
            .map(|(offset, _)| *offset)
            .collect();
        if !missing.is_empty() {
            return Ok(FinishOutcome::Missing {
                missing,
                total: all.len(),
            });
        }
        // Every planned part is held: the running SHA-1 catches up with them.
        let (prefix, generation, held) =
            (state.prefix.clone(), state.generation, state.parts.clone());
        let sha = p.file_sha.clone();
        let actual = self
            .on_disk(move |d| {
                let read = |offset, len| d.read_part(&sha, offset, len);
                prefix.digest(generation, &held, upload.file_size, read)
            })
            .await?;
        let outcome = self.check_and_publish(p, file_name, upload, actual).await?;
        self.close_upload(&p.file_sha, &mut state, &outcome).await?;
        Ok(outcome)
    }

    /// Every part is held and `actual` is their SHA-1 in order: if they are the file, make them
    /// the file.
    async fn check_and_publish(
        &self,
        p: &FinishParams,
        file_name: &str,
        upload: UploadRecord,
        actual: String,
    ) -> Result<FinishOutcome, DiskError> {
        if actual != p.file_sha {
            return Ok(FinishOutcome::ShaMismatch { actual });
        }
        let file_id = self
            .next_file_id
            .fetch_add(1, Ordering::Relaxed)
            .to_string();
        let (sha, id) = (p.file_sha.clone(), file_id.clone());
        self.on_disk(move |d| d.publish_parts(&sha, &id)).await?;
        let file = FinishedRecord {
            file_id,
            file_name: file_name.to_owned(),
            file_size: upload.file_size,
            part_size: upload.part_size,
        };
        Ok(FinishOutcome::Done {
            file,
            repeated: false,
        })
    }

    /// After a finish that checked the parts: record the outcome and drop what is left of them.
    async fn close_upload(
        &self,
        sha: &str,
        state: &mut EntryState,
        outcome: &FinishOutcome,
    ) -> Result<(), DiskError> {
        let mut next = state.record.clone();
        next.upload = None;
        if let FinishOutcome::Done { file, .. } = outcome {
            next.finished = Some(file.clone());
        }
        self.save(sha, &next).await?;
        state.record = next;
        state.parts.clear();
        state.generation = self.new_generation();
        state.prefix = Arc::default();
        if let Some(file) = &state.record.finished {
            self.add_file(file);
        }
        let sha = sha.to_owned();
        self.on_disk(move |d| d.remove_parts(&sha)).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;
    use crate::emulator::params::PartParams;
    use crate::emulator::state::{InitOutcome, PartCheck, PartReceived};
    use crate::hash::{md5_hex, sha1_hex};
    use crate::protocol::plan::PartSize;
    use bytes::Bytes;

    /// The bytes of a finished file, its part files concatenated without their headers.
    fn read_file(store: &Store, file_id: &str) -> Vec<u8> {
        let header = crate::emulator::disk::PART_HEADER_BYTES as usize;
        let parts = store.file(file_id).unwrap().parts;
        parts
            .iter()
            .flat_map(|p| std::fs::read(p).unwrap()[header..].to_vec())
            .collect()
    }

    #[tokio::test]
    async fn finished_files_and_latest_signature_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let data = data();
        let store = Store::open(dir.path()).unwrap();
        store
            .init(&init_params(&data, "s1", HALF), PartSize::HalfMiB)
            .await
            .unwrap();
        for offset in [0, HALF, HALF * 2] {
            send(&store, &data, "s1", offset).await;
        }
        let FinishOutcome::Done {
            file,
            repeated: false,
        } = store
            .finish(&finish_params(&data, "s1"), "a.mp4")
            .await
            .unwrap()
        else {
            panic!("finish failed")
        };
        assert_eq!(read_file(&store, &file.file_id), data);
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        let again = store
            .finish(&finish_params(&data, "s1"), "a.mp4")
            .await
            .unwrap();
        assert_eq!(
            again,
            FinishOutcome::Done {
                file: file.clone(),
                repeated: true
            }
        );
        let stale = store
            .finish(&finish_params(&data, "s0"), "a.mp4")
            .await
            .unwrap();
        assert_eq!(stale, FinishOutcome::StaleSignature);
        let init = store
            .init(&init_params(&data, "s3", HALF), PartSize::HalfMiB)
            .await
            .unwrap();
        assert_eq!(init, InitOutcome::Finished(file.clone()));
        assert_eq!(store.file(&file.file_id).unwrap().name, "a.mp4");
        assert_eq!(read_file(&store, &file.file_id), data);
        let next: u64 = store.next_file_id.load(Ordering::Relaxed);
        assert!(next > file.file_id.parse::<u64>().unwrap());
    }

    #[tokio::test]
    async fn a_sha_mismatch_at_finish_discards_the_parts() {
        let dir = tempfile::tempdir().unwrap();
        let data = data();
        let mut claimed = init_params(&data, "s1", HALF);
        claimed.file_sha = sha1_hex(b"something else");
        let store = Store::open(dir.path()).unwrap();
        store.init(&claimed, PartSize::HalfMiB).await.unwrap();
        for offset in [0, HALF, HALF * 2] {
            let bytes = &data[offset as usize..data.len().min((offset + HALF) as usize)];
            let p = PartParams {
                file_sha: claimed.file_sha.clone(),
                offset,
                data_size: bytes.len() as u64,
                data_md5: md5_hex(bytes),
                signature: "s1".into(),
            };
            let PartCheck::Ready(ticket) = store.check_part(&p).await else {
                panic!()
            };
            let body = vec![Bytes::copy_from_slice(bytes)];
            assert_eq!(
                store
                    .receive_part(&p, ticket, body, store.body_coming(p.data_size))
                    .await
                    .unwrap(),
                PartReceived::Stored
            );
        }
        let finish = FinishParams {
            file_sha: claimed.file_sha.clone(),
            signature: "s1".into(),
        };
        let outcome = store.finish(&finish, "a.mp4").await.unwrap();
        assert_eq!(
            outcome,
            FinishOutcome::ShaMismatch {
                actual: sha1_hex(&data)
            }
        );
        assert_eq!(
            store.finish(&finish, "a.mp4").await.unwrap(),
            FinishOutcome::NoUpload
        );
        assert!(!dir.path().join("parts").join(&claimed.file_sha).exists());
        let again = store.init(&claimed, PartSize::HalfMiB).await.unwrap();
        assert_eq!(again, InitOutcome::New);
    }
}
