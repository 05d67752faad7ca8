//! The domain types of the ledger boundary: callers see these, never rows or SQL strings. A
//! file's record and what describes it here; the fleet's ([`fleet`]: claims, nodes, leases) and
//! the hooks' ([`hooks`]) beside it.

mod fleet;
mod hooks;
#[cfg(test)]
mod sample;

pub use fleet::{instance, Claim, Lease, NodeInfo, NodeStart, Wanted};
pub use hooks::{Delivery, HookKind, NewDelivery};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What one batch of [`crate::ledger::Ledger::forget`] did: how many rows it forgot, and the
/// key the next batch starts after (none once every row old enough was looked at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forgetting {
    pub forgotten: u64,
    pub next: Option<FileKey>,
}

impl Forgetting {
    /// A batch that forgot `forgotten` rows of those it looked at, the last of them `last` and
    /// the newest made at `newest`: the walk goes on after `last` unless the batch was empty or
    /// reached rows made since `ended_before` (none after them can be older).
    pub fn of_batch(
        forgotten: u64,
        (last, newest): (Option<FileKey>, Option<i64>),
        ended_before: i64,
    ) -> Forgetting {
        let old_to_the_end = newest.is_some_and(|t| t < ended_before);
        Forgetting {
            forgotten,
            next: last.filter(|_| old_to_the_end),
        }
    }
}

/// A file version's row in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FileKey(pub i64);

impl std::fmt::Display for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What the after-upload action did to the source, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposed {
    Kept,
    Deleted,
    Moved,
    /// Copied across file systems; the source could not be removed and is left in place.
    Copied,
    /// Left alone, for this reason (the path was gone, or named another file).
    Skipped(String),
}

impl Disposed {
    /// As stored and shown: `kept`, `deleted`, `moved`, `copied`, or `skipped: WHY`.
    pub fn as_text(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Disposed::Kept => "kept".into(),
            Disposed::Deleted => "deleted".into(),
            Disposed::Moved => "moved".into(),
            Disposed::Copied => "copied".into(),
            Disposed::Skipped(why) => format!("skipped: {why}").into(),
        }
    }

    /// The outcomes that took the source away from the watch: a rescan cannot find it again
    /// (not `Skipped`: the file may still be in the watch, at its path or under another name).
    pub fn left_the_path(&self) -> bool {
        matches!(self, Disposed::Deleted | Disposed::Moved)
    }

    /// The stored text back; text this version does not know reads as skipped for that reason.
    pub fn parse(text: &str) -> Disposed {
        match text {
            "kept" => Disposed::Kept,
            "deleted" => Disposed::Deleted,
            "moved" => Disposed::Moved,
            "copied" => Disposed::Copied,
            other => Disposed::Skipped(other.strip_prefix("skipped: ").unwrap_or(other).into()),
        }
    }
}

impl Serialize for Disposed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_text())
    }
}

/// A version of a file's content as the file system describes it: size and modification time.
/// The ledger keys files by path + version; a file whose version moved is a new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct FileVersion {
    pub size: u64,
    /// Nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

impl FileVersion {
    /// The version of the regular file at `path`, if it is one (a symlink is not followed).
    pub fn at(path: &std::path::Path) -> Option<FileVersion> {
        FileIdentity::at(path).map(|identity| identity.version)
    }
}

/// Which file (inode) a path named when vodup looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Inode {
    pub dev: u64,
    pub ino: u64,
}

/// One file's identity: its inode and the version of its content. Taken from the open
/// descriptor when the file settles; compared before finish and before the after-upload action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    pub inode: Inode,
    pub version: FileVersion,
}

impl FileIdentity {
    /// The identity of the regular file at `path`, if it is one (a symlink is not followed).
    pub fn at(path: &std::path::Path) -> Option<FileIdentity> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        meta.file_type().is_file().then(|| FileIdentity::of(&meta))
    }

    pub fn of(meta: &std::fs::Metadata) -> FileIdentity {
        use std::os::unix::fs::MetadataExt as _;
        let mtime = (meta.mtime(), meta.mtime_nsec());
        FileIdentity::new(meta.dev(), meta.ino(), meta.size(), mtime)
    }

    /// From a `stat`'s fields: device, inode, size, and mtime as (seconds, nanoseconds).
    pub fn new(dev: u64, ino: u64, size: u64, (secs, nanos): (i64, i64)) -> FileIdentity {
        FileIdentity {
            inode: Inode { dev, ino },
            version: FileVersion {
                size,
                mtime_ns: secs * 1_000_000_000 + nanos,
            },
        }
    }
}

