//! One file's journey: open it once (beneath its watch folder, no symlink) and check it is the
//! file that settled, hash it once through that descriptor, sign, init, send the missing parts,
//! check the descriptor again, finish. A file that changed after it settled is superseded (its
//! new version settles and gets a row of its own); a path that no longer names it is gone; a
//! final error fails this file only.

use super::call::{back_off, Stop, Waited};
use super::{EngineError, Event, Finished, Inner, Outcome};
use crate::hash::{self, HashError};
use crate::ledger::{FileIdentity, FileKey, FileRecord, FileState, RecordedError};
use crate::protocol::plan::plan;
use crate::protocol::{Attempts, CallError, Pace, PartSize, Processing, Signature};
use crate::source::{Source, SourceError};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

/// What the part tasks of a file share: the file as it was opened and hashed, and its signature.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub key: FileKey,
    pub path: PathBuf,
    /// The open file: every part is read from this descriptor, never from the path again.
    pub source: Arc<Source>,
    pub size: u64,
    pub sha: String,
    pub part_size: PartSize,
    pub md5s: Vec<String>,
    pub signature: Signature,
}

impl Job {
    /// Whether the open file is still exactly what was hashed (a writer still at work shows as a
    /// new size or mtime on the descriptor).
    pub fn unchanged(&self) -> bool {
        self.source
            .current()
            .is_ok_and(|now| now == self.source.identity())
    }
}

enum Attempt {
    Ended(Outcome),
    /// The file changed on disk after it settled: this version is superseded.
    Changed,
}

pub(super) async fn upload(
    inner: &Arc<Inner>,
    key: FileKey,
    cancel: &CancellationToken,
) -> Result<Outcome, EngineError> {
    let record = inner
        .ledger
        .run(move |l| l.file(key))
        .await?
        .ok_or(EngineError::UnknownFile(key))?;
    if let Some(outcome) = ended_already(&record) {
        return Ok(outcome);
    }
    let span = info_span!("file", path = %crate::shown::shown(&record.path), fileSha = tracing::field::Empty);
    match attempt(inner, record, cancel).instrument(span).await? {
        Attempt::Ended(outcome) => Ok(outcome),
        Attempt::Changed => {
            let why = "the file changed after it settled (still being written?): \
                       its new version is taken once it settles again";
            set_aside(inner, key, FileState::Superseded, why).await
        }
    }
}

/// How a row that is over already ended.
fn ended_already(record: &FileRecord) -> Option<Outcome> {
    let why = || {
        record
            .error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_else(|| "the file is empty: waiting for content".into())
    };
    match (record.state, &record.error) {
        (FileState::Done, _) => Some(Outcome::Done(finished_from(record))),
        (FileState::Failed, Some(error)) => Some(Outcome::Failed(error.clone())),
        (state @ (FileState::Waiting | FileState::Superseded | FileState::Gone), _) => {
            Some(Outcome::SetAside(state, why()))
        }
        _ => None,
    }
}

fn finished_from(record: &FileRecord) -> Finished {
    Finished {
        file_sha: record.file_sha.clone().unwrap_or_default(),
        file_id: record.file_id.clone().unwrap_or_default(),
        url: record.url.clone(),
        instant: record.instant,
    }
}

fn local_error(message: impl Into<String>) -> RecordedError {
    RecordedError {
        code: 0,
        message: message.into(),
        code_desc: String::new(),
    }
}

pub(super) fn recorded(error: &CallError) -> RecordedError {
    match error.service() {
        Some(s) => RecordedError {
            code: s.code,
            message: s.message.clone(),
            code_desc: s.code_desc.clone(),
        },
        None => RecordedError {
            code: error.code(),
            message: error.to_string(),
            code_desc: String::new(),
        },
    }
}

async fn fail(inner: &Inner, key: FileKey, error: RecordedError) -> Result<Outcome, EngineError> {
    warn!(code = error.code, message = %error.message, code_desc = %error.code_desc, "file failed");
    let stored = error.clone();
    inner.ledger.run(move |l| l.fail(key, &stored)).await?;
    Ok(Outcome::Failed(error))
}

/// This row no longer describes a file to upload: not a failure (no failed folder, no hook).
async fn set_aside(
    inner: &Inner,
    key: FileKey,
    state: FileState,
    why: &str,
) -> Result<Outcome, EngineError> {
    info!(state = state.as_str(), why, "not uploaded");
    let stored = why.to_owned();
    inner
        .ledger
        .run(move |l| l.set_aside(key, state, &stored))
        .await?;
    Ok(Outcome::SetAside(state, why.to_owned()))
}

