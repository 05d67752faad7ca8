//! The after-upload action on real folders: plans, moves that never overwrite nor land beside
//! another file's sidecar, copies across file systems, and recovery of an intent.

use super::*;
use crate::config::AfterUpload;
use crate::ledger::{FileIdentity, Lease, NewFile, Sqlite, WatchRoot};
use std::path::{Path, PathBuf};

/// The action planned for `record`, which must be one.
fn act(record: &FileRecord, watch: &Watch, root: &Path) -> (AfterUpload, Option<PathBuf>) {
    match plan(record, watch, root).unwrap() {
        Plan::Act(action, target) => (action, target),
        other => panic!("not an action: {other:?}"),
    }
}

/// A move to another file system's `done`, if this host has another one: the folder guard, and
/// the file `a.mp4` with `content`, uploaded.
fn across(
    root: &Path,
    ledger: &Sqlite,
) -> Option<(tempfile::TempDir, PathBuf, PathBuf, FileRecord)> {
    let other = another_file_system(root)?;
    let done = other.path().join("done");
    let path = root.join("a.mp4");
    std::fs::write(&path, b"content").unwrap();
    let record = done_record(ledger, &path, root);
    Some((other, done, path, record))
}

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
    let claim = ledger.claim(r.key, &lease).unwrap().unwrap().0;
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
    let (action, target) = act(&record, &watch(&root, &done), &root);
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
    let (action, target) = act(&record, &watch(&root, &done), &root);
    let disposal = apply(&record, &root, action, target.as_deref(), &|| true).unwrap();
    assert_eq!(disposal, Disposal::Moved(done.join("sub/a (2).mp4")));
    // The free name itself, with a stale error sidecar.
    std::fs::write(done.join("sub/b.mp4.error.json"), b"{}").unwrap();
    std::fs::write(root.join("sub/b.mp4"), b"bee").unwrap();
    let record = done_record(&ledger, &root.join("sub/b.mp4"), &root);
    let (action, target) = act(&record, &watch(&root, &done), &root);
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
    let other =
        another_file_system(&root).expect("the test needs /dev/shm on a file system of its own");
    let done = other.path().join("done");
    let path = root.join("z.mp4");
    std::fs::write(&path, b"zombie").unwrap();
    let record = done_record(&ledger, &path, &root);
    let (action, target) = act(&record, &watch(&root, &done), &root);
    // Lost before the copy starts: nothing is written.
    let asked = std::cell::Cell::new(0);
    let lost = || {
        asked.set(asked.get() + 1);
        false
    };
    let error = apply(&record, &root, action, target.as_deref(), &lost).unwrap_err();
    assert!(matches!(error, AfterError::ClaimLost), "{error}");
    assert_eq!(asked.get(), 1, "asked before anything is written");
    // Lost during the copy (a node frozen mid-copy, taken over meanwhile): the copy made is
    // removed, never given its name.
    asked.set(0);
    let lost_meanwhile = || {
        asked.set(asked.get() + 1);
        asked.get() == 1
    };
    let error = apply(&record, &root, action, target.as_deref(), &lost_meanwhile).unwrap_err();
    assert!(matches!(error, AfterError::ClaimLost), "{error}");
    assert_eq!(asked.get(), 2, "asked again once the copy was made");
    assert_eq!(std::fs::read(&path).unwrap(), b"zombie", "the source stays");
    let left: Vec<_> = std::fs::read_dir(&done).unwrap().collect();
    assert!(left.is_empty(), "no copy nor partial left: {left:?}");
}

#[test]
fn a_move_across_file_systems_redoes_a_copy_a_crash_left_behind() {
    let (_d, root, _, ledger) = setup();
    let Some((_other, done, path, record)) = across(&root, &ledger) else {
        return;
    };
    let (action, target) = act(&record, &watch(&root, &done), &root);
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
    let (action, target) = act(&record, &watch(&root, &done), &root);
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
    let (action, target) = act(&record, &w, &root);
    apply(&record, &root, action, target.as_deref(), &|| true).unwrap();
    let again = recover(&record, &w, &root, action, target.as_deref()).unwrap();
    assert_eq!(again, Plan::Recovered(Disposal::Moved(done.join("a.mp4"))));
    std::fs::remove_file(done.join("a.mp4")).unwrap();
    let lost = recover(&record, &w, &root, action, target.as_deref()).unwrap();
    assert!(
        matches!(lost, Plan::Recovered(Disposal::Skipped(_))),
        "{lost:?}"
    );
}
