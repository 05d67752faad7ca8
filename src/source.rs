//! A source file as vodup holds it: opened once, without following a symlink, and known by its
//! identity (device, inode, size, mtime) from that descriptor on.
//!
//! A file from a watch folder is opened beneath its watch root: every folder on the way is opened
//! with `O_NOFOLLOW | O_DIRECTORY`, the file itself with `O_NOFOLLOW`, and the descriptor must be a
//! regular file. So a path swapped for a symlink (or a folder swapped for one) is refused instead
//! of followed out of the drop folder. Hashing, part reads and identity checks go through the
//! descriptor (`pread`, `fstat`), never by opening the path again. [`enqueue`] records a file in the
//! ledger from such a descriptor (`vodup upload` uses it), [`enqueue_all`] a batch of them (the
//! intake uses it).
//!
//! This module does not decide when a file is complete (`daemon::intake`) nor what to do with
//! it afterwards ([`crate::daemon`]'s disposal, which uses [`open_parent`] and [`look`]).

use crate::config::AccountName;
use crate::ledger::{FileIdentity, FileRecord, FileState, Ledger, NewFile, WatchRoot};
use crate::shown::shown;
use rustix::fs::{AtFlags, Mode, OFlags, CWD};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{}: no longer there", shown(.path))]
    Gone { path: PathBuf },
    #[error("{}: not a regular file (symlinks, and files under symlinked folders, are never taken)", shown(.path))]
    NotRegular { path: PathBuf },
    #[error("{}: not under its watch folder {}", shown(.path), shown(.root))]
    Outside { path: PathBuf, root: PathBuf },
    #[error("cannot open {}: {source}", shown(.path))]
    Io { path: PathBuf, source: io::Error },
}

/// An open source file and the identity it had when it was opened.
#[derive(Debug)]
pub struct Source {
    file: File,
    identity: FileIdentity,
    /// Its status change time (`ctime`, ns) when it was opened: moved by any write, even one
    /// whose writer put the mtime back, and by metadata changes (chmod, a link).
    changed_ns: i64,
}

impl Source {
    /// Open `path` for reading. With `root` (the watch folder it came from), no folder between the
    /// root and the file may be a symlink; the file itself never may. Blocking.
    pub fn open(path: &Path, root: Option<&Path>) -> Result<Source, SourceError> {
        let (dir, name) = open_parent(path, root)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = rustix::fs::openat(&dir, &*name, flags, Mode::empty())
            .map_err(|e| classify(path, e))?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(|source| SourceError::Io {
            path: path.to_owned(),
            source,
        })?;
        if !meta.file_type().is_file() {
            return Err(SourceError::NotRegular {
                path: path.to_owned(),
            });
        }
        Ok(Source {
            identity: FileIdentity::of(&meta),
            changed_ns: ctime_ns(&meta),
            file,
        })
    }

    /// The identity the file had when it was opened.
    pub fn identity(&self) -> FileIdentity {
        self.identity
    }

    /// The identity of the open file now (`fstat`): a writer still at work shows here.
    pub fn current(&self) -> io::Result<FileIdentity> {
        Ok(FileIdentity::of(&self.file.metadata()?))
    }

    /// Whether the file's status changed since it was opened (its `ctime` moved): a write that
    /// kept size and mtime (`dd conv=notrunc` then `touch -r`, `rsync --inplace -t`) shows only
    /// here; so does a chmod, which is why this calls for a look at the content, not a verdict.
    pub fn status_changed(&self) -> io::Result<bool> {
        Ok(ctime_ns(&self.file.metadata()?) != self.changed_ns)
    }

    /// Its `ctime` (ns) when it was opened: what the ledger stores beside a hash taken from it.
    pub fn changed_ns(&self) -> i64 {
        self.changed_ns
    }

