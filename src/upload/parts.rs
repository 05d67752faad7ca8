//! One round of parts for one file: every missing part streams from the open descriptor (whose
//! identity is checked first), is sent with retries, and is recorded as confirmed only after the
//! service answered code 0. A -10006 answer re-hashes that part (see [`send`]).
//!
//! Confirmations are written to the ledger in batches, at most one write per file per
//! [`CONFIRM_EVERY`] and one at the end of the round, so a fleet's shared ledger carries one write
//! per file per second, not one per part. A batch lost to a crash costs nothing but a re-check:
//! the next init lists the parts the service holds, and that list is the truth.
//!
//! A permit of the engine-wide semaphore is taken *before* a part is read, and held until its
//! answer is recorded, so parts in flight never exceed `parts_in_flight` across all files; each
//! holds a chunk or two in memory, not a whole part. Tokio's semaphore is fair, so files interleave instead of queueing. The
//! round ends with the worst [`Interrupt`] of its parts (by [`Interrupt::rank`]), if any.

use super::call::{with_retry, Retried};
use super::job::{Interrupt, Job};
use super::window::Slot;
use super::{Event, Inner};
use crate::ledger::FileState;
use crate::protocol::{Part, PartBody, PartRequest};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Instrument as _};

type PartEnd = Result<(), Interrupt>;

const CHANGED: &str = "the file changed after it was hashed";

/// How often a file's confirmed parts are written to the ledger while its parts go up.
const CONFIRM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Parts the service confirmed that the ledger does not record yet.
type Confirmed = Arc<std::sync::Mutex<Vec<(u64, u64)>>>;

/// Write the confirmed parts gathered so far, in one write under the file's claim.
async fn record_confirmed(inner: &Inner, job: &Job, confirmed: &Confirmed) -> PartEnd {
    let batch = std::mem::take(&mut *confirmed.lock().unwrap_or_else(|p| p.into_inner()));
    if !batch.is_empty() {
        debug!(parts = batch.len(), "recording confirmed parts");
        inner
            .ledger
            .confirm_parts(job.claim, &job.upload(), batch, None)
            .await?;
    }
    Ok(())
}

/// Every part went up: if the open file still holds the content hashed, write the last confirmed parts
/// and the `Finishing` state in one write (fenced like every write, so a node that lost the file
/// never goes on to finish it); if it changed, write the parts and say so.
async fn ready_to_finish(inner: &Inner, job: &Arc<Job>, confirmed: &Confirmed) -> PartEnd {
    if !blocking(job, |job| job.still_hashed()).await {
        warn!("the file changed after it was hashed: not finishing this version");
        record_confirmed(inner, job, confirmed).await?;
        return Err(Interrupt::Changed(CHANGED));
    }
    let batch = std::mem::take(&mut *confirmed.lock().unwrap_or_else(|p| p.into_inner()));
    let finishing = Some(FileState::Finishing);
    inner
        .ledger
        .confirm_parts(job.claim, &job.upload(), batch, finishing)
        .await?;
    Ok(())
}

/// Send `todo` concurrently. Returns when every spawned part has ended; when all went up, the
/// file is checked and marked `Finishing` (see [`ready_to_finish`]).
pub(super) async fn round(
    inner: &Arc<Inner>,
    job: Arc<Job>,
    todo: Vec<Part>,
    cancel: &CancellationToken,
) -> Result<(), Interrupt> {
    let round = cancel.child_token();
    let mut tasks: JoinSet<PartEnd> = JoinSet::new();
    let mut end = Ok(());
    let mut queue = todo.into_iter().peekable();
    let confirmed = Confirmed::default();
    let mut record =
        tokio::time::interval_at(tokio::time::Instant::now() + CONFIRM_EVERY, CONFIRM_EVERY);
    record.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while queue.peek().is_some() && !round.is_cancelled() {
        tokio::select! {
            biased;
            () = round.cancelled() => {}
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                end = worse(end, settle(joined.expect("part task does not panic"), cancel));
                stop_if_needed(&end, &round, &mut tasks);
            }
            _ = record.tick() => {
                end = worse(end, record_confirmed(inner, &job, &confirmed).await);
                stop_if_needed(&end, &round, &mut tasks);
            }
            slot = inner.window.slot() => {
                let part = queue.next().expect("peeked");
                let sent = confirmed.clone();
                let task = send(inner.clone(), job.clone(), part, slot, round.clone(), sent);
                tasks.spawn(task.in_current_span());
            }
        }
    }
    if queue.peek().is_some() && cancel.is_cancelled() {
        end = worse(end, Err(Interrupt::Stopped));
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(part) => {
                end = worse(end, settle(part, cancel));
                stop_if_needed(&end, &round, &mut tasks);
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => panic!("part task panicked: {e}"),
        }
    }
    match end {
        Ok(()) => ready_to_finish(inner, &job, &confirmed).await,
        Err(_) => worse(end, record_confirmed(inner, &job, &confirmed).await),
    }
}