/// Where a file is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    /// Known, waiting for a worker.
    Queued,
    /// Being read for its SHA-1 and part MD5s.
    Hashing,
    /// Init done or under way; parts going up.
    Uploading,
    /// Every part confirmed; the finish call is under way.
    Finishing,
    /// The service confirmed the file; `file_id` is set.
    Done,
    /// Stopped for good with the recorded error; `vodup retry` re-queues it.
    Failed,
    /// An empty file: shown, and taken once it has content.
    Waiting,
    /// The file changed after it settled (still being written): this version is not uploaded or
    /// disposed of; the newer version settles and gets its own row.
    Superseded,
    /// The path no longer names the file that settled (moved, deleted, or swapped for something
    /// that is not a regular file) before it was uploaded.
    Gone,
}

impl FileState {
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Queued => "queued",
            FileState::Hashing => "hashing",
            FileState::Uploading => "uploading",
            FileState::Finishing => "finishing",
            FileState::Done => "done",
            FileState::Failed => "failed",
            FileState::Waiting => "waiting",
            FileState::Superseded => "superseded",
            FileState::Gone => "gone",
        }
    }

    pub fn parse(s: &str) -> Option<FileState> {
        Some(match s {
            "queued" => FileState::Queued,
            "hashing" => FileState::Hashing,
            "uploading" => FileState::Uploading,
            "finishing" => FileState::Finishing,
            "done" => FileState::Done,
            "failed" => FileState::Failed,
            "waiting" => FileState::Waiting,
            "superseded" => FileState::Superseded,
            "gone" => FileState::Gone,
            _ => return None,
        })
    }

    /// The states of a row owed an upload (what a start resumes). The ledger's SQL is built
    /// from this list and the next two.
    pub const ACTIVE: [FileState; 4] = [
        FileState::Queued,
        FileState::Hashing,
        FileState::Uploading,
        FileState::Finishing,
    ];

    /// The states of an ended row whose after-upload action runs (until it is disposed of).
    pub const TAKES_ACTION: [FileState; 2] = [FileState::Done, FileState::Failed];

    /// The states of a row still open: owed an upload, or waiting for content.
    pub const OPEN: [FileState; 5] = [
        FileState::Queued,
        FileState::Hashing,
        FileState::Uploading,
        FileState::Finishing,
        FileState::Waiting,
    ];

    /// The states of a row set aside: it no longer describes a file to upload, and no action is
    /// owed for it.
    pub const SET_ASIDE: [FileState; 2] = [FileState::Superseded, FileState::Gone];

    /// Whether this row is over: uploaded, failed, or no longer describing a file to upload.
    pub fn is_final(self) -> bool {
        !self.is_active()
    }

    /// Whether an upload of this row is owed (what a start resumes).
    pub fn is_active(self) -> bool {
        FileState::ACTIVE.contains(&self)
    }
}

/// The last error of a file, as recorded: the service's code, message and description, or the
/// local failure (code 0 for transport and local errors).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedError {
    pub code: i64,
    pub message: String,
    #[serde(rename = "codeDesc")]
    pub code_desc: String,
}

/// One file version as the ledger knows it. Its JSON form is `vodup status --json`'s
/// (`crate::status::FileJson`); the page's is `crate::http::files::FileRow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub key: FileKey,
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
    /// The inode it settled as (rows of older ledgers have none).
    pub inode: Option<Inode>,
    pub part_size: u64,
    pub state: FileState,
    pub file_sha: Option<String>,
    pub origin: Option<PathBuf>,
    pub processing: String,
    pub attempts: u32,
    pub error: Option<RecordedError>,
    pub file_id: Option<String>,
    pub url: Option<String>,
    pub instant: bool,
    pub disposed: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    /// Bytes the service confirmed (sum of confirmed parts of this content; all for a done file).
    pub confirmed_bytes: u64,
    /// What the after-upload action did.
    pub disposal: Option<Disposed>,
    /// The after-upload action failed and waits to be tried again (cleared once it succeeds).
    pub disposal_failed: Option<DisposalFailed>,
    /// Where the after-upload action moves (or moved) the file, once it was decided.
    pub intent_target: Option<PathBuf>,
    /// The after-upload action decided for it (recorded before it runs).
    pub intent: Option<crate::config::AfterUpload>,
    /// The account it goes to (none on rows queued before accounts were recorded, or re-queued:
    /// the engine takes the watch's account then).
    pub account: Option<crate::config::AccountName>,
    /// The node that holds (or last held) its claim.
    pub node: Option<String>,
    /// When that claim lapses unless renewed (Unix seconds, by the ledger's clock); none once
    /// released.
    pub lease_until: Option<i64>,
    /// The file's `ctime` (ns) when `file_sha` was taken: while the file's ctime is still this,
    /// no write reached it since (none on rows hashed before it was recorded).
    pub hashed_ctime_ns: Option<i64>,
}

