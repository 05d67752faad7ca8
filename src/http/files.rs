//! `/files.json`: a page of the ledger's files, newest first, as the status page shows them. Built
//! from [`FileRecord`]s, with only what people need: names and paths escaped by
//! [`crate::shown`], the state and progress, the service's fileId and URL, the error or the reason
//! a file was set aside. Never the processing options, the signature or anything of the config.

use crate::ledger::{Disposed, FileKey, FileRecord, FileState, Ledger, LedgerError, RecordedError};
use crate::shown::{line, shown};
use crate::status;
use serde::{Deserialize, Serialize};

/// Rows per page unless `limit` says otherwise, and the most a page holds.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;

/// `?limit=N&before=KEY`: at most `limit` files with a key below `before`.
#[derive(Debug, Default, Deserialize)]
pub struct FilesQuery {
    pub limit: Option<usize>,
    pub before: Option<FileKey>,
}

/// One page: its files, and the `before` key of the next (older) page, if there may be one.
#[derive(Debug, Serialize)]
pub struct FilesPage {
    pub files: Vec<FileRow>,
    pub next: Option<FileKey>,
}

/// One file on the page.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileRow {
    pub key: FileKey,
    /// The file's name (escaped).
    pub name: String,
    /// Where the file was dropped (escaped).
    pub path: String,
    /// Where the after-upload action moved it, once it did (escaped).
    pub moved_to: Option<String>,
    /// The watched folder it came from (escaped); none for `vodup upload`.
    pub watch: Option<String>,
    pub state: FileState,
    pub size: u64,
    pub confirmed: u64,
    pub percent: f64,
    /// Bytes/s over the last seconds (0 unless uploading).
    pub speed: u64,
    pub file_id: Option<String>,
    pub url: Option<String>,
    pub instant: bool,
    /// The service's or the local error of a failed file.
    pub error: Option<RecordedError>,
    /// Why a file is superseded, gone, waiting, or was left alone after its upload.
    pub reason: Option<String>,
    /// An uploaded file whose after-upload action failed: why, and when it is tried again.
    pub disposal_failed: Option<String>,
    /// Unix seconds.
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

impl FilesPage {
    /// Read one page from the ledger.
    pub async fn read(ledger: &Ledger, query: &FilesQuery) -> Result<FilesPage, LedgerError> {
        let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        let records = ledger.recent(limit, query.before).await?;
        let next = (records.len() == limit)
            .then(|| records.last().map(|r| r.key))
            .flatten();
        let mut files = Vec::with_capacity(records.len());
        for r in &records {
            files.push(FileRow::of(r, status::speed(ledger, r).await?));
        }
        Ok(FilesPage { files, next })
    }
}

impl FileRow {
    pub fn of(r: &FileRecord, speed: u64) -> FileRow {
        let name = r.path.file_name().map(std::path::Path::new);
        let skipped = match &r.disposal {
            Some(Disposed::Skipped(why)) => Some(format!("left alone: {}", line(why))),
            _ => None,
        };
        let reason = match r.state {
            FileState::Superseded | FileState::Gone => {
                r.error.as_ref().map(|e| line(&e.message).to_string())
            }
            FileState::Waiting => Some("empty: taken once it has content".into()),
            _ => skipped,
        };
        FileRow {
            key: r.key,
            name: shown(name.unwrap_or(&r.path)).to_string(),
            path: shown(&r.path).to_string(),
            moved_to: status::moved_to(r).map(|p| shown(p).to_string()),
            watch: r.origin.as_deref().map(|p| shown(p).to_string()),
            state: r.state,
            size: r.size,
            confirmed: status::confirmed(r),
            percent: status::percent(r),
            speed,
            file_id: r.file_id.clone(),
            url: r.url.clone(),
            instant: r.instant,
            error: r.error.clone().filter(|_| r.state == FileState::Failed),
            reason,
            disposal_failed: r.disposal_failed.as_ref().filter(|_| !r.disposed).map(|f| {
                format!(
                    "not disposed of: {} ({} failure(s); tried again at {})",
                    line(&f.reason),
                    f.failures,
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH
                            + std::time::Duration::from_secs(f.retry_at.max(0) as u64)
                    )
                )
            }),
            updated_at: r.updated_at,
            finished_at: r.finished_at,
        }
    }
}
