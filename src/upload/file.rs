//! One file's journey: check it on disk, hash it once, sign, init, send the missing parts, check
//! it again, finish. A file that changes on disk starts over with a new hash; a final error fails
//! this file only.

use super::call::Stop;
use super::{EngineError, Event, Finished, Inner, Outcome};
use crate::hash::{self, HashError};
use crate::ledger::{FileKey, FileRecord, FileState, RecordedError};
use crate::protocol::plan::plan;
use crate::protocol::{CallError, PartSize, Processing, Signature};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

/// Times a file may change under us before it fails.
const MAX_RESTARTS: u32 = 3;
/// Init rounds (re-init after -10005, re-sign, finish finding parts missing) before giving up.
const MAX_ROUNDS: u32 = 20;

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
}

pub(super) async fn upload(
    inner: &Arc<Inner>,
    key: FileKey,
    cancel: &CancellationToken,
) -> Result<Outcome, EngineError> {
    let mut restarts = 0;
    loop {
        let record = inner
            .ledger
            .run(move |l| l.file(key))
            .await?
            .ok_or(EngineError::UnknownFile(key))?;
        if record.state == FileState::Done {
            return Ok(Outcome::Done(finished_from(&record)));
        }
        let span =
            info_span!("file", path = %record.path.display(), fileSha = tracing::field::Empty);
        match attempt(inner, record, cancel).instrument(span).await? {
            Attempt::Ended(outcome) => return Ok(outcome),
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
        inner
            .ledger
            .run(move |l| l.restart_changed(key, size, mtime_ns))
            .await?;
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
    let Some(job) = prepare(inner, &record).await? else {
        return Ok(Attempt::Changed);
    };
    tracing::Span::current().record("fileSha", job.sha.as_str());
    let _one_upload_per_content = inner.contents.lock(&job.sha).await;
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

/// The part hashes of the file at its part size: from the ledger, or from one hashing pass.
/// `None` when the file changed while it was hashed.
async fn prepare(inner: &Inner, record: &FileRecord) -> Result<Option<Job>, EngineError> {
    let part_size = PartSize::from_bytes(record.part_size).unwrap_or(inner.part_size);
    let (sha, md5s) = match hashes(inner, record, part_size).await? {
        Some(found) => found,
        None => return Ok(None),
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
    Ok(Some(Job {
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
pub(super) async fn hashes(
    inner: &Inner,
    record: &FileRecord,
    part_size: PartSize,
) -> Result<Option<(String, Vec<String>)>, EngineError> {
    let parts = plan(record.size, part_size).len();
    if let Some(sha) = record.file_sha.clone() {
        let ps = part_size.bytes();
        let found = inner
            .ledger
            .run(move |l| l.part_md5s(&sha, ps, parts).map(|m| m.map(|m| (sha, m))))
            .await?;
        if found.is_some() {
            return Ok(found);
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
    let digest = tokio::task::spawn_blocking(move || hash::hash_file(&path, part_size))
        .await
        .expect("hashing does not panic");
    let digest = match digest {
        Ok(d) if (d.size, d.mtime_ns) == (record.size, record.mtime_ns) => d,
        Ok(_) | Err(HashError::Changed { .. }) => return Ok(None),
        Err(HashError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(e) => {
            fail(inner, key, local_error(e.to_string())).await?;
            return Ok(None);
        }
    };
    info!(fileSha = %digest.sha1, size = digest.size, secs = started.elapsed().as_secs_f64(), "hashed");
    let (sha, md5s) = (digest.sha1.clone(), digest.part_md5s.clone());
    inner
        .ledger
        .run(move |l| l.record_hash(key, &digest.sha1, part_size.bytes(), &digest.part_md5s))
        .await?;
    Ok(Some((sha, md5s)))
}

/// One attempt at an up-to-date file: rounds of init + parts until finish.
struct Run {
    inner: Arc<Inner>,
    job: Job,
    processing: Processing,
    cancel: CancellationToken,
}

impl Run {
    async fn rounds(mut self) -> Result<Attempt, EngineError> {
        let key = self.job.key;
        let mut force_sign = false;
        let mut last_error = None;
        for _ in 0..MAX_ROUNDS {
            self.ensure_signature(force_sign).await?;
            force_sign = false;
            let step = match self.init().await? {
                Step::Next => self.send_parts().await?,
                other => other,
            };
            let step = match step {
                Step::Next => self.finish().await?,
                other => other,
            };
            match step {
                Step::Next => unreachable!("finish ends the attempt"),
                Step::Ended(attempt) => return Ok(attempt),
                Step::Again(error) => last_error = error,
                Step::Resign(error) => (force_sign, last_error) = (true, Some(error)),
            }
        }
        let error = last_error
            .as_ref()
            .map(recorded)
            .unwrap_or_else(|| local_error("too many init rounds"));
        end(fail(&self.inner, key, error).await)
    }
}

/// Where a step of a round leaves the file.
enum Step {
    /// Go on with the next step of this round.
    Next,
    Ended(Attempt),
    /// Start a new round (init again), after this error if any.
    Again(Option<CallError>),
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
            Stop::Reinit(e) => Step::Again(Some(e)),
            Stop::Resign(e) => Step::Resign(e),
            Stop::Final(e) => {
                Step::Ended(end(fail(&self.inner, self.job.key, recorded(&e)).await)?)
            }
            Stop::Cancelled => Step::Ended(Attempt::Ended(Outcome::Stopped)),
        })
    }
}

pub(super) mod calls;