    /// The open file, to read with `pread` (`FileExt::read_exact_at`).
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// A `stat`'s ctime in nanoseconds since the epoch.
pub fn ctime_ns(meta: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt as _;
    meta.ctime() * 1_000_000_000 + meta.ctime_nsec()
}

/// The folder holding `path`, opened with no symlink between `root` and it, and the file's name.
/// Without a root, only the file's own name is guarded (the caller named the path itself).
///
/// The folders are opened with `O_PATH`: a handle to look names up in and to rename, link and
/// unlink through, never to read. Such an open is not an event for the watcher (an open folder
/// would be one per file taken, moved or given a sidecar).
pub fn open_parent(path: &Path, root: Option<&Path>) -> Result<(OwnedFd, OsString), SourceError> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(SourceError::NotRegular {
            path: path.to_owned(),
        });
    };
    // With O_PATH, O_NOFOLLOW alone would open a symlink itself: O_DIRECTORY is what refuses one
    // on the way (ENOTDIR), so it must stay.
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let Some(root) = root else {
        let dir = rustix::fs::openat(CWD, parent, dir_flags, Mode::empty())
            .map_err(|e| classify(path, e))?;
        return Ok((dir, name.to_owned()));
    };
    let below = parent
        .strip_prefix(root)
        .map_err(|_| SourceError::Outside {
            path: path.to_owned(),
            root: root.to_owned(),
        })?;
    let mut dir =
        rustix::fs::openat(CWD, root, dir_flags, Mode::empty()).map_err(|e| classify(path, e))?;
    for component in below.components() {
        let Component::Normal(folder) = component else {
            return Err(SourceError::NotRegular {
                path: path.to_owned(),
            });
        };
        dir = rustix::fs::openat(&dir, folder, dir_flags | OFlags::NOFOLLOW, Mode::empty())
            .map_err(|e| classify(path, e))?;
    }
    Ok((dir, name.to_owned()))
}

