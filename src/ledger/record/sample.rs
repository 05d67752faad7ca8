//! A record for the tests of what shows records.

use super::{Disposed, FileKey, FileRecord, FileState};
use std::path::PathBuf;

impl FileRecord {
    /// A done file moved to a done folder, for tests of what shows records.
    pub(crate) fn moved_sample() -> FileRecord {
        FileRecord {
            key: FileKey(7),
            path: PathBuf::from("/srv/drop/show/ep1.mp4"),
            size: 2048,
            mtime_ns: 1,
            inode: None,
            part_size: 524_288,
            state: FileState::Done,
            file_sha: Some("ab".repeat(20)),
            origin: Some(PathBuf::from("/srv/drop")),
            processing: "{}".into(),
            attempts: 1,
            error: None,
            file_id: Some("5285890781763144364".into()),
            url: Some("http://vod.example/ep1.mp4".into()),
            instant: false,
            disposed: true,
            created_at: 1,
            updated_at: 2,
            finished_at: Some(2),
            confirmed_bytes: 2048,
            disposal: Some(Disposed::Moved),
            disposal_failed: None,
            intent_target: Some(PathBuf::from("/srv/done/show/ep1.mp4")),
            intent: Some(crate::config::AfterUpload::Move),
            account: None,
            node: None,
            lease_until: None,
            hashed_ctime_ns: None,
        }
    }
}
