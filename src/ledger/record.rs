//! The domain types the ledger hands out: callers see these, never rows.

use serde::Serialize;
use std::path::PathBuf;

pub type FileKey = i64;

/// A version of a file's content as the file system describes it: size and modification time.
/// The ledger keys files by path + version; a file whose version moved is a new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct FileVersion {
    pub size: u64,
    /// Nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
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

    /// Whether this row is over: uploaded, failed, or no longer describing a file to upload.
    pub fn is_final(self) -> bool {
        !self.is_active()
    }

    /// Whether an upload of this row is owed (what a start resumes).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            FileState::Queued | FileState::Hashing | FileState::Uploading | FileState::Finishing
        )
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

/// One file version as the ledger knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRecord {
    pub key: FileKey,
    #[serde(serialize_with = "crate::shown::serialize_path")]
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
    /// The inode it settled as (rows of older ledgers have none).
    #[serde(skip)]
    pub inode: Option<Inode>,
    pub part_size: u64,
    pub state: FileState,
    #[serde(rename = "fileSha")]
    pub file_sha: Option<String>,
    #[serde(serialize_with = "crate::shown::serialize_opt_path")]
    pub origin: Option<PathBuf>,
    pub processing: String,
    pub attempts: u32,
    pub error: Option<RecordedError>,
    #[serde(rename = "fileId")]
    pub file_id: Option<String>,
    pub url: Option<String>,
    pub instant: bool,
    pub disposed: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    /// Bytes the service confirmed (sum of confirmed parts of this content; all for a done file).
    pub confirmed_bytes: u64,
    /// What the after-upload action did: `kept`, `deleted`, `moved`, `copied` or `skipped`.
    pub disposal: Option<String>,
    /// Where the after-upload action moves (or moved) the file, once it was decided.
    #[serde(
        rename = "movedTo",
        serialize_with = "crate::shown::serialize_opt_path"
    )]
    pub intent_target: Option<PathBuf>,
    /// The after-upload action decided for it (recorded before it runs).
    #[serde(skip)]
    pub intent: Option<crate::config::AfterUpload>,
    /// The account it goes to (none on rows queued before accounts were recorded, or re-queued:
    /// the engine takes the watch's account then).
    pub account: Option<crate::config::AccountName>,
}

impl FileRecord {
    pub fn version(&self) -> FileVersion {
        FileVersion {
            size: self.size,
            mtime_ns: self.mtime_ns,
        }
    }

    /// Whether `found` is this very file: same content version and, where known, same inode.
    pub fn is(&self, found: &FileIdentity) -> bool {
        found.version == self.version() && self.inode.is_none_or(|i| i == found.inode)
    }
}

/// A new file version to record.
#[derive(Debug, Clone)]
pub struct NewFile<'a> {
    pub path: &'a std::path::Path,
    pub identity: FileIdentity,
    pub part_size: u64,
    pub origin: Option<&'a std::path::Path>,
    pub processing: &'a str,
    /// The state a new row starts in: `Queued`, or `Waiting` for an empty file.
    pub state: FileState,
    /// The account it goes to; `None`: its watch's (or the top-level one), when it uploads.
    pub account: Option<&'a crate::config::AccountName>,
}
