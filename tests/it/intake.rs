//! Trust at the intake (issue 8): complete files only, from evidence; folders moved in whole; one
//! file identity from open to move; names of any bytes; a power cut between a move and its record.

use crate::helpers::env::{fetch, slow_parts, test_bytes, wait_until, Daemon, Env, PART};
use std::ffi::OsStr;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vodup::config::Hook;
use vodup::emulator::Faults;
use vodup::ledger::{FileKey, FileState, Ledger};
use vodup::upload::{Engine, NoProgress, Outcome};

/// A hook that appends its event and fileSha to `marker`.
fn marker_hook(marker: &Path) -> Option<Hook> {
    Some(Hook {
        command: vec![
            "sh".into(),
            "-c".into(),
            format!(
                "echo \"$VODUP_EVENT $VODUP_FILE_SHA $VODUP_MOVED_TO\" >> '{}'",
                marker.display()
            ),
        ],
        webhook: None,
        ..Hook::default()
    })
}

fn rows_for(env: &Env, path: &Path) -> Vec<vodup::ledger::FileRecord> {
    let ledger = env.ledger();
    let rows = ledger.files().unwrap();
    rows.into_iter().filter(|r| r.path == path).collect()
}

#[tokio::test]
async fn a_writer_that_pauses_longer_than_settle_gets_its_whole_file_uploaded_once() {
    let env = Env::new().await;
    let mut config = env.config();
    config.watch[0].settle = Duration::from_secs(1);
    let marker = env.dir.path().join("hooks.log");
    config.watch[0].on_failed = marker_hook(&marker);
    config.watch[0].on_done = marker_hook(&marker);
    let daemon = Daemon::start(config).await;
    let whole = test_bytes(8_000_000, 40);
    let path = env.drop.join("paused.mp4");
    let mut writer = std::fs::File::create(&path).unwrap();
    writer.write_all(&whole[..4_000_000]).unwrap();
    writer.flush().unwrap();
    // The writer pauses three times `settle` with the file still open.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        rows_for(&env, &path).is_empty(),
        "a file still open for writing is not taken: {:?}",
        rows_for(&env, &path)
    );
    writer.write_all(&whole[4_000_000..]).unwrap();
    drop(writer);
    let moved = env.done.join("paused.mp4");
    wait_until("the file is moved", Duration::from_secs(30), || async {
        moved.exists()
    })
    .await;
    let rows = rows_for(&env, &path);
    assert_eq!(rows.len(), 1, "one row: {rows:?}");
    assert_eq!(rows[0].state, FileState::Done);
    assert_eq!(fetch(rows[0].url.as_deref().unwrap()).await, whole);
    assert_eq!(std::fs::read(&moved).unwrap(), whole);
    assert_eq!(env.emu.stats().await.finishes, 1);
    hook_ran(&marker).await;
    let log = std::fs::read_to_string(&marker).unwrap();
    assert!(log.starts_with("done "), "{log}");
    assert!(!log.contains("failed"), "no failed hook: {log}");
    daemon.stop().await;
}

#[tokio::test]
async fn a_folder_with_a_nested_folder_moved_in_with_one_rename_is_uploaded_within_settle() {
    let env = Env::new().await;
    let mut config = env.config();
    // Only the folder's own event can find these files in time.
    config.rescan_interval = Duration::from_secs(3600);
    config.watch[0].settle_unseen = Duration::from_secs(3600);
    let daemon = Daemon::start(config).await;
    let card = env.src.join("card");
    let clip = test_bytes(PART as usize + 99, 41);
    let deep = test_bytes(2 * PART as usize, 42);
    env.write(&card, "clip.mp4", &clip);
    env.write(&card, "DCIM/100/deep.mov", &deep);
    std::fs::rename(&card, env.drop.join("card")).unwrap();
    let (moved_clip, moved_deep) = (
        env.done.join("card/clip.mp4"),
        env.done.join("card/DCIM/100/deep.mov"),
    );
    wait_until(
        "both files moved, paths kept",
        Duration::from_millis(5300),
        || async { moved_clip.exists() && moved_deep.exists() },
    )
    .await;
    assert_eq!(std::fs::read(&moved_clip).unwrap(), clip);
    assert_eq!(std::fs::read(&moved_deep).unwrap(), deep);
    daemon.stop().await;
}