/// Keep the worse of two ends.
fn worse(a: PartEnd, b: PartEnd) -> PartEnd {
    match (&a, &b) {
        (_, Ok(())) => a,
        (Ok(()), _) => b,
        (Err(x), Err(y)) if y.rank() > x.rank() => b,
        _ => a,
    }
}

/// Any interruption means no new part (or retry) is worth sending in this round: parts in
/// flight finish (they may well be confirmed), unless the file is lost anyway.
fn stop_if_needed(end: &PartEnd, round: &CancellationToken, tasks: &mut JoinSet<PartEnd>) {
    if let Err(interrupt) = end {
        round.cancel();
        if interrupt.aborts_round() {
            tasks.abort_all();
        }
    }
}

/// A part stopped by the round itself (not by shutdown) says nothing about the round.
fn settle(end: PartEnd, shutdown: &CancellationToken) -> PartEnd {
    match end {
        Err(Interrupt::Stopped) if !shutdown.is_cancelled() => Ok(()),
        other => other,
    }
}

/// Check the file, then send one part, read from the file as it goes out; confirm it in the
/// ledger once the service said so.
///
/// Each byte is hashed once, by the hashing pass: the part is not hashed again before it is sent,
/// and it is never held whole in memory (it streams in [`CHUNK`]s), so memory does not grow with
/// `parts_in_flight`; a file of at most one chunk goes from the bytes the pass hashed. A file
/// changed in place is caught by the descriptor's identity (size, mtime) before the part, by
/// the check before finishing, and by the service itself: a -10006 answer (body and `dataMd5`
/// differ) re-hashes this one part from the file. If it differs from the hashing pass, the file
/// changed; if not, the bytes were damaged on the way and the part is sent again.
async fn send(
    inner: Arc<Inner>,
    job: Arc<Job>,
    part: Part,
    _slot: Slot,
    round: CancellationToken,
    confirmed: Confirmed,
) -> PartEnd {
    let _in_flight = inner.metrics.part_started();
    let first = match job.kept(part) {
        // A small file's one part, as hashed: no read, and no trip off the async workers.
        Some(bytes) => Ok(bytes),
        None => {
            // The identity check and the first chunk's read in one trip off the async workers.
            let checked = blocking(&job, move |job| {
                job.unchanged().then(|| read_chunk(job, part, 0))
            });
            let Some(first) = checked.await else {
                return Err(Interrupt::Changed(CHANGED));
            };
            first
        }
    };
    debug!(offset = part.offset, len = part.len, "sending part");
    let what = Retried {
        claim: job.claim,
        offset: Some(part.offset),
    };
    let attempt = Attempt {
        inner: &inner,
        job: &job,
        part,
        first: std::sync::Mutex::new(Some(first)),
        changed: AtomicBool::new(false),
        this_part: round.child_token(),
        sent: std::sync::Mutex::new(tokio::time::Instant::now()),
    };
    let stale = || job.signature_stale();
    let sent = with_retry(&inner, what, &attempt.this_part, stale, || attempt.once()).await;
    if attempt.changed.load(Ordering::SeqCst) {
        return Err(Interrupt::Changed(CHANGED));
    }
    sent?;
    confirmed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((part.offset, part.len));
    debug!(offset = part.offset, "part confirmed");
    inner.metrics.part_confirmed(part.len);
    let sent = *attempt.sent.lock().unwrap_or_else(|p| p.into_inner());
    inner.window.confirmed(part.len, sent);
    inner.metrics.set_parts_window(inner.window.limit());
    let event = Event::PartConfirmed { len: part.len };
    inner.progress.event(job.claim.key, &job.path, event);
    Ok(())
}

