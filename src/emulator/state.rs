//! What the emulator knows: unfinished uploads and their held parts, finished files, and the
//! signature of the most recent init of each fileSha (PROTOCOL.md §2-4 decisions).
//!
//! Owns the rules that need that knowledge (resume lists, part-size fixed by the first init, the
//! latest-signature rule, finish preconditions) and keeps memory and disk in step: every change is
//! written through [`Disk`] before it is visible. Each fileSha has its own async lock; the global
//! maps are only held for a lookup, never across hashing or I/O. Parameter parsing, signatures'
//! cryptography and answer shapes belong to the handlers.

use super::disk::{self, Disk, DiskError, FinishedRecord, HeldPart, ShaRecord, UploadRecord};
use super::params::{FinishParams, InitParams, PartParams};
use crate::protocol::plan::{self, PartSize};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// First fileId of an empty data directory.
const FIRST_FILE_ID: u64 = 5_285_890_780_000_000_001;

#[derive(Debug, Default)]
struct EntryState {
    record: ShaRecord,
    /// Changes whenever the upload is created, re-sized or discarded, so a part received for an
    /// earlier incarnation is never filed under a later one.
    generation: u64,
    parts: BTreeMap<u64, HeldPart>,
}

type Entry = tokio::sync::Mutex<EntryState>;

/// A finished file, as `GET` on its url needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// Code 0: nothing held.
    New,
    /// Code 1: the upload's part size and the held parts in offset order.
    Resume {
        part_size: u64,
        parts: Vec<(u64, HeldPart)>,
    },
    /// Code 2: a finished file with this fileSha.
    Finished(FinishedRecord),
    /// The upload (or finished file) has another size.
    SizeMismatch { known: u64 },
}

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

/// The emulator's state, in memory and under the data directory.
#[derive(Debug)]
pub struct Store {
    disk: Arc<Disk>,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    files: Mutex<HashMap<String, FileRef>>,
    next_file_id: AtomicU64,
    next_generation: AtomicU64,
}

impl Store {
    /// Open a data directory and load everything it holds. Blocking.
    pub fn open(root: &Path) -> Result<Store, DiskError> {
        let disk = Disk::open(root)?;
        let mut max_id = disk.max_file_id()?;
        let store = Store {
            disk: Arc::new(disk),
            entries: Mutex::default(),
            files: Mutex::default(),
            next_file_id: AtomicU64::new(0),
            next_generation: AtomicU64::new(1),
        };
        for disk::Loaded { sha, record, parts } in store.disk.load()? {
            if let Some(f) = &record.finished {
                max_id = max_id.max(f.file_id.parse().unwrap_or(0));
                store.add_file(f);
            }
            let state = EntryState {
                record,
                generation: store.new_generation(),
                parts,
            };
            store
                .lock_entries()
                .insert(sha, Arc::new(Entry::new(state)));
        }
        store
            .next_file_id
            .store(FIRST_FILE_ID.max(max_id + 1), Ordering::Relaxed);
        Ok(store)
    }

