//! The folders a watch writes to, checked by the process that writes to them: under the shipped
//! systemd unit only the daemon sees its own sandbox (`ReadWritePaths`, `ProtectSystem=strict`),
//! so `check-config`, which runs outside it, cannot tell. A watch whose folders the daemon cannot
//! write is refused with the reason; a done or failed folder on another file system than its
//! watch (each move a copy) is warned about. Not the watching itself (`intake.rs`), nor the moves
//! (`dispose.rs`).

use crate::config::{AfterUpload, Watch};
use crate::shown::shown;
use std::path::Path;

/// What checking a watch's folders found.
#[derive(Debug, Default)]
pub struct Checked {
    /// Why the watch cannot run (a folder it must write to is not writable), if so.
    pub refused: Option<String>,
    /// What deserves a warning: moves that must copy across file systems.
    pub warnings: Vec<String>,
}

/// The folders `watch` writes to, with their roles: its own (files are moved or deleted out of
/// it), the done folder (when files are moved there) and the failed folder.
fn folders(watch: &Watch) -> Vec<(&'static str, &Path)> {
    let mut folders = vec![("watch folder", watch.path.as_path())];
    if let Some(done) = watch.done_dir.as_deref() {
        if watch.after_upload == AfterUpload::Move {
            folders.push(("done_dir", done));
        }
    }
    if let Some(failed) = watch.failed_dir.as_deref() {
        folders.push(("failed_dir", failed));
    }
    folders
}

/// Check `watch`'s folders from this process: the watch folder must be there (a mistyped path is
/// never made into an empty folder nobody drops into); the done and failed folders are created if
/// missing, as a move would. Each is then written to (a hidden probe file, created and removed).
pub fn check(watch: &Watch) -> Checked {
    let mut checked = Checked::default();
    match std::fs::metadata(&watch.path) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            checked.refused = Some(format!("{} is not a folder", shown(&watch.path)));
            return checked;
        }
        Err(e) => {
            checked.refused = Some(format!(
                "watch folder {} cannot be used: {} (it is taken up once it is there)",
                shown(&watch.path),
                explain(&e)
            ));
            return checked;
        }
    }
    for (role, dir) in folders(watch) {
        if let Err(e) = probe(dir) {
            checked.refused = Some(format!(
                "{role} {} is not writable by vodup: {}",
                shown(dir),
                explain(&e)
            ));
            return checked;
        }
    }
    checked.warnings = across_file_systems(watch);
    checked
}

/// Warnings for each of `watch`'s done and failed folders that a file cannot be renamed into
/// from the watch folder: another file system, or under systemd another `ReadWritePaths` mount
/// of the same one (which `st_dev` does not tell). Tried with a hidden probe file renamed there
/// and removed; folders that are missing or cannot be written to are skipped (`check` refuses
/// those).
pub fn across_file_systems(watch: &Watch) -> Vec<String> {
    folders(watch)
        .into_iter()
        .skip(1)
        .filter(|(_, dir)| rename_is_cross_device(&watch.path, dir))
        .map(|(role, dir)| {
            format!(
                "watch {}: its {role} {} is on another file system or mount, so each move there \
                 is a copy (the bytes written twice; mode, owner and times kept); under systemd \
                 each ReadWritePaths entry is a mount of its own: grant the folders' common \
                 parent instead (`systemctl edit vodup`)",
                shown(&watch.path),
                shown(dir)
            )
        })
        .collect()
}

/// Whether a file made in `from` fails to be renamed into `to` with EXDEV.
fn rename_is_cross_device(from: &Path, to: &Path) -> bool {
    let name = format!(".vodup-probe-{:016x}", rand::random::<u64>());
    let (here, there) = (from.join(&name), to.join(&name));
    let made = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&here);
    if made.is_err() {
        return false;
    }
    let renamed = std::fs::rename(&here, &there);
    let _ = std::fs::remove_file(if renamed.is_ok() { &there } else { &here });
    renamed.is_err_and(|e| e.raw_os_error() == Some(libc::EXDEV))
}

