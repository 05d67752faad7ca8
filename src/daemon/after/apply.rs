//! The after-upload action, run: delete the source, or move it (renamed, or copied across file
//! systems, synced, then removed), never overwriting, checking right before that the path still
//! names the uploaded file. Not what to do ([`super::decide`]), nor the record of it.

use super::decide::{free_name, holds_upload, lookup, Disposal, Lookup};
use super::AfterError;
use crate::config::AfterUpload;
use crate::ledger::{FileKey, FileRecord, FileState};
use crate::shown::shown;
use crate::source::look;
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, CWD};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// Run a planned action, checking right before it that the path still names the uploaded file.
/// Blocking.
pub fn apply(
    record: &FileRecord,
    root: &Path,
    action: AfterUpload,
    target: Option<&Path>,
    still_ours: &dyn Fn() -> bool,
) -> Result<Disposal, AfterError> {
    let (dir, name) = match lookup(record, root)? {
        Lookup::Found(dir, name) => (dir, name),
        Lookup::Missing(_) => return Ok(Disposal::Skipped(super::decide::GONE)),
    };
    if !look(&dir, name)?.is_some_and(|now| record.is(&now)) || !holds_upload(record, root)? {
        return Ok(Disposal::Skipped(
            "the file changed or went away just before its after-upload action",
        ));
    }
    let disposal = match (action, target) {
        (AfterUpload::Keep, _) | (AfterUpload::Move, None) => Disposal::Kept,
        (AfterUpload::Delete, _) => {
            rustix::fs::unlinkat(&dir, name, AtFlags::empty())?;
            info!(path = %shown(&record.path), "source deleted after upload");
            Disposal::Deleted
        }
        (AfterUpload::Move, Some(target)) => move_to(&dir, name, target, record.key, still_ours)?,
    };
    if record.state == FileState::Failed {
        if let Some(to) = disposal.target() {
            warn!(path = %shown(&record.path), to = %shown(to), "failed file moved aside");
        }
    }
    Ok(disposal)
}

/// Move the file `name` in `dir` (file `key` of the ledger) to `target`, or the next free name
/// beside it. Files end side by side, so two disposals may aim at one name at once (two watches
/// sharing a done folder, say): each copy across file systems goes through a temporary name of
/// its own file's, and a rename that cannot refuse to replace is made under [`FREE_NAME`].
fn move_to(
    dir: &OwnedFd,
    name: &OsStr,
    target: &Path,
    key: FileKey,
    still_ours: &dyn Fn() -> bool,
) -> Result<Disposal, AfterError> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match rename_to_free_name(dir, name, target) {
        Ok(target) => Ok(Disposal::Moved(target)),
        Err(Errno::XDEV) => copy_across(dir, name, target, key, still_ours),
        Err(e) => Err(io::Error::from(e).into()),
    }
}

/// Held from "this name is free" to the rename that takes it, on file systems without
/// `RENAME_NOREPLACE`, so this host's disposals never take one name twice.
static FREE_NAME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Rename `from` (in `dir`) to `target`, never over another file: a name taken meanwhile gets
/// the next free one ([`free_name`]). The name it got.
fn rename_to_free_name<P: rustix::path::Arg + Copy>(
    dir: impl AsFd + Copy,
    from: P,
    target: &Path,
) -> rustix::io::Result<PathBuf> {
    let mut target = target.to_owned();
    loop {
        if super::sidecar::name_taken(&target) {
            target = free_name(&target);
        }
        match rustix::fs::renameat_with(dir, from, CWD, &target, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(target),
            Err(Errno::EXIST) => target = free_name(&target),
            // A file system without RENAME_NOREPLACE: the name is checked free and taken under
            // one lock.
            Err(Errno::INVAL) => {
                let _only_this_host = FREE_NAME.lock().unwrap_or_else(|p| p.into_inner());
                if target.exists() {
                    target = free_name(&target);
                    continue;
                }
                rustix::fs::renameat(dir, from, CWD, &target)?;
                return Ok(target);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Copy across file systems under a hidden name of this file's own, and land it only while
/// `still_ours` (else [`AfterError::ClaimLost`], the copy removed).
fn copy_across(
    dir: &OwnedFd,
    name: &OsStr,
    target: &Path,
    key: FileKey,
    still_ours: &dyn Fn() -> bool,
) -> Result<Disposal, AfterError> {
    // Before the partial (shared by this file's holders, one after another) is opened, and again
    // before the copy lands.
    if !still_ours() {
        return Err(AfterError::ClaimLost);
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut from = std::fs::File::from(rustix::fs::openat(dir, name, flags, Mode::empty())?);
    // A hidden name of this file's own next to the target (another file copied to the same name
    // at the same time has another); one left by a crash mid-copy is this file's to redo.
    let mut partial_name = std::ffi::OsString::from(".");
    partial_name.push(target.file_name().unwrap_or_default());
    partial_name.push(format!(".{key}.vodup-partial"));
    let partial = target.with_file_name(partial_name);
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&partial)?;
    // Before the copy reads it, which may move its access time.
    let meta = from.metadata()?;
    io::copy(&mut from, &mut to)?;
    keep_metadata(&meta, &to)?;
    to.sync_all()?;
    // A copy takes seconds to minutes: the node may have been frozen meanwhile and the file
    // moved by the node that took it over. Only a holder lands its copy.
    if !still_ours() {
        let _ = std::fs::remove_file(&partial);
        return Err(AfterError::ClaimLost);
    }
    let target = rename_to_free_name(CWD, partial.as_path(), target)?;
    // The copy's name is durable before the source goes.
    if let Some(folder) = target.parent() {
        std::fs::File::open(folder)?.sync_all()?;
    }
    let target = target.as_path();
    // The copy is complete: from here the move counts as done, so a failure to remove the
    // source never leads to a second copy.
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => Ok(Disposal::Moved(target.to_owned())),
        Err(e) => {
            warn!(to = %shown(target), error = %e, "copied to the target but could not remove the source");
            Ok(Disposal::Copied(target.to_owned()))
        }
    }
}

/// Give the copy `to` what `mv` keeps of the source (`meta`) across file systems: its owner and group (as far
/// as this user may: the group alone, else neither), its mode, and its access and modification
/// times.
fn keep_metadata(meta: &std::fs::Metadata, to: &std::fs::File) -> io::Result<()> {
    use std::os::unix::fs::{fchown, MetadataExt as _};
    if fchown(to, Some(meta.uid()), Some(meta.gid())).is_err() {
        let _ = fchown(to, None, Some(meta.gid()));
    }
    // After the owner: a change of owner clears the set-id bits. Best effort, as `mv` does: a
    // file system that keeps no modes or times (vfat, some CIFS mounts) does not fail the move.
    if let Err(e) = to.set_permissions(meta.permissions()) {
        warn!(error = %e, "the copy's mode could not be kept");
    }
    let times = std::fs::FileTimes::new()
        .set_accessed(meta.accessed()?)
        .set_modified(meta.modified()?);
    if let Err(e) = to.set_times(times) {
        warn!(error = %e, "the copy's times could not be kept");
    }
    Ok(())
}