impl FileRecord {
    pub fn version(&self) -> FileVersion {
        FileVersion {
            size: self.size,
            mtime_ns: self.mtime_ns,
        }
    }

    /// Whether `found` is this very file: same content version and, where known, same inode
    /// number. The device number is not compared: it is the host's name for the file system, and
    /// the hosts of a shared folder (NFS) number the same mount differently, while the inode
    /// number is the server's.
    pub fn is(&self, found: &FileIdentity) -> bool {
        found.version == self.version() && self.inode.is_none_or(|i| i.ino == found.inode.ino)
    }
}

/// What the alerting gauges need from the ledger, read in one go at each scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    /// Ended files whose after-upload action failed and waits to be tried again.
    pub disposals_failing: u64,
    /// When the oldest file still queued was recorded (Unix seconds).
    pub oldest_queued_at: Option<i64>,
    /// When the oldest hook delivery not yet delivered was written (Unix seconds).
    pub oldest_pending_hook_at: Option<i64>,
}

/// An after-upload action that failed: the file is uploaded, its source not yet moved (deleted),
/// and the action is tried again at `retry_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DisposalFailed {
    pub reason: String,
    /// Failures in a row.
    pub failures: u32,
    /// When it is tried again (Unix seconds, by the ledger's clock).
    pub retry_at: i64,
}

impl DisposalFailed {
    /// From a row's columns: none without a reason.
    pub fn from_columns(
        reason: Option<String>,
        failures: i64,
        retry_at: Option<i64>,
    ) -> Option<DisposalFailed> {
        Some(DisposalFailed {
            reason: reason?,
            failures: u32::try_from(failures).unwrap_or(u32::MAX),
            retry_at: retry_at.unwrap_or(0),
        })
    }
}

/// A new file version to record.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub path: PathBuf,
    pub identity: FileIdentity,
    pub part_size: u64,
    /// The watch that found it: its name (the fleet's key) and its folder on this host.
    pub watch: Option<WatchRoot>,
    pub processing: String,
    /// The state a new row starts in: `Queued`, or `Waiting` for an empty file.
    pub state: FileState,
    /// The account it goes to; `None`: its watch's (or the top-level one), when it uploads.
    pub account: Option<crate::config::AccountName>,
}

/// A watch folder as the ledger knows it: its name, shared by every host of a fleet, and its
/// canonical path on this host (a mount point may differ between hosts).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchRoot {
    pub name: String,
    pub path: PathBuf,
}

impl WatchRoot {
    pub fn of(watch: &crate::config::Watch) -> WatchRoot {
        WatchRoot {
            name: watch.ledger_name(),
            path: watch.folder(),
        }
    }
}

/// Which files [`crate::ledger::Ledger::list`] and [`crate::ledger::Ledger::count`] read: those that match every
/// filter given, newest first, a page at a time (`before`, `limit`).
#[derive(Debug, Clone, Default)]
pub struct Listing<'a> {
    /// `Some(true)`: only files still owed something (an upload, an after-upload action) or
    /// waiting for content; `Some(false)`: only the others; `None`: both.
    pub open: Option<bool>,
    /// Only files in one of these states (none: any).
    pub states: &'a [FileState],
    /// Only files changed at or after this (Unix seconds).
    pub since: Option<i64>,
    /// Only files of this watch.
    pub watch: Option<&'a WatchRoot>,
    /// Only files with a key below this one (the next page after a page that ended there).
    pub before: Option<FileKey>,
    /// At most this many (`list` only).
    pub limit: usize,
}

/// An upload as the ledger keys it: a content (fileSha) for an account, with its size and part
/// size. The same content for two accounts is two uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub account: String,
    pub sha: String,
    pub size: u64,
    pub part_size: u64,
}
