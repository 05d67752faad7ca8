//! The emulator's counters (`GET /_admin/stats`, PROTOCOL.md §7).
//!
//! Owns counting only; the handlers say what happened. Counters live in memory and start at zero
//! with every emulator process (they are not part of the persisted state).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A snapshot of the counters, as `GET /_admin/stats` serves it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Part requests answered code 0, duplicates included.
    pub parts_accepted: u64,
    /// Part requests refused, by reason (see [`Reject::as_str`]).
    pub parts_rejected: BTreeMap<String, u64>,
    /// Accepted part requests for a part already held with the same MD5.
    pub duplicate_parts: u64,
    /// Body bytes of accepted part requests, duplicates included.
    pub bytes_received: u64,
    /// Init answers by code (`"0"`, `"1"`, `"2"`, `"-10002"`...), injected JSON errors included.
    pub inits: BTreeMap<String, u64>,
    /// Finish answers with code 0, repeated finishes included.
    pub finishes: u64,
    /// Finish requests that did not answer code 0, injected faults included.
    pub finish_failures: u64,
    /// Accepted part requests by fileSha.
    pub parts_by_sha: BTreeMap<String, u64>,
    /// Injected faults by kind (`retryable`, `final`, `http_500`, `http_503`, `drop`, `stall`).
    pub faults_injected: BTreeMap<String, u64>,
    /// Protocol requests (any action, counted as they arrive) by `User-Agent` (`-` for none):
    /// which client of a fleet called, since vodup names its node there.
    pub calls_by_agent: BTreeMap<String, u64>,
}

/// Why a part request was refused: the keys of `parts_rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not a POST.
    Method,
    /// A missing or malformed parameter.
    Param,
    /// A fault was injected.
    Injected,
    /// The signature failed a check, or is not the latest init's.
    Signature,
    /// No unfinished upload for the fileSha.
    NoUpload,
    /// The offset is not a multiple of the part size or not inside the file.
    Offset,
    /// `dataSize` breaks the part-size rule.
    Size,
    /// The body is longer or shorter than `dataSize`.
    Length,
    /// The body's MD5 differs from `dataMd5`.
    Md5,
    /// The client went away while sending the body.
    Aborted,
    /// The emulator could not write the part.
    Storage,
}

impl Reject {
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Method => "method",
            Reject::Param => "param",
            Reject::Injected => "injected",
            Reject::Signature => "signature",
            Reject::NoUpload => "no_upload",
            Reject::Offset => "offset",
            Reject::Size => "size",
            Reject::Length => "length",
            Reject::Md5 => "md5",
            Reject::Aborted => "aborted",
            Reject::Storage => "storage",
        }
    }
}

/// The live counters behind a short lock.
#[derive(Debug, Default)]
pub struct Recorder {
    stats: Mutex<Stats>,
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    *map.entry(key.to_owned()).or_default() += 1;
}

impl Recorder {
    fn with(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.stats.lock().expect("stats lock"));
    }

    pub fn part_accepted(&self, file_sha: &str, bytes: u64, duplicate: bool) {
        self.with(|s| {
            s.parts_accepted += 1;
            s.bytes_received += bytes;
            s.duplicate_parts += u64::from(duplicate);
            bump(&mut s.parts_by_sha, file_sha);
        });
    }

    pub fn part_rejected(&self, reason: Reject) {
        self.with(|s| bump(&mut s.parts_rejected, reason.as_str()));
    }

    pub fn init(&self, code: i64) {
        self.with(|s| bump(&mut s.inits, &code.to_string()));
    }

    pub fn finish(&self, ok: bool) {
        self.with(|s| {
            if ok {
                s.finishes += 1;
            } else {
                s.finish_failures += 1;
            }
        });
    }

    pub fn call(&self, agent: &str) {
        self.with(|s| bump(&mut s.calls_by_agent, agent));
    }

    pub fn injected(&self, kind: &str) {
        self.with(|s| bump(&mut s.faults_injected, kind));
    }

    pub fn snapshot(&self) -> Stats {
        self.stats.lock().expect("stats lock").clone()
    }

    pub fn reset(&self) {
        self.with(|s| *s = Stats::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_and_reset() {
        let r = Recorder::default();
        r.part_accepted("a", 10, false);
        r.part_accepted("a", 10, true);
        r.part_rejected(Reject::Md5);
        r.part_rejected(Reject::Md5);
        r.init(0);
        r.init(-10002);
        r.finish(true);
        r.finish(false);
        r.injected("drop");
        let s = r.snapshot();
        assert_eq!(
            (s.parts_accepted, s.duplicate_parts, s.bytes_received),
            (2, 1, 20)
        );
        assert_eq!(s.parts_rejected["md5"], 2);
        assert_eq!(s.inits["-10002"], 1);
        assert_eq!((s.finishes, s.finish_failures), (1, 1));
        assert_eq!(s.parts_by_sha["a"], 2);
        assert_eq!(s.faults_injected["drop"], 1);
        r.reset();
        assert_eq!(r.snapshot(), Stats::default());
    }

    #[test]
    fn stats_round_trip_through_json() {
        let r = Recorder::default();
        r.part_accepted("a", 3, false);
        let s = r.snapshot();
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"parts_by_sha\":{\"a\":1}"));
        assert_eq!(serde_json::from_str::<Stats>(&json).unwrap(), s);
    }
}
