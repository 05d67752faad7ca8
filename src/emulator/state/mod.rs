//! What the emulator knows: unfinished uploads and their held parts, finished files, and the
//! signature of the most recent init of each fileSha (PROTOCOL.md §2-4 decisions).
//!
//! Owns the rules that need that knowledge (resume lists, part-size fixed by the first init, the
//! latest-signature rule, finish preconditions) and keeps memory and disk in step: every change is
//! written through [`Disk`] before it is visible. Each fileSha has its own async lock; the global
//! maps are only held for a lookup, never across hashing or I/O. Parameter parsing, signatures'
//! cryptography and answer shapes belong to the handlers.

mod finish;
mod parts;
mod prefix;

pub use finish::FinishOutcome;
pub use parts::{PartCheck, PartReceived, PartTicket};

use super::disk::{self, Disk, DiskError, FinishedRecord, HeldPart, ShaRecord, UploadRecord};
use super::params::InitParams;
use crate::emulator::rules;
use crate::protocol::plan::PartSize;
use prefix::Prefix;
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
    /// The SHA-1 of the held parts in offset order, fed as parts are stored, so finish hashes
    /// only what is left (nothing, when every part arrived).
    prefix: Arc<Prefix>,
}

type Entry = tokio::sync::Mutex<EntryState>;

/// A finished file, as `GET` on its url needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    pub name: String,
    pub size: u64,
    /// Its part files in offset order; each holds [`disk::PART_HEADER_BYTES`] then the bytes.
    pub parts: Vec<PathBuf>,
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

/// The emulator's state, in memory and under the data directory.
#[derive(Debug)]
pub struct Store {
    disk: Arc<Disk>,
    md5: super::lanes::Md5Lanes,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    files: Mutex<HashMap<String, FinishedRecord>>,
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
            md5: super::lanes::Md5Lanes::start(),
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
                prefix: Arc::default(),
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
        let mut files = self.files.lock().expect("files lock");
        files.insert(f.file_id.clone(), f.clone());
    }

    /// The finished file with this fileId.
    pub fn file(&self, file_id: &str) -> Option<FileRef> {
        let f = self.files.lock().expect("files lock").get(file_id)?.clone();
        let parts = rules::parts(f.file_size, f.part_size)
            .map(|(offset, _)| self.disk.finished_part_path(file_id, offset))
            .collect();
        Some(FileRef {
            name: f.file_name,
            size: f.file_size,
            parts,
        })
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
        let finished_size = next.finished.as_ref().map(|f| f.file_size);
        let known = finished_size.or(next.upload.map(|u| u.file_size));
        if let Some(known) = known.filter(|&size| size != p.file_size) {
            return Ok(InitOutcome::SizeMismatch { known });
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
            state.prefix = Arc::default();
        }
        state.record = next;
        Ok(outcome)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::emulator::params::{FinishParams, PartParams};
    use crate::hash::{md5_hex, sha1_hex};
    use bytes::Bytes;

    pub const HALF: u64 = 524_288;

    /// A file of 2.5 half-MiB parts.
    pub fn data() -> Vec<u8> {
        (0..(HALF * 5 / 2)).map(|i| (i % 251) as u8).collect()
    }

    pub fn init_params(data: &[u8], signature: &str, data_size: u64) -> InitParams {
        InitParams {
            file_sha: sha1_hex(data),
            file_size: data.len() as u64,
            data_size,
            signature: signature.into(),
        }
    }

    pub async fn send(store: &Store, data: &[u8], signature: &str, offset: u64) -> PartReceived {
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
        store
            .receive_part(&p, ticket, body, store.body_coming(p.data_size))
            .await
            .unwrap()
    }

    pub fn finish_params(data: &[u8], signature: &str) -> FinishParams {
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
}
