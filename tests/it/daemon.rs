//! The daemon against the emulator: pick-up of existing and new files, settling, renames and
//! temporary names, a burst of files, after-upload actions and failures.

use crate::helpers::env::{fetch, refuse, slow_parts, test_bytes, wait_until, Daemon, Env, PART};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vodup::config::AfterUpload;
use vodup::emulator::Faults;
use vodup::ledger::{FileRecord, FileState};

fn in_done(env: &Env, name: &str) -> PathBuf {
    env.done.join(name)
}

async fn wait_done(env: &Env, names: &[&str], timeout: Duration) {
    for name in names {
        let path = in_done(env, name);
        wait_until(&format!("{name} in the done folder"), timeout, || async {
            path.exists()
        })
        .await;
    }
}

/// The bytes the service holds for the file once at `drop_path`.
async fn served(env: &Env, drop_path: &Path) -> Vec<u8> {
    let record = env.record(drop_path).expect("in the ledger");
    assert_eq!(record.state, FileState::Done);
    fetch(record.url.as_deref().unwrap()).await
}

#[tokio::test]
async fn files_present_before_start_and_dropped_after_are_all_uploaded() {
    let env = Env::new().await;
    let early = test_bytes(2 * PART as usize + 5, 20);
    let nested = test_bytes(PART as usize / 3, 21);
    let early_path = env.write(&env.drop, "early.mp4", &early);
    let nested_path = env.write(&env.drop, "show/ep1.mov", &nested);
    let daemon = Daemon::start(env.config()).await;
    let late = test_bytes(3 * PART as usize, 22);
    let late_path = env.write(&env.drop, "late.mkv", &late);
    wait_done(
        &env,
        &["early.mp4", "show/ep1.mov", "late.mkv"],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(served(&env, &early_path).await, early);
    assert_eq!(served(&env, &nested_path).await, nested);
    assert_eq!(served(&env, &late_path).await, late);
    assert_eq!(
        std::fs::read(in_done(&env, "show/ep1.mov")).unwrap(),
        nested
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_slowly_written_file_is_uploaded_once_after_it_stops_growing() {
    let env = Env::new().await;
    let mut config = env.config();
    config.watch[0].settle = Duration::from_millis(800);
    let daemon = Daemon::start(config).await;
    let data = test_bytes(6 * PART as usize, 23);
    let path = env.drop.join("slow.mp4");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&path).unwrap();
        for chunk in data.chunks(PART as usize / 2) {
            file.write_all(chunk).unwrap();
            file.flush().unwrap();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    wait_done(&env, &["slow.mp4"], Duration::from_secs(30)).await;
    assert_eq!(served(&env, &path).await, data);
    let stats = env.emu.stats().await;
    assert_eq!(stats.finishes, 1, "one upload, of the complete file");
    assert_eq!(
        stats.inits.values().sum::<u64>(),
        1,
        "never started on a partial file"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn renamed_in_files_are_taken_and_temporary_names_ignored_until_renamed() {
    let env = Env::new().await;
    let daemon = Daemon::start(env.config()).await;
    let data = test_bytes(PART as usize + 1, 24);
    let partial = env.write(&env.drop, "clip.mp4.part", &data);
    let hidden = env.write(&env.drop, ".clip2.mp4", &data);
    let outside = env.write(&env.src, "moved.mov", &test_bytes(1000, 25));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        env.ledger().files().unwrap().is_empty(),
        "temporary names are not taken"
    );
    std::fs::rename(&partial, env.drop.join("clip.mp4")).unwrap();
    std::fs::rename(&outside, env.drop.join("moved.mov")).unwrap();
    wait_done(&env, &["clip.mp4", "moved.mov"], Duration::from_secs(30)).await;
    assert!(hidden.exists(), "hidden files are left alone");
    assert_eq!(env.ledger().files().unwrap().len(), 2);
    daemon.stop().await;
}

#[tokio::test]
async fn two_hundred_small_files_dropped_at_once_are_all_uploaded() {
    let env = Env::new().await;
    let mut config = env.config();
    config.files_in_flight = 4;
    let daemon = Daemon::start(config).await;
    let names: Vec<String> = (0..200).map(|i| format!("burst/f{i:03}.mp4")).collect();
    for (i, name) in names.iter().enumerate() {
        env.write(&env.drop, name, &test_bytes(2_000 + i, 100 + i as u64));
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_done(&env, &refs, Duration::from_secs(120)).await;
    let stats = env.emu.stats().await;
    assert_eq!(stats.finishes, 200);
    assert_eq!(stats.parts_accepted, 200);
    daemon.stop().await;
}

#[tokio::test]
async fn the_same_content_dropped_twice_is_uploaded_once() {
    let env = Env::new().await;
    let daemon = Daemon::start(env.config()).await;
    let data = test_bytes(4 * PART as usize, 26);
    env.write(&env.drop, "a.mp4", &data);
    env.write(&env.drop, "b.mp4", &data);
    wait_done(&env, &["a.mp4", "b.mp4"], Duration::from_secs(30)).await;
    let stats = env.emu.stats().await;
    assert_eq!(stats.parts_accepted, 4, "one copy's parts only");
    assert_eq!(
        stats.inits.get("2").copied(),
        Some(1),
        "the other is an instant upload"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn delete_never_touches_a_file_whose_finish_failed() {
    let env = Env::new().await;
    let bad = test_bytes(2 * PART as usize, 27);
    env.emu
        .set_faults(&Faults {
            final_rate: 1.0,
            final_codes: vec![4300],
            actions: vec!["FinishUploadEx".into()],
            file_sha: Some(vodup::hash::sha1_hex(&bad)),
            ..Faults::default()
        })
        .await;
    let mut config = env.config();
    config.watch[0].after_upload = AfterUpload::Delete;
    config.watch[0].failed_dir = None;
    let daemon = Daemon::start(config).await;
    let bad_path = env.write(&env.drop, "bad.mp4", &bad);
    let good_path = env.write(&env.drop, "good.mp4", &test_bytes(PART as usize, 28));
    wait_until(
        "good.mp4 deleted after upload",
        Duration::from_secs(30),
        || async { !good_path.exists() },
    )
    .await;
    wait_until("bad.mp4 failed", Duration::from_secs(30), || async {
        env.record(&bad_path)
            .is_some_and(|r| r.state == FileState::Failed)
    })
    .await;
    daemon.stop().await;
    assert_eq!(
        std::fs::read(&bad_path).unwrap(),
        bad,
        "a failed file is left as it was"
    );
    assert_eq!(env.record(&good_path).unwrap().state, FileState::Done);
}

#[tokio::test]
async fn final_failures_land_in_the_failed_folder_with_a_sidecar() {
    let env = Env::new().await;
    env.emu.set_faults(&refuse("InitUploadEx", 4300)).await;
    let daemon = Daemon::start(env.config()).await;
    let data = test_bytes(PART as usize, 29);
    env.write(&env.drop, "sub/refused.mp4", &data);
    let moved = env.failed.join("sub/refused.mp4");
    let sidecar = env.failed.join("sub/refused.mp4.error.json");
    wait_until("the sidecar", Duration::from_secs(30), || async {
        sidecar.exists()
    })
    .await;
    assert_eq!(std::fs::read(&moved).unwrap(), data);
    let error: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    assert_eq!(error["code"], 4300);
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(error["attempts"].as_u64().unwrap() >= 1);
    assert!(!in_done(&env, "sub/refused.mp4").exists());
    daemon.stop().await;
}

#[tokio::test]
async fn a_failed_file_moved_back_from_the_failed_folder_is_retried() {
    let env = Env::new().await;
    let refusing = refuse("InitUploadEx", 4300);
    env.emu.set_faults(&refusing).await;
    let daemon = Daemon::start(env.config()).await;
    let data = test_bytes(PART as usize + 3, 30);
    env.write(&env.drop, "again.mp4", &data);
    let failed = env.failed.join("again.mp4");
    wait_until("the failure", Duration::from_secs(30), || async {
        failed.exists()
    })
    .await;
    env.emu.set_faults(&Faults::default()).await;
    std::fs::rename(&failed, env.drop.join("again.mp4")).unwrap();
    wait_done(&env, &["again.mp4"], Duration::from_secs(30)).await;
    assert_eq!(served(&env, &env.drop.join("again.mp4")).await, data);
    daemon.stop().await;
}

#[tokio::test]
async fn retry_requeues_failed_files_for_the_running_daemon() {
    let env = Env::new().await;
    let refusing = refuse("FinishUploadEx", 4300);
    env.emu.set_faults(&refusing).await;
    let mut config = env.config();
    config.watch[0].failed_dir = None;
    let daemon = Daemon::start(config.clone()).await;
    let path = env.write(&env.drop, "later.mp4", &test_bytes(2 * PART as usize, 31));
    // Failed, and its after-upload action (keep: no failed folder) done, as `status` shows it.
    wait_until("the failure", Duration::from_secs(30), || async {
        env.record(&path)
            .is_some_and(|r| r.state == FileState::Failed && r.disposed)
    })
    .await;
    env.emu.set_faults(&Faults::default()).await;
    vodup::commands::retry(&config, None).await.unwrap();
    wait_done(&env, &["later.mp4"], Duration::from_secs(30)).await;
    assert_eq!(
        env.emu.stats().await.parts_accepted,
        2,
        "the parts held before the failure were not re-sent"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_queued_file_that_changed_does_not_stop_the_daemon() {
    let env = Env::new().await;
    let ledger = vodup::ledger::Ledger::open(&env.ledger_path()).unwrap();
    let path = env.write(&env.drop, "grew.mp4", &test_bytes(PART as usize + 10, 32));
    let old = env.enqueue(&ledger, &path).await;
    std::thread::sleep(Duration::from_millis(20));
    let grown = test_bytes(2 * PART as usize + 10, 33);
    std::fs::write(&path, &grown).unwrap();
    let new = env.enqueue(&ledger, &path).await;
    assert_ne!(old.key, new.key);
    let daemon = Daemon::start(env.config()).await;
    wait_done(&env, &["grew.mp4"], Duration::from_secs(30)).await;
    assert_eq!(std::fs::read(in_done(&env, "grew.mp4")).unwrap(), grown);
    daemon.stop().await;
}

#[tokio::test]
async fn starts_and_stops_with_more_unfinished_files_than_the_queue_holds() {
    let env = Env::new().await;
    let ledger = env.ledger();
    for i in 0..1100 {
        let path = env.drop.join(format!("gone-{i}.mp4"));
        let new = vodup::ledger::NewFile {
            path,
            identity: vodup::ledger::FileIdentity {
                inode: vodup::ledger::Inode { dev: 1, ino: i },
                version: vodup::ledger::FileVersion {
                    size: 1,
                    mtime_ns: 1,
                },
            },
            part_size: PART,
            watch: Some(env.drop_root()),
            processing: "{}".into(),
            state: vodup::ledger::FileState::Queued,
            account: None,
        };
        ledger.enqueue(&new).unwrap();
    }
    let daemon = Daemon::start(env.config()).await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_missing_watch_folder_is_refused_naming_it_and_taken_up_once_it_is_there() {
    let env = Env::new().await;
    let mut config = env.config();
    let missing = env.dir.path().canonicalize().unwrap().join("nope");
    config.watch[0].path = missing.clone();
    config.watch[0].settle_unseen = Duration::from_millis(500);
    let daemon = Daemon::start(config).await;
    assert!(!missing.exists(), "a watch folder is never made");
    let nodes = env.ledger().nodes().unwrap();
    let why = nodes[0].refused.clone().expect("refused");
    assert!(why.contains(&missing.display().to_string()), "{why}");
    assert!(why.contains("No such file"), "{why}");

    // Mounted late, say: the next rescan takes it up.
    let data = test_bytes(PART as usize, 36);
    let file = env.write(&missing, "late.mp4", &data);
    let done = env.done.join("late.mp4");
    wait_until(
        "the late folder's file moved",
        Duration::from_secs(30),
        || async { done.exists() },
    )
    .await;
    assert_eq!(std::fs::read(&done).unwrap(), data);
    assert!(!file.exists());
    assert!(env.ledger().nodes().unwrap()[0].refused.is_none());
    daemon.stop().await;
}

#[tokio::test]
async fn a_symlink_dropped_in_is_never_taken_and_its_target_never_touched() {
    let env = Env::new().await;
    let mut config = env.config();
    config.watch[0].after_upload = AfterUpload::Delete;
    let outside = test_bytes(PART as usize + 7, 34);
    let target = env.write(&env.src, "archive.mp4", &outside);
    let daemon = Daemon::start(config).await;
    std::os::unix::fs::symlink(&target, env.drop.join("link.mp4")).unwrap();
    let real = env.write(&env.drop, "real.mp4", &test_bytes(1000, 35));
    wait_until(
        "the regular file deleted after upload",
        Duration::from_secs(30),
        || async { !real.exists() },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.stop().await;
    assert_eq!(
        std::fs::read(&target).unwrap(),
        outside,
        "the target outside the drop folder is untouched"
    );
    assert!(
        env.ledger().latest_for_path(&target).unwrap().is_none(),
        "the symlink was never taken"
    );
}

#[tokio::test]
async fn a_small_file_is_not_held_back_by_a_huge_one() {
    let env = Env::with_faults(slow_parts(80)).await;
    let mut config = env.config();
    config.files_in_flight = 1;
    config.parts_in_flight = vodup::config::PartsInFlight::Fixed(2);
    config.interleave_after = Duration::from_millis(500);
    let daemon = Daemon::start(config).await;
    let huge = env.write(&env.drop, "huge.mp4", &test_bytes(100 * PART as usize, 36));
    wait_until(
        "the huge file uploading",
        Duration::from_secs(30),
        || async {
            env.record(&huge)
                .is_some_and(|r| r.state == FileState::Uploading)
        },
    )
    .await;
    env.write(&env.drop, "small.mp4", &test_bytes(1000, 37));
    wait_done(&env, &["small.mp4"], Duration::from_secs(30)).await;
    assert!(
        !in_done(&env, "huge.mp4").exists(),
        "the small file waited for the huge one to end"
    );
    wait_done(&env, &["huge.mp4"], Duration::from_secs(60)).await;
    daemon.stop().await;
}

/// Show `look` the ledger's rows every 20 ms until every file of `names` is in the done folder.
async fn watch_ledger_until_done(
    env: &Env,
    names: &[impl AsRef<str>],
    mut look: impl FnMut(&[FileRecord]),
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while names.iter().any(|n| !in_done(env, n.as_ref()).exists()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "files not done in time"
        );
        look(&env.ledger().files().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The most files under `folder` that the ledger showed uploading at once, until every file of
/// `names` is done.
async fn most_uploading_at_once(env: &Env, folder: &str, names: &[impl AsRef<str>]) -> usize {
    let (mut most, folder) = (0, env.drop.join(folder));
    watch_ledger_until_done(env, names, |files| {
        let uploading = files
            .iter()
            .filter(|r| r.state == FileState::Uploading && r.path.starts_with(&folder));
        most = most.max(uploading.count());
    })
    .await;
    most
}

/// A daemon with `files_in_flight` places and a fixed window of `parts` parts, where no file
/// waits long enough to run beyond its places.
async fn daemon_with_places(env: &Env, files_in_flight: usize, parts: usize) -> Daemon {
    let mut config = env.config();
    config.files_in_flight = files_in_flight;
    config.parts_in_flight = vodup::config::PartsInFlight::Fixed(parts);
    config.interleave_after = Duration::from_secs(3600);
    Daemon::start(config).await
}

/// `count` files of one part under `folder`, written at once.
fn small_files(env: &Env, folder: &str, count: usize) -> Vec<String> {
    let names: Vec<String> = (0..count)
        .map(|i| format!("{folder}/f{i:02}.mp4"))
        .collect();
    for (i, name) in names.iter().enumerate() {
        env.write(&env.drop, name, &test_bytes(1_000 + i, 40 + i as u64));
    }
    names
}

/// Write a file of `parts` parts and wait until it uploads.
async fn uploading(env: &Env, name: &str, parts: usize) -> PathBuf {
    let path = env.write(&env.drop, name, &test_bytes(parts * PART as usize, 60));
    wait_until(
        &format!("{name} uploading"),
        Duration::from_secs(30),
        || async {
            env.record(&path)
                .is_some_and(|r| r.state == FileState::Uploading)
        },
    )
    .await;
    path
}

#[tokio::test]
async fn files_of_one_part_run_eight_to_a_place_and_larger_files_one() {
    let env = Env::with_faults(slow_parts(500)).await;
    let daemon = daemon_with_places(&env, 1, 16).await;
    let small = small_files(&env, "small", 12);
    let most = most_uploading_at_once(&env, "small", &small).await;
    assert_eq!(most, 8, "files of one part, eight to the one place");

    let large = ["large/a.mp4", "large/b.mp4"];
    for (i, name) in large.iter().enumerate() {
        env.write(
            &env.drop,
            name,
            &test_bytes(2 * PART as usize + 1, 50 + i as u64),
        );
    }
    let most = most_uploading_at_once(&env, "large", &large).await;
    assert_eq!(
        most, 1,
        "files of two parts or more take a whole place each"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn small_files_fill_the_place_a_large_upload_leaves() {
    // Parts slow enough that the small files, settled together, are in flight together even on
    // a loaded machine (at 300 ms, the first could end before the last was taken).
    let env = Env::with_faults(slow_parts(1000)).await;
    let daemon = daemon_with_places(&env, 2, 4).await;
    let large = uploading(&env, "large.mp4", 24).await;
    let small = small_files(&env, "small", 10);
    let most = most_uploading_at_once(&env, "small", &small).await;
    assert_eq!(most, 8, "eight small files in the second place");
    let record = env.record(&large).expect("in the ledger");
    assert_eq!(
        record.state,
        FileState::Uploading,
        "beside the large upload"
    );
    wait_done(&env, &["large.mp4"], Duration::from_secs(60)).await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_small_file_never_overtakes_a_larger_one_queued_before_it() {
    let env = Env::with_faults(slow_parts(3500)).await;
    let daemon = daemon_with_places(&env, 1, 4).await;
    // A small file takes a share of the one place; the larger file queued next waits for the
    // whole place, and the small files queued after it wait behind it, spare shares or not.
    uploading(&env, "first.mp4", 1).await;
    let larger = env.write(&env.drop, "larger.mp4", &test_bytes(4 * PART as usize, 61));
    wait_until(
        "the larger file queued",
        Duration::from_secs(30),
        || async { env.record(&larger).is_some() },
    )
    .await;
    let small = small_files(&env, "small", 4);
    // Whether the small files were ever queued while the larger file waited and a share was
    // free: the case this test is about, which slow parts keep open for seconds.
    let mut contested = false;
    watch_ledger_until_done(&env, &small, |files| {
        let larger_waits = files
            .iter()
            .any(|r| r.path == larger && r.state == FileState::Queued);
        let in_small = |r: &&FileRecord| r.path.starts_with(env.drop.join("small"));
        let small_ran = files
            .iter()
            .filter(in_small)
            .any(|r| r.state != FileState::Queued);
        assert!(
            !(larger_waits && small_ran),
            "a small file overtook larger.mp4"
        );
        contested |= larger_waits && files.iter().filter(in_small).count() == small.len();
    })
    .await;
    assert!(
        contested,
        "the small files were never queued behind larger.mp4"
    );
    wait_done(&env, &["first.mp4", "larger.mp4"], Duration::from_secs(60)).await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_file_under_a_symlinked_folder_is_never_taken() {
    let env = Env::new().await;
    let mut config = env.config();
    config.watch[0].after_upload = AfterUpload::Delete;
    let outside = env.src.join("archive");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, env.drop.join("linked")).unwrap();
    let daemon = Daemon::start(config).await;
    let data = test_bytes(PART as usize + 7, 91);
    let target = env.write(&outside, "precious.mp4", &data);
    let real = env.write(&env.drop, "real.mp4", &test_bytes(1000, 92));
    wait_until(
        "the regular file deleted after upload",
        Duration::from_secs(30),
        || async { !real.exists() },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    daemon.stop().await;
    let taken = env.ledger().latest_for_path(&target).unwrap();
    assert!(
        target.exists(),
        "the file outside the drop folder was deleted; ledger: {:?}",
        taken.map(|r| (r.state, r.path, r.origin))
    );
    assert!(taken.is_none());
}

#[tokio::test]
async fn a_failed_file_moved_back_after_a_newer_version_was_uploaded_is_retried() {
    let env = Env::new().await;
    let v1 = test_bytes(1000, 93);
    let sha1 = vodup::hash::sha1_hex(&v1);
    env.emu
        .set_faults(&Faults {
            final_rate: 1.0,
            file_sha: Some(sha1.clone()),
            ..Faults::default()
        })
        .await;
    let daemon = Daemon::start(env.config()).await;
    let a = env.write(&env.drop, "a.mp4", &v1);
    let failed = env.failed.join("a.mp4");
    wait_until("v1 moved to failed", Duration::from_secs(30), || async {
        failed.exists()
    })
    .await;
    env.write(&env.drop, "a.mp4", &test_bytes(2000, 94));
    let done = env.done.join("a.mp4");
    wait_until("v2 done and moved", Duration::from_secs(30), || async {
        done.exists()
    })
    .await;
    env.emu.set_faults(&Faults::default()).await;
    std::fs::rename(&failed, &a).unwrap();
    let done_again = env.done.join("a (1).mp4");
    let ledger = env.ledger();
    wait_until(
        "v1 uploaded after it was moved back",
        Duration::from_secs(20),
        || async {
            done_again.exists()
                || ledger
                    .files()
                    .unwrap()
                    .iter()
                    .any(|r| r.path == a && r.size == 1000 && r.state == FileState::Done)
        },
    )
    .await;
    daemon.stop().await;
}