#[tokio::test]
async fn a_folder_renamed_from_a_hidden_name_within_the_drop_folder_is_taken_at_once() {
    let env = Env::new().await;
    let mut config = env.config();
    config.rescan_interval = Duration::from_secs(3600);
    config.watch[0].settle_unseen = Duration::from_secs(3600);
    let daemon = Daemon::start(config).await;
    let staging = env.drop.join(".export");
    let bytes = test_bytes(PART as usize / 2, 43);
    env.write(&staging, "reel/final.mp4", &bytes);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        rows_for(&env, &staging.join("reel/final.mp4")).is_empty(),
        "hidden folders are not taken"
    );
    std::fs::rename(&staging, env.drop.join("export")).unwrap();
    let moved = env.done.join("export/reel/final.mp4");
    wait_until("the file is moved", Duration::from_millis(5300), || async {
        moved.exists()
    })
    .await;
    assert_eq!(std::fs::read(&moved).unwrap(), bytes);
    daemon.stop().await;
}

#[tokio::test]
async fn a_queued_file_swapped_for_a_symlink_leaks_no_byte_of_the_outside_file() {
    let env = Env::new().await;
    let config = env.config();
    let ledger = Ledger::connect(&config).await.unwrap();
    let path = env.write(&env.drop, "swap.mp4", &test_bytes(PART as usize, 44));
    let record = env.enqueue(&ledger, &path).await;
    let secret = env.write(&env.src, "secret.mp4", &test_bytes(PART as usize, 45));
    let link = env.drop.join(".swap");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    std::fs::rename(&link, &path).unwrap();
    let engine = Engine::new(&config, ledger.clone(), Arc::new(NoProgress)).unwrap();
    let outcome = engine
        .upload(record.key, &CancellationToken::new())
        .await
        .unwrap();
    assert!(
        matches!(outcome, Outcome::SetAside(FileState::Gone, _)),
        "{outcome:?}"
    );
    let stats = env.emu.stats().await;
    assert_eq!(
        stats.inits.values().sum::<u64>(),
        0,
        "nothing was even announced"
    );
    assert_eq!(stats.parts_accepted, 0);
    assert_eq!(
        std::fs::read(&secret).unwrap(),
        test_bytes(PART as usize, 45)
    );
    assert!(
        ledger
            .file(record.key)
            .await
            .unwrap()
            .unwrap()
            .file_sha
            .is_none(),
        "never hashed"
    );
}

#[tokio::test]
async fn a_file_name_that_is_not_utf8_uploads_and_moves() {
    let env = Env::new().await;
    let daemon = Daemon::start(env.config()).await;
    let name = OsStr::from_bytes(b"bad\xffname.mp4");
    let bytes = test_bytes(PART as usize + 3, 46);
    let path = env.drop.join(name);
    std::fs::write(&path, &bytes).unwrap();
    let moved = env.done.join(name);
    wait_until("the file is moved", Duration::from_secs(20), || async {
        moved.exists()
    })
    .await;
    assert_eq!(std::fs::read(&moved).unwrap(), bytes);
    let record = env.record(&path).expect("found by its exact bytes");
    assert_eq!(record.state, FileState::Done);
    assert_eq!(fetch(record.url.as_deref().unwrap()).await, bytes);
    let table = vodup::status::to_table(&[(record, 0, Vec::new())]);
    assert!(table.contains("bad\\xFFname.mp4"), "{table}");
    daemon.stop().await;
}

#[tokio::test]
async fn an_empty_file_is_shown_as_waiting_and_taken_once_it_has_content() {
    let env = Env::new().await;
    let daemon = Daemon::start(env.config()).await;
    let path = env.drop.join("later.mp4");
    std::fs::write(&path, b"").unwrap();
    wait_until(
        "the empty file shows as waiting",
        Duration::from_secs(10),
        || async {
            env.record(&path)
                .is_some_and(|r| r.state == FileState::Waiting)
        },
    )
    .await;
    let record = env.record(&path).unwrap();
    let table = vodup::status::to_table(&[(record, 0, Vec::new())]);
    assert!(
        table.starts_with("STATE") && table.contains("waiting"),
        "{table}"
    );
    let bytes = test_bytes(PART as usize, 47);
    std::fs::write(&path, &bytes).unwrap();
    let moved = env.done.join("later.mp4");
    wait_until("the file is moved", Duration::from_secs(20), || async {
        moved.exists()
    })
    .await;
    assert_eq!(std::fs::read(&moved).unwrap(), bytes);
    let rows = rows_for(&env, &path);
    assert_eq!(rows.len(), 1, "the waiting row gave way: {rows:?}");
    daemon.stop().await;
}

