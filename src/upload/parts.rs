//! One round of parts for one file: every missing part is read through the open descriptor,
//! checked against its stored MD5, sent with retries, and recorded as confirmed only after the
//! service answered code 0.
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
use std::sync::Arc;
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

/// Read, check and send one part; confirm it in the ledger once the service said so.
async fn send(
    inner: Arc<Inner>,
    job: Arc<Job>,
    part: Part,
    _permit: OwnedSemaphorePermit,
    round: CancellationToken,
) -> PartEnd {
    let _in_flight = inner.metrics.part_started();
    let body = read_part(&job, part).await.ok_or(Interrupt::Changed(
        "a part read back no longer matches its hash: the file changed after it was hashed",
    ))?;
    let md5 = &job.md5s[part.index as usize];
    debug!(offset = part.offset, len = part.len, "sending part");
    let what = Retried {
        key: job.key,
        offset: Some(part.offset),
    };
    with_retry(
        &inner,
        what,
        &round,
        || job.signature_stale(),
        || {
            let request = PartRequest {
                file_sha: &job.sha,
                offset: part.offset,
                data_size: part.len,
                data_md5: md5,
                signature: job.signature_text(),
            };
            let (inner, body) = (&inner, body.clone());
            async move {
                inner.throttle.acquire(part.len).await;
                inner.client.upload_part(request, body).await
            }
        },
    )
    .await?;
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

/// The part's bytes from the open file, or `None` if they are no longer the bytes that were
/// hashed (the file was truncated or rewritten in place).
async fn read_part(job: &Arc<Job>, part: Part) -> Option<Bytes> {
    let job = job.clone();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; part.len as usize];
        job.source
            .file()
            .read_exact_at(&mut buf, part.offset)
            .ok()?;
        (md5_hex(&buf) == job.md5s[part.index as usize]).then(|| Bytes::from(buf))
    })
    .await
    .expect("reading a part does not panic")
}
