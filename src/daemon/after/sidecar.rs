//! Sidecars: the small JSON files written beside a disposed-of file for the people who look in
//! its folder: `NAME.vod.json` beside a done file (with `done_sidecar = true`: where it was moved,
//! or beside it when kept) and `NAME.error.json` beside a failed file moved to `failed_dir`.
//!
//! Written atomically (a hidden temporary file in the same folder, synced, then renamed) and
//! never over another file's sidecar: one already there is replaced only when it describes the
//! same source path (an earlier attempt or version of this file). The after-upload step writes
//! them after the action and before its outcome is recorded, so a crash in between rewrites the
//! same sidecar, never a second one. Not the action itself ([`super::apply`]).

use super::Disposal;
use crate::config::Watch;
use crate::ledger::{FileRecord, FileState};
use crate::shown::shown;
use crate::source::open_parent;
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, CWD};
use rustix::io::Errno;
use serde_json::{json, Value};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tracing::{info, warn};

/// Whether `disposal` of `record` calls for a sidecar.
pub fn wanted(record: &FileRecord, watch: &Watch, disposal: &Disposal) -> bool {
    match record.state {
        FileState::Done => watch.done_sidecar,
        FileState::Failed => disposal.target().is_some(),
        _ => false,
    }
}

/// The sidecar `disposal` calls for, written; the path of the one written, if any.
/// Blocking.
pub fn write_for(
    record: &FileRecord,
    watch: &Watch,
    root: &Path,
    disposal: &Disposal,
) -> io::Result<Option<PathBuf>> {
    if !wanted(record, watch, disposal) {
        return Ok(None);
    }
    let (body, suffix) = match record.state {
        FileState::Done => (done_body(record), ENDINGS[0]),
        _ => (error_body(record), ENDINGS[1]),
    };
    let (dir, name, at) = match disposal {
        Disposal::Moved(to) | Disposal::Copied(to) => {
            let parent = to.parent().unwrap_or(Path::new("/"));
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
            let dir = rustix::fs::openat(CWD, parent, flags, Mode::empty())?;
            (dir, to.file_name().unwrap_or_default(), to.clone())
        }
        // Beside the kept file, in its folder opened beneath the watch root (no symlink).
        Disposal::Kept => match open_parent(&record.path, Some(root)) {
            Ok((dir, _)) => (
                dir,
                record.path.file_name().unwrap_or_default(),
                record.path.clone(),
            ),
            Err(_) => return Ok(None),
        },
        Disposal::Deleted | Disposal::Skipped(_) => return Ok(None),
    };
    let mut sidecar = name.to_owned();
    sidecar.push(suffix);
    let written = write(&dir, &sidecar, &body)?;
    let path = at.with_file_name(&sidecar);
    if written {
        info!(path = %shown(&path), "sidecar written");
        Ok(Some(path))
    } else {
        warn!(path = %shown(&path), "another file's sidecar holds this name: not overwritten");
        Ok(None)
    }
}

/// The endings of the sidecars vodup writes beside `NAME`.
pub const ENDINGS: [&str; 2] = [".vod.json", ".error.json"];

/// Whether a sidecar (of any file) already holds one of `path`'s sidecar names: a file moved to
/// `path` would sit beside a sidecar that may describe another video.
pub fn name_taken(path: &std::path::Path) -> bool {
    ENDINGS.iter().any(|ending| {
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(ending);
        path.with_file_name(name).symlink_metadata().is_ok()
    })
}

/// What `NAME.vod.json` says about a done file.
fn done_body(record: &FileRecord) -> Value {
    let finished = record
        .finished_at
        .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64));
    json!({
        "path": shown(&record.path).to_string(),
        "fileId": record.file_id,
        "url": record.url,
        "fileSha": record.file_sha,
        "size": record.size,
        "finished": finished.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        "instant": record.instant,
    })
}

