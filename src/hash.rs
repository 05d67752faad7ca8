//! One-pass hashing of a file: the SHA-1 of the whole file and the MD5 of every part.
//!
//! The file is read once, through the descriptor vodup opened ([`Source`]), in part-sized chunks
//! into reused buffers, and passed along three threads: reading, SHA-1 (one serial chain, so it
//! sets the floor) and the part MD5s (independent messages, several at once with multi-buffer
//! SIMD: md5-simd, AVX2/AVX-512, scalar fallback), so the pass runs at the pace of SHA-1 alone. `md-5` stays as the reference ([`md5_hex`]) the tests check the fast path against.
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
    /// The file's bytes as they were hashed, for a file of at most [`KEPT`] bytes: its one part
    /// is sent from them, with no second read of the file.
    pub bytes: Option<bytes::Bytes>,
}

/// The largest file whose bytes a pass keeps ([`FileDigest::bytes`]): one chunk of a part as
/// the upload streams it, so keeping it holds no more than sending it does.
pub const KEPT: u64 = 128 * 1024;

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
/// runs of up to eight even with AVX-512).
const MD5_BATCH: usize = 8;
/// Part buffers in circulation: a batch being hashed for MD5, one being gathered behind the SHA-1,
/// and a couple read ahead.
const BUFFERS: usize = 2 * MD5_BATCH + 2;

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
/// `stop()` says so (checked between parts). `read(len)` is told of every part read, for progress.
///
/// A file of one part is read and hashed on this thread. Otherwise three stages, each on its own
/// thread, pass each part's buffer along: this thread reads it
/// (`pread`), the SHA-1 thread feeds it to the one serial chain that sets the pace, and the MD5
/// thread hashes a batch of parts at once with multi-buffer SIMD, then hands the buffers back to
/// be read into again (reused, never zeroed per part).
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
    let parts = plan(size, part_size);
    let (sha1, part_md5s, bytes) = if let [part] = parts.as_slice() {
        hash_one_part(source, part, (&stop, &read))?
    } else {
        let (sha1, md5s) = hash_in_stages(source, (size, part_size), (&stop, &read))?;
        (sha1, md5s, None)
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
        bytes,
    })
}

/// SHA-1 of the whole open `source`, read again through its descriptor (1 MiB at a time): what
/// the content is now, to compare with what was hashed. `None` if its size moved meanwhile.
pub fn sha1_now(source: &Source) -> io::Result<Option<String>> {
    let size = source.identity().version.size;
    let mut sha = Sha1::new();
    let mut buffer = vec![0; 1 << 20];
    let mut offset = 0;
    while offset < size {
        let len = (size - offset).min(buffer.len() as u64) as usize;
        match source.file().read_exact_at(&mut buffer[..len], offset) {
            Ok(()) => sha.update(&buffer[..len]),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        offset += len as u64;
    }
    Ok(Some(hex::encode(sha.finalize())))
}

/// A file of one part (most small files): read and hashed on this thread, since starting two
/// threads and passing one buffer along costs more than hashing it. Its bytes, if it is no larger
/// than [`KEPT`].
fn hash_one_part(
    source: &Source,
    part: &crate::protocol::plan::Part,
    (stop, read): (&impl Fn() -> bool, &impl Fn(u64)),
) -> Result<(String, Vec<String>, Option<bytes::Bytes>), HashError> {
    if stop() {
        return Err(HashError::Stopped);
    }
    let mut buffer = vec![0; part.len as usize];
    short_read_is_change(
        source
            .file()
            .read_exact_at(&mut buffer, part.offset)
            .map_err(HashError::from),
    )?;
    read(part.len);
    let (sha1, md5) = (sha1_hex(&buffer), md5_many(&[&buffer]).remove(0));
    let kept = (part.len <= KEPT).then(|| bytes::Bytes::from(buffer));
    Ok((sha1, vec![md5], kept))
}

/// The three stages of a file of several parts (see [`hash_source`]).
fn hash_in_stages(
    source: &Source,
    (size, part_size): (u64, PartSize),
    (stop, read): (&impl Fn() -> bool, &impl Fn(u64)),
) -> Result<(String, Vec<String>), HashError> {
    let (to_sha, sha_in) = mpsc::sync_channel::<Vec<u8>>(2);
    let (to_md5, md5_in) = mpsc::sync_channel::<Vec<Vec<u8>>>(1);
    let (free, freed) = mpsc::channel::<Vec<u8>>();
    let sha_worker = std::thread::spawn(move || {
        let mut sha = Sha1::new();
        let mut batch = Vec::with_capacity(MD5_BATCH);
        for buffer in sha_in {
            sha.update(&buffer);
            batch.push(buffer);
            if batch.len() == MD5_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(MD5_BATCH));
                let _ = to_md5.send(full);
            }
        }
        if !batch.is_empty() {
            let _ = to_md5.send(batch);
        }
        hex::encode(sha.finalize())
    });
    let md5_worker = std::thread::spawn(move || {
        let mut md5s = Vec::new();
        for batch in md5_in {
            let parts: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            md5s.extend(md5_many(&parts));
            for buffer in batch {
                let _ = free.send(buffer);
            }
        }
        md5s
    });
    let result = read_parts(source, (size, part_size), (stop, read), &to_sha, &freed);
    drop(to_sha);
    let sha1 = sha_worker.join().expect("sha-1 worker does not panic");
    let part_md5s = md5_worker.join().expect("md5 worker does not panic");
    short_read_is_change(result)?;
    Ok((sha1, part_md5s))
}

/// A file truncated under us reads short: it changed.
fn short_read_is_change(result: Result<(), HashError>) -> Result<(), HashError> {
    match result {
        Err(HashError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Err(HashError::Changed)
        }
        other => other,
    }
}

/// Read every part, in order, into a buffer handed back by the MD5 stage (or a new one while
/// fewer than [`BUFFERS`] exist), and pass it to the SHA-1 stage.
fn read_parts(
    source: &Source,
    (size, part_size): (u64, PartSize),
    (stop, read): (&impl Fn() -> bool, &impl Fn(u64)),
    to_sha: &mpsc::SyncSender<Vec<u8>>,
    freed: &mpsc::Receiver<Vec<u8>>,
) -> Result<(), HashError> {
    let mut allocated = 0;
    for part in plan(size, part_size) {
        if stop() {
            return Err(HashError::Stopped);
        }
        let mut buffer = if allocated < BUFFERS {
            allocated += 1;
            Vec::new()
        } else {
            freed.recv().unwrap_or_default()
        };
        // A reused buffer keeps its bytes (no zeroing per part); it is overwritten in full.
        buffer.resize(part.len as usize, 0);
        source.file().read_exact_at(&mut buffer, part.offset)?;
        read(part.len);
        if to_sha.send(buffer).is_err() {
            break;
        }
    }
    Ok(())
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
    fn a_small_file_keeps_the_bytes_it_was_hashed_from_and_a_larger_one_does_not() {
        let pass = |len: usize| {
            let mut f = tempfile::NamedTempFile::new().unwrap();
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            f.write_all(&bytes).unwrap();
            let d = hash_source(&open(f.path()), PartSize::OneMiB, || false, |_| ()).unwrap();
            assert_eq!(d.sha1, sha1_hex(&bytes));
            (bytes, d.bytes)
        };
        let (bytes, kept) = pass(KEPT as usize);
        assert_eq!(kept.as_deref(), Some(bytes.as_slice()));
        assert_eq!(
            pass(KEPT as usize + 1).1,
            None,
            "one part, but larger than a chunk"
        );
        assert_eq!(pass(3 * 1_048_576).1, None, "several parts");
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
