//! One-pass hashing of a file: the SHA-1 of the whole file and the MD5 of every part.
//!
//! The file is read once, through the descriptor vodup opened ([`Source`]), in part-sized chunks. The reading thread feeds SHA-1 while a
//! second thread computes the MD5 of each part, so both hashes run on two cores at the speed of the
//! slower one. This is blocking code: async callers run it on `spawn_blocking`.

use crate::protocol::plan::{plan, PartSize};
use crate::source::Source;
use md5::{Digest as _, Md5};
use sha1::Sha1;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::sync::mpsc;

/// What one pass over a file yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub size: u64,
    /// SHA-1 of the whole file, 40 lowercase hex characters.
    pub sha1: String,
    /// MD5 of each part in offset order, 32 lowercase hex characters each.
    pub part_md5s: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
    #[error("the file changed while it was hashed (size or mtime moved)")]
    Changed,
    #[error("hashing was stopped")]
    Stopped,
}

/// MD5 of a byte slice as lowercase hex.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// SHA-1 of a byte slice as lowercase hex.
pub fn sha1_hex(bytes: &[u8]) -> String {
    hex::encode(Sha1::digest(bytes))
}

/// Hash the open `source` in one pass, through its descriptor. Fails with [`HashError::Changed`]
/// if the file is not the one opened any more (size or mtime moved, now or while it was read), so
/// a file still being written is never taken as final, and with [`HashError::Stopped`] as soon as
/// `stop()` says so (checked between parts).
pub fn hash_source(
    source: &Source,
    part_size: PartSize,
    stop: impl Fn() -> bool,
) -> Result<FileDigest, HashError> {
    let opened = source.identity();
    if source.current()? != opened {
        return Err(HashError::Changed);
    }
    let file = source.file();
    let size = opened.version.size;
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
        if let Err(e) = file.read_exact_at(&mut chunk, part.offset) {
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
    match read_result {
        // A file truncated under us reads short: it changed.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(HashError::Changed),
        other => other?,
    }
    if stopped {
        return Err(HashError::Stopped);
    }
    let mut probe = [0u8; 1];
    let grew = file.read_at(&mut probe, size)? != 0;
    if grew || source.current()? != opened {
        return Err(HashError::Changed);
    }
    Ok(FileDigest {
        size,
        sha1: hex::encode(sha.finalize()),
        part_md5s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;
    use std::path::Path;

    fn open(path: &Path) -> Source {
        Source::open(path, None).unwrap()
    }

    #[test]
    fn known_vectors() {
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn empty_file_has_the_empty_sha1_and_no_part() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let d = hash_source(&open(f.path()), PartSize::HalfMiB, || false).unwrap();
        assert_eq!(d.size, 0);
        assert_eq!(d.sha1, sha1_hex(b""));
        assert!(d.part_md5s.is_empty());
    }

    #[test]
    fn a_file_that_grew_after_it_was_opened_is_changed() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[1u8; 1000]).unwrap();
        let source = open(f.path());
        f.write_all(&[2u8; 10]).unwrap();
        let err = hash_source(&source, PartSize::HalfMiB, || false).unwrap_err();
        assert!(matches!(err, HashError::Changed), "{err}");
    }

    #[test]
    fn hashing_stops_when_asked() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![7u8; 3 * 524_288]).unwrap();
        let err = hash_source(&open(f.path()), PartSize::HalfMiB, || true).unwrap_err();
        assert!(matches!(err, HashError::Stopped), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn one_pass_hashes_equal_one_shot_hashes(len in 0usize..2_000_000, seed in any::<u8>()) {
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            let mut f = tempfile::NamedTempFile::new().unwrap();
            f.write_all(&data).unwrap();
            let d = hash_source(&open(f.path()), PartSize::HalfMiB, || false).unwrap();
            prop_assert_eq!(d.size, len as u64);
            prop_assert_eq!(&d.sha1, &sha1_hex(&data));
            let expected: Vec<String> = data.chunks(524_288).map(md5_hex).collect();
            prop_assert_eq!(d.part_md5s, expected);
        }
    }
}
