//! After-upload actions: keep, delete or move a source the service confirmed; move a failed one
//! to the failed folder. The sidecars written beside them are [`super::sidecar`].
//!
//! Never before the service confirmed the file, never overwriting, at most once, and only while
//! the path still names the file that was uploaded: the folder is opened beneath the watch root
//! with no symlink on the way, and the name in it must still be the same inode at the same
//! version ([`crate::source::look`]), checked again right before the rename or unlink. A file
//! changed after its upload (a writer still at work) is superseded, not disposed of; a path that
//! names another file now is left alone, and why is recorded.
//!
//! The caller ([`super::scheduler`]) first [`plan`]s, then records the intent durably, then
//! [`apply`]s it; after a crash or a power cut, [`recover`] finishes or recognises an intent.

use crate::config::{AfterUpload, Watch};
use crate::ledger::{Disposed, FileKey, FileRecord, FileState};
use crate::shown::shown;
use crate::source::{look, open_parent, SourceError};
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, CWD};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
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
}

/// The folder of `record`'s path (beneath `root`, no symlink) and what its name is now.
fn lookup<'r>(
    record: &'r FileRecord,
    root: &Path,
) -> io::Result<Result<(OwnedFd, &'r OsStr), Plan>> {
    let name = record.path.file_name().unwrap_or_default();
    match open_parent(&record.path, Some(root)) {
        Ok((dir, _)) => Ok(Ok((dir, name))),
        Err(SourceError::Gone { .. }) => Ok(Err(Plan::Skip("the file is gone from its path"))),
        Err(SourceError::NotRegular { .. } | SourceError::Outside { .. }) => Ok(Err(Plan::Skip(
            "a folder on its path is no longer a folder under the watch (a symlink?): left alone",
        ))),
        Err(SourceError::Io { source, .. }) => Err(source),
    }
}

const REWRITTEN: &str = "the file was rewritten in place after it was uploaded (its content is \
     not what the service holds): not disposed of; its new content is taken once it settles";

