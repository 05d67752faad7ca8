//! Finding files in the drop folders: the include/exclude filter, the full scan, and the `notify`
//! watcher feeding a bounded channel.
//!
//! The notify callback cannot wait: it uses `try_send`, and when the channel is full (or the
//! kernel says events were lost) it raises the "rescan needed" flag instead of dropping the
//! event. A rescan finds every file again, so no file is ever lost. Each event is passed on with
//! the evidence it carries ([`Evidence`]: written to, closed after writing, renamed in), and a
//! folder that appears (created, or moved in whole with one rename) is passed on as a folder, for
//! the intake to scan at once. This module does not decide when a file is complete
//! ([`super::settle`] does).

use super::settle::Evidence;
use crate::config::Watch;
use crate::ledger::FileVersion;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};

/// Whether `name` is one of the files vodup writes itself (result sidecars, temporary names):
/// never taken, whatever the include globs say.
fn is_ours(name: &std::ffi::OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let name = name.as_bytes();
    [
        &b".vod.json"[..],
        b".error.json",
        b".vodup-tmp",
        b".vodup-partial",
    ]
    .iter()
    .any(|suffix| name.ends_with(suffix))
}

/// Which paths of a watch are candidates.
#[derive(Debug, Clone)]
pub struct Filter {
    root: PathBuf,
    include: GlobSet,
    exclude: GlobSet,
    recursive: bool,
    /// Folders never descended into: the done and failed folders when they sit inside the root.
    skip: Vec<PathBuf>,
}

fn globset(globs: &[String]) -> Result<GlobSet, globset::Error> {
    let mut set = GlobSetBuilder::new();
    for glob in globs {
        set.add(
            GlobBuilder::new(glob)
                .case_insensitive(true)
                .literal_separator(true)
                .build()?,
        );
    }
    set.build()
}

impl Filter {
    pub fn new(watch: &Watch) -> Result<Filter, globset::Error> {
        let root = watch.folder();
        let skip = [&watch.done_dir, &watch.failed_dir]
            .into_iter()
            .flatten()
            .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()))
            .collect();
        Ok(Filter {
            root,
            include: globset(&watch.include)?,
            exclude: globset(&watch.exclude)?,
            recursive: watch.recursive,
            skip,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `path` (absolute, under the root) names a file to upload. Hidden or excluded
    /// folders on the way exclude it too.
    pub fn matches(&self, path: &Path) -> bool {
        let Ok(relative) = path.strip_prefix(&self.root) else {
            return false;
        };
        let names: Vec<&std::ffi::OsStr> = relative.iter().collect();
        let Some((file, dirs)) = names.split_last() else {
            return false;
        };
        if (!self.recursive && !dirs.is_empty()) || self.in_skipped(path) {
            return false;
        }
        !names.iter().any(|name| self.exclude.is_match(name))
            && self.include.is_match(file)
            && !is_ours(file)
    }

    fn in_skipped(&self, path: &Path) -> bool {
        self.skip.iter().any(|dir| path.starts_with(dir))
    }

    /// Whether `path` (absolute) is a folder below the root whose files this watch takes.
    pub fn takes_folder(&self, path: &Path) -> bool {
        let Ok(relative) = path.strip_prefix(&self.root) else {
            return false;
        };
        self.recursive
            && relative.components().next().is_some()
            && !self.in_skipped(path)
            && !relative.iter().any(|name| self.exclude.is_match(name))
    }

    /// Every matching regular file under the root, now.
    pub fn scan(&self) -> Vec<PathBuf> {
        self.scan_from(&self.root)
    }

    /// Every matching regular file under `dir` (the root or a folder below it), now. Symlinks,
    /// to files or folders, are never followed.
    pub fn scan_from(&self, dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut dirs = vec![dir.to_owned()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    if self.recursive
                        && !self.in_skipped(&path)
                        && !self.exclude.is_match(entry.file_name())
                    {
                        dirs.push(path);
                    }
                } else if kind.is_file() && self.matches(&path) {
                    found.push(path);
                }
            }
        }
        found.sort();
        found
    }
}

/// Set when events may have been lost; whoever rescans clears it.
#[derive(Debug, Default)]
pub struct RescanFlag {
    needed: AtomicBool,
    wake: Notify,
}