/// What `NAME.error.json` says about a failed file.
fn error_body(record: &FileRecord) -> Value {
    let error = record.error.as_ref();
    json!({
        "path": shown(&record.path).to_string(),
        "fileSha": record.file_sha,
        "code": error.map(|e| e.code),
        "message": error.map(|e| e.message.clone()),
        "codeDesc": error.map(|e| e.code_desc.clone()),
        "attempts": record.attempts,
        "time": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    })
}

/// Write `body` as `name` in `dir` atomically; `false` when another file's sidecar holds the
/// name (left as it is).
fn write(dir: &OwnedFd, name: &OsStr, body: &Value) -> io::Result<bool> {
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(".vodup-tmp");
    // A temp name left by a crash (or planted: a FIFO, a hard link) is removed, and the new one
    // is created exclusively: never opened through something that was already there.
    match rustix::fs::unlinkat(dir, &temp, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut file = std::fs::File::from(rustix::fs::openat(
        dir,
        &temp,
        flags,
        Mode::from_raw_mode(0o644),
    )?);
    let text = serde_json::to_string_pretty(body).expect("a sidecar serializes") + "\n";
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    let replace = match rustix::fs::renameat_with(dir, &temp, dir, name, RenameFlags::NOREPLACE) {
        Ok(()) => return Ok(true),
        Err(Errno::EXIST) => replaceable(dir, name, body)?,
        // A file system without RENAME_NOREPLACE: the name is checked just before.
        Err(Errno::INVAL) => match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => true,
            Err(e) => return Err(e.into()),
            Ok(_) => replaceable(dir, name, body)?,
        },
        Err(e) => return Err(e.into()),
    };
    if replace {
        rustix::fs::renameat(dir, &temp, dir, name)?;
    } else {
        rustix::fs::unlinkat(dir, &temp, AtFlags::empty())?;
    }
    Ok(replace)
}

/// Whether the sidecar at `name` may be replaced by `body`: it is a sidecar (a regular file of
/// JSON) of the same source path.
fn replaceable(dir: &OwnedFd, name: &OsStr, body: &Value) -> io::Result<bool> {
    // Never blocks on a FIFO, never reads more than a sidecar can be.
    const LARGEST: u64 = 64 * 1024;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let mut text = String::new();
    match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => {
            let file = std::fs::File::from(fd);
            let regular = file
                .metadata()
                .is_ok_and(|m| m.is_file() && m.len() <= LARGEST);
            // Not a small regular file of text: not one of ours.
            if !regular || file.take(LARGEST).read_to_string(&mut text).is_err() {
                return Ok(false);
            }
        }
        Err(Errno::LOOP) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    let existing: Option<Value> = serde_json::from_str(&text).ok();
    Ok(existing.is_some_and(|v| v.get("path").is_some() && v.get("path") == body.get("path")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(CWD, dir.path(), flags, Mode::empty()).unwrap();
        (dir, fd)
    }

    #[test]
    fn a_sidecar_is_written_whole_and_replaces_only_its_own() {
        let (dir, fd) = folder();
        let name = OsStr::new("a.mp4.vod.json");
        let first = json!({"path": "/drop/a.mp4", "fileId": "1"});
        assert!(write(&fd, name, &first).unwrap());
        let again = json!({"path": "/drop/a.mp4", "fileId": "2"});
        assert!(
            write(&fd, name, &again).unwrap(),
            "the same source's is replaced"
        );
        let other = json!({"path": "/drop/sub/a.mp4", "fileId": "3"});
        assert!(!write(&fd, name, &other).unwrap(), "another file's is kept");
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        let kept: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(kept["fileId"], "2");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [name.to_owned()], "no temporary file left");
    }

    #[test]
    fn a_file_that_is_not_a_sidecar_is_never_overwritten() {
        let (dir, fd) = folder();
        let name = OsStr::new("b.mp4.vod.json");
        std::fs::write(dir.path().join(name), b"someone's notes").unwrap();
        assert!(!write(&fd, name, &json!({"path": "/drop/b.mp4"})).unwrap());
        let text = std::fs::read(dir.path().join(name)).unwrap();
        assert_eq!(text, b"someone's notes");
    }
}
