//! What every step of one file's upload shares: the [`Job`] (the open file as it was hashed, its
//! part hashes and signature) and the [`Interrupt`] a step returns as its error when the journey
//! cannot go on as planned. Each step is a `?`; one `match` in [`super::file`] decides what follows.

use super::Account;
use crate::ledger::{Claim, LedgerError, RecordedError, Upload};
use crate::protocol::plan::is_valid_part;
use crate::protocol::{CallError, HeldPart, PartSize, Signature};
use crate::source::Source;
use std::path::PathBuf;
use std::sync::Arc;

/// The file being uploaded, as it was opened and hashed.
#[derive(Debug, Clone)]
pub(super) struct Job {
    /// This node's hold on the file: every ledger write for it goes under this claim.
    pub claim: Claim,
    /// The account it goes to: its client and signer.
    pub account: Arc<Account>,
    pub path: PathBuf,
    /// The open file: every part is read from this descriptor, never from the path again.
    pub source: Arc<Source>,
    pub size: u64,
    pub sha: String,
    pub part_size: PartSize,
    pub md5s: Vec<String>,
    /// The signature calls carry; none until the first is made or found in the ledger.
    pub signature: Option<Signature>,
    /// A small file's bytes as the pass hashed them ([`crate::hash::KEPT`]): its one part goes
    /// from these, not from a second read of the file.
    pub hashed: Option<bytes::Bytes>,
}

impl Job {
    /// The bytes of `part` as they were hashed, if the job kept them (its one part).
    pub fn kept(&self, part: crate::protocol::plan::Part) -> Option<bytes::Bytes> {
        let whole = |b: &bytes::Bytes| part.offset == 0 && b.len() as u64 == part.len;
        self.hashed.clone().filter(whole)
    }

    /// The upload as the ledger keys it: this content for this account.
    pub fn upload(&self) -> Upload {
        Upload {
            account: self.account.name.as_str().to_owned(),
            sha: self.sha.clone(),
            size: self.size,
            part_size: self.part_size.bytes(),
        }
    }

    /// Whether the open file is still exactly what was hashed (a writer still at work shows as a
    /// new size or mtime on the descriptor). Blocking (`fstat`).
    pub fn unchanged(&self) -> bool {
        self.source
            .current()
            .is_ok_and(|now| now == self.source.identity())
    }

    /// Whether the open file still holds exactly the content that was hashed: [`Job::unchanged`],
    /// and, when its status changed since it was opened (see [`Source::status_changed`]), the
    /// whole file read again gives the hashed SHA-1. Asked before finishing and before taking an
    /// instant upload, so a file rewritten in place with its mtime put back is never recorded as
    /// uploaded. Blocking (it may read the whole file).
    pub fn still_hashed(&self) -> bool {
        if !self.unchanged() {
            return false;
        }
        match self.source.status_changed() {
            Ok(false) => true,
            Ok(true) => {
                tracing::info!("the file's status changed since it was hashed: reading it again");
                let now = crate::hash::sha1_now(&self.source);
                now.is_ok_and(|sha| sha.as_deref() == Some(self.sha.as_str())) && self.unchanged()
            }
            Err(_) => false,
        }
    }

    /// Whether a part the service lists as held is one of ours: a part of our plan whose MD5 (if
    /// the service gives one) is the hashing pass's.
    pub fn is_ours(&self, held: &HeldPart) -> bool {
        let index = (held.offset / self.part_size.bytes()) as usize;
        is_valid_part(self.size, self.part_size, held.offset, held.len)
            && held
                .hash
                .as_deref()
                .is_none_or(|hash| hash.len() != 32 || self.md5s[index].eq_ignore_ascii_case(hash))
    }

    /// Whether the signature is missing, expired or about to be, by our clock.
    pub fn signature_stale(&self) -> bool {
        self.signature
            .as_ref()
            .is_none_or(|s| s.needs_renewal(crate::clock::unix_now()))
    }

    /// The signature as calls send it (empty before one exists: the service refuses it, and
    /// the refusal asks for a new one).
    pub fn signature_text(&self) -> &str {
        self.signature.as_ref().map_or("", |s| s.encoded.as_str())
    }
}

/// Why a step did not lead to the next one.
#[derive(Debug)]
pub(super) enum Interrupt {
    /// Init again and reconcile (a part's -10005, a finish with parts missing), after a backoff.
    Reinit(CallError),
    /// Sign again, then init again (the service found the signature expired).
    Resign(CallError),
    /// The file is not the one that settled any more (changed on disk): this version is
    /// superseded, for this reason.
    Changed(&'static str),
    /// The path no longer names the file that settled, for this reason.
    Gone(&'static str),
    /// Shutdown: what was confirmed stays confirmed; the rest resumes on the next start.
    Stopped,
    /// The file fails for good with this error.
    Failed(RecordedError),
    /// The ledger failed: the upload ends, the file is tried again later.
    Ledger(LedgerError),
}

impl From<LedgerError> for Interrupt {
    fn from(e: LedgerError) -> Interrupt {
        Interrupt::Ledger(e)
    }
}

impl Interrupt {
    /// A failure of our own (not the service's): code 0.
    pub fn failed(message: impl Into<String>) -> Interrupt {
        Interrupt::Failed(RecordedError {
            code: 0,
            message: message.into(),
            code_desc: String::new(),
        })
    }

    /// How bad it is for the other parts of a round: the worst one ends the round.
    pub fn rank(&self) -> u8 {
        match self {
            Interrupt::Reinit(_) => 1,
            Interrupt::Resign(_) => 2,
            Interrupt::Stopped => 3,
            Interrupt::Failed(_) => 4,
            Interrupt::Changed(_) | Interrupt::Gone(_) => 5,
            Interrupt::Ledger(_) => 6,
        }
    }

    /// Whether parts in flight are pointless too (the file fails or is set aside).
    pub fn aborts_round(&self) -> bool {
        self.rank() >= 4
    }
}

/// The error a file records for a call that failed.
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
