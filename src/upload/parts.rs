//! One round of parts for one file: every missing part is read, checked against its stored MD5,
//! sent with retries, and recorded as confirmed only after the service answered code 0.
//!
//! A permit of the engine-wide semaphore is taken *before* a part is read, and held until its
//! answer is recorded, so parts in flight (and their buffers) never exceed `parts_in_flight`
//! across all files. Tokio's semaphore is fair, so files interleave instead of queueing.

use super::call::{with_retry, Stop};
use super::file::calls::on_retry;
use super::file::Job;
use super::{EngineError, Event, Inner};
use crate::clock::unix_now;
use crate::hash::md5_hex;
use crate::protocol::{CallError, Part, PartRequest};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, Instrument as _};

/// How a round ended, worst outcome first in precedence.
#[derive(Debug)]
pub enum RoundEnd {
    /// Every part of the round is confirmed.
    Complete,
    /// A part run re-init (e.g. -10005): init again, reconcile, send what is still missing.
    Reinit(CallError),
    /// The signature expired: sign again, init again.
    Resign(CallError),
    /// Shutdown: parts not sent stay unconfirmed and resume on the next start.
    Cancelled,
    /// A part failed for good: the file fails.
    Final(CallError),
    /// The bytes on disk no longer match what was hashed.
    Changed,
}

impl RoundEnd {
    fn rank(&self) -> u8 {
        match self {
            RoundEnd::Complete => 0,
            RoundEnd::Reinit(_) => 1,
            RoundEnd::Resign(_) => 2,
            RoundEnd::Cancelled => 3,
            RoundEnd::Final(_) => 4,
            RoundEnd::Changed => 5,
        }
    }

    /// Keep the worse of two ends.
    fn merge(self, other: RoundEnd) -> RoundEnd {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    /// Whether parts in flight are pointless too (the file fails or starts over).
    fn aborts_round(&self) -> bool {
        matches!(self, RoundEnd::Final(_) | RoundEnd::Changed)
    }
}

/// Send `todo` concurrently. Returns when every spawned part has ended.
pub(super) async fn round(
    inner: &Arc<Inner>,
    job: Arc<Job>,
    todo: Vec<Part>,
    cancel: &CancellationToken,
) -> Result<RoundEnd, EngineError> {
    let round = cancel.child_token();
    let mut tasks: JoinSet<Result<RoundEnd, EngineError>> = JoinSet::new();
    let mut end = RoundEnd::Complete;
    let mut queue = todo.into_iter().peekable();
    while queue.peek().is_some() && !round.is_cancelled() {
        tokio::select! {
            biased;
            () = round.cancelled() => {}
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                end = end.merge(settle(joined.expect("part task does not panic")?, cancel));
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
        end = end.merge(RoundEnd::Cancelled);
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => {
                end = end.merge(settle(result?, cancel));
                stop_if_needed(&end, &round, &mut tasks);
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => panic!("part task panicked: {e}"),
        }
    }
    Ok(end)
}

/// Any end but Complete means no new part (or retry) is worth sending in this round: parts in
/// flight finish (they may well be confirmed), unless the file is lost anyway.
fn stop_if_needed(
    end: &RoundEnd,
    round: &CancellationToken,
    tasks: &mut JoinSet<Result<RoundEnd, EngineError>>,
) {
    if !matches!(end, RoundEnd::Complete) {
        round.cancel();
    }
    if end.aborts_round() {
        tasks.abort_all();
    }
}

/// A part stopped by the round itself (not by shutdown) says nothing about the round.
fn settle(end: RoundEnd, shutdown: &CancellationToken) -> RoundEnd {
    match end {
        RoundEnd::Cancelled if !shutdown.is_cancelled() => RoundEnd::Complete,
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
) -> Result<RoundEnd, EngineError> {
    let _in_flight = inner.metrics.part_started();
    let Some(body) = read_part(&job, part).await else {
        return Ok(RoundEnd::Changed);
    };
    let md5 = &job.md5s[part.index as usize];
    debug!(offset = part.offset, len = part.len, "sending part");
    let sent = with_retry(
        &inner.retry,
        &round,
        || job.signature.needs_renewal(unix_now()),
        on_retry(&inner, job.key, Some(part.offset)),
        || {
            let request = PartRequest {
                file_sha: &job.sha,
                offset: part.offset,
                data_size: part.len,
                data_md5: md5,
                signature: &job.signature.encoded,
            };
            let (inner, body) = (&inner, body.clone());
            async move {
                inner.throttle.acquire(part.len).await;
                inner.client.upload_part(request, body).await
            }
        },
    )
    .await;
    Ok(match sent {
        Ok(()) => {
            let sha = job.sha.clone();
            inner
                .ledger
                .run(move |l| l.confirm_part(&sha, part.offset, part.len))
                .await?;
            debug!(offset = part.offset, "part confirmed");
            inner.metrics.part_confirmed(part.len);
            let event = Event::PartConfirmed { len: part.len };
            inner.progress.event(job.key, &job.path, event);
            RoundEnd::Complete
        }
        Err(Stop::Reinit(e)) => RoundEnd::Reinit(e),
        Err(Stop::Resign(e)) => RoundEnd::Resign(e),
        Err(Stop::Final(e)) => {
            inner.metrics.part_failed(e.code());
            RoundEnd::Final(e)
        }
        Err(Stop::Cancelled) => RoundEnd::Cancelled,
    })
}

/// The part's bytes, or `None` if they are no longer the bytes that were hashed (the file was
/// truncated, replaced, or rewritten in place).
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