/// Create `dir` if missing, then create and remove a hidden file in it.
fn probe(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let file = dir.join(format!(".vodup-probe-{:016x}", rand::random::<u64>()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file)?;
    std::fs::remove_file(&file)
}

/// An I/O error of a folder, with what likely causes it under the shipped systemd unit.
pub fn explain(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(libc::EROFS) => format!(
            "{error}: the folder is outside the service's ReadWritePaths (grant it, or its \
             parent, with `systemctl edit vodup`)"
        ),
        Some(libc::EACCES | libc::EPERM) => format!(
            "{error}: the user vodup runs as may not write there (check the folder's owner, \
             group and mode)"
        ),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn watch(root: &Path) -> Watch {
        let mut watch = Watch::new(root.join("drop"));
        watch.after_upload = AfterUpload::Move;
        watch.done_dir = Some(root.join("done"));
        watch.failed_dir = Some(root.join("failed"));
        std::fs::create_dir_all(&watch.path).unwrap();
        watch
    }

    #[test]
    fn writable_folders_pass_and_missing_ones_are_created_without_a_trace() {
        let dir = tempfile::tempdir().unwrap();
        let watch = watch(dir.path());
        let checked = check(&watch);
        assert!(checked.refused.is_none(), "{:?}", checked.refused);
        assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
        for sub in ["drop", "done", "failed"] {
            let left: Vec<_> = std::fs::read_dir(dir.path().join(sub)).unwrap().collect();
            assert!(left.is_empty(), "{sub}: {left:?}");
        }
    }

    #[test]
    fn a_folder_that_cannot_be_made_refuses_the_watch_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let watch = watch(dir.path());
        // A file where the done folder should be: no folder can be made there.
        std::fs::write(dir.path().join("done"), b"").unwrap();
        let refused = check(&watch).refused.expect("refused");
        assert!(refused.contains("done_dir"), "{refused}");
        assert!(refused.contains(&dir.path().join("done").display().to_string()));
    }

    #[test]
    fn a_folder_without_write_permission_refuses_the_watch_naming_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let watch = watch(dir.path());
        let failed = dir.path().join("failed");
        std::fs::create_dir_all(&failed).unwrap();
        std::fs::set_permissions(&failed, std::fs::Permissions::from_mode(0o555)).unwrap();
        let probe_as_root = std::fs::write(failed.join("x"), b"").is_ok();
        if probe_as_root {
            // root writes anywhere (CI): the systemd check covers this case under the unit.
            return;
        }
        let refused = check(&watch).refused.expect("refused");
        assert!(refused.contains("failed_dir"), "{refused}");
        assert!(refused.contains("owner"), "{refused}");
    }

    #[test]
    fn the_causes_are_named_read_only_as_the_sandbox_and_denied_as_ownership() {
        let erofs = explain(&std::io::Error::from_raw_os_error(libc::EROFS));
        assert!(erofs.contains("ReadWritePaths"), "{erofs}");
        assert!(erofs.contains("systemctl edit vodup"), "{erofs}");
        let eacces = explain(&std::io::Error::from_raw_os_error(libc::EACCES));
        assert!(eacces.contains("owner"), "{eacces}");
    }

    #[test]
    fn a_done_folder_on_another_file_system_is_warned_about() {
        use std::os::unix::fs::MetadataExt as _;
        let shm = Path::new("/dev/shm");
        let here = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
        let (Ok(a), Ok(b)) = (std::fs::metadata(shm), std::fs::metadata(here.path())) else {
            return;
        };
        assert_ne!(
            a.dev(),
            b.dev(),
            "the test needs /dev/shm on its own file system"
        );
        let elsewhere = tempfile::tempdir_in(shm).unwrap();
        let mut watch = watch(here.path());
        watch.done_dir = Some(elsewhere.path().join("done"));
        let checked = check(&watch);
        assert!(checked.refused.is_none());
        assert_eq!(checked.warnings.len(), 1, "{:?}", checked.warnings);
        assert!(checked.warnings[0].contains("another file system"));
        assert!(checked.warnings[0].contains(&elsewhere.path().display().to_string()));
        let left: Vec<_> = std::fs::read_dir(&watch.path).unwrap().collect();
        assert!(left.is_empty(), "the probe is removed: {left:?}");
    }
}
