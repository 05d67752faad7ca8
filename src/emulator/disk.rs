//! The emulator's on-disk layout under `--data DIR`, and every blocking file operation on it.
//!
//! ```text
//! meta/{fileSha}.json        ShaRecord: latest init signature, unfinished upload, finished file
//! parts/{fileSha}/{offset}   one held part: its 32 hex MD5 characters, then its bytes
//! files/{fileId}/{offset}    the parts of a finished file, moved there as one directory
//! tmp/                       files being written; emptied at start
//! ```
//! A finished file is assembled logically: its SHA-1 is computed over the parts in order and the
//! parts directory becomes the file's, so its bytes are written once, not twice.
//! Every file appears by `rename` of a complete temporary file, so a killed emulator leaves either
//! the old or the new version, never a torn one. This module is blocking code: the store calls it
//! on `spawn_blocking`. It does not decide anything about the protocol; [`super::state`] does.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of the MD5 header at the start of a part file; the part's bytes follow.
pub const PART_HEADER_BYTES: u64 = 32;

/// A file operation that failed, with what was being done and where.
#[derive(Debug, thiserror::Error)]
#[error("cannot {what} {path}: {source}")]
pub struct DiskError {
    pub what: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

type Result<T> = std::result::Result<T, DiskError>;

fn ctx<T>(what: &'static str, path: &Path, r: io::Result<T>) -> Result<T> {
    r.map_err(|source| DiskError {
        what,
        path: path.to_owned(),
        source,
    })
}

/// What the emulator remembers of one fileSha, persisted as `meta/{fileSha}.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShaRecord {
    /// The signature of the most recent successful init.
    pub latest_signature: Option<String>,
    pub upload: Option<UploadRecord>,
    pub finished: Option<FinishedRecord>,
}

/// An unfinished upload: the file size and part size fixed by its init.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub file_size: u64,
    pub part_size: u64,
}

/// A finished file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedRecord {
    pub file_id: String,
    pub file_name: String,
    pub file_size: u64,
    /// The part size its parts were uploaded with: it says where each part file starts.
    pub part_size: u64,
}

/// A held part as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldPart {
    pub len: u64,
    pub md5: String,
}

/// One fileSha as found at start: its record and the parts held for its unfinished upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub sha: String,
    pub record: ShaRecord,
    pub parts: BTreeMap<u64, HeldPart>,
}

/// The handle on a data directory.
#[derive(Debug)]
pub struct Disk {
    root: PathBuf,
    seq: AtomicU64,
}

impl Disk {
    /// Create the layout if needed and empty `tmp/`.
    pub fn open(root: &Path) -> Result<Disk> {
        for dir in ["meta", "parts", "files"] {
            let path = root.join(dir);
            ctx("create", &path, fs::create_dir_all(&path))?;
        }
        let tmp = root.join("tmp");
        if tmp.exists() {
            ctx("empty", &tmp, fs::remove_dir_all(&tmp))?;
        }
        ctx("create", &tmp, fs::create_dir_all(&tmp))?;
        Ok(Disk {
            root: root.to_owned(),
            seq: AtomicU64::new(0),
        })
    }

    /// Every record, with the parts held for its unfinished upload.
    pub fn load(&self) -> Result<Vec<Loaded>> {
        let meta = self.root.join("meta");
        let mut out = Vec::new();
        for entry in ctx("list", &meta, fs::read_dir(&meta))? {
            let path = ctx("list", &meta, entry)?.path();
            let Some(sha) = path
                .file_name()
                .and_then(|n| n.to_str()?.strip_suffix(".json"))
            else {
                continue;
            };
            let text = ctx("read", &path, fs::read(&path))?;
            let record: ShaRecord = ctx(
                "parse",
                &path,
                serde_json::from_slice(&text).map_err(io::Error::other),
            )?;
            let parts = match record.upload {
                Some(_) => self.load_parts(sha)?,
                None => {
                    self.remove_parts(sha)?;
                    BTreeMap::new()
                }
            };
            out.push(Loaded {
                sha: sha.to_owned(),
                record,
                parts,
            });
        }
        Ok(out)
    }

