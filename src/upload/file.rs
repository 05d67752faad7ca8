//! One file's journey, top to bottom: open it once (beneath its watch folder, no symlink) and
//! check it is the file that settled; hash it once through that descriptor; sign; init and
//! reconcile with the parts the service holds; send the missing parts; check the descriptor
//! again; finish.
//!
//! Every step returns `Result<_, Interrupt>` and is chained with `?`. Two places decide what an
//! interruption means: [`Journey::rounds`] (re-init or re-sign after a backoff) and [`conclude`]
//! (everything else: done, stopped, superseded, gone, failed).

use super::call::{back_off, with_retry, Retried};
use super::job::{Interrupt, Job};
use super::{parts, Account, EngineError, Event, Finished, Inner, Outcome};
use crate::ledger::{Claim, FileRecord, FileState, LedgerError, RecordedError};
use crate::protocol::plan::missing;
use crate::protocol::{
    Attempts, FinishAnswer, HeldPart, InitAnswer, InitRequest, PartSize, Processing,
};
use crate::shown::shown;
use crate::source::{Source, SourceError};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, warn, Instrument};

mod hashing;

use hashing::Hashes;

const CHANGED: &str =
    "the file changed after it settled (still being written?): its new version is taken once it settles again";

pub(super) async fn upload(
    inner: &Arc<Inner>,
    claim: Claim,
    record: FileRecord,
    cancel: &CancellationToken,
) -> Result<Outcome, EngineError> {
    if let Some(outcome) = Outcome::ended_already(&record) {
        return Ok(outcome);
    }
    let span = info_span!(
        "file",
        path = %shown(&record.path),
        account = tracing::field::Empty,
        fileSha = tracing::field::Empty
    );
    let journey = Journey {
        inner: inner.clone(),
        cancel: cancel.clone(),
    };
    let result = journey.run(claim, record).instrument(span.clone()).await;
    // In the file's span too: the final error's line names the path and the fileSha.
    conclude(inner, claim, result).instrument(span).await
}

/// The one place an interruption that ends the journey is turned into the file's outcome.
async fn conclude(
    inner: &Inner,
    claim: Claim,
    result: Result<Finished, Interrupt>,
) -> Result<Outcome, EngineError> {
    let (state, why) = match result {
        Ok(done) => return Ok(Outcome::Done(done)),
        Err(Interrupt::Stopped) => return Ok(Outcome::Stopped),
        Err(Interrupt::Ledger(LedgerError::Fenced { .. })) => return Ok(taken_over()),
        Err(Interrupt::Ledger(e)) => return Err(e.into()),
        Err(Interrupt::Failed(error)) => return fail(inner, claim, error).await,
        // Rounds retry these; one that escapes ends like a final error of that call.
        Err(Interrupt::Reinit(e) | Interrupt::Resign(e)) => {
            return fail(inner, claim, super::job::recorded(&e)).await
        }
        Err(Interrupt::Changed(why)) => (FileState::Superseded, why),
        Err(Interrupt::Gone(why)) => (FileState::Gone, why),
    };
    info!(state = state.as_str(), why, "not uploaded");
    match inner.ledger.set_aside(claim, state, why).await {
        Err(LedgerError::Fenced { .. }) => Ok(taken_over()),
        other => Ok(other.map(|()| Outcome::SetAside(state, why.to_owned()))?),
    }
}

async fn fail(inner: &Inner, claim: Claim, error: RecordedError) -> Result<Outcome, EngineError> {
    if error.code == crate::protocol::SIGNATURE_REFUSED {
        error!(code = error.code, message = %error.message, code_desc = %error.code_desc,
            "file failed: the service refused the signature (check secret_id and the secret key)");
    } else {
        error!(code = error.code, message = %error.message, code_desc = %error.code_desc, "file failed");
    }
    match inner.ledger.fail(claim, &error).await {
        Err(LedgerError::Fenced { .. }) => Ok(taken_over()),
        other => Ok(other.map(|()| Outcome::Failed(error))?),
    }
}

/// Another node took the file over (this node's claim had lapsed: it was frozen, or cut off from
/// the ledger, for longer than the lease): it stops here and touches nothing more of it.
fn taken_over() -> Outcome {
    warn!("another node took this file over (this node's claim lapsed): stopped here");
    Outcome::TakenOver
}

struct Journey {
    inner: Arc<Inner>,
    cancel: CancellationToken,
}

