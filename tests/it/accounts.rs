//! Per-watch accounts: each watch's files are signed with its own credentials and sent to its own
//! endpoint; the same content for two apps is two uploads.

use crate::helpers::env::{test_bytes, wait_until, Daemon, Env};
use crate::helpers::start_emulator_as;
use std::time::Duration;
use vodup::config::Watch;
use vodup::emulator::Faults;
use vodup::ledger::FileState;

const SECOND_ID: &str = "AKIDsecondApp";
const SECOND_KEY: &str = "second-app-key-0123";

#[tokio::test]
async fn two_watches_upload_each_file_with_its_own_account_and_the_same_content_twice() {
    let env = Env::new().await;
    // The second app's service knows only the second app's credentials, the first only the
    // first's: a file signed with the wrong account would be refused.
    let second = start_emulator_as(Faults::default(), SECOND_ID, SECOND_KEY).await;
    let key_file = env.dir.path().join("second.key");
    std::fs::write(&key_file, format!("{SECOND_KEY}\n")).unwrap();
    let drop2 = env.dir.path().join("drop2");
    std::fs::create_dir_all(&drop2).unwrap();
    let drop2 = std::fs::canonicalize(drop2).unwrap();
    let mut config = env.config();
    let mut watch = Watch::new(drop2.clone());
    watch.settle = Duration::from_millis(300);
    watch.settle_unseen = Duration::from_secs(1);
    watch.secret_id = Some(SECOND_ID.into());
    watch.secret_key_file = Some(key_file);
    watch.endpoint = Some(second.endpoint.clone());
    config.watch.push(watch);
    config.resolve_secret(None).unwrap();
    config.validate().unwrap();

    let shared = test_bytes(3 * 524_288 + 5, 61);
    let own = test_bytes(2 * 524_288, 62);
    let daemon = Daemon::start(config).await;
    let a = env.write(&env.drop, "first-app.mp4", &shared);
    let b = env.write(&drop2, "second-app.mp4", &own);
    let c = env.write(&drop2, "second-app-copy.mp4", &shared);
    wait_until(
        "all three files are done",
        Duration::from_secs(30),
        || async {
            [&a, &b, &c]
                .iter()
                .all(|p| env.record(p).is_some_and(|r| r.state == FileState::Done))
        },
    )
    .await;
    daemon.stop().await;

    let (sha_shared, sha_own) = (vodup::hash::sha1_hex(&shared), vodup::hash::sha1_hex(&own));
    let first_stats = env.emu.stats().await;
    let second_stats = second.stats().await;
    assert_eq!(
        first_stats.parts_by_sha.keys().collect::<Vec<_>>(),
        vec![&sha_shared],
        "the first app got only its own file"
    );
    assert_eq!(first_stats.finishes, 1);
    assert!(second_stats.parts_by_sha.contains_key(&sha_own));
    assert_eq!(
        second_stats.parts_by_sha.get(&sha_shared),
        Some(&4),
        "the same content is uploaded again, whole, for the second app"
    );
    assert_eq!(second_stats.finishes, 2);
    let account = |p: &std::path::Path| {
        let record = env.record(p).unwrap();
        assert!(!record.instant, "{record:?}");
        record.account.unwrap().as_str().to_owned()
    };
    // The account's name spells a loopback address `localhost`, however the endpoint does.
    let host = |emu: &crate::helpers::TestEmulator| format!("localhost:{}", emu.addr.port());
    assert_eq!(
        account(&a),
        format!("{}@{}", crate::helpers::SECRET_ID, host(&env.emu))
    );
    assert_eq!(account(&b), format!("{SECOND_ID}@{}", host(&second)));
    assert_eq!(account(&c), account(&b));
}
