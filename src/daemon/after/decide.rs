//! What the after-upload action of a done or failed file is, decided before anything is
//! touched ([`plan`]), or, for an intent recorded before a crash, what it did ([`recover`]):
//! never before the service confirmed the file, and only while the path still names the file
//! that was uploaded (the folder opened beneath the watch root with no symlink on the way, the
//! name the same inode at the same version, and a done file's content still the one hashed). A
//! file changed after its upload is superseded; a path that names another file is left alone.
//! Not the action itself ([`super::apply`]).

use crate::config::{AfterUpload, Watch};
use crate::ledger::{Disposed, FileRecord, FileState};
use crate::shown::shown;
use crate::source::{look, open_parent, SourceError};
use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use tracing::info;

/// What happened to the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposal {
    Kept,
    Deleted,
    Moved(PathBuf),
    /// Copied across filesystems, but the source could not be removed: it is left in place.
    Copied(PathBuf),
    /// Left alone, for this reason (the path is gone, or names another file now).
    Skipped(&'static str),
}

impl Disposal {
    /// What the ledger records.
    pub fn recorded(&self) -> Disposed {
        match self {
            Disposal::Kept => Disposed::Kept,
            Disposal::Deleted => Disposed::Deleted,
            Disposal::Moved(_) => Disposed::Moved,
            Disposal::Copied(_) => Disposed::Copied,
            Disposal::Skipped(why) => Disposed::Skipped((*why).into()),
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

/// What to do with a done or failed file, decided before anything is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The path still names the uploaded file: run this action (to this target, for a move).
    Act(AfterUpload, Option<PathBuf>),
    /// Leave the path alone; still an outcome (its hooks run).
    Skip(&'static str),
    /// The file changed after it was uploaded: the row is superseded, nothing is touched, no hook.
    Supersede(&'static str),
    /// An intent recorded before a crash had run: this is what it did.
    Recovered(Disposal),
}

/// Where `record`'s path leads now.
pub(super) enum Lookup<'r> {
    /// Its folder (beneath the root, no symlink on the way) and its name in it.
    Found(OwnedFd, &'r OsStr),
    /// No folder there to look in, for this reason (an outcome: its hooks run).
    Missing(&'static str),
}

pub(super) fn lookup<'r>(record: &'r FileRecord, root: &Path) -> io::Result<Lookup<'r>> {
    let name = record.path.file_name().unwrap_or_default();
    match open_parent(&record.path, Some(root)) {
        Ok((dir, _)) => Ok(Lookup::Found(dir, name)),
        Err(SourceError::Gone { .. }) => Ok(Lookup::Missing(GONE)),
        Err(SourceError::NotRegular { .. } | SourceError::Outside { .. }) => Ok(Lookup::Missing(
            "a folder on its path is no longer a folder under the watch (a symlink?): left alone",
        )),
        Err(SourceError::Io { source, .. }) => Err(source),
    }
}

pub(super) const GONE: &str = "the file is gone from its path";

const REWRITTEN: &str = "the file was rewritten in place after it was uploaded (its content is \
     not what the service holds): not disposed of; its new content is taken once it settles";

/// Whether a done file's path still holds the content that was uploaded, as far as a write could
/// have changed it behind the same size, mtime and inode: its `ctime` is the one recorded with
/// its hash, or, when the ctime moved (a chmod or a link moves it too; so does a write whose
/// writer put the mtime back), its SHA-1 read again is the recorded one. A failed file's content
/// was never vouched for: always true. Blocking (it may read the whole file).
pub(super) fn holds_upload(record: &FileRecord, root: &Path) -> io::Result<bool> {
    let (FileState::Done, Some(sha)) = (record.state, &record.file_sha) else {
        return Ok(true);
    };
    let source = match crate::source::Source::open(&record.path, Some(root)) {
        Ok(source) => source,
        // Gone or swapped meanwhile: the identity check that follows says what it is now.
        Err(SourceError::Gone { .. } | SourceError::NotRegular { .. }) => return Ok(true),
        Err(SourceError::Io { source, .. }) => return Err(source),
        Err(SourceError::Outside { .. }) => return Ok(true),
    };
    if record.hashed_ctime_ns == Some(source.changed_ns()) {
        return Ok(true);
    }
    info!(path = %shown(&record.path), "the file's status changed since it was hashed: reading it again before its after-upload action");
    let now = crate::hash::sha1_now(&source)?;
    Ok(now.as_deref() == Some(sha.as_str()) && record.is(&source.current()?))
}

/// The after-upload action of a done or failed file: planned afresh, or, with an intent
/// recorded, recovered. Blocking.
pub fn decide(record: &FileRecord, watch: &Watch, root: &Path) -> io::Result<Plan> {
    match record.intent {
        Some(action) => recover(record, watch, root, action, record.intent_target.as_deref()),
        None => plan(record, watch, root),
    }
}

/// Decide the after-upload action of a done or failed file. Blocking.
pub fn plan(record: &FileRecord, watch: &Watch, root: &Path) -> io::Result<Plan> {
    let (dir, name) = match lookup(record, root)? {
        Lookup::Found(dir, name) => (dir, name),
        Lookup::Missing(why) => return Ok(Plan::Skip(why)),
    };
    let failed = record.state == FileState::Failed;
    match look(&dir, name)? {
        Some(now) if record.is(&now) && !holds_upload(record, root)? => {
            return Ok(Plan::Supersede(REWRITTEN));
        }
        Some(now) if record.is(&now) => {}
        None => return Ok(Plan::Skip(GONE)),
        Some(now) if record.inode.is_none_or(|i| i.ino == now.inode.ino) => {
            return Ok(Plan::Supersede(
                "the file changed after it was uploaded (still being written?): not disposed of; \
                 its new version is taken once it settles",
            ))
        }
        Some(_) if failed => {
            return Ok(Plan::Supersede(
                "the path names another file now: that file is taken on its own",
            ))
        }
        Some(_) => {
            return Ok(Plan::Skip(
                "the path names another file now: left alone (it is taken on its own)",
            ))
        }
    }
    let dir_for = |dir: &Path| Some(free_name(&target_in(&record.path, root, dir)));
    Ok(match (record.state, watch.after_upload) {
        (FileState::Done, AfterUpload::Move) => match &watch.done_dir {
            Some(done) => Plan::Act(AfterUpload::Move, dir_for(done)),
            None => Plan::Act(AfterUpload::Keep, None),
        },
        (FileState::Done, action) => Plan::Act(action, None),
        (_, _) => match &watch.failed_dir {
            Some(failed) => Plan::Act(AfterUpload::Move, dir_for(failed)),
            None => Plan::Act(AfterUpload::Keep, None),
        },
    })
}

/// After a crash, a power cut, or a node's death between the recorded intent and the recorded
/// outcome: recognise an action that ran (the source gone, the target holding the uploaded
/// file), or, while the path still names something, decide afresh: the caller records
/// that plan as the intent under its own claim before it acts, so a node that lost the file never
/// acts on it, and a move goes to this host's folder (an intent planned on another host of a
/// fleet names that host's mount point). Blocking.
pub fn recover(
    record: &FileRecord,
    watch: &Watch,
    root: &Path,
    action: AfterUpload,
    target: Option<&Path>,
) -> io::Result<Plan> {
    let source = match lookup(record, root)? {
        Lookup::Found(dir, name) => look(&dir, name)?,
        Lookup::Missing(_) => None,
    };
    if source.is_some() {
        return plan(record, watch, root);
    }
    let here = folder_for(record, watch).map(|dir| target_in(&record.path, root, dir));
    let moved_to = [target, here.as_deref()]
        .into_iter()
        .flatten()
        .find(|to| holds(to, record));
    Ok(Plan::Recovered(match (action, moved_to) {
        (AfterUpload::Move, Some(to)) => Disposal::Moved(to.to_owned()),
        (AfterUpload::Delete, _) => Disposal::Deleted,
        (AfterUpload::Keep, _) => Disposal::Kept,
        _ => Disposal::Skipped(GONE),
    }))
}

/// The folder this host's config moves the file to: `done_dir` for a done file, `failed_dir` for
/// a failed one.
fn folder_for<'w>(record: &FileRecord, watch: &'w Watch) -> Option<&'w Path> {
    match record.state {
        FileState::Done => watch.done_dir.as_deref(),
        _ => watch.failed_dir.as_deref(),
    }
}

/// Whether `target` holds the uploaded file: the same inode (renamed), or a copy of its size
/// (moved across file systems: a new inode and mtime).
fn holds(target: &Path, record: &FileRecord) -> bool {
    std::fs::symlink_metadata(target).is_ok_and(|meta| {
        let found = crate::ledger::FileIdentity::of(&meta);
        meta.file_type().is_file()
            && (record.inode == Some(found.inode) || found.version.size == record.size)
    })
}

/// Where `path` goes in `dir`: its path relative to `root` kept.
fn target_in(path: &Path, root: &Path, dir: &Path) -> PathBuf {
    let relative = path
        .strip_prefix(root)
        .ok()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from(path.file_name().unwrap_or_default()));
    dir.join(relative)
}

/// `target`, or if it or one of its sidecar names is taken, the first of `STEM (1).EXT`,
/// `STEM (2).EXT`, ... that is free with its sidecar names: a moved file never lands beside a
/// sidecar that describes another one.
pub(super) fn free_name(target: &Path) -> PathBuf {
    let free = |p: &Path| p.symlink_metadata().is_err() && !super::sidecar::name_taken(p);
    if free(target) {
        return target.to_owned();
    }
    let stem = target.file_stem().unwrap_or_default().to_string_lossy();
    let ext = target
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (1..)
        .map(|n| target.with_file_name(format!("{stem} ({n}){ext}")))
        .find(|candidate| free(candidate))
        .expect("some name is free")
}
