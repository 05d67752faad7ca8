//! After-upload actions: keep, delete or move a source the service confirmed; move a failed one
//! to the failed folder with a `NAME.error.json` sidecar. Never before the service confirmed the
//! file, never overwriting, and at most once (a source already gone was already disposed of).

use crate::config::{AfterUpload, Watch};
use crate::ledger::{FileRecord, FileState};
use serde_json::json;
use std::io;
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// What happened to the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposal {
    Kept,
    Deleted,
    Moved(PathBuf),
    /// Copied across filesystems, but the source could not be removed: it is left in place.
    Copied(PathBuf),
    /// The source is gone or is no longer the version that was uploaded: left alone.
    Skipped,
}

impl Disposal {
    /// The word the ledger records.
    pub fn as_str(&self) -> &'static str {
        match self {
            Disposal::Kept => "kept",
            Disposal::Deleted => "deleted",
            Disposal::Moved(_) => "moved",
            Disposal::Copied(_) => "copied",
            Disposal::Skipped => "skipped",
        }
    }

    /// Where the file went, if it went anywhere.
    pub fn target(&self) -> Option<&Path> {
        match self {
            Disposal::Moved(to) | Disposal::Copied(to) => Some(to),
            _ => None,
        }
    }
}

/// Move into `dir`: `Moved`, or `Copied` if the source is still there afterwards.
fn relocate(record: &FileRecord, root: &Path, dir: &Path) -> io::Result<Disposal> {
    let to = move_into(&record.path, root, dir)?;
    Ok(if record.path.exists() {
        Disposal::Copied(to)
    } else {
        Disposal::Moved(to)
    })
}

/// Apply `watch`'s action to a done or failed file. Blocking (file system).
pub fn dispose(record: &FileRecord, watch: &Watch) -> io::Result<Disposal> {
    let current = crate::hash::stat(&record.path).ok();
    if current != Some((record.size, record.mtime_ns)) {
        return Ok(Disposal::Skipped);
    }
    match record.state {
        FileState::Done => match watch.after_upload {
            AfterUpload::Keep => Ok(Disposal::Kept),
            AfterUpload::Delete => {
                std::fs::remove_file(&record.path)?;
                info!(path = %record.path.display(), "source deleted after upload");
                Ok(Disposal::Deleted)
            }
            AfterUpload::Move => match &watch.done_dir {
                Some(dir) => relocate(record, &watch.path, dir),
                None => Ok(Disposal::Kept),
            },
        },
        FileState::Failed => match &watch.failed_dir {
            Some(dir) => {
                let disposal = relocate(record, &watch.path, dir)?;
                let to = disposal.target().expect("relocated");
                write_sidecar(record, to)?;
                warn!(path = %record.path.display(), to = %to.display(), "failed file moved aside");
                Ok(disposal)
            }
            None => Ok(Disposal::Kept),
        },
        _ => Ok(Disposal::Skipped),
    }
}

/// Move `path` into `dir`, keeping its path relative to `root`, never overwriting: a taken name
/// gets ` (1)`, ` (2)`, ... before its extension.
pub fn move_into(path: &Path, root: &Path, dir: &Path) -> io::Result<PathBuf> {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
    let relative = path
        .strip_prefix(&root)
        .ok()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from(path.file_name().unwrap_or_default()));
    let target = dir.join(relative);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let target = free_name(&target);
    match std::fs::rename(path, &target) {
        Ok(()) => Ok(target),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let partial = target.with_extension("vodup-partial");
            std::fs::copy(path, &partial)?;
            std::fs::File::open(&partial)?.sync_all()?;
            std::fs::rename(&partial, &target)?;
            // The copy is complete: from here the move counts as done, so a failure to remove
            // the source never leads to a second copy.
            if let Err(e) = std::fs::remove_file(path) {
                warn!(path = %path.display(), error = %e, "copied to the target but could not remove the source");
            }
            Ok(target)
        }
        Err(e) => Err(e),
    }
}

fn free_name(target: &Path) -> PathBuf {
    if !target.exists() {
        return target.to_owned();
    }
    let stem = target.file_stem().unwrap_or_default().to_string_lossy();
    let ext = target
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (1..)
        .map(|n| target.with_file_name(format!("{stem} ({n}){ext}")))
        .find(|candidate| !candidate.exists())
        .expect("some name is free")
}

fn write_sidecar(record: &FileRecord, moved_to: &Path) -> io::Result<()> {
    let error = record.error.clone();
    let sidecar = json!({
        "path": record.path.display().to_string(),
        "fileSha": record.file_sha,
        "code": error.as_ref().map(|e| e.code),
        "message": error.as_ref().map(|e| e.message.clone()),
        "codeDesc": error.as_ref().map(|e| e.code_desc.clone()),
        "attempts": record.attempts,
        "time": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    });
    let name = format!(
        "{}.error.json",
        moved_to.file_name().unwrap_or_default().to_string_lossy()
    );
    let text = serde_json::to_string_pretty(&sidecar).expect("sidecar serializes");
    std::fs::write(moved_to.with_file_name(name), text + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_keep_the_relative_path_and_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("drop");
        let done = dir.path().join("done");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(done.join("sub")).unwrap();
        std::fs::write(done.join("sub/a.mp4"), b"old").unwrap();
        std::fs::write(root.join("sub/a.mp4"), b"new").unwrap();
        let to = move_into(&root.join("sub/a.mp4"), &root, &done).unwrap();
        assert_eq!(to, done.join("sub/a (1).mp4"));
        assert_eq!(std::fs::read(&to).unwrap(), b"new");
        assert_eq!(std::fs::read(done.join("sub/a.mp4")).unwrap(), b"old");
        assert!(!root.join("sub/a.mp4").exists());
    }
}
