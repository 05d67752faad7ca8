//! Results beside the files: with `done_sidecar = true` a done file gets `NAME.vod.json` where it
//! ends up (moved or kept), with the fileId the ledger has; a deleted one gets none.

use crate::helpers::env::{test_bytes, wait_until, Daemon, Env, PART};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use vodup::config::AfterUpload;
use vodup::ledger::FileState;

async fn sidecar_of(env: &Env, after_upload: AfterUpload, name: &str) -> (Option<Value>, Value) {
    let mut config = env.config();
    config.watch[0].after_upload = after_upload;
    config.watch[0].done_sidecar = true;
    let daemon = Daemon::start(config).await;
    let data = test_bytes(3 * PART as usize, 90);
    env.write(&env.drop, name, &data);
    let source = env.drop.join(name);
    wait_until("disposed of", Duration::from_secs(30), || async {
        env.record(&source).is_some_and(|r| r.disposed)
    })
    .await;
    daemon.stop().await;
    let record = env.record(&source).unwrap();
    assert_eq!(record.state, FileState::Done);
    let file = match after_upload {
        AfterUpload::Move => env.done.join(name),
        _ => source.clone(),
    };
    let mut sidecar = file.clone().into_os_string();
    sidecar.push(".vod.json");
    let sidecar = std::path::PathBuf::from(sidecar);
    let read = |p: &Path| serde_json::from_slice(&std::fs::read(p).ok()?).ok();
    let json = serde_json::to_value(vodup::status::FileJson::from(&record)).unwrap();
    (read(&sidecar), json)
}

#[tokio::test]
async fn a_moved_file_gets_its_sidecar_in_the_done_folder_with_the_ledgers_file_id() {
    let env = Env::new().await;
    let (sidecar, record) = sidecar_of(&env, AfterUpload::Move, "sub/moved.mp4").await;
    let sidecar = sidecar.expect("done/sub/moved.mp4.vod.json");
    assert!(env.done.join("sub/moved.mp4").exists());
    assert_eq!(sidecar["fileId"], record["fileId"]);
    assert_eq!(sidecar["url"], record["url"]);
    assert_eq!(sidecar["fileSha"], record["fileSha"]);
    assert_eq!(sidecar["size"], 3 * PART);
    assert_eq!(sidecar["instant"], false);
    let finished = sidecar["finished"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(finished).is_ok(), "{finished}");
    let leftovers: Vec<_> = std::fs::read_dir(env.done.join("sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "the file and its sidecar only: {leftovers:?}"
    );
}

#[tokio::test]
async fn a_kept_file_gets_its_sidecar_beside_it_and_a_deleted_one_none() {
    let env = Env::new().await;
    let (sidecar, record) = sidecar_of(&env, AfterUpload::Keep, "kept.mp4").await;
    let sidecar = sidecar.expect("drop/kept.mp4.vod.json");
    assert_eq!(sidecar["fileId"], record["fileId"]);
    assert!(env.drop.join("kept.mp4").exists());

    let env = Env::new().await;
    let (sidecar, _) = sidecar_of(&env, AfterUpload::Delete, "deleted.mp4").await;
    assert!(sidecar.is_none());
    let left: Vec<_> = std::fs::read_dir(&env.drop).unwrap().collect();
    assert!(left.is_empty(), "nothing left in the drop folder: {left:?}");
}