/// Start uploading `path` (at `root`) with the engine alone, in the background.
async fn upload_in_background(
    env: &Env,
    config: &vodup::config::Config,
    path: &Path,
) -> (FileKey, tokio::task::JoinHandle<Outcome>) {
    let ledger = Ledger::connect(config).await.unwrap();
    let record = env.enqueue(&ledger, path).await;
    let engine = Engine::new(config, ledger, Arc::new(NoProgress)).unwrap();
    let key = record.key;
    let task =
        tokio::spawn(async move { engine.upload(key, &CancellationToken::new()).await.unwrap() });
    (key, task)
}

#[tokio::test]
async fn a_file_changed_after_its_last_part_was_read_but_before_finish_is_never_finished() {
    let env = Env::with_faults(slow_parts(1000)).await;
    let config = env.config();
    let path = env.write(
        &env.drop,
        "late-change.mp4",
        &test_bytes(2 * PART as usize, 48),
    );
    let (key, task) = upload_in_background(&env, &config, &path).await;
    wait_until("parts are in flight", Duration::from_secs(10), || async {
        env.ledger().file(key).unwrap().unwrap().state == FileState::Uploading
    })
    .await;
    // Both parts were read (and match their hashes); they are held by the slow service.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut writer = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    writer.write_all(b"more of the same take").unwrap();
    drop(writer);
    let outcome = task.await.unwrap();
    assert!(
        matches!(outcome, Outcome::SetAside(FileState::Superseded, _)),
        "{outcome:?}"
    );
    let stats = env.emu.stats().await;
    assert_eq!(stats.parts_accepted, 2, "the parts went up");
    assert_eq!(stats.finishes, 0, "but the changed file was never finished");
}

#[tokio::test]
async fn a_file_rewritten_in_place_with_its_mtime_put_back_is_never_finished() {
    let bytes = test_bytes(2 * PART as usize, 50);
    let accepted = rewritten_while_its_parts_are_up("inplace.mp4", &bytes).await;
    assert_eq!(accepted, 2, "the parts went up");
}

/// A file small enough that its one part goes from the bytes the pass hashed (no second read):
/// rewritten in place behind its mtime while that part is at the service, it is still never
/// finished.
#[tokio::test]
async fn a_small_file_rewritten_in_place_while_its_hashed_bytes_go_up_is_never_finished() {
    let bytes = test_bytes(vodup::hash::KEPT as usize, 51);
    let name = "small-inplace.mp4";
    let accepted = rewritten_while_its_parts_are_up(name, &bytes).await;
    assert_eq!(accepted, 1, "the hashed bytes went up");
}