impl Journey {
    async fn run(&self, claim: Claim, record: FileRecord) -> Result<Finished, Interrupt> {
        // Taking the file began the attempt (counted, and `hashing` if never hashed).
        let account = self.account(&record)?;
        if record.account.is_none() {
            self.inner.ledger.set_account(claim, &account.name).await?;
        }
        let source = Arc::new(self.open(&record).await?);
        let part_size = PartSize::from_bytes(record.part_size).unwrap_or(self.inner.part_size);
        let hashes = self.hashes(claim, &record, &account.name, &source, part_size);
        let Hashes {
            sha,
            md5s,
            signature: stored,
            bytes,
        } = hashes.await?;
        tracing::Span::current().record("fileSha", sha.as_str());
        // No other task works on this row meanwhile: it would hold the claim, and this one's next
        // write would be refused. The stored signature was read before this lock: any signature
        // of this content serves (the init makes it the one the service expects), so one that
        // another upload of it stored meanwhile just goes unused.
        let _one_upload_per_content = self.inner.contents.lock(&account.name, &sha).await;
        let mut job = Job {
            claim,
            account,
            path: record.path.clone(),
            source,
            size: record.size,
            sha,
            part_size,
            md5s,
            signature: None,
            hashed: bytes,
        };
        let processing: Processing = serde_json::from_str(&record.processing).unwrap_or_default();
        job.signature = stored.filter(|s| job.account.signer.made(s, &job.sha, &processing));
        self.rounds(&mut job, &processing).await
    }

    /// The account the file goes to.
    fn account(&self, record: &FileRecord) -> Result<Arc<Account>, Interrupt> {
        let account = self.inner.accounts.of(record).map_err(|name| {
            Interrupt::failed(format!(
                "its account `{name}` is not in the config (any more): `vodup retry` sends it \
                 with its watch's account as configured now"
            ))
        })?;
        tracing::Span::current().record("account", account.name.as_str());
        Ok(account)
    }

    /// Open the file the row describes, as it settled: beneath its watch folder, no symlink,
    /// the same inode and version.
    async fn open(&self, record: &FileRecord) -> Result<Source, Interrupt> {
        let (path, root) = (record.path.clone(), record.origin.clone());
        let opened = tokio::task::spawn_blocking(move || Source::open(&path, root.as_deref()))
            .await
            .expect("open does not panic");
        match opened {
            Ok(source) if record.is(&source.identity()) => Ok(source),
            Ok(source) if record.inode.is_some_and(|i| i != source.identity().inode) => {
                Err(Interrupt::Changed(
                    "the path names another file than the one that settled: that file is taken on its own",
                ))
            }
            Ok(_) => Err(Interrupt::Changed(CHANGED)),
            Err(SourceError::Gone { .. }) => Err(Interrupt::Gone(
                "the file is no longer at its path (moved or deleted before it was uploaded)",
            )),
            Err(SourceError::NotRegular { .. } | SourceError::Outside { .. }) => Err(Interrupt::Gone(
                "its path now names something that is not a regular file (a symlink is never followed)",
            )),
            Err(e @ SourceError::Io { .. }) => Err(Interrupt::failed(e.to_string())),
        }
    }

    /// Rounds of init + parts + finish. A round that ends asking for another (a part's -10005, a
    /// finish with parts missing, an expired signature) counts as one failed attempt of the retry
    /// policy and backs off before the next init; a round that got parts confirmed was progress,
    /// so the count starts afresh (a long upload is not failed by errors hours apart).
    async fn rounds(&self, job: &mut Job, processing: &Processing) -> Result<Finished, Interrupt> {
        let mut attempts = Attempts::new();
        let mut rng: Option<StdRng> = None; // made once a round has to be retried
        let mut force_sign = false;
        let mut confirmed_before = 0;
        loop {
            self.ensure_signature(job, processing, force_sign).await?;
            let error = match self.round(job).await {
                Ok(done) => return Ok(done),
                Err(Interrupt::Reinit(error)) => {
                    force_sign = false;
                    error
                }
                Err(Interrupt::Resign(error)) => {
                    force_sign = true;
                    error
                }
                Err(other) => return Err(other),
            };
            let upload = job.upload();
            let confirmed = self
                .inner
                .ledger
                .confirmed(&upload.account, &upload.sha)
                .await?
                .len();
            if confirmed > confirmed_before {
                attempts = Attempts::new();
            }
            confirmed_before = confirmed;
            info!(error = %error, "init again");
            back_off(
                &self.inner.retry,
                &mut attempts,
                rng.get_or_insert_with(StdRng::from_entropy),
                &self.cancel,
                &error,
            )
            .await?;
        }
    }

    async fn round(&self, job: &mut Job) -> Result<Finished, Interrupt> {
        let held = match self.init(job).await? {
            InitAnswer::Instant { file_id, url } => {
                if !still_hashed(job).await {
                    warn!("the file changed after it was hashed: not taking the instant upload");
                    return Err(Interrupt::Changed(CHANGED));
                }
                info!(fileId = %file_id, "instant upload: the service already has this file");
                let answer = FinishAnswer {
                    file_id,
                    url,
                    verify_content: None,
                };
                return self.done(job, answer, true).await;
            }
            InitAnswer::New => Vec::new(),
            InitAnswer::Resume { part_size, held } => {
                if let Some(bytes) = part_size.filter(|b| *b != job.part_size.bytes()) {
                    self.switch_part_size(job, bytes).await?;
                }
                held
            }
        };
        let confirmed = self.reconcile(job, &held).await?;
        self.send_parts(job, &confirmed).await?;
        self.finish(job).await
    }