    fn lock_entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.entries.lock().expect("entries lock")
    }

    fn find(&self, sha: &str) -> Option<Arc<Entry>> {
        self.lock_entries().get(sha).cloned()
    }

    fn entry(&self, sha: &str) -> Arc<Entry> {
        self.lock_entries()
            .entry(sha.to_owned())
            .or_default()
            .clone()
    }

    fn new_generation(&self) -> u64 {
        self.next_generation.fetch_add(1, Ordering::Relaxed)
    }

    fn add_file(&self, f: &FinishedRecord) {
        let file = FileRef {
            path: self.disk.file_path(&f.file_id),
            name: f.file_name.clone(),
            size: f.file_size,
        };
        self.files
            .lock()
            .expect("files lock")
            .insert(f.file_id.clone(), file);
    }

    /// The finished file with this fileId.
    pub fn file(&self, file_id: &str) -> Option<FileRef> {
        self.files.lock().expect("files lock").get(file_id).cloned()
    }

    async fn on_disk<T: Send + 'static>(&self, f: impl FnOnce(&Disk) -> T + Send + 'static) -> T {
        let disk = self.disk.clone();
        tokio::task::spawn_blocking(move || f(&disk))
            .await
            .expect("blocking disk task does not panic")
    }

    async fn save(&self, sha: &str, record: &ShaRecord) -> Result<(), DiskError> {
        let (sha, record) = (sha.to_owned(), record.clone());
        self.on_disk(move |d| d.write_record(&sha, &record)).await
    }

    /// InitUploadEx, once its parameters and signature are valid.
    pub async fn init(
        &self,
        p: &InitParams,
        part_size: PartSize,
    ) -> Result<InitOutcome, DiskError> {
        let entry = self.entry(&p.file_sha);
        let mut state = entry.lock().await;
        let mut next = state.record.clone();
        next.latest_signature = Some(p.signature.clone());
        let known = next.finished.as_ref().map(|f| f.file_size);
        let known = known.or(next.upload.map(|u| u.file_size));
        if known.is_some_and(|size| size != p.file_size) {
            return Ok(InitOutcome::SizeMismatch {
                known: known.unwrap_or(0),
            });
        }
        let outcome = match (&next.finished, next.upload) {
            (Some(file), _) => InitOutcome::Finished(file.clone()),
            (None, Some(upload)) if !state.parts.is_empty() => InitOutcome::Resume {
                part_size: upload.part_size,
                parts: state.parts.iter().map(|(o, p)| (*o, p.clone())).collect(),
            },
            (None, _) => {
                next.upload = Some(UploadRecord {
                    file_size: p.file_size,
                    part_size: part_size.bytes(),
                });
                InitOutcome::New
            }
        };
        self.save(&p.file_sha, &next).await?;
        if next.upload != state.record.upload {
            state.generation = self.new_generation();
        }
        state.record = next;
        Ok(outcome)
    }

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
        let part_size = PartSize::from_bytes(part).expect("a recorded part size is valid");
        if !plan::is_valid_part(size, part_size, p.offset, p.data_size) {
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

    /// Verify a part's body against its MD5 and hold it (written to disk before this returns).
    pub async fn receive_part(
        &self,
        p: &PartParams,
        ticket: PartTicket,
        body: Vec<Bytes>,
    ) -> Result<PartReceived, DiskError> {
        let md5 = p.data_md5.clone();
        let duplicate = ticket.duplicate;
        let written = self
            .on_disk(move |d| {
                let actual = disk::md5_of(&body);
                if actual != md5 {
                    return Ok(Err(PartReceived::Md5Mismatch { actual }));
                }
                if duplicate {
                    return Ok(Err(PartReceived::Duplicate));
                }
                d.write_part_temp(&md5, &body).map(Ok)
            })
            .await?;
        let temp = match written {
            Ok(temp) => temp,
            Err(done) => return Ok(done),
        };
        let entry = self.find(&p.file_sha).expect("an entry is never removed");
        let mut state = entry.lock().await;
        if state.generation != ticket.generation || state.record.upload.is_none() {
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
        Ok(PartReceived::Stored)
    }

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
        let part_size =
            PartSize::from_bytes(upload.part_size).expect("a recorded part size is valid");
        let all = plan::plan(upload.file_size, part_size);
        let missing: Vec<u64> = all
            .iter()
            .filter(|part| state.parts.get(&part.offset).map(|h| h.len) != Some(part.len))
            .map(|part| part.offset)
            .collect();
        if !missing.is_empty() {
            return Ok(FinishOutcome::Missing {
                missing,
                total: all.len(),
            });
        }
        let layout: Vec<(u64, u64)> = all.iter().map(|part| (part.offset, part.len)).collect();
        let sha = p.file_sha.clone();
        let (temp, actual) = self.on_disk(move |d| d.assemble(&sha, &layout)).await?;
        let outcome = if actual == p.file_sha {
            let file = FinishedRecord {
                file_id: self
                    .next_file_id
                    .fetch_add(1, Ordering::Relaxed)
                    .to_string(),
                file_name: file_name.to_owned(),
                file_size: upload.file_size,
            };
            let id = file.file_id.clone();
            self.on_disk(move |d| d.publish_file(&temp, &id)).await?;
            FinishOutcome::Done {
                file,
                repeated: false,
            }
        } else {
            self.on_disk(move |d| d.remove_temp(&temp)).await;
            FinishOutcome::ShaMismatch { actual }
        };
        self.close_upload(&p.file_sha, &mut state, &outcome).await?;
        Ok(outcome)
    }

    /// After a finish that assembled the file: record the outcome and drop the parts.
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
        if let Some(file) = &state.record.finished {
            self.add_file(file);
        }
        let sha = sha.to_owned();
        self.on_disk(move |d| d.remove_parts(&sha)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{md5_hex, sha1_hex};

    const HALF: u64 = 524_288;

    /// A file of 2.5 half-MiB parts.
    fn data() -> Vec<u8> {
        (0..(HALF * 5 / 2)).map(|i| (i % 251) as u8).collect()
    }

    fn init_params(data: &[u8], signature: &str, data_size: u64) -> InitParams {
        InitParams {
            file_sha: sha1_hex(data),
            file_size: data.len() as u64,
            data_size,
            signature: signature.into(),
        }
    }

    async fn send(store: &Store, data: &[u8], signature: &str, offset: u64) -> PartReceived {
        let bytes = &data[offset as usize..data.len().min((offset + HALF) as usize)];
        let p = PartParams {
            file_sha: sha1_hex(data),
            offset,
            data_size: bytes.len() as u64,
            data_md5: md5_hex(bytes),
            signature: signature.into(),
        };
        let PartCheck::Ready(ticket) = store.check_part(&p).await else {
            panic!("part {offset} refused")
        };
        let body = vec![Bytes::copy_from_slice(bytes)];
        store.receive_part(&p, ticket, body).await.unwrap()
    }

    fn finish_params(data: &[u8], signature: &str) -> FinishParams {
        FinishParams {
            file_sha: sha1_hex(data),
            signature: signature.into(),
        }
    }

    #[tokio::test]
    async fn held_parts_and_part_size_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let data = data();
        let store = Store::open(dir.path()).unwrap();
        let outcome = store
            .init(&init_params(&data, "s1", HALF), PartSize::HalfMiB)
            .await
            .unwrap();
        assert_eq!(outcome, InitOutcome::New);
        assert_eq!(
            send(&store, &data, "s1", HALF * 2).await,
            PartReceived::Stored
        );
        assert_eq!(send(&store, &data, "s1", 0).await, PartReceived::Stored);
        assert_eq!(send(&store, &data, "s1", 0).await, PartReceived::Duplicate);
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        let asked = init_params(&data, "s2", 1_048_576);
        let outcome = store.init(&asked, PartSize::OneMiB).await.unwrap();
        let InitOutcome::Resume { part_size, parts } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(part_size, HALF);
        let offsets: Vec<(u64, u64)> = parts.iter().map(|(o, h)| (*o, h.len)).collect();
        assert_eq!(offsets, [(0, HALF), (HALF * 2, HALF / 2)]);
        assert_eq!(parts[0].1.md5, md5_hex(&data[..HALF as usize]));
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
        assert_eq!(
            std::fs::read(&store.file(&file.file_id).unwrap().path).unwrap(),
            data
        );
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
        let next: u64 = store.next_file_id.load(Ordering::Relaxed);
        assert!(next > file.file_id.parse::<u64>().unwrap());
    }

    #[tokio::test]
    async fn part_size_follows_a_new_init_while_nothing_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let data = data();
        let store = Store::open(dir.path()).unwrap();
        store
            .init(&init_params(&data, "s1", 1_048_576), PartSize::OneMiB)
            .await
            .unwrap();
        let outcome = store
            .init(&init_params(&data, "s2", HALF), PartSize::HalfMiB)
            .await
            .unwrap();
        assert_eq!(outcome, InitOutcome::New);
        assert_eq!(send(&store, &data, "s2", HALF).await, PartReceived::Stored);
        let mut resized = init_params(&data, "s3", HALF);
        resized.file_size += 1;
        let outcome = store.init(&resized, PartSize::HalfMiB).await.unwrap();
        assert_eq!(
            outcome,
            InitOutcome::SizeMismatch {
                known: data.len() as u64
            }
        );
    }

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
                store.receive_part(&p, ticket, body).await.unwrap(),
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