/// Open the file the row describes, as it settled: beneath its watch folder, no symlink, the
/// same inode and version. Otherwise how the attempt ends.
async fn open(inner: &Inner, record: &FileRecord) -> Result<Result<Source, Outcome>, EngineError> {
    let (path, root) = (record.path.clone(), record.origin.clone());
    let opened = tokio::task::spawn_blocking(move || Source::open(&path, root.as_deref()))
        .await
        .expect("open does not panic");
    let key = record.key;
    let gone = |why: &'static str| set_aside(inner, key, FileState::Gone, why);
    Ok(Err(match opened {
        Ok(source) if record.is(&source.identity()) => return Ok(Ok(source)),
        Ok(source) => changed_since_settled(inner, record, source.identity()).await?,
        Err(SourceError::Gone { .. }) => {
            gone("the file is no longer at its path (moved or deleted before it was uploaded)")
                .await?
        }
        Err(SourceError::NotRegular { .. } | SourceError::Outside { .. }) => gone(
            "its path now names something that is not a regular file (a symlink is never followed)",
        )
        .await?,
        Err(e @ SourceError::Io { .. }) => fail(inner, key, local_error(e.to_string())).await?,
    }))
}

async fn changed_since_settled(
    inner: &Inner,
    record: &FileRecord,
    found: FileIdentity,
) -> Result<Outcome, EngineError> {
    let why = if record.inode.is_some_and(|i| i != found.inode) {
        "the path names another file than the one that settled: that file is taken on its own"
    } else {
        "the file changed after it settled (still being written?): its new version is taken once it settles again"
    };
    set_aside(inner, record.key, FileState::Superseded, why).await
}

async fn attempt(
    inner: &Arc<Inner>,
    record: FileRecord,
    cancel: &CancellationToken,
) -> Result<Attempt, EngineError> {
    let key = record.key;
    inner.ledger.run(move |l| l.begin_attempt(key)).await?;
    let source = match open(inner, &record).await? {
        Ok(source) => Arc::new(source),
        Err(ended) => return Ok(Attempt::Ended(ended)),
    };
    let job = match prepare(inner, &record, &source, cancel).await? {
        Ok(job) => job,
        Err(ended) => return Ok(ended),
    };
    tracing::Span::current().record("fileSha", job.sha.as_str());
    let _one_upload_per_content = inner.contents.lock(&job.sha).await;
    // Another task may have finished this very row while we waited (the same version queued
    // twice): then it is done, not an instant upload.
    if let Some(done) = inner.ledger.run(move |l| l.file(key)).await? {
        if done.state == FileState::Done {
            return Ok(Attempt::Ended(Outcome::Done(finished_from(&done))));
        }
    }
    let processing: Processing = serde_json::from_str(&record.processing).unwrap_or_default();
    Run {
        inner: inner.clone(),
        job,
        processing,
        cancel: cancel.clone(),
    }
    .rounds()
    .await
}

fn end(outcome: Result<Outcome, EngineError>) -> Result<Attempt, EngineError> {
    outcome.map(Attempt::Ended)
}

/// The part hashes of the file at its part size (from the ledger, or from one hashing pass) and
/// its stored signature; or how the attempt ends when hashing could not finish.
async fn prepare(
    inner: &Inner,
    record: &FileRecord,
    source: &Arc<Source>,
    cancel: &CancellationToken,
) -> Result<Result<Job, Attempt>, EngineError> {
    let part_size = PartSize::from_bytes(record.part_size).unwrap_or(inner.part_size);
    let (sha, md5s) = match hashes(inner, record, source, part_size, cancel).await? {
        Ok(found) => found,
        Err(ended) => return Ok(Err(ended)),
    };
    let signature = match inner
        .ledger
        .run({
            let sha = sha.clone();
            move |l| l.signature(&sha)
        })
        .await?
    {
        Some((encoded, expires_at)) => Signature {
            encoded,
            expires_at,
        },
        None => Signature {
            encoded: String::new(),
            expires_at: 0,
        },
    };
    Ok(Ok(Job {
        key: record.key,
        path: record.path.clone(),
        source: source.clone(),
        size: record.size,
        sha,
        part_size,
        md5s,
        signature,
    }))
}