    async fn ensure_signature(
        &self,
        job: &mut Job,
        processing: &Processing,
        force: bool,
    ) -> Result<(), Interrupt> {
        if !force && !job.signature_stale() {
            return Ok(());
        }
        // Stored with the reconciliation once an init answered with it (one write less per file).
        job.signature = Some(job.account.signer.sign(&job.path, &job.sha, processing));
        Ok(())
    }

    async fn init(&self, job: &Job) -> Result<InitAnswer, Interrupt> {
        let inner = &self.inner;
        let call = || {
            job.account.client.init(InitRequest {
                file_sha: &job.sha,
                file_size: job.size,
                part_size: job.part_size.bytes(),
                signature: job.signature_text(),
            })
        };
        let stale = || job.signature_stale();
        with_retry(inner, Retried::file(job.claim), &self.cancel, stale, call).await
    }

    /// The service fixed another part size on an earlier upload: use it (hashing again if needed).
    async fn switch_part_size(&self, job: &mut Job, bytes: u64) -> Result<(), Interrupt> {
        let Some(size) = PartSize::from_bytes(bytes) else {
            let why = format!("the service imposed an invalid part size {bytes}");
            return Err(Interrupt::failed(why));
        };
        info!(
            part_size = bytes,
            "the service fixed another part size; using it"
        );
        let record = self.inner.ledger.file(job.claim.key).await?;
        let record = record.ok_or_else(|| Interrupt::failed("the file left the ledger"))?;
        let account = &job.account.name;
        let hashes = self.hashes(job.claim, &record, account, &job.source, size);
        let md5s = hashes.await?.md5s;
        job.hashed = None; // the part plan changed: parts are read from the file
        job.part_size = size;
        job.md5s = md5s;
        Ok(())
    }

    /// The service is the truth: its held parts become the confirmed ones, and the file is
    /// uploading. A listed part that is not a part of our plan, or whose MD5 is not ours, is not
    /// counted (it will be re-sent). The confirmed offsets.
    async fn reconcile(&self, job: &Job, held: &[HeldPart]) -> Result<BTreeSet<u64>, Interrupt> {
        let (ours, foreign): (Vec<&HeldPart>, _) = held.iter().partition(|h| job.is_ours(h));
        for h in foreign {
            warn!(
                offset = h.offset,
                len = h.len,
                "ignoring a held part that is not ours"
            );
        }
        let valid: Vec<(u64, u64)> = ours.iter().map(|h| (h.offset, h.len)).collect();
        let ledger = &self.inner.ledger;
        let signature = job.signature.as_ref();
        Ok(ledger
            .reconcile(job.claim, &job.upload(), valid, signature)
            .await?)
    }

    async fn send_parts(&self, job: &Job, confirmed: &BTreeSet<u64>) -> Result<(), Interrupt> {
        let key = job.claim.key;
        let todo = missing(job.size, job.part_size, confirmed);
        let held = job.size - todo.iter().map(|p| p.len).sum::<u64>();
        info!(
            parts = todo.len(),
            held_bytes = held,
            "uploading missing parts"
        );
        let event = Event::Uploading {
            total: job.size,
            confirmed: held,
        };
        self.inner.progress.event(key, &job.path, event);
        parts::round(&self.inner, Arc::new(job.clone()), todo, &self.cancel).await
    }

    /// Finish: the parts round checked the open file is still the one hashed and marked it
    /// finishing.
    async fn finish(&self, job: &Job) -> Result<Finished, Interrupt> {
        let key = job.claim.key;
        self.inner.progress.event(key, &job.path, Event::Finishing);
        let inner = &self.inner;
        let call = || job.account.client.finish(&job.sha, job.signature_text());
        let stale = || job.signature_stale();
        let answer = with_retry(inner, Retried::file(job.claim), &self.cancel, stale, call).await?;
        self.done(job, answer, false).await
    }

    async fn done(
        &self,
        job: &Job,
        answer: FinishAnswer,
        instant: bool,
    ) -> Result<Finished, Interrupt> {
        let (file_id, url) = (&answer.file_id, answer.url.as_deref());
        let ledger = &self.inner.ledger;
        let finished = Finished::of(ledger.finish(job.claim, file_id, url, instant).await?);
        let url = finished.url.as_deref().unwrap_or("");
        info!(fileId = %finished.file_id, url, instant, "done");
        Ok(finished)
    }
}

/// [`Job::still_hashed`], on the blocking pool.
async fn still_hashed(job: &Job) -> bool {
    let job = job.clone();
    tokio::task::spawn_blocking(move || job.still_hashed())
        .await
        .expect("reading the file does not panic")
}