    fn load_parts(&self, sha: &str) -> Result<BTreeMap<u64, HeldPart>> {
        let dir = self.parts_dir(sha);
        let mut parts = BTreeMap::new();
        let entries = match fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(parts),
            other => ctx("list", &dir, other)?,
        };
        for entry in entries {
            let path = ctx("list", &dir, entry)?.path();
            let Some(offset) = path.file_name().and_then(|n| n.to_str()?.parse().ok()) else {
                continue;
            };
            let mut file = ctx("open", &path, File::open(&path))?;
            let size = ctx("stat", &path, file.metadata())?.len();
            let mut md5 = [0u8; PART_HEADER_BYTES as usize];
            if size < PART_HEADER_BYTES || file.read_exact(&mut md5).is_err() {
                continue;
            }
            let md5 = String::from_utf8_lossy(&md5).into_owned();
            parts.insert(
                offset,
                HeldPart {
                    len: size - PART_HEADER_BYTES,
                    md5,
                },
            );
        }
        Ok(parts)
    }

    fn temp_path(&self) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{}-{n}.tmp", std::process::id()))
    }

    fn parts_dir(&self, sha: &str) -> PathBuf {
        self.root.join("parts").join(sha)
    }

    fn part_path(&self, sha: &str, offset: u64) -> PathBuf {
        self.parts_dir(sha).join(format!("{offset:020}"))
    }

    /// The part file at `offset` of a finished file.
    pub fn finished_part_path(&self, file_id: &str, offset: u64) -> PathBuf {
        self.root
            .join("files")
            .join(file_id)
            .join(format!("{offset:020}"))
    }

    /// Replace `meta/{sha}.json` atomically.
    pub fn write_record(&self, sha: &str, record: &ShaRecord) -> Result<()> {
        let json = serde_json::to_vec_pretty(record).expect("a record serializes");
        let temp = self.temp_path();
        ctx("write", &temp, fs::write(&temp, json))?;
        let path = self.root.join("meta").join(format!("{sha}.json"));
        ctx("rename into", &path, fs::rename(&temp, &path))
    }

    /// Write a part's header and bytes to a temporary file; `commit_part` moves it in place.
    pub fn write_part_temp(&self, md5: &str, chunks: &[Bytes]) -> Result<PathBuf> {
        let temp = self.temp_path();
        let write = || -> io::Result<()> {
            let mut file = File::create(&temp)?;
            file.write_all(md5.as_bytes())?;
            for chunk in chunks {
                file.write_all(chunk)?;
            }
            Ok(())
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&temp);
            return ctx("write", &temp, Err(e));
        }
        Ok(temp)
    }

    /// Move a written part to `parts/{sha}/{offset}`, replacing any part held there.
    pub fn commit_part(&self, temp: &Path, sha: &str, offset: u64) -> Result<()> {
        let dir = self.parts_dir(sha);
        ctx("create", &dir, fs::create_dir_all(&dir))?;
        let path = self.part_path(sha, offset);
        ctx("rename into", &path, fs::rename(temp, &path))
    }

    pub fn remove_temp(&self, temp: &Path) {
        let _ = fs::remove_file(temp);
    }

    /// Forget every part of an upload.
    pub fn remove_parts(&self, sha: &str) -> Result<()> {
        let dir = self.parts_dir(sha);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => ctx("remove", &dir, other),
        }
    }

    /// The bytes of a held part.
    pub fn read_part(&self, sha: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = self.part_path(sha, offset);
        let mut file = ctx("open", &path, File::open(&path))?;
        ctx("seek", &path, file.seek(SeekFrom::Start(PART_HEADER_BYTES)))?;
        let mut buf = vec![0u8; len as usize];
        ctx("read", &path, file.read_exact(&mut buf))?;
        Ok(buf)
    }

    /// Make an upload's parts the finished file `file_id`, in one rename.
    pub fn publish_parts(&self, sha: &str, file_id: &str) -> Result<()> {
        let path = self.root.join("files").join(file_id);
        ctx("rename into", &path, fs::rename(self.parts_dir(sha), &path))
    }

    /// The largest numeric name in `files/`, so a restarted emulator never reuses a fileId.
    pub fn max_file_id(&self) -> Result<u64> {
        let dir = self.root.join("files");
        let mut max = 0;
        for entry in ctx("list", &dir, fs::read_dir(&dir))? {
            let name = ctx("list", &dir, entry)?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.parse::<u64>().ok()) {
                max = max.max(id);
            }
        }
        Ok(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{md5_hex, sha1_hex};

    const SHA: &str = "a9993e364706816aba3e25717850c26c9cd0d89d";

    #[test]
    fn records_and_parts_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path()).unwrap();
        let record = ShaRecord {
            latest_signature: Some("sig".into()),
            upload: Some(UploadRecord {
                file_size: 5,
                part_size: 524_288,
            }),
            finished: None,
        };
        disk.write_record(SHA, &record).unwrap();
        let chunks = [Bytes::from_static(b"ab"), Bytes::from_static(b"cde")];
        let md5 = crate::hash::md5_hex(&chunks.concat());
        assert_eq!(md5, md5_hex(b"abcde"));
        let temp = disk.write_part_temp(&md5, &chunks).unwrap();
        disk.commit_part(&temp, SHA, 0).unwrap();
        std::fs::write(dir.path().join("tmp/leftover.tmp"), b"x").unwrap();

        let disk = Disk::open(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        let loaded = disk.load().unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!((loaded[0].sha.as_str(), &loaded[0].record), (SHA, &record));
        assert_eq!(loaded[0].parts[&0], HeldPart { len: 5, md5 });
    }

    #[test]
    fn parts_hash_in_order_and_become_the_finished_file() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path()).unwrap();
        for (offset, bytes) in [(3u64, &b"def"[..]), (0, &b"abc"[..])] {
            let chunks = [Bytes::copy_from_slice(bytes)];
            let temp = disk
                .write_part_temp(&crate::hash::md5_hex(&chunks.concat()), &chunks)
                .unwrap();
            disk.commit_part(&temp, SHA, offset).unwrap();
        }
        let in_order = [
            disk.read_part(SHA, 0, 3).unwrap(),
            disk.read_part(SHA, 3, 3).unwrap(),
        ];
        assert_eq!(sha1_hex(&in_order.concat()), sha1_hex(b"abcdef"));
        disk.publish_parts(SHA, "41").unwrap();
        let second = std::fs::read(disk.finished_part_path("41", 3)).unwrap();
        assert_eq!(&second[PART_HEADER_BYTES as usize..], b"def");
        assert!(!dir.path().join("parts").join(SHA).exists());
        assert_eq!(disk.max_file_id().unwrap(), 41);
    }

    #[test]
    fn parts_of_an_upload_no_longer_recorded_are_removed_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path()).unwrap();
        let chunks = [Bytes::from_static(b"x")];
        let temp = disk
            .write_part_temp(&crate::hash::md5_hex(&chunks.concat()), &chunks)
            .unwrap();
        disk.commit_part(&temp, SHA, 0).unwrap();
        disk.write_record(SHA, &ShaRecord::default()).unwrap();
        let loaded = disk.load().unwrap();
        assert!(loaded[0].parts.is_empty());
        assert!(!dir.path().join("parts").join(SHA).exists());
    }
}
