//! One-pass hashing of a file: the SHA-1 of the whole file and the MD5 of every part.
//!
//! The file is read once, through the descriptor vodup opened ([`Source`]), in part-sized chunks
//! into reused buffers. The reading thread feeds SHA-1 (one serial chain, so it sets the floor)
//! while a second thread computes the part MD5s, independent messages, several at once with
//! multi-buffer SIMD (md5-simd: AVX2/AVX-512, scalar fallback), so the pass runs at the pace of
//! SHA-1 alone. `md-5` stays as the reference ([`md5_hex`]) the tests check the fast path against.
//! This is blocking code: async callers run it on `spawn_blocking`.

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

/// Parts hashed together by the multi-buffer MD5 (AVX2 has 8 lanes; md5-simd prefers them for
/// runs of up to eight even with AVX-512). Two batches circulate: one is read while the other is
/// hashed, so the pass holds `2 × MD5_BATCH` parts in memory.
const MD5_BATCH: usize = 8;

/// The MD5 of each of `parts` (independent messages), several at once where the CPU allows, as
/// lowercase hex, in order.
pub fn md5_many(parts: &[&[u8]]) -> Vec<String> {
    let mut digests = vec![[0u8; 16]; parts.len()];
    md5_simd::Md5Engine::new().hash_many(parts, &mut digests);
    digests.iter().map(hex::encode).collect()
}

/// Hash the open `source` in one pass, through its descriptor. Fails with [`HashError::Changed`]
/// if the file is not the one opened any more (size or mtime moved, now or while it was read), so
/// a file still being written is never taken as final, and with [`HashError::Stopped`] as soon as
/// `stop()` says so (checked between parts). `read(len)` is told of each part read, for progress.
///
/// This thread reads each part once into a reused buffer and feeds the SHA-1 (one serial chain:
/// the floor); a second thread computes the part MD5s a batch at a time with multi-buffer SIMD and
/// hands the buffers back.
pub fn hash_source(
    source: &Source,
    part_size: PartSize,
    stop: impl Fn() -> bool,
    read: impl Fn(u64),
) -> Result<FileDigest, HashError> {
    let opened = source.identity();
    if source.current()? != opened {
        return Err(HashError::Changed);
    }
    let size = opened.version.size;
    let (batches, to_md5) = mpsc::sync_channel::<Vec<Vec<u8>>>(1);
    let (free, freed) = mpsc::channel::<Vec<u8>>();
    let md5_worker = std::thread::spawn(move || {
        let mut md5s = Vec::new();
        for batch in to_md5 {
            let parts: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            md5s.extend(md5_many(&parts));
            for buffer in batch {
                let _ = free.send(buffer);
            }
        }
        md5s
    });
    let result = read_into_batches(source, (size, part_size), &stop, &read, &batches, &freed);
    drop(batches);
    let part_md5s = md5_worker.join().expect("md5 worker does not panic");
    let sha1 = match result {
        // A file truncated under us reads short: it changed.
        Err(HashError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(HashError::Changed)
        }
        other => other?,
    };
    let mut probe = [0u8; 1];
    let grew = source.file().read_at(&mut probe, size)? != 0;
    if grew || source.current()? != opened {
        return Err(HashError::Changed);
    }
    Ok(FileDigest {
        size,
        sha1,
        part_md5s,
    })
}

/// Read every part into buffers (reused once the MD5 thread hands them back), feed the SHA-1,
/// and send the parts on in batches. Returns the SHA-1.
fn read_into_batches(
    source: &Source,
    (size, part_size): (u64, PartSize),
    stop: &impl Fn() -> bool,
    read: &impl Fn(u64),
    batches: &mpsc::SyncSender<Vec<Vec<u8>>>,
    freed: &mpsc::Receiver<Vec<u8>>,
) -> Result<String, HashError> {
    let mut sha = Sha1::new();
    let mut batch = Vec::with_capacity(MD5_BATCH);
    let mut allocated = 0;
    let parts = plan(size, part_size);
    for (i, part) in parts.iter().enumerate() {
        if stop() {
            return Err(HashError::Stopped);
        }
        let mut buffer = if allocated < 2 * MD5_BATCH {
            allocated += 1;
            Vec::new()
        } else {
            freed.recv().unwrap_or_default()
        };
        // A reused buffer keeps its bytes (no zeroing per part); it is overwritten in full.
        buffer.resize(part.len as usize, 0);
        source.file().read_exact_at(&mut buffer, part.offset)?;
        sha.update(&buffer);
        read(part.len);
        batch.push(buffer);
        if batch.len() == MD5_BATCH || i + 1 == parts.len() {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(MD5_BATCH));
            if batches.send(full).is_err() {
                break;
            }
        }
    }
    Ok(hex::encode(sha.finalize()))
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
    fn the_pass_reports_every_part_it_reads() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![7u8; 524_288 * 2 + 10]).unwrap();
        let read = std::sync::atomic::AtomicU64::new(0);
        let count = |len| {
            read.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        };
        hash_source(&open(f.path()), PartSize::HalfMiB, || false, count).unwrap();
        assert_eq!(read.into_inner(), 524_288 * 2 + 10);
    }

    #[test]
    fn known_vectors() {
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn empty_file_has_the_empty_sha1_and_no_part() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let d = hash_source(&open(f.path()), PartSize::HalfMiB, || false, |_| ()).unwrap();
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
        let err = hash_source(&source, PartSize::HalfMiB, || false, |_| ()).unwrap_err();
        assert!(matches!(err, HashError::Changed), "{err}");
    }

    #[test]
    fn hashing_stops_when_asked() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![7u8; 3 * 524_288]).unwrap();
        let err = hash_source(&open(f.path()), PartSize::HalfMiB, || true, |_| ()).unwrap_err();
        assert!(matches!(err, HashError::Stopped), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn multi_buffer_md5_equals_the_reference(
            lens in proptest::collection::vec(0usize..5000, 0..40),
            seed in any::<u8>(),
        ) {
            // Runs of equal lengths (SIMD lanes) mixed with odd tails and empty parts.
            let data: Vec<Vec<u8>> = lens
                .iter()
                .enumerate()
                .map(|(i, len)| {
                    let len = if i % 3 == 0 { 4096 } else { *len };
                    (0..len).map(|j| (j as u8).wrapping_mul(7).wrapping_add(seed ^ i as u8)).collect()
                })
                .collect();
            let parts: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            let expected: Vec<String> = parts.iter().map(|p| md5_hex(p)).collect();
            prop_assert_eq!(md5_many(&parts), expected);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn one_pass_hashes_equal_one_shot_hashes(len in 0usize..10_000_000, seed in any::<u8>()) {
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            let mut f = tempfile::NamedTempFile::new().unwrap();
            f.write_all(&data).unwrap();
            let d = hash_source(&open(f.path()), PartSize::HalfMiB, || false, |_| ()).unwrap();
            prop_assert_eq!(d.size, len as u64);
            prop_assert_eq!(&d.sha1, &sha1_hex(&data));
            let expected: Vec<String> = data.chunks(524_288).map(md5_hex).collect();
            prop_assert_eq!(d.part_md5s, expected);
        }
    }
}
