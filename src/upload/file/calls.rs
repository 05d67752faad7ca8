//! The three calls of a round, as steps of [`Run`]: init and its reconciliation, the parts, finish.

use super::{end, fail, hashes, local_error, recorded, Attempt, Run, Step};
use crate::clock::unix_now;
use crate::ledger::FileState;
use crate::protocol::plan::{is_valid_part, missing};
use crate::protocol::{CallError, FinishAnswer, HeldPart, InitAnswer, InitRequest, PartSize};
use crate::upload::call::with_retry;
use crate::upload::parts::{self, RoundEnd};
use crate::upload::{EngineError, Event, Finished, Inner, Outcome};
use std::sync::Arc;
use tracing::{info, warn};

/// The callback of a failed attempt that will be retried: log it and note it in the ledger.
pub(in crate::upload) fn on_retry(
    inner: &Arc<Inner>,
    key: crate::ledger::FileKey,
    offset: Option<u64>,
) -> impl Fn(&CallError, u32) + Send + Sync {
    let (ledger, metrics) = (inner.ledger.clone(), inner.metrics.clone());
    move |error, attempt| {
        warn!(attempt, offset, code = error.code(), error = %error, "retrying");
        match offset {
            Some(_) => metrics.part_retried(error.code()),
            None => metrics.error_now(),
        }
        let (ledger, error) = (ledger.clone(), recorded(error));
        tokio::task::spawn_blocking(move || ledger.note_error(key, &error));
    }
}