/// What `name` in `dir` is now, without following a symlink: the identity of a regular file, or
/// `None` if nothing (or something else) is there.
pub fn look(dir: &OwnedFd, name: &OsStr) -> io::Result<Option<FileIdentity>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(is_regular(&stat).then(|| identity_of(&stat))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn is_regular(stat: &rustix::fs::Stat) -> bool {
    rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::RegularFile
}

fn identity_of(stat: &rustix::fs::Stat) -> FileIdentity {
    let mtime = (stat.st_mtime, stat.st_mtime_nsec as i64);
    FileIdentity::new(stat.st_dev, stat.st_ino, stat.st_size as u64, mtime)
}

fn classify(path: &Path, errno: Errno) -> SourceError {
    let path = path.to_owned();
    match errno {
        Errno::NOENT => SourceError::Gone { path },
        // ELOOP: a symlink where O_NOFOLLOW forbids one; ENOTDIR: a file (or symlink) where a
        // folder was expected.
        Errno::LOOP | Errno::NOTDIR | Errno::MLINK => SourceError::NotRegular { path },
        other => SourceError::Io {
            path,
            source: other.into(),
        },
    }
}

/// Record the file at `path` in the ledger as it is now (idempotent per path and version): opened
/// as [`Source::open`] does, its identity taken from the descriptor. An empty file is recorded as
/// `waiting`, going to `account` (`None`: the watch's or the top-level one, decided when it
/// uploads).
pub async fn enqueue(
    ledger: &Ledger,
    path: &Path,
    watch: Option<WatchRoot>,
    part_size: u64,
    processing: String,
    account: Option<AccountName>,
) -> Result<FileRecord, EnqueueError> {
    let settled = Settled {
        path: path.to_owned(),
        watch,
        processing,
        account,
    };
    let (_, recorded) = enqueue_all(ledger, vec![settled], part_size)
        .await?
        .pop()
        .expect("one file in, one out");
    Ok(recorded?)
}

/// A file to record: where it is, and what its watch says of it.
#[derive(Debug, Clone)]
pub struct Settled {
    pub path: PathBuf,
    pub watch: Option<WatchRoot>,
    /// The processing parameters, as JSON.
    pub processing: String,
    pub account: Option<AccountName>,
}

/// [`enqueue`] for several files: they are opened together off the async workers and recorded
/// in one ledger call, so a burst of small files costs two hops, not two per file. Each comes
/// back with its record, or why it could not be opened; the ledger's trouble is the whole
/// batch's.
pub async fn enqueue_all(
    ledger: &Ledger,
    settled: Vec<Settled>,
    part_size: u64,
) -> Result<Vec<(PathBuf, Result<FileRecord, SourceError>)>, crate::ledger::LedgerError> {
    let opened = tokio::task::spawn_blocking(move || {
        settled
            .into_iter()
            .map(|s| {
                let root = s.watch.as_ref().map(|w| w.path.as_path());
                let identity = Source::open(&s.path, root).map(|source| source.identity());
                (s, identity)
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("open does not panic");
    let new: Vec<NewFile> = opened
        .iter()
        .filter_map(|(s, identity)| {
            let identity = *identity.as_ref().ok()?;
            let state = if identity.version.size == 0 {
                FileState::Waiting
            } else {
                FileState::Queued
            };
            Some(NewFile {
                path: s.path.clone(),
                identity,
                part_size,
                watch: s.watch.clone(),
                processing: s.processing.clone(),
                state,
                account: s.account.clone(),
            })
        })
        .collect();
    let mut records = if new.is_empty() {
        Vec::new()
    } else {
        ledger.enqueue_all(new).await?
    }
    .into_iter();
    Ok(opened
        .into_iter()
        .map(|(s, identity)| {
            let recorded = identity.map(|_| records.next().expect("a record per opened file"));
            (s.path, recorded)
        })
        .collect())
}

/// Why a file could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap().join("drop");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.mp4"), b"inside").unwrap();
        std::fs::write(dir.path().join("outside.mp4"), b"secret").unwrap();
        (dir, root)
    }

    #[test]
    fn opening_the_folders_of_a_path_is_no_event_for_a_watcher() {
        use notify::Watcher as _;
        let (_d, root) = tree();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        })
        .unwrap();
        watcher
            .watch(&root, notify::RecursiveMode::Recursive)
            .unwrap();
        let quiet = std::time::Duration::from_millis(300);
        // The watcher does tell of a folder opened to be read...
        drop(std::fs::read_dir(root.join("sub")).unwrap());
        assert!(
            rx.recv_timeout(quiet).is_ok(),
            "an ordinary open is an event"
        );
        while rx.recv_timeout(quiet).is_ok() {}
        // ...but not of the folders opened to find a file in them.
        let (dir, name) = open_parent(&root.join("sub/a.mp4"), Some(&root)).unwrap();
        assert_eq!(look(&dir, &name).unwrap().map(|i| i.version.size), Some(6));
        let event = rx.recv_timeout(quiet);
        assert!(event.is_err(), "{event:?}");
    }

    #[test]
    fn a_regular_file_beneath_its_root_opens_with_its_identity() {
        let (_d, root) = tree();
        let source = Source::open(&root.join("sub/a.mp4"), Some(&root)).unwrap();
        assert_eq!(source.identity().version.size, 6);
        assert_eq!(source.current().unwrap(), source.identity());
    }

    #[test]
    fn a_symlink_is_never_followed_at_the_file_or_on_the_way() {
        let (dir, root) = tree();
        let outside = std::fs::canonicalize(dir.path()).unwrap();
        symlink(outside.join("outside.mp4"), root.join("link.mp4")).unwrap();
        symlink(&outside, root.join("folder")).unwrap();
        for path in [root.join("link.mp4"), root.join("folder/outside.mp4")] {
            let err = Source::open(&path, Some(&root)).unwrap_err();
            assert!(matches!(err, SourceError::NotRegular { .. }), "{err}");
        }
        let err = Source::open(&root.join("link.mp4"), None).unwrap_err();
        assert!(matches!(err, SourceError::NotRegular { .. }), "{err}");
    }

    #[test]
    fn a_missing_file_is_gone_and_a_fifo_is_not_regular() {
        let (_d, root) = tree();
        let err = Source::open(&root.join("sub/none.mp4"), Some(&root)).unwrap_err();
        assert!(matches!(err, SourceError::Gone { .. }), "{err}");
        rustix::fs::mknodat(
            CWD,
            root.join("pipe.mp4"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let err = Source::open(&root.join("pipe.mp4"), Some(&root)).unwrap_err();
        assert!(matches!(err, SourceError::NotRegular { .. }), "{err}");
    }

    #[test]
    fn look_tells_the_same_file_from_a_replaced_one() {
        let (_d, root) = tree();
        let path = root.join("sub/a.mp4");
        let source = Source::open(&path, Some(&root)).unwrap();
        let (dir, name) = open_parent(&path, Some(&root)).unwrap();
        assert_eq!(look(&dir, &name).unwrap(), Some(source.identity()));
        std::fs::write(root.join("sub/b.mp4"), b"inside").unwrap();
        std::fs::rename(root.join("sub/b.mp4"), &path).unwrap();
        let now = look(&dir, &name).unwrap().unwrap();
        assert_ne!(now.inode, source.identity().inode);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(look(&dir, &name).unwrap(), None);
    }
}
