//! The MD5s of part bodies, several at once. Parts arrive on many connections together; each
//! body is queued to one thread that hashes whatever is waiting in one multi-buffer pass
//! (md5-simd, up to [`LANES`] bodies side by side: vodup's own fast path, [`crate::hash::md5_many`]),
//! so the emulator verifies parts at several times the pace of one MD5 stream and loopback
//! figures measure vodup, not the emulator. Fewer than [`SIMD_MIN`] bodies are hashed one by one,
//! so when other bodies are still arriving (each part counts as [`Coming`] from its admission until
//! its body is queued) the thread waits for them, at most [`GATHER`]; a body alone, with none on
//! its way, is hashed at once. A small body (at most [`INLINE`]) is hashed where it arrives: a trip
//! to the thread and back would cost more than hashing it, and a burst of small files is all trips.
//! The buffers a body is joined into for the thread are used again, up to [`SPARE`] of them: a
//! fresh one per part was page faults and zeroed pages.

use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Bodies hashed in one pass, at most.
const LANES: usize = 8;
/// Bodies up to this long are hashed on the task that received them.
pub const INLINE: usize = 256 * 1024;
/// The fewest bodies md5-simd hashes side by side (fewer go one by one, at the pace of one MD5).
const SIMD_MIN: usize = 4;
/// How long the thread waits for bodies still arriving to make up a multi-buffer pass.
const GATHER: Duration = Duration::from_millis(2);
/// Joined-body buffers kept for the next parts.
const SPARE: usize = 16;

type Job = (Vec<u8>, oneshot::Sender<String>);

/// The queue to the MD5 thread; the thread ends once the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Md5Lanes {
    queue: mpsc::Sender<Job>,
    /// Bodies on their way to the thread: admitted, not queued yet.
    coming: Arc<AtomicUsize>,
    /// Buffers the thread is done with.
    spare: Spare,
}

type Spare = Arc<Mutex<Vec<Vec<u8>>>>;

/// A body that will come to the MD5 thread, counted from its part's admission until it is queued
/// (or its request ends without it).
#[derive(Debug)]
pub struct Coming(Option<Arc<AtomicUsize>>);

impl Drop for Coming {
    fn drop(&mut self) {
        if let Some(coming) = &self.0 {
            coming.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Md5Lanes {
    pub fn start() -> Md5Lanes {
        let (queue, jobs) = mpsc::channel::<Job>();
        let coming = Arc::new(AtomicUsize::new(0));
        let counted = coming.clone();
        let spare = Spare::default();
        let returned = spare.clone();
        std::thread::Builder::new()
            .name("emulator-md5".into())
            .spawn(move || serve(&jobs, &counted, &returned))
            .expect("the MD5 thread starts");
        Md5Lanes {
            queue,
            coming,
            spare,
        }
    }

    /// A body of `len` bytes is about to be read: if it will be hashed on the thread, the thread
    /// knows to wait for it.
    pub fn coming(&self, len: u64) -> Coming {
        if len <= INLINE as u64 {
            return Coming(None);
        }
        self.coming.fetch_add(1, Ordering::SeqCst);
        Coming(Some(self.coming.clone()))
    }

    /// The MD5 of a body held as chunks, lowercase hex.
    pub async fn md5(&self, chunks: &[Bytes], coming: Coming) -> String {
        if chunks.iter().map(Bytes::len).sum::<usize>() <= INLINE {
            use md5::Digest as _;
            let mut md5 = md5::Md5::new();
            chunks.iter().for_each(|chunk| md5.update(chunk));
            return hex::encode(md5.finalize());
        }
        let mut body = lock(&self.spare).pop().unwrap_or_default();
        body.clear();
        body.reserve(chunks.iter().map(Bytes::len).sum());
        chunks
            .iter()
            .for_each(|chunk| body.extend_from_slice(chunk));
        let (answer, answered) = oneshot::channel();
        if self.queue.send((body, answer)).is_err() {
            unreachable!("the MD5 thread lives as long as its queue");
        }
        drop(coming);
        answered.await.expect("the MD5 thread answers every body")
    }
}

fn lock(spare: &Spare) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
    spare.lock().unwrap_or_else(|p| p.into_inner())
}

fn serve(jobs: &mpsc::Receiver<Job>, coming: &AtomicUsize, spare: &Spare) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        let until = Instant::now() + GATHER;
        while batch.len() < LANES {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => {
                    // Wait only for bodies that make up a multi-buffer pass.
                    let on_the_way = coming.load(Ordering::SeqCst);
                    let left = until.saturating_duration_since(Instant::now());
                    if batch.len() >= SIMD_MIN
                        || batch.len() + on_the_way < SIMD_MIN
                        || left.is_zero()
                    {
                        break;
                    }
                    match jobs.recv_timeout(left.min(Duration::from_micros(100))) {
                        Ok(job) => batch.push(job),
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
            }
        }
        let bodies: Vec<&[u8]> = batch.iter().map(|(body, _)| body.as_slice()).collect();
        let digests = crate::hash::md5_many(&bodies);
        let mut spare = lock(spare);
        for ((body, answer), digest) in batch.into_iter().zip(digests) {
            let _ = answer.send(digest);
            if spare.len() < SPARE {
                spare.push(body);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies queued together (hashed in one multi-buffer pass) and small ones hashed where they
    /// arrive each get their own MD5, equal to the reference's, whatever their lengths and
    /// chunking.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bodies_hashed_together_each_get_the_reference_md5() {
        let lanes = Md5Lanes::start();
        let lengths = (0..40u32).map(|i| (i * 99_991 % 700_000) as usize);
        let edges = [INLINE - 1, INLINE, INLINE + 1];
        let bodies: Vec<Vec<u8>> = lengths
            .chain(edges)
            .enumerate()
            .map(|(i, len)| (0..len).map(|b| (b * 31 + i) as u8).collect())
            .collect();
        let digests = futures::future::join_all(bodies.iter().map(|body| {
            let lanes = lanes.clone();
            let chunks: Vec<Bytes> = body.chunks(4096).map(Bytes::copy_from_slice).collect();
            let coming = lanes.coming(body.len() as u64);
            async move { lanes.md5(&chunks, coming).await }
        }))
        .await;
        for (body, digest) in bodies.iter().zip(digests) {
            assert_eq!(digest, crate::hash::md5_hex(body));
        }
        let queued = bodies.iter().filter(|b| b.len() > INLINE).count();
        assert!(
            queued > 10 && queued < 30,
            "the lengths span both ways: {queued} queued"
        );
    }
}
