//! The domain types the ledger hands out: callers see these, never rows.

use serde::Serialize;
use std::path::PathBuf;

pub type FileKey = i64;

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
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, FileState::Done | FileState::Failed)
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
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
    pub part_size: u64,
    pub state: FileState,
    #[serde(rename = "fileSha")]
    pub file_sha: Option<String>,
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
}

/// A new file version to record.
#[derive(Debug, Clone)]
pub struct NewFile<'a> {
    pub path: &'a std::path::Path,
    pub size: u64,
    pub mtime_ns: i64,
    pub part_size: u64,
    pub origin: Option<&'a std::path::Path>,
    pub processing: &'a str,
}