/// The SHA-1 and part MD5s at `part_size`: stored ones if the ledger has them, else hash now.
/// When hashing cannot finish, how the attempt ends: the file changed, shutdown, or a failure.
async fn hashes(
    inner: &Inner,
    record: &FileRecord,
    source: &Arc<Source>,
    part_size: PartSize,
    cancel: &CancellationToken,
) -> Result<Result<(String, Vec<String>), Attempt>, EngineError> {
    let parts = plan(record.size, part_size).len();
    if let Some(sha) = record.file_sha.clone() {
        let ps = part_size.bytes();
        let found = inner
            .ledger
            .run(move |l| l.part_md5s(&sha, ps, parts).map(|m| m.map(|m| (sha, m))))
            .await?;
        if let Some(found) = found {
            return Ok(Ok(found));
        }
    }
    let key = record.key;
    inner
        .ledger
        .run(move |l| l.set_state(key, FileState::Hashing))
        .await?;
    inner
        .progress
        .event(key, &record.path, Event::Hashing { size: record.size });
    let started = std::time::Instant::now();
    let (token, source) = (cancel.clone(), source.clone());
    let digest = tokio::task::spawn_blocking(move || {
        hash::hash_source(&source, part_size, || token.is_cancelled())
    })
    .await
    .expect("hashing does not panic");
    let digest = match digest {
        Ok(d) => d,
        Err(HashError::Changed) => return Ok(Err(Attempt::Changed)),
        Err(HashError::Stopped) => return Ok(Err(Attempt::Ended(Outcome::Stopped))),
        Err(e @ HashError::Io(_)) => {
            let failed = fail(inner, key, local_error(e.to_string())).await?;
            return Ok(Err(Attempt::Ended(failed)));
        }
    };
    info!(fileSha = %digest.sha1, size = digest.size, secs = started.elapsed().as_secs_f64(), "hashed");
    let (sha, md5s) = (digest.sha1.clone(), digest.part_md5s.clone());
    inner
        .ledger
        .run(move |l| l.record_hash(key, &digest.sha1, part_size.bytes(), &digest.part_md5s))
        .await?;
    Ok(Ok((sha, md5s)))
}

/// One attempt at an up-to-date file: rounds of init + parts until finish.
struct Run {
    inner: Arc<Inner>,
    job: Job,
    processing: Processing,
    cancel: CancellationToken,
}

impl Run {
    /// Rounds of init + parts until finish. A round that ends asking for another (a part's
    /// -10005, a finish with parts missing, an expired signature) counts as one failed attempt of
    /// the retry policy and backs off before the next init.
    async fn rounds(mut self) -> Result<Attempt, EngineError> {
        let key = self.job.key;
        let mut force_sign = false;
        let mut attempts = Attempts::new();
        let mut rng = StdRng::from_entropy();
        let mut confirmed_before = 0;
        loop {
            self.ensure_signature(force_sign).await?;
            let step = match self.init().await? {
                Step::Next => self.send_parts().await?,
                other => other,
            };
            let step = match step {
                Step::Next => self.finish().await?,
                other => other,
            };
            let (error, resign) = match step {
                Step::Next => unreachable!("finish ends the attempt"),
                Step::Ended(attempt) => return Ok(attempt),
                Step::Again(error) => (error, false),
                Step::Resign(error) => (error, true),
            };
            force_sign = resign;
            // A round that got parts confirmed was progress: the next trouble starts a fresh
            // count, so a long upload is not failed by errors hours apart.
            let sha = self.job.sha.clone();
            let confirmed = self
                .inner
                .ledger
                .run(move |l| l.confirmed(&sha))
                .await?
                .len();
            if confirmed > confirmed_before {
                attempts = Attempts::new();
            }
            confirmed_before = confirmed;
            info!(error = %error, "init again");
            match back_off(
                &self.inner.retry,
                &mut attempts,
                Pace::Normal,
                &mut rng,
                &self.cancel,
            )
            .await
            {
                Waited::Again => {}
                Waited::Cancelled => return Ok(Attempt::Ended(Outcome::Stopped)),
                Waited::GaveUp => return end(fail(&self.inner, key, recorded(&error)).await),
            }
        }
    }
}

/// Where a step of a round leaves the file.
enum Step {
    /// Go on with the next step of this round.
    Next,
    Ended(Attempt),
    /// Start a new round (init again), after this error.
    Again(CallError),
    /// Start a new round with a new signature.
    Resign(CallError),
}

impl Run {
    async fn ensure_signature(&mut self, force: bool) -> Result<(), EngineError> {
        let job = &mut self.job;
        if !force
            && !job.signature.encoded.is_empty()
            && !job.signature.needs_renewal(crate::clock::unix_now())
        {
            return Ok(());
        }
        job.signature = self
            .inner
            .signer
            .sign(&job.path, &job.sha, &self.processing);
        let (sha, size, ps) = (job.sha.clone(), job.size, job.part_size.bytes());
        let sig = job.signature.clone();
        self.inner
            .ledger
            .run(move |l| l.store_signature(&sha, size, ps, &sig.encoded, sig.expires_at))
            .await?;
        Ok(())
    }

    /// The step after a call that did not succeed; a final error fails the file here.
    async fn stopped(&self, stop: Stop) -> Result<Step, EngineError> {
        Ok(match stop {
            Stop::Reinit(e) => Step::Again(e),
            Stop::Resign(e) => Step::Resign(e),
            Stop::Final(e) => {
                Step::Ended(end(fail(&self.inner, self.job.key, recorded(&e)).await)?)
            }
            Stop::Cancelled => Step::Ended(Attempt::Ended(Outcome::Stopped)),
        })
    }
}

pub(super) mod calls;
