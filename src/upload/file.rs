//! One file's journey: check it on disk, hash it once, sign, init, send the missing parts, check
//! it again, finish. A file that changes on disk starts over with a new hash; a final error fails
//! this file only.

use super::call::{back_off, Stop, Waited};
use super::{EngineError, Event, Finished, Inner, Outcome};
use crate::hash::{self, HashError};
use crate::ledger::{FileKey, FileRecord, FileState, RecordedError};
use crate::protocol::plan::plan;
use crate::protocol::{Attempts, CallError, Pace, PartSize, Processing, Signature};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

/// Times a file may change under us before it fails.
const MAX_RESTARTS: u32 = 3;

/// What the part tasks of a file share: the file as it was hashed, and its signature.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub key: FileKey,
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
    pub sha: String,
    pub part_size: PartSize,
    pub md5s: Vec<String>,
    pub signature: Signature,
}

enum Attempt {
    Ended(Outcome),
    /// The file changed on disk: start over.
    Changed,
    /// The file changed on disk and its new version has its own ledger row: go on with that one.
    Switched(FileKey),
}

pub(super) async fn upload(
    inner: &Arc<Inner>,
    key: FileKey,
    cancel: &CancellationToken,
) -> Result<Outcome, EngineError> {
    let mut restarts = 0;
    let mut key = key;
    loop {
        let record = inner
            .ledger
            .run(move |l| l.file(key))
            .await?
            .ok_or(EngineError::UnknownFile(key))?;
        match (record.state, &record.error) {
            (FileState::Done, _) => return Ok(Outcome::Done(finished_from(&record))),
            (FileState::Failed, Some(error)) => return Ok(Outcome::Failed(error.clone())),
            _ => {}
        }
        let span =
            info_span!("file", path = %record.path.display(), fileSha = tracing::field::Empty);
        match attempt(inner, record, cancel).instrument(span).await? {
            Attempt::Ended(outcome) => return Ok(outcome),
            Attempt::Switched(newer) => key = newer,
            Attempt::Changed if restarts < MAX_RESTARTS => restarts += 1,
            Attempt::Changed => {
                let error = local_error("the file kept changing while it was uploaded");
                return fail(inner, key, error).await;
            }
        }
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

async fn attempt(
    inner: &Arc<Inner>,
    record: FileRecord,
    cancel: &CancellationToken,
) -> Result<Attempt, EngineError> {
    let key = record.key;
    inner.ledger.run(move |l| l.begin_attempt(key)).await?;
    let path = record.path.clone();
    let stat = tokio::task::spawn_blocking(move || hash::stat(&path))
        .await
        .expect("stat does not panic");
    let (size, mtime_ns) = match stat {
        Ok(found) => found,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return end(fail(inner, key, local_error("the source file vanished")).await)
        }
        Err(e) => return end(fail(inner, key, local_error(format!("cannot stat: {e}"))).await),
    };
    let mut record = record;
    if (size, mtime_ns) != (record.size, record.mtime_ns) {
        info!(size, "file changed since it was queued; hashing it anew");
        let current = inner
            .ledger
            .run(move |l| l.restart_changed(key, size, mtime_ns))
            .await?;
        if current != key {
            return Ok(Attempt::Switched(current));
        }
        (record.size, record.mtime_ns, record.file_sha) = (size, mtime_ns, None);
    }
    if size == 0 {
        return end(fail(
            inner,
            key,
            local_error("the file is empty: nothing to upload"),
        )
        .await);
    }
    let job = match prepare(inner, &record, cancel).await? {
        Ok(job) => job,
        Err(ended) => return Ok(ended),
    };
    tracing::Span::current().record("fileSha", job.sha.as_str());
    let _one_upload_per_content = inner.contents.lock(&job.sha).await;
    // Another task may have finished this very row while we waited (a changed file's newer
    // version queued twice): then it is done, not an instant upload.
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
    cancel: &CancellationToken,
) -> Result<Result<Job, Attempt>, EngineError> {
    let part_size = PartSize::from_bytes(record.part_size).unwrap_or(inner.part_size);
    let (sha, md5s) = match hashes(inner, record, part_size, cancel).await? {
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
        size: record.size,
        mtime_ns: record.mtime_ns,
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
    let path = record.path.clone();
    let started = std::time::Instant::now();
    let token = cancel.clone();
    let digest = tokio::task::spawn_blocking(move || {
        hash::hash_file(&path, part_size, || token.is_cancelled())
    })
    .await
    .expect("hashing does not panic");
    let digest = match digest {
        Ok(d) if (d.size, d.mtime_ns) == (record.size, record.mtime_ns) => d,
        Ok(_) | Err(HashError::Changed { .. }) => return Ok(Err(Attempt::Changed)),
        Err(HashError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Err(Attempt::Changed))
        }
        Err(HashError::Stopped { .. }) => return Ok(Err(Attempt::Ended(Outcome::Stopped))),
        Err(e @ HashError::Io { .. }) => {
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
            && !job.signature.needs_renewal(super::unix_now())
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