#[tokio::test]
async fn the_daemon_takes_a_file_rewritten_in_place_during_its_upload_again_without_a_rescan() {
    // Parts slow enough that the rewrite settles (and is turned away) well before the check
    // before finish sets the first take aside.
    let env = Env::with_faults(slow_parts(3000)).await;
    let mut config = env.config();
    config.rescan_interval = Duration::from_secs(3600);
    let daemon = Daemon::start(config).await;
    let first = test_bytes(2 * PART as usize, 54);
    let path = env.write(&env.drop, "retake.mp4", &first);
    wait_until("parts are in flight", Duration::from_secs(20), || async {
        env.record(&path)
            .is_some_and(|r| r.state == FileState::Uploading)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Its events reach the intake while the row is busy: the row is not open to them then.
    let second = rewritten_and_moved(&env, &path, &first).await;
    let rows = rows_for(&env, &path);
    assert_eq!(
        rows.len(),
        1,
        "one row, superseded then taken again: {rows:?}"
    );
    assert_eq!(rows[0].state, FileState::Done);
    assert_eq!(rows[0].file_sha, Some(vodup::hash::sha1_hex(&second)));
    assert_eq!(fetch(rows[0].url.as_deref().unwrap()).await, second);
    assert_eq!(
        env.emu.stats().await.finishes,
        1,
        "the first take was never finished"
    );
    daemon.stop().await;
}

/// Upload `bytes` as `name` to a slow service and, once its parts were read and are held there,
/// overwrite its start in place and put the mtime back, as `dd conv=notrunc` then `touch -r` (or
/// `rsync --inplace -t`) do: the same inode, size and mtime, other bytes. Checks the file is set
/// aside as superseded and never finished; the parts the service accepted.
async fn rewritten_while_its_parts_are_up(name: &str, bytes: &[u8]) -> u64 {
    let env = Env::with_faults(slow_parts(1000)).await;
    let config = env.config();
    let path = env.write(&env.drop, name, bytes);
    let (key, task) = upload_in_background(&env, &config, &path).await;
    wait_until("parts are in flight", Duration::from_secs(10), || async {
        env.ledger().file(key).unwrap().unwrap().state == FileState::Uploading
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    rewrite_in_place(&path, b"another take");
    let outcome = task.await.unwrap();
    assert!(
        matches!(outcome, Outcome::SetAside(FileState::Superseded, _)),
        "{outcome:?}"
    );
    let stats = env.emu.stats().await;
    assert_eq!(stats.finishes, 0, "the rewritten file was never finished");
    stats.parts_accepted
}

/// Wait until the marker hook wrote its line (the shell's `>>` creates the file a moment before
/// it writes the line).
async fn hook_ran(marker: &Path) {
    wait_until("the hook ran", Duration::from_secs(10), || async {
        std::fs::read_to_string(marker).is_ok_and(|log| log.ends_with('\n'))
    })
    .await;
}

/// A daemon whose service answers finish slowly, with a done hook writing to `marker`, and a
/// file `name` of one part whose finish call is under way.
struct FinishingSlowly {
    env: Env,
    daemon: Daemon,
    path: PathBuf,
    first: Vec<u8>,
    key: FileKey,
    marker: PathBuf,
}

async fn finishing_slowly(name: &str, seed: u64) -> FinishingSlowly {
    let slow_finish = Faults {
        latency_ms: 1500,
        actions: vec!["FinishUploadEx".into()],
        ..Faults::default()
    };
    let env = Env::with_faults(slow_finish).await;
    let mut config = env.config();
    // No rescan comes to the rescue: a new version is taken from what the daemon saw.
    config.rescan_interval = Duration::from_secs(3600);
    let marker = env.dir.path().join("hooks.log");
    config.watch[0].on_done = marker_hook(&marker);
    let daemon = Daemon::start(config).await;
    let first = test_bytes(PART as usize, seed);
    let path = env.write(&env.drop, name, &first);
    wait_until(
        "the finish call is under way",
        Duration::from_secs(20),
        || async {
            env.record(&path)
                .is_some_and(|r| r.state == FileState::Finishing)
        },
    )
    .await;
    let key = env.record(&path).unwrap().key;
    FinishingSlowly {
        env,
        daemon,
        path,
        first,
        key,
        marker,
    }
}

/// Rewrite `path` (holding `first`) in place behind its mtime ([`rewrite_in_place`]), wait for
/// the daemon to move it to the done folder, and check what landed there is the new content,
/// which is returned.
async fn rewritten_and_moved(env: &Env, path: &Path, first: &[u8]) -> Vec<u8> {
    rewrite_in_place(path, b"another take");
    let mut second = first.to_vec();
    second[..12].copy_from_slice(b"another take");
    let moved = env.done.join(path.file_name().unwrap());
    wait_until(
        "the rewritten file is uploaded and moved",
        Duration::from_secs(30),
        || async { moved.exists() },
    )
    .await;
    assert_eq!(std::fs::read(&moved).unwrap(), second);
    second
}

/// Overwrite the start of `path` in place and put its mtime back, as `dd conv=notrunc` then
/// `touch -r` (or `rsync --inplace -t`) do: the same inode, size and mtime, other bytes.
fn rewrite_in_place(path: &Path, bytes: &[u8]) {
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, bytes, 0).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    assert_eq!(std::fs::metadata(path).unwrap().modified().unwrap(), mtime);
}

#[tokio::test]
async fn a_file_rewritten_in_place_between_attempts_is_hashed_again_not_finished_as_it_was() {
    let refused = Faults {
        final_rate: 1.0,
        actions: vec!["FinishUploadEx".into()],
        ..Faults::default()
    };
    let env = Env::with_faults(refused).await;
    let config = env.config();
    let first = test_bytes(2 * PART as usize, 52);
    let path = env.write(&env.drop, "between.mp4", &first);
    let (key, task) = upload_in_background(&env, &config, &path).await;
    let outcome = task.await.unwrap();
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    assert_eq!(
        env.emu.stats().await.parts_accepted,
        2,
        "every part is held"
    );
    // While nothing runs (vodup stopped, or the file waiting for `vodup retry`), the file is
    // rewritten behind the same size, mtime and inode.
    rewrite_in_place(&path, b"another take");
    let mut second = first.clone();
    second[..12].copy_from_slice(b"another take");
    env.emu.set_faults(&Faults::default()).await;
    let ledger = Ledger::connect(&config).await.unwrap();
    assert!(ledger.requeue(key).await.unwrap());
    let engine = Engine::new(&config, ledger, Arc::new(NoProgress)).unwrap();
    let Outcome::Done(done) = engine.upload(key, &CancellationToken::new()).await.unwrap() else {
        panic!("the retried file is uploaded")
    };
    // The service holds what the file holds now, not the content hashed before the rewrite.
    assert_eq!(fetch(done.url.as_deref().unwrap()).await, second);
    let record = env.ledger().file(key).unwrap().unwrap();
    assert_eq!(record.file_sha, Some(vodup::hash::sha1_hex(&second)));
}

#[tokio::test]
async fn a_file_rewritten_in_place_after_finish_but_before_its_move_is_superseded_not_moved() {
    let FinishingSlowly {
        env,
        daemon,
        path,
        first,
        key: first_key,
        marker,
    } = finishing_slowly("rewritten.mp4", 53).await;
    let second = rewritten_and_moved(&env, &path, &first).await;
    // What is in the done folder is exactly what the service holds under the recorded id.
    let record = env.ledger().file(first_key).unwrap().unwrap();
    assert_eq!(record.state, FileState::Done);
    assert_eq!(record.file_sha, Some(vodup::hash::sha1_hex(&second)));
    assert_eq!(fetch(record.url.as_deref().unwrap()).await, second);
    hook_ran(&marker).await;
    let log = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(
        log.lines().count(),
        1,
        "one done hook, for the content moved: {log}"
    );
    assert!(log.contains(&vodup::hash::sha1_hex(&second)), "{log}");
    daemon.stop().await;
}

#[tokio::test]
async fn a_chmod_during_the_upload_is_not_a_change_of_content() {
    let env = Env::with_faults(slow_parts(500)).await;
    let config = env.config();
    let data = test_bytes(2 * PART as usize, 51);
    let path = env.write(&env.drop, "chmod.mp4", &data);
    let (key, task) = upload_in_background(&env, &config, &path).await;
    wait_until("parts are in flight", Duration::from_secs(10), || async {
        env.ledger().file(key).unwrap().unwrap().state == FileState::Uploading
    })
    .await;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let Outcome::Done(done) = task.await.unwrap() else {
        panic!("a metadata change does not stop the upload")
    };
    assert_eq!(fetch(done.url.as_deref().unwrap()).await, data);
}

#[tokio::test]
async fn a_file_changed_after_finish_but_before_its_move_is_superseded_not_moved() {
    let FinishingSlowly {
        env,
        daemon,
        path,
        first,
        key: first_key,
        marker,
    } = finishing_slowly("still-growing.mp4", 49).await;
    let mut writer = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    writer.write_all(b" and the rest of the take").unwrap();
    drop(writer);
    wait_until(
        "the uploaded version is superseded",
        Duration::from_secs(20),
        || async { env.ledger().file(first_key).unwrap().unwrap().state == FileState::Superseded },
    )
    .await;
    let moved = env.done.join("still-growing.mp4");
    wait_until(
        "the final version is moved",
        Duration::from_secs(30),
        || async { moved.exists() },
    )
    .await;
    // What is in the done folder is exactly what the service holds under the recorded id.
    let final_bytes = std::fs::read(&moved).unwrap();
    assert_eq!(final_bytes.len(), first.len() + 25);
    let done: Vec<_> = rows_for(&env, &path)
        .into_iter()
        .filter(|r| r.state == FileState::Done)
        .collect();
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(fetch(done[0].url.as_deref().unwrap()).await, final_bytes);
    assert!(!env.done.join("still-growing (1).mp4").exists());
    hook_ran(&marker).await;
    let log = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(
        log.lines().count(),
        1,
        "one done hook, for the final version: {log}"
    );
    assert!(log.contains(&vodup::hash::sha1_hex(&final_bytes)), "{log}");
    daemon.stop().await;
}

/// Copies of the ledger's files, to put back as a power cut would have left them.
fn snapshot(db: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    ["", "-wal"]
        .iter()
        .map(|suffix| {
            let file = PathBuf::from(format!("{}{suffix}", db.display()));
            let bytes = std::fs::read(&file).ok();
            (file, bytes)
        })
        .collect()
}

fn restore(files: &[(PathBuf, Option<Vec<u8>>)], db: &Path) {
    let _ = std::fs::remove_file(format!("{}-shm", db.display()));
    for (file, bytes) in files {
        match bytes {
            Some(bytes) => std::fs::write(file, bytes).unwrap(),
            None => {
                let _ = std::fs::remove_file(file);
            }
        }
    }
}

#[tokio::test]
async fn a_move_whose_record_a_power_cut_lost_is_recovered_as_moved_with_its_done_hook() {
    let env = Env::new().await;
    let mut config = env.config();
    let marker = env.dir.path().join("hooks.log");
    config.watch[0].on_done = marker_hook(&marker);
    config.watch[0].on_failed = marker_hook(&marker);
    let bytes = test_bytes(PART as usize + 1, 50);
    let path = env.write(&env.drop, "cut.mp4", &bytes);
    let (key, task) = upload_in_background(&env, &config, &path).await;
    assert!(matches!(task.await.unwrap(), Outcome::Done(_)));
    // The after-upload action as the daemon runs it, with the ledger copied after the intent
    // was committed and before the outcome was.
    let db = env.ledger_path();
    let snapshot_taken = {
        let ledger = env.ledger();
        let record = ledger.file(key).unwrap().unwrap();
        let watch = &config.watch[0];
        let vodup::daemon::Plan::Act(action, target) =
            vodup::daemon::plan(&record, watch, &env.drop).unwrap()
        else {
            panic!("the file is the uploaded one")
        };
        let hooks = vodup::hooks::deliveries(watch.on_done.as_ref(), &record, target.as_deref());
        let claim = env.claim(key);
        ledger
            .intend_disposal(claim, action, target.as_deref(), &hooks)
            .unwrap();
        let copy = snapshot(&db);
        let disposal =
            vodup::daemon::apply(&record, &env.drop, action, target.as_deref(), &|| true).unwrap();
        ledger
            .mark_disposed(claim, &disposal.recorded(), disposal.target(), None)
            .unwrap();
        copy
    };
    restore(&snapshot_taken, &db);
    let before = env.ledger().file(key).unwrap().unwrap();
    assert!(!before.disposed, "the outcome's commit is lost");
    assert!(
        !path.exists() && env.done.join("cut.mp4").exists(),
        "but the move happened"
    );
    let daemon = Daemon::start(config).await;
    hook_ran(&marker).await;
    let after = env.ledger().file(key).unwrap().unwrap();
    assert_eq!((after.state, after.disposed), (FileState::Done, true));
    assert_eq!(after.disposal, Some(vodup::ledger::Disposed::Moved));
    let log = std::fs::read_to_string(&marker).unwrap();
    assert!(log.starts_with("done "), "{log}");
    assert!(
        log.contains(&env.done.join("cut.mp4").display().to_string()),
        "{log}"
    );
    assert_eq!(std::fs::read(env.done.join("cut.mp4")).unwrap(), bytes);
    daemon.stop().await;
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 1);
}

#[tokio::test]
async fn a_kept_file_renamed_within_the_drop_folder_is_neither_uploaded_nor_announced_again() {
    let env = Env::new().await;
    let mut config = env.config();
    config.watch[0].after_upload = vodup::config::AfterUpload::Keep;
    let marker = env.dir.path().join("hooks.log");
    config.watch[0].on_done = marker_hook(&marker);
    let daemon = Daemon::start(config).await;
    let first = env.write(&env.drop, "take1.mp4", &test_bytes(PART as usize, 51));
    wait_until(
        "the first file is done",
        Duration::from_secs(20),
        || async {
            env.record(&first)
                .is_some_and(|r| r.state == FileState::Done)
        },
    )
    .await;
    std::fs::create_dir(env.drop.join("sorted")).unwrap();
    std::fs::rename(&first, env.drop.join("sorted/take1-final.mp4")).unwrap();
    // A second file dropped after the rename settles by the same rule: once it is done, the
    // renamed one has been considered too.
    let second = env.write(&env.drop, "take2.mp4", &test_bytes(PART as usize, 52));
    wait_until(
        "the second file is done",
        Duration::from_secs(20),
        || async {
            env.record(&second)
                .is_some_and(|r| r.state == FileState::Done)
        },
    )
    .await;
    wait_until("both done hooks ran", Duration::from_secs(10), || async {
        std::fs::read_to_string(&marker).is_ok_and(|log| log.lines().count() >= 2)
    })
    .await;
    let stats = env.emu.stats().await;
    assert_eq!(
        stats.finishes, 2,
        "no second upload of the renamed file: {stats:?}"
    );
    let rows = env.ledger().files().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let log = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(log.lines().count(), 2, "one done hook per file: {log}");
    daemon.stop().await;
}
