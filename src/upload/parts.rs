//! One round of parts for one file: every missing part is read through the open descriptor
//! (whose identity is checked first), sent with retries, and recorded as confirmed only after the
//! service answered code 0. A -10006 answer re-hashes that part (see [`send`]).
//!
//! A permit of the engine-wide semaphore is taken *before* a part is read, and held until its
//! answer is recorded, so parts in flight (and their buffers) never exceed `parts_in_flight`
//! across all files. Tokio's semaphore is fair, so files interleave instead of queueing. The
//! round ends with the worst [`Interrupt`] of its parts (by [`Interrupt::rank`]), if any.

use super::call::{with_retry, Retried};
use super::job::{Interrupt, Job};
use super::{Event, Inner};
use crate::hash::md5_hex;
use crate::protocol::{Part, PartRequest};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, Instrument as _};

type PartEnd = Result<(), Interrupt>;

/// Send `todo` concurrently. Returns when every spawned part has ended.
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
    while queue.peek().is_some() && !round.is_cancelled() {
        tokio::select! {
            biased;
            () = round.cancelled() => {}
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                end = worse(end, settle(joined.expect("part task does not panic"), cancel));
                stop_if_needed(&end, &round, &mut tasks);
            }
            permit = inner.permits.clone().acquire_owned() => {
                let permit = permit.expect("the semaphore is never closed");
                let part = queue.next().expect("peeked");
                let task = send(inner.clone(), job.clone(), part, permit, round.clone());
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
    end
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

/// Check the file, read and send one part; confirm it in the ledger once the service said so.
///
/// Each byte is hashed once, by the hashing pass: the part is not hashed again before it is sent.
/// A file changed in place is caught by the descriptor's identity (size, mtime) before the read,
/// and by the service itself: a -10006 answer (body and `dataMd5` differ) re-reads and re-hashes
/// this one part. If it differs from the hashing pass, the file changed; if not, the bytes were
/// damaged on the way, and the fresh copy is sent again.
async fn send(
    inner: Arc<Inner>,
    job: Arc<Job>,
    part: Part,
    _permit: OwnedSemaphorePermit,
    round: CancellationToken,
) -> PartEnd {
    const CHANGED: &str = "the file changed after it was hashed";
    let _in_flight = inner.metrics.part_started();
    let body = read_part(&job, part, false)
        .await
        .ok_or(Interrupt::Changed(CHANGED))?;
    let md5 = &job.md5s[part.index as usize];
    debug!(offset = part.offset, len = part.len, "sending part");
    let what = Retried {
        key: job.key,
        offset: Some(part.offset),
    };
    let (body, changed, this_part) = (
        Mutex::new(body),
        AtomicBool::new(false),
        round.child_token(),
    );
    let sent = with_retry(
        &inner,
        what,
        &this_part,
        || job.signature_stale(),
        || {
            let request = PartRequest {
                file_sha: &job.sha,
                offset: part.offset,
                data_size: part.len,
                data_md5: md5,
                signature: job.signature_text(),
            };
            let sending = body.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let (inner, job, body, changed, this_part) =
                (&inner, &job, &body, &changed, &this_part);
            async move {
                inner.throttle.acquire(part.len).await;
                let answer = inner.client.upload_part(request, sending).await;
                if answer.as_ref().is_err_and(|e| e.is_body_mismatch()) {
                    match read_part(job, part, true).await {
                        Some(fresh) => *body.lock().unwrap_or_else(|p| p.into_inner()) = fresh,
                        None => {
                            changed.store(true, Ordering::SeqCst);
                            this_part.cancel();
                        }
                    }
                }
                answer
            }
        },
    )
    .await;
    if changed.load(Ordering::SeqCst) {
        return Err(Interrupt::Changed(CHANGED));
    }
    sent?;
    let sha = job.sha.clone();
    inner
        .ledger
        .run(move |l| l.confirm_part(&sha, part.offset, part.len))
        .await?;
    debug!(offset = part.offset, "part confirmed");
    inner.metrics.part_confirmed(part.len);
    let event = Event::PartConfirmed { len: part.len };
    inner.progress.event(job.key, &job.path, event);
    Ok(())
}

/// The part's bytes from the open file, or `None` if the file is no longer the one hashed: its
/// identity moved, or (when `verify`) the bytes' MD5 is not the hashing pass's.
async fn read_part(job: &Arc<Job>, part: Part, verify: bool) -> Option<Bytes> {
    let job = job.clone();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        if !job.unchanged() {
            return None;
        }
        let mut buf = vec![0u8; part.len as usize];
        job.source
            .file()
            .read_exact_at(&mut buf, part.offset)
            .ok()?;
        let hashed = &job.md5s[part.index as usize];
        (!verify || md5_hex(&buf) == *hashed).then(|| Bytes::from(buf))
    })
    .await
    .expect("reading a part does not panic")
}