impl RescanFlag {
    pub fn raise(&self) {
        self.needed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Whether a rescan was needed (and clear it).
    pub fn take(&self) -> bool {
        self.needed.swap(false, Ordering::SeqCst)
    }

    pub async fn raised(&self) {
        self.wake.notified().await;
    }
}

/// What an event tells the intake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Noticed {
    /// Something happened to this file; with the evidence the event carries, if any, and, for a
    /// file closed after writing or renamed in, its size and mtime as looked at after the event
    /// (none if it was gone or not a regular file by then).
    File(PathBuf, Option<Evidence>, Option<FileVersion>),
    /// This folder appeared (created, or renamed in with its files): scan it now. Its files
    /// have the evidence given (`Closed` when the folder was moved in whole).
    Folder(PathBuf, Evidence),
    /// A file or folder was renamed within the watched tree (follows the new path's own event):
    /// what was pending under the old path moves to the new one, evidence and all.
    Renamed { from: PathBuf, to: PathBuf },
}

/// What an event of `kind` at `path` tells, before filtering. Our own reads (open, close
/// without writing) tell nothing.
fn notice(kind: EventKind, path: PathBuf) -> Option<Noticed> {
    let is_dir = || std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_dir());
    Some(match kind {
        EventKind::Create(CreateKind::Folder) => Noticed::Folder(path, Evidence::Unseen),
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) if is_dir() => {
            Noticed::Folder(path, Evidence::Closed)
        }
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
            Noticed::File(path, Some(Evidence::Closed), None)
        }
        EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => {
            Noticed::File(path, Some(Evidence::Writing), None)
        }
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
            Noticed::File(path, Some(Evidence::Closed), None)
        }
        EventKind::Create(_) | EventKind::Modify(ModifyKind::Metadata(_)) => {
            Noticed::File(path, None, None)
        }
        _ => return None,
    })
}