impl Run {
    pub(super) async fn init(&mut self) -> Result<Step, EngineError> {
        let inner = self.inner.clone();
        let job = &self.job;
        let answer = with_retry(
            &inner.retry,
            &self.cancel,
            || job.signature.needs_renewal(unix_now()),
            on_retry(&inner, job.key, None),
            || {
                inner.client.init(InitRequest {
                    file_sha: &job.sha,
                    file_size: job.size,
                    part_size: job.part_size.bytes(),
                    signature: &job.signature.encoded,
                })
            },
        )
        .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(stop) => return self.stopped(stop).await,
        };
        match answer {
            InitAnswer::Instant { file_id, url } => {
                info!(fileId = %file_id, "instant upload: the service already has this file");
                self.done(
                    FinishAnswer {
                        file_id,
                        url,
                        verify_content: None,
                    },
                    true,
                )
                .await
            }
            InitAnswer::New => self.reconcile(&[]).await,
            InitAnswer::Resume { part_size, held } => {
                if let Some(bytes) = part_size.filter(|b| *b != self.job.part_size.bytes()) {
                    if let Some(step) = self.switch_part_size(bytes).await? {
                        return Ok(step);
                    }
                }
                self.reconcile(&held).await
            }
        }
    }

    /// The service fixed another part size on an earlier upload: use it (hashing again if needed).
    async fn switch_part_size(&mut self, bytes: u64) -> Result<Option<Step>, EngineError> {
        let key = self.job.key;
        let Some(size) = PartSize::from_bytes(bytes) else {
            let error = local_error(format!("the service imposed an invalid part size {bytes}"));
            return Ok(Some(Step::Ended(end(fail(&self.inner, key, error).await)?)));
        };
        info!(
            part_size = bytes,
            "the service fixed another part size; using it"
        );
        let record = self.inner.ledger.run(move |l| l.file(key)).await?;
        let Some(record) = record else {
            return Err(EngineError::UnknownFile(key));
        };
        let source = self.job.source.clone();
        match hashes(&self.inner, &record, &source, size, &self.cancel).await? {
            Ok((_, md5s)) => {
                self.job.part_size = size;
                self.job.md5s = md5s;
                Ok(None)
            }
            Err(ended) => Ok(Some(Step::Ended(ended))),
        }
    }

    /// The service is the truth: its held parts become the confirmed ones. A listed part that is
    /// not a part of our plan, or whose MD5 is not ours, is not counted (it will be re-sent).
    async fn reconcile(&mut self, held: &[HeldPart]) -> Result<Step, EngineError> {
        let job = &self.job;
        let valid: Vec<(u64, u64)> = held
            .iter()
            .filter(|h| {
                let ok = is_valid_part(job.size, job.part_size, h.offset, h.len)
                    && h.hash.as_deref().is_none_or(|hash| {
                        hash.len() != 32
                            || job.md5s[(h.offset / job.part_size.bytes()) as usize]
                                .eq_ignore_ascii_case(hash)
                    });
                if !ok {
                    warn!(
                        offset = h.offset,
                        len = h.len,
                        "ignoring a held part that is not ours"
                    );
                }
                ok
            })
            .map(|h| (h.offset, h.len))
            .collect();
        let sha = job.sha.clone();
        self.inner
            .ledger
            .run(move |l| l.reconcile(&sha, &valid))
            .await?;
        Ok(Step::Next)
    }

    pub(super) async fn send_parts(&mut self) -> Result<Step, EngineError> {
        let job = &self.job;
        let (key, sha) = (job.key, job.sha.clone());
        let confirmed = self.inner.ledger.run(move |l| l.confirmed(&sha)).await?;
        let todo = missing(job.size, job.part_size, &confirmed);
        let held: u64 = job.size - todo.iter().map(|p| p.len).sum::<u64>();
        info!(
            parts = todo.len(),
            held_bytes = held,
            "uploading missing parts"
        );
        self.inner
            .ledger
            .run(move |l| l.set_state(key, FileState::Uploading))
            .await?;
        let progress = Event::Uploading {
            total: job.size,
            confirmed: held,
        };
        self.inner.progress.event(key, &job.path, progress);
        let end = parts::round(&self.inner, Arc::new(job.clone()), todo, &self.cancel).await?;
        Ok(match end {
            RoundEnd::Complete => Step::Next,
            RoundEnd::Changed => Step::Ended(Attempt::Changed),
            RoundEnd::Cancelled => Step::Ended(Attempt::Ended(Outcome::Stopped)),
            RoundEnd::Reinit(e) => Step::Again(e),
            RoundEnd::Resign(e) => Step::Resign(e),
            RoundEnd::Final(e) => Step::Ended(end_fail(&self.inner, key, &e).await?),
        })
    }

    /// Check the open file is still the one hashed, then finish.
    pub(super) async fn finish(&mut self) -> Result<Step, EngineError> {
        let job = &self.job;
        let unchanged = {
            let job = job.clone();
            tokio::task::spawn_blocking(move || job.unchanged())
                .await
                .expect("fstat does not panic")
        };
        if !unchanged {
            warn!("the file changed after it was hashed: not finishing this version");
            return Ok(Step::Ended(Attempt::Changed));
        }
        let key = job.key;
        self.inner
            .ledger
            .run(move |l| l.set_state(key, FileState::Finishing))
            .await?;
        self.inner.progress.event(key, &job.path, Event::Finishing);
        let inner = self.inner.clone();
        let answer = with_retry(
            &inner.retry,
            &self.cancel,
            || job.signature.needs_renewal(unix_now()),
            on_retry(&inner, key, None),
            || inner.client.finish(&job.sha, &job.signature.encoded),
        )
        .await;
        match answer {
            Ok(answer) => self.done(answer, false).await,
            Err(stop) => self.stopped(stop).await,
        }
    }

    async fn done(&self, answer: FinishAnswer, instant: bool) -> Result<Step, EngineError> {
        let key = self.job.key;
        let finished = Finished {
            file_sha: self.job.sha.clone(),
            file_id: answer.file_id,
            url: answer.url,
            instant,
        };
        let stored = finished.clone();
        self.inner
            .ledger
            .run(move |l| l.finish(key, &stored.file_id, stored.url.as_deref(), instant))
            .await?;
        info!(fileId = %finished.file_id, url = finished.url.as_deref().unwrap_or(""), instant, "done");
        Ok(Step::Ended(Attempt::Ended(Outcome::Done(finished))))
    }
}

async fn end_fail(
    inner: &Inner,
    key: crate::ledger::FileKey,
    e: &CallError,
) -> Result<Attempt, EngineError> {
    end(fail(inner, key, recorded(e)).await)
}
