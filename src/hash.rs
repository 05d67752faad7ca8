//! One-pass hashing of a file: the SHA-1 of the whole file and the MD5 of every part.
//!
//! The file is read once, sequentially, in part-sized chunks. The reading thread feeds SHA-1 while a
//! second thread computes the MD5 of each part, so both hashes run on two cores at the speed of the
//! slower one. This is blocking code: async callers run it on `spawn_blocking`.

use crate::protocol::plan::{plan, PartSize};
use md5::{Digest as _, Md5};
use sha1::Sha1;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::SystemTime;

/// What one pass over a file yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub size: u64,
    /// Modification time when hashing started, in nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// SHA-1 of the whole file, 40 lowercase hex characters.
    pub sha1: String,
    /// MD5 of each part in offset order, 32 lowercase hex characters each.
    pub part_md5s: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} changed while it was hashed (size or mtime moved)")]
    Changed { path: PathBuf },
    #[error("hashing {path} was stopped")]
    Stopped { path: PathBuf },
}

/// MD5 of a byte slice as lowercase hex.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// SHA-1 of a byte slice as lowercase hex.
pub fn sha1_hex(bytes: &[u8]) -> String {
    hex::encode(Sha1::digest(bytes))
}

/// The size and modification time (ns since the epoch) of a file, as the ledger records them.
pub fn stat(path: &Path) -> io::Result<(u64, i64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.len(), mtime_ns(meta.modified()?)))
}

fn mtime_ns(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    }
}

/// Hash `path` in one pass. Fails with [`HashError::Changed`] if the file's size or mtime moved
/// while it was read, so a file still being written is never taken as final, and with
/// [`HashError::Stopped`] as soon as `stop()` says so (checked between parts).
pub fn hash_file(
    path: &Path,
    part_size: PartSize,
    stop: impl Fn() -> bool,
) -> Result<FileDigest, HashError> {
    let io_err = |source| HashError::Io {
        path: path.to_owned(),
        source,
    };
    let (size, mtime_ns) = stat(path).map_err(io_err)?;
    let mut file = File::open(path).map_err(io_err)?;
    let parts = plan(size, part_size);
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(4);
    let md5_worker = std::thread::spawn(move || {
        rx.into_iter()
            .map(|chunk| md5_hex(&chunk))
            .collect::<Vec<_>>()
    });
    let mut sha = Sha1::new();
    let mut read_result = Ok(());
    let mut stopped = false;
    for part in &parts {
        if stop() {
            stopped = true;
            break;
        }
        let mut chunk = vec![0u8; part.len as usize];
        if let Err(e) = file.read_exact(&mut chunk) {
            read_result = Err(e);
            break;
        }
        sha.update(&chunk);
        if tx.send(chunk).is_err() {
            break;
        }
    }
    drop(tx);
    let part_md5s = md5_worker.join().expect("md5 worker does not panic");
    read_result.map_err(io_err)?;
    if stopped {
        return Err(HashError::Stopped {
            path: path.to_owned(),
        });
    }
    let mut probe = [0u8; 1];
    let grew = file.read(&mut probe).map_err(io_err)? != 0;
    if grew || stat(path).map_err(io_err)? != (size, mtime_ns) {
        return Err(HashError::Changed {
            path: path.to_owned(),
        });
    }
    Ok(FileDigest {
        size,
        mtime_ns,
        sha1: hex::encode(sha.finalize()),
        part_md5s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    #[test]
    fn known_vectors() {
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn empty_file_has_the_empty_sha1_and_no_part() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let d = hash_file(f.path(), PartSize::HalfMiB, || false).unwrap();
        assert_eq!(d.size, 0);
        assert_eq!(d.sha1, sha1_hex(b""));
        assert!(d.part_md5s.is_empty());
    }

    #[test]
    fn missing_file_is_an_io_error_naming_the_path() {
        let err =
            hash_file(Path::new("/nonexistent/x.mp4"), PartSize::OneMiB, || false).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.mp4"));
    }

    #[test]
    fn hashing_stops_when_asked() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![7u8; 3 * 524_288]).unwrap();
        let err = hash_file(f.path(), PartSize::HalfMiB, || true).unwrap_err();
        assert!(matches!(err, HashError::Stopped { .. }), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn one_pass_hashes_equal_one_shot_hashes(len in 0usize..2_000_000, seed in any::<u8>()) {
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            let mut f = tempfile::NamedTempFile::new().unwrap();
            f.write_all(&data).unwrap();
            let d = hash_file(f.path(), PartSize::HalfMiB, || false).unwrap();
            prop_assert_eq!(d.size, len as u64);
            prop_assert_eq!(&d.sha1, &sha1_hex(&data));
            let expected: Vec<String> = data.chunks(524_288).map(md5_hex).collect();
            prop_assert_eq!(d.part_md5s, expected);
        }
    }
}