/// Start watching `filters`' roots. What events tell goes to `tx`; lost events raise `rescan`.
/// Dropping the returned watcher stops it.
pub fn watch(
    filters: &[Filter],
    tx: mpsc::Sender<Noticed>,
    rescan: Arc<RescanFlag>,
) -> notify::Result<notify::RecommendedWatcher> {
    let handler_filters = filters.to_vec();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let event = match event {
            Ok(event) => event,
            Err(_) => return rescan.raise(),
        };
        if event.need_rescan() {
            return rescan.raise();
        }
        let mut noticed = match (event.kind, event.paths.as_slice()) {
            (EventKind::Modify(ModifyKind::Name(RenameMode::Both)), [from, to]) => {
                Noticed::Renamed {
                    from: from.clone(),
                    to: to.clone(),
                }
            }
            (kind, [.., path]) => match notice(kind, path.clone()) {
                Some(noticed) => noticed,
                None => return,
            },
            _ => return,
        };
        let wanted = match &noticed {
            Noticed::File(path, ..) => handler_filters.iter().any(|f| f.matches(path)),
            Noticed::Folder(path, _) => handler_filters.iter().any(|f| f.takes_folder(path)),
            Noticed::Renamed { .. } => true,
        };
        if !wanted {
            return;
        }
        // The quiet period of a file that is complete by its event starts with this look, not
        // with the intake's next poll.
        if let Noticed::File(path, Some(Evidence::Closed), version) = &mut noticed {
            *version = FileVersion::at(path);
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(noticed) {
            rescan.raise();
        }
    })?;
    for filter in filters {
        let mode = if filter.recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        watcher.watch(filter.root(), mode)?;
    }
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(root: &Path) -> Filter {
        let mut watch = Watch::new(root.to_owned());
        watch.done_dir = Some(root.join("done"));
        Filter::new(&watch).unwrap()
    }

    #[test]
    fn default_globs_take_videos_and_skip_temporary_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let f = filter(&root);
        for yes in ["a.mp4", "B.MOV", "sub/c.mkv", "x.y.webm"] {
            assert!(f.matches(&root.join(yes)), "{yes}");
        }
        for no in [
            ".a.mp4",
            "a.mp4.part",
            "a.tmp",
            "a.crdownload",
            "~a.mp4",
            "a.txt",
            ".hidden/a.mp4",
            "done/a.mp4",
        ] {
            assert!(!f.matches(&root.join(no)), "{no}");
        }
        let mut everything = Watch::new(root.clone());
        everything.include = vec!["*".into()];
        let all = Filter::new(&everything).unwrap();
        assert!(all.matches(&root.join("notes.txt")));
        for ours in ["a.mp4.vod.json", "a.mp4.error.json", "x.vodup-tmp"] {
            assert!(
                !all.matches(&root.join(ours)),
                "{ours}: written by vodup itself"
            );
        }
        assert!(!f.matches(Path::new("/elsewhere/a.mp4")));
    }

    #[test]
    fn scan_finds_nested_matches_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        for name in [
            "a.mp4",
            "sub/b.mov",
            "sub/c.txt",
            ".h/d.mp4",
            "done/e.mp4",
            "f.mp4.part",
        ] {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"x").unwrap();
        }
        let found = filter(&root).scan();
        assert_eq!(found, vec![root.join("a.mp4"), root.join("sub/b.mov")]);
    }

    #[test]
    fn events_carry_their_evidence_and_our_own_reads_tell_nothing() {
        use notify::event::{DataChange, MetadataKind};
        let p = || PathBuf::from("/nowhere/a.mp4");
        let writing = notice(EventKind::Modify(ModifyKind::Data(DataChange::Any)), p());
        assert_eq!(
            writing,
            Some(Noticed::File(p(), Some(Evidence::Writing), None))
        );
        let closed = notice(EventKind::Access(AccessKind::Close(AccessMode::Write)), p());
        assert_eq!(
            closed,
            Some(Noticed::File(p(), Some(Evidence::Closed), None))
        );
        let renamed = notice(EventKind::Modify(ModifyKind::Name(RenameMode::To)), p());
        assert_eq!(
            renamed,
            Some(Noticed::File(p(), Some(Evidence::Closed), None))
        );
        let touched = notice(
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
            p(),
        );
        assert_eq!(touched, Some(Noticed::File(p(), None, None)));
        for ours in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
        ] {
            assert_eq!(notice(ours, p()), None);
        }
    }

    #[test]
    fn a_folder_renamed_in_is_a_folder_of_closed_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("card/DCIM")).unwrap();
        let kind = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert_eq!(
            notice(kind, root.join("card")),
            Some(Noticed::Folder(root.join("card"), Evidence::Closed))
        );
        let f = filter(&root);
        assert!(f.takes_folder(&root.join("card/DCIM")));
        assert!(!f.takes_folder(&root.join(".hidden")));
        assert!(!f.takes_folder(&root.join("done/x")));
        assert!(!f.takes_folder(&root));
    }

    #[tokio::test]
    async fn a_file_complete_by_its_event_comes_with_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let staging = tempfile::tempdir_in(&root).unwrap();
        let mut watch_of = Watch::new(root.clone());
        watch_of.recursive = false;
        let (tx, mut rx) = mpsc::channel(64);
        let _watcher = watch(
            &[Filter::new(&watch_of).unwrap()],
            tx,
            Arc::new(RescanFlag::default()),
        )
        .unwrap();
        let mut next = async || {
            tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
                .await
                .expect("an event")
                .expect("the watcher runs")
        };

        let moved = root.join("moved.mp4");
        std::fs::write(staging.path().join("moved.mp4"), b"whole").unwrap();
        std::fs::rename(staging.path().join("moved.mp4"), &moved).unwrap();
        let version = FileVersion::at(&moved).unwrap();
        assert_eq!(
            next().await,
            Noticed::File(moved, Some(Evidence::Closed), Some(version))
        );

        let written = root.join("written.mp4");
        std::fs::write(&written, b"in place").unwrap();
        let version = FileVersion::at(&written).unwrap();
        let mut last = None;
        while let Noticed::File(path, evidence, seen) = next().await {
            assert_eq!(path, written);
            match evidence {
                Some(Evidence::Closed) => {
                    last = seen;
                    break;
                }
                _ => assert_eq!(seen, None, "only a file complete by its event is looked at"),
            }
        }
        assert_eq!(last, Some(version));
    }

    #[test]
    fn non_recursive_watch_ignores_subfolders() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let mut watch = Watch::new(root.clone());
        watch.recursive = false;
        let f = Filter::new(&watch).unwrap();
        assert!(f.matches(&root.join("a.mp4")));
        assert!(!f.matches(&root.join("sub/a.mp4")));
    }
}