/// What the attempts at one part share.
struct Attempt<'a> {
    inner: &'a Inner,
    job: &'a Arc<Job>,
    part: Part,
    /// The chunk read with the identity check, for the first attempt (a retry reads it again).
    first: std::sync::Mutex<Option<std::io::Result<Bytes>>>,
    /// Set when the file turned out changed: the part stops (`this_part` is cancelled).
    changed: AtomicBool,
    this_part: CancellationToken,
    /// When the last attempt went out, for the window's latency (not a retry's back-off).
    sent: std::sync::Mutex<tokio::time::Instant>,
}

impl Attempt<'_> {
    /// Send the part once; before a retry, make sure the file is still the one hashed (after a
    /// -10006, re-hash this part).
    async fn once(&self) -> Result<(), crate::protocol::CallError> {
        let (inner, job, part) = (self.inner, self.job, self.part);
        let request = PartRequest {
            file_sha: &job.sha,
            offset: part.offset,
            data_size: part.len,
            data_md5: &job.md5s[part.index as usize],
            signature: job.signature_text(),
        };
        let head = self.first.lock().unwrap_or_else(|p| p.into_inner()).take();
        let body = PartBody::streamed(part.len, chunks(job.clone(), part, head));
        inner.throttle.acquire(part.len).await;
        *self.sent.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
        let answer = job.account.client.upload_part(request, body).await;
        if let Err(error) = &answer {
            let mismatch = error.is_body_mismatch();
            let still = blocking(job, move |job| match mismatch {
                true => matches_its_hash(job, part),
                false => job.unchanged(),
            });
            if !still.await {
                self.changed.store(true, Ordering::SeqCst);
                self.this_part.cancel();
            }
        }
        answer
    }
}

/// How much of a part is read from the file at a time as it is sent.
const CHUNK: u64 = crate::hash::KEPT;

/// The part's bytes, read from the open file chunk by chunk as the body is sent, starting with
/// `head` (its first chunk, already read) if given.
fn chunks(
    job: Arc<Job>,
    part: Part,
    head: Option<std::io::Result<Bytes>>,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures::stream::try_unfold((0u64, head), move |(sent, head)| {
        let job = job.clone();
        async move {
            if sent >= part.len {
                return Ok(None);
            }
            let chunk = match head {
                Some(chunk) => chunk?,
                None => blocking(&job, move |job| read_chunk(job, part, sent)).await?,
            };
            let next = sent + chunk.len() as u64;
            Ok(Some((chunk, (next, None))))
        }
    })
}

/// The chunk of `part` that starts `sent` bytes in. Blocking. Read into fresh, uninitialised
/// memory (the kernel fills it; zeroing it first cost 3-4 % of an upload's CPU).
fn read_chunk(job: &Job, part: Part, sent: u64) -> std::io::Result<Bytes> {
    use rustix::buffer::spare_capacity;
    let len = CHUNK.min(part.len.saturating_sub(sent)) as usize;
    let at = part.offset + sent;
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let from = at + buf.len() as u64;
        let read = rustix::io::pread(job.source.file(), spare_capacity(&mut buf), from);
        match read {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(len); // the allocation, so the read, may have been larger than asked
    Ok(Bytes::from(buf))
}

/// Whether the part's bytes in the file now have the hashing pass's MD5 (read in chunks).
fn matches_its_hash(job: &Job, part: Part) -> bool {
    use md5::{Digest as _, Md5};
    use std::os::unix::fs::FileExt;
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; CHUNK as usize];
    let mut done = 0;
    while done < part.len {
        let len = CHUNK.min(part.len - done) as usize;
        if job
            .source
            .file()
            .read_exact_at(&mut buf[..len], part.offset + done)
            .is_err()
        {
            return false;
        }
        md5.update(&buf[..len]);
        done += len as u64;
    }
    job.unchanged() && hex::encode(md5.finalize()) == job.md5s[part.index as usize]
}

/// Run `f` on the job on the blocking pool (file reads and `fstat`).
async fn blocking<T: Send + 'static>(
    job: &Arc<Job>,
    f: impl FnOnce(&Job) -> T + Send + 'static,
) -> T {
    let job = job.clone();
    tokio::task::spawn_blocking(move || f(&job))
        .await
        .expect("file work does not panic")
}