/// Whether a done file's path still holds the content that was uploaded, as far as a write could
/// have changed it behind the same size, mtime and inode: its `ctime` is the one recorded with
/// its hash, or, when the ctime moved (a chmod or a link moves it too; so does a write whose
/// writer put the mtime back), its SHA-1 read again is the recorded one. A failed file's content
/// was never vouched for: always true. Blocking (it may read the whole file).
fn holds_upload(record: &FileRecord, root: &Path) -> io::Result<bool> {
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

/// Decide the after-upload action of a done or failed file. Blocking.
pub fn plan(record: &FileRecord, watch: &Watch, root: &Path) -> io::Result<Plan> {
    let (dir, name) = match lookup(record, root)? {
        Ok(found) => found,
        Err(plan) => return Ok(plan),
    };
    let failed = record.state == FileState::Failed;
    match look(&dir, name)? {
        Some(now) if record.is(&now) && !holds_upload(record, root)? => {
            return Ok(Plan::Supersede(REWRITTEN));
        }
        Some(now) if record.is(&now) => {}
        None => return Ok(Plan::Skip("the file is gone from its path")),
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

/// Run a planned action, checking right before it that the path still names the uploaded file.
/// Blocking.
pub fn apply(
    record: &FileRecord,
    root: &Path,
    action: AfterUpload,
    target: Option<&Path>,
    still_ours: &dyn Fn() -> bool,
) -> io::Result<Disposal> {
    let (dir, name) = match lookup(record, root)? {
        Ok(found) => found,
        Err(_) => return Ok(Disposal::Skipped("the file is gone from its path")),
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

/// After a crash, a power cut, or a node's death between the recorded intent and the recorded
/// outcome: recognise an action that ran (the source gone, the target holding the uploaded
/// file), or, while the path still names something, decide afresh (`Err`): the caller records
/// that plan as the intent under its own claim before it acts, so a node that lost the file never
/// acts on it, and a move goes to this host's folder (an intent planned on another host of a
/// fleet names that host's mount point). Blocking.
pub fn recover(
    record: &FileRecord,
    watch: &Watch,
    root: &Path,
    action: AfterUpload,
    target: Option<&Path>,
) -> io::Result<Result<Disposal, Plan>> {
    let source = match lookup(record, root)? {
        Ok((dir, name)) => look(&dir, name)?,
        Err(_) => None,
    };
    if source.is_some() {
        return plan(record, watch, root).map(Err);
    }
    let here = folder_for(record, watch).map(|dir| target_in(&record.path, root, dir));
    let moved_to = [target, here.as_deref()]
        .into_iter()
        .flatten()
        .find(|to| holds(to, record));
    Ok(Ok(match (action, moved_to) {
        (AfterUpload::Move, Some(to)) => Disposal::Moved(to.to_owned()),
        (AfterUpload::Delete, _) => Disposal::Deleted,
        (AfterUpload::Keep, _) => Disposal::Kept,
        _ => Disposal::Skipped("the file is gone from its path"),
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

/// Rename `name` (in `dir`) to `target`, never overwriting: a taken name gets ` (1)`, ` (2)`, ...
/// before its extension. Across file systems: copy, sync, then remove the source.
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
) -> io::Result<Disposal> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match rename_to_free_name(dir, name, target) {
        Ok(target) => Ok(Disposal::Moved(target)),
        Err(Errno::XDEV) => copy_across(dir, name, target, key, still_ours),
        Err(e) => Err(e.into()),
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

/// The error of a copy whose claim was taken over while it ran: the copy is removed unlanded.
pub const CLAIM_LOST: &str =
    "the claim on the file could not be confirmed (another node took it over, or the ledger did not answer)";

fn copy_across(
    dir: &OwnedFd,
    name: &OsStr,
    target: &Path,
    key: FileKey,
    still_ours: &dyn Fn() -> bool,
) -> io::Result<Disposal> {
    // Before the partial (shared by this file's holders, one after another) is opened, and again
    // before the copy lands.
    if !still_ours() {
        return Err(io::Error::other(CLAIM_LOST));
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
        return Err(io::Error::other(CLAIM_LOST));
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

/// `target`, or if it or one of its sidecar names is taken, the first of `STEM (1).EXT`,
/// `STEM (2).EXT`, ... that is free with its sidecar names: a moved file never lands beside a
/// sidecar that describes another one.
fn free_name(target: &Path) -> PathBuf {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{FileIdentity, Lease, NewFile, Sqlite, WatchRoot};

    fn done_record(ledger: &Sqlite, path: &Path, root: &Path) -> FileRecord {
        let identity = FileIdentity::of(&std::fs::metadata(path).unwrap());
        let watch = WatchRoot {
            name: "drop".into(),
            path: root.to_owned(),
        };
        let r = ledger
            .enqueue(&NewFile {
                path: path.to_owned(),
                identity,
                part_size: 524_288,
                watch: Some(watch),
                processing: "{}".into(),
                state: FileState::Queued,
                account: None,
            })
            .unwrap();
        let lease = Lease {
            node: "here".into(),
            length: std::time::Duration::from_secs(30),
        };
        let claim = ledger.claim(r.key, &lease).unwrap().unwrap();
        ledger.finish(claim, "id", None, false).unwrap();
        ledger.file(r.key).unwrap().unwrap()
    }

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf, Sqlite) {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let (root, done) = (base.join("drop"), base.join("done"));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(done.join("sub")).unwrap();
        let ledger = Sqlite::open(&base.join("ledger.db")).unwrap();
        (dir, root, done, ledger)
    }

    fn watch(root: &Path, done: &Path) -> Watch {
        let mut watch = Watch::new(root.to_owned());
        watch.after_upload = AfterUpload::Move;
        watch.done_dir = Some(done.to_owned());
        watch
    }

    #[test]
    fn moves_keep_the_relative_path_and_never_overwrite() {
        let (_d, root, done, ledger) = setup();
        std::fs::write(done.join("sub/a.mp4"), b"old").unwrap();
        std::fs::write(root.join("sub/a.mp4"), b"new").unwrap();
        let record = done_record(&ledger, &root.join("sub/a.mp4"), &root);
        let Plan::Act(action, target) = plan(&record, &watch(&root, &done), &root).unwrap() else {
            panic!("the file is the uploaded one")
        };
        assert_eq!(
            target.as_deref(),
            Some(done.join("sub/a (1).mp4").as_path())
        );
        let disposal = apply(&record, &root, action, target.as_deref(), &|| true).unwrap();
        assert_eq!(disposal, Disposal::Moved(done.join("sub/a (1).mp4")));
        assert_eq!(std::fs::read(done.join("sub/a (1).mp4")).unwrap(), b"new");
        assert_eq!(std::fs::read(done.join("sub/a.mp4")).unwrap(), b"old");
        assert!(!root.join("sub/a.mp4").exists());
    }

    #[test]
    fn a_moved_file_never_lands_beside_another_files_sidecar() {
        let (_d, root, done, ledger) = setup();
        std::fs::write(done.join("sub/a.mp4"), b"old").unwrap();
        // Left by another video: a (1).mp4 is free, its sidecar name is not.
        std::fs::write(
            done.join("sub/a (1).mp4.vod.json"),
            b"{\"fileId\":\"other\"}",
        )
        .unwrap();
        std::fs::write(root.join("sub/a.mp4"), b"new").unwrap();
        let record = done_record(&ledger, &root.join("sub/a.mp4"), &root);
        let Plan::Act(action, target) = plan(&record, &watch(&root, &done), &root).unwrap() else {
            panic!("the file is the uploaded one")
        };
        let disposal = apply(&record, &root, action, target.as_deref(), &|| true).unwrap();
        assert_eq!(disposal, Disposal::Moved(done.join("sub/a (2).mp4")));
        // The free name itself, with a stale error sidecar.
        std::fs::write(done.join("sub/b.mp4.error.json"), b"{}").unwrap();
        std::fs::write(root.join("sub/b.mp4"), b"bee").unwrap();
        let record = done_record(&ledger, &root.join("sub/b.mp4"), &root);
        let Plan::Act(action, target) = plan(&record, &watch(&root, &done), &root).unwrap() else {
            panic!("the file is the uploaded one")
        };
        let disposal = apply(&record, &root, action, target.as_deref(), &|| true).unwrap();
        assert_eq!(disposal, Disposal::Moved(done.join("sub/b (1).mp4")));
    }

    #[test]
    fn a_file_changed_after_upload_is_superseded_and_a_replaced_one_left_alone() {
        let (_d, root, done, ledger) = setup();
        let path = root.join("a.mp4");
        std::fs::write(&path, b"first").unwrap();
        let record = done_record(&ledger, &path, &root);
        let w = watch(&root, &done);
        {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            f.write_all(b" and more").unwrap();
        }
        assert!(matches!(
            plan(&record, &w, &root).unwrap(),
            Plan::Supersede(_)
        ));
        std::fs::write(root.join("b.mp4"), b"first").unwrap();
        std::fs::rename(root.join("b.mp4"), &path).unwrap();
        assert!(matches!(plan(&record, &w, &root).unwrap(), Plan::Skip(_)));
        assert_eq!(std::fs::read(&path).unwrap(), b"first", "left in place");
    }

    /// A folder on another file system than `root` (in /dev/shm), where a move is a copy; none,
    /// said on stderr, where there is no such place.
    fn another_file_system(root: &Path) -> Option<tempfile::TempDir> {
        use std::os::unix::fs::MetadataExt as _;
        let Ok(other) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("no /dev/shm: cross-file-system move not tested");
            return None;
        };
        let device = |p: &Path| std::fs::metadata(p).unwrap().dev();
        if device(root) == device(other.path()) {
            eprintln!("/dev/shm is on the same file system: not tested");
            return None;
        }
        Some(other)
    }

    #[test]
    fn a_copy_across_file_systems_whose_claim_was_lost_meanwhile_never_lands() {
        let (_d, root, _, ledger) = setup();
        let other = another_file_system(&root)
            .expect("the test needs /dev/shm on a file system of its own");
        let done = other.path().join("done");
        let path = root.join("z.mp4");
        std::fs::write(&path, b"zombie").unwrap();
        let record = done_record(&ledger, &path, &root);
        let Plan::Act(action, target) = plan(&record, &watch(&root, &done), &root).unwrap() else {
            panic!("act")
        };
        // Lost before the copy starts: nothing is written.
        let asked = std::cell::Cell::new(0);
        let lost = || {
            asked.set(asked.get() + 1);
            false
        };
        let error = apply(&record, &root, action, target.as_deref(), &lost).unwrap_err();
        assert_eq!(error.to_string(), CLAIM_LOST);
        assert_eq!(asked.get(), 1, "asked before anything is written");
        // Lost during the copy (a node frozen mid-copy, taken over meanwhile): the copy made is
        // removed, never given its name.
        asked.set(0);
        let lost_meanwhile = || {
            asked.set(asked.get() + 1);
            asked.get() == 1
        };
        let error = apply(&record, &root, action, target.as_deref(), &lost_meanwhile).unwrap_err();
        assert_eq!(error.to_string(), CLAIM_LOST);
        assert_eq!(asked.get(), 2, "asked again once the copy was made");
        assert_eq!(std::fs::read(&path).unwrap(), b"zombie", "the source stays");
        let left: Vec<_> = std::fs::read_dir(&done).unwrap().collect();
        assert!(left.is_empty(), "no copy nor partial left: {left:?}");
    }

    #[test]
    fn a_move_across_file_systems_redoes_a_copy_a_crash_left_behind() {
        let (_d, root, _, ledger) = setup();
        let Some(other) = another_file_system(&root) else {
            return;
        };
        let done = other.path().join("done");
        let path = root.join("a.mp4");
        std::fs::write(&path, b"content").unwrap();
        let record = done_record(&ledger, &path, &root);
        let Plan::Act(action, target) = plan(&record, &watch(&root, &done), &root).unwrap() else {
            panic!("act")
        };
        std::fs::create_dir_all(&done).unwrap();
        // A crash's half copy of this file, and another file's copy under way to the same name.
        let partial = done.join(format!(".a.mp4.{}.vodup-partial", record.key));
        let others = done.join(".a.mp4.999999.vodup-partial");
        std::fs::write(&partial, b"half").unwrap();
        std::fs::write(&others, b"another file's").unwrap();
        let disposal = apply(&record, &root, action, target.as_deref(), &|| true).unwrap();
        assert_eq!(disposal, Disposal::Moved(done.join("a.mp4")));
        assert_eq!(std::fs::read(done.join("a.mp4")).unwrap(), b"content");
        assert!(!partial.exists() && !path.exists());
        assert_eq!(std::fs::read(&others).unwrap(), b"another file's");
    }

    #[test]
    fn a_move_across_file_systems_keeps_the_mode_times_and_group_as_mv_does() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let (_d, root, _, ledger) = setup();
        let Some(other) = another_file_system(&root) else {
            return;
        };
        let done = other.path().join("done");
        let path = root.join("a.mp4");
        std::fs::write(&path, b"content").unwrap();
        let source = std::fs::File::options().write(true).open(&path).unwrap();
        source
            .set_permissions(std::fs::Permissions::from_mode(0o640))
            .unwrap();
        let day = std::time::Duration::from_secs(86_400);
        let (atime, mtime) = (
            std::time::SystemTime::UNIX_EPOCH + 19_000 * day,
            std::time::SystemTime::UNIX_EPOCH + 20_000 * day + std::time::Duration::from_nanos(5),
        );
        source
            .set_times(
                std::fs::FileTimes::new()
                    .set_accessed(atime)
                    .set_modified(mtime),
            )
            .unwrap();
        drop(source);
        let before = std::fs::metadata(&path).unwrap();
        if before.dev() == std::fs::metadata(other.path()).unwrap().dev() {
            return eprintln!("/dev/shm is on the same file system: not tested");
        }
        let record = done_record(&ledger, &path, &root);
        let Plan::Act(action, target) = plan(&record, &watch(&root, &done), &root).unwrap() else {
            panic!("act")
        };
        apply(&record, &root, action, target.as_deref(), &|| true).unwrap();
        let after = std::fs::metadata(done.join("a.mp4")).unwrap();
        assert_eq!(after.permissions().mode() & 0o7777, 0o640);
        assert_eq!(after.modified().unwrap(), mtime);
        assert_eq!(after.accessed().unwrap(), atime);
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    }

    #[test]
    fn recovery_recognises_a_move_whose_outcome_was_lost() {
        let (_d, root, done, ledger) = setup();
        let path = root.join("a.mp4");
        std::fs::write(&path, b"content").unwrap();
        let record = done_record(&ledger, &path, &root);
        let w = watch(&root, &done);
        let Plan::Act(action, target) = plan(&record, &w, &root).unwrap() else {
            panic!("act")
        };
        apply(&record, &root, action, target.as_deref(), &|| true).unwrap();
        let again = recover(&record, &w, &root, action, target.as_deref()).unwrap();
        assert_eq!(again, Ok(Disposal::Moved(done.join("a.mp4"))));
        std::fs::remove_file(done.join("a.mp4")).unwrap();
        let lost = recover(&record, &w, &root, action, target.as_deref()).unwrap();
        assert!(matches!(lost, Ok(Disposal::Skipped(_))), "{lost:?}");
    }
}
