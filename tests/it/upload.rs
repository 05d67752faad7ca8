//! The upload engine against the emulator: bytes arrive intact, instant upload, faults, final
//! errors, files that change, and the ledger invariant.

use crate::helpers::env::{fetch, refuse, slow_parts, test_bytes, wait_until, Env, PART};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vodup::commands::enqueue_named;
use vodup::emulator::Faults;
use vodup::ledger::{FileState, Ledger};
use vodup::upload::{Engine, NoProgress, Outcome};

async fn upload(env: &Env, config: &vodup::config::Config, path: &std::path::Path) -> Outcome {
    let ledger = Ledger::connect(config).await.unwrap();
    let record = enqueue_named(&ledger, path, config.part_size, "{}", None)
        .await
        .unwrap();
    let engine = Engine::new(config, ledger, Arc::new(NoProgress)).unwrap();
    let _ = env;
    engine
        .upload(record.key, &CancellationToken::new())
        .await
        .unwrap()
}

#[tokio::test]
async fn multi_part_file_arrives_byte_for_byte_and_ledger_says_done() {
    let env = Env::new().await;
    let data = test_bytes(5 * PART as usize + 12_345, 1);
    let path = env.write(&env.src, "clip.mp4", &data);
    let Outcome::Done(done) = upload(&env, &env.config(), &path).await else {
        panic!("upload did not finish");
    };
    assert!(!done.instant);
    assert_eq!(done.file_sha, vodup::hash::sha1_hex(&data));
    assert_eq!(fetch(done.url.as_deref().unwrap()).await, data);
    let stats = env.emu.stats().await;
    assert_eq!(stats.parts_accepted, 6);
    assert_eq!(stats.duplicate_parts, 0);
    assert_eq!(stats.bytes_received, data.len() as u64);
    let record = env.record(&path).unwrap();
    assert_eq!(record.state, FileState::Done);
    assert_eq!(record.file_id.as_deref(), Some(done.file_id.as_str()));
    assert_eq!(record.confirmed_bytes, data.len() as u64);
}

#[tokio::test]
async fn second_upload_of_the_same_content_is_instant_and_sends_no_part() {
    let env = Env::new().await;
    let data = test_bytes(3 * PART as usize, 2);
    let first = env.write(&env.src, "a.mp4", &data);
    let second = env.write(&env.src, "copy of a.mov", &data);
    let Outcome::Done(a) = upload(&env, &env.config(), &first).await else {
        panic!()
    };
    let sent = env.emu.stats().await.parts_accepted;
    let Outcome::Done(b) = upload(&env, &env.config(), &second).await else {
        panic!()
    };
    assert!(b.instant);
    assert_eq!(b.file_id, a.file_id);
    assert_eq!(
        env.emu.stats().await.parts_accepted,
        sent,
        "no part sent for the copy"
    );
    assert!(env.record(&second).unwrap().instant);
}

#[tokio::test]
async fn retryable_errors_and_dropped_connections_still_complete() {
    let faults = Faults {
        retryable_rate: 0.3,
        drop_rate: 0.1,
        drop_after_bytes: 100_000,
        http_503_rate: 0.05,
        ..Faults::default()
    };
    let env = Env::with_faults(faults).await;
    let data = test_bytes(8 * PART as usize + 1, 3);
    let path = env.write(&env.src, "flaky.mp4", &data);
    let Outcome::Done(done) = upload(&env, &env.config(), &path).await else {
        panic!("upload did not survive the faults: {:?}", env.record(&path));
    };
    assert_eq!(fetch(done.url.as_deref().unwrap()).await, data);
    let stats = env.emu.stats().await;
    assert!(
        stats.faults_injected.values().sum::<u64>() > 0,
        "faults happened: {stats:?}"
    );
}

#[tokio::test]
async fn a_final_error_fails_the_file_with_its_code_and_message_in_the_ledger() {
    let env = Env::new().await;
    let data = test_bytes(2 * PART as usize, 4);
    let path = env.write(&env.src, "refused.mp4", &data);
    env.emu.set_faults(&refuse("UploadPartEx", 4300)).await;
    let Outcome::Failed(error) = upload(&env, &env.config(), &path).await else {
        panic!("a canRetry=0 error must fail the file");
    };
    assert_eq!(error.code, 4300);
    let record = env.record(&path).unwrap();
    assert_eq!(record.state, FileState::Failed);
    assert_eq!(record.error.as_ref().map(|e| e.code), Some(4300));
    assert!(!record.error.unwrap().message.is_empty());
    assert_eq!(
        record.confirmed_bytes, 0,
        "no part confirmed that the service refused"
    );
}

#[tokio::test]
async fn a_file_rewritten_during_the_upload_is_superseded_not_finished_as_a_mix() {
    let env = Env::new().await;
    env.emu.set_faults(&slow_parts(40)).await;
    let first = test_bytes(12 * PART as usize, 5);
    let path = env.write(&env.src, "changing.mp4", &first);
    let mut config = env.config();
    config.parts_in_flight = vodup::config::PartsInFlight::Fixed(2);
    let task = tokio::spawn({
        let (config, path) = (config.clone(), path.clone());
        async move {
            let ledger = Ledger::connect(&config).await.unwrap();
            let record = enqueue_named(&ledger, &path, config.part_size, "{}", None)
                .await
                .unwrap();
            let engine = Engine::new(&config, ledger, Arc::new(NoProgress)).unwrap();
            engine
                .upload(record.key, &CancellationToken::new())
                .await
                .unwrap()
        }
    });
    crate::helpers::env::wait_until(
        "some parts sent",
        std::time::Duration::from_secs(20),
        || async { env.emu.stats().await.parts_accepted >= 3 },
    )
    .await;
    let second = test_bytes(12 * PART as usize + 777, 6);
    std::fs::write(&path, &second).unwrap();
    let outcome = task.await.unwrap();
    assert!(
        matches!(outcome, Outcome::SetAside(FileState::Superseded, _)),
        "{outcome:?}"
    );
    assert_eq!(
        env.emu.stats().await.finishes,
        0,
        "the first content was never finished"
    );
    let Outcome::Done(done) = upload(&env, &config, &path).await else {
        panic!("the new version uploads as a file of its own")
    };
    assert_eq!(done.file_sha, vodup::hash::sha1_hex(&second));
    assert_eq!(fetch(done.url.as_deref().unwrap()).await, second);
}

#[tokio::test]
async fn a_file_that_vanishes_before_its_upload_is_gone_not_failed() {
    let env = Env::new().await;
    let path = env.write(&env.src, "gone.mp4", &test_bytes(PART as usize, 7));
    let ledger = Ledger::from(env.ledger());
    let record = enqueue_named(&ledger, &path, PART, "{}", None)
        .await
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let engine = Engine::new(&env.config(), ledger, Arc::new(NoProgress)).unwrap();
    let outcome = engine
        .upload(record.key, &CancellationToken::new())
        .await
        .unwrap();
    let Outcome::SetAside(FileState::Gone, why) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(why.contains("no longer at its path"), "{why}");
    assert_eq!(
        env.ledger().file(record.key).unwrap().unwrap().state,
        FileState::Gone
    );
}

#[tokio::test]
async fn parts_the_ledger_believes_confirmed_but_the_service_lost_are_sent_again() {
    let env = Env::new().await;
    let data = test_bytes(4 * PART as usize, 8);
    let path = env.write(&env.src, "lost.mp4", &data);
    let sha = vodup::hash::sha1_hex(&data);
    let ledger = Ledger::from(env.ledger());
    let account = env.config().default_account().name;
    // A ledger that claims two parts the service never received (under a claim of the file).
    let record = enqueue_named(&ledger, &path, PART, "{}", None)
        .await
        .unwrap();
    let upload_key = vodup::ledger::Upload {
        account: account.as_str().into(),
        sha: sha.clone(),
        size: data.len() as u64,
        part_size: PART,
    };
    let held = vec![(0, PART), (PART, PART)];
    let claim = env.claim(record.key);
    ledger
        .confirm_parts(claim, &upload_key, held, None)
        .await
        .unwrap();
    let Outcome::Done(done) = upload(&env, &env.config(), &path).await else {
        panic!()
    };
    assert_eq!(fetch(done.url.as_deref().unwrap()).await, data);
    assert_eq!(
        env.emu.stats().await.parts_accepted,
        4,
        "the service's list wins over the ledger"
    );
}

#[tokio::test]
async fn a_signature_the_service_finds_expired_is_renewed_and_the_upload_goes_on() {
    use vodup::protocol::{Claims, Processing, SecretKey};
    let env = Env::new().await;
    let data = test_bytes(2 * PART as usize, 9);
    let path = env.write(&env.src, "expired.mp4", &data);
    let sha = vodup::hash::sha1_hex(&data);
    let now = vodup::clock::unix_now();
    let expired = Claims {
        secret_id: crate::helpers::env::SECRET_ID.into(),
        issued_at: now - 7200,
        expires_at: now - 3600,
        random: 1,
        file_name: "expired.mp4".into(),
        file_sha: sha.clone(),
        file_type: "mp4".into(),
        uid: "vodup".into(),
        processing: Processing::default(),
    }
    .sign(&SecretKey::new(crate::helpers::env::SECRET_KEY));
    let ledger = Ledger::from(env.ledger());
    let record = enqueue_named(&ledger, &path, PART, "{}", None)
        .await
        .unwrap();
    let md5s: Vec<String> = data
        .chunks(PART as usize)
        .map(vodup::hash::md5_hex)
        .collect();
    let claim = env.claim(record.key);
    let ctime = vodup::source::ctime_ns(&std::fs::metadata(&path).unwrap());
    let upload = vodup::ledger::Upload {
        account: env.config().default_account().name.as_str().into(),
        sha: sha.clone(),
        size: data.len() as u64,
        part_size: PART,
    };
    let pass = ledger.record_hash(claim, &upload, md5s, Some(ctime));
    assert_eq!(
        pass.await.unwrap(),
        None,
        "no upload of it stored a signature yet"
    );
    // The ledger believes it valid for a day: only the service's -10002 can reveal it.
    let believed = vodup::protocol::Signature {
        encoded: expired.encoded.clone(),
        expires_at: now + 86_400,
    };
    ledger
        .store_signature(claim, &upload, &believed)
        .await
        .unwrap();
    let engine = Engine::new(&env.config(), ledger.clone(), Arc::new(NoProgress)).unwrap();
    let Outcome::Done(done) = engine
        .upload(record.key, &CancellationToken::new())
        .await
        .unwrap()
    else {
        panic!(
            "the expired signature was not renewed: {:?}",
            env.record(&path)
        )
    };
    assert_eq!(fetch(done.url.as_deref().unwrap()).await, data);
    let inits = env.emu.stats().await.inits;
    assert_eq!(inits.get("-10002").copied(), Some(1), "{inits:?}");
    assert_eq!(
        inits.get("0").copied(),
        Some(1),
        "one init with the new signature: {inits:?}"
    );
}

#[tokio::test]
async fn a_queued_file_that_changed_is_superseded_and_its_own_new_row_uploads() {
    let env = Env::new().await;
    let config = env.config();
    let ledger = Ledger::connect(&config).await.unwrap();
    let path = env.write(&env.drop, "a.mp4", &test_bytes(PART as usize + 10, 1));
    let old = enqueue_named(&ledger, &path, PART, "{}", None)
        .await
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let grown = test_bytes(2 * PART as usize + 10, 2);
    std::fs::write(&path, &grown).unwrap();
    let new = enqueue_named(&ledger, &path, PART, "{}", None)
        .await
        .unwrap();
    assert_ne!(old.key, new.key);
    let engine = Engine::new(&config, ledger.clone(), Arc::new(NoProgress)).unwrap();
    let cancel = CancellationToken::new();
    let stale = engine.upload(old.key, &cancel).await.unwrap();
    assert!(
        matches!(stale, Outcome::SetAside(FileState::Superseded, _)),
        "{stale:?}"
    );
    let Outcome::Done(done) = engine.upload(new.key, &cancel).await.unwrap() else {
        panic!("the new version uploads")
    };
    assert_eq!(fetch(done.url.as_deref().unwrap()).await, grown);
    assert_eq!(
        env.emu.stats().await.finishes,
        1,
        "the stale version never finished"
    );
}

#[tokio::test]
async fn a_retryable_finish_error_backs_off_under_the_retry_policy() {
    let env = Env::with_faults(Faults {
        retryable_rate: 1.0,
        retryable_codes: vec![6200],
        actions: vec!["FinishUploadEx".into()],
        ..Faults::default()
    })
    .await;
    let mut config = env.config();
    config.retry.max_attempts = 6;
    let path = env.write(&env.src, "f.mp4", &test_bytes(PART as usize, 3));
    let Outcome::Failed(error) = upload(&env, &config, &path).await else {
        panic!("finish never succeeds")
    };
    assert_eq!(error.code, 6200);
    let stats = env.emu.stats().await;
    assert_eq!(
        stats.finish_failures, 6,
        "one finish per attempt of the policy"
    );
    assert_eq!(
        stats.parts_accepted, 1,
        "the part is not re-sent by the re-inits"
    );
}

fn reinit_faults() -> Faults {
    Faults {
        latency_ms: 100,
        retryable_rate: 1.0,
        retryable_codes: vec![-10005],
        actions: vec!["UploadPartEx".into()],
        ..Faults::default()
    }
}

async fn inject_one_reinit(env: &Env) {
    let before = env
        .emu
        .stats()
        .await
        .faults_injected
        .get("retryable")
        .copied()
        .unwrap_or(0);
    env.emu.set_faults(&reinit_faults()).await;
    wait_until("a -10005 injected", Duration::from_secs(10), || async {
        env.emu
            .stats()
            .await
            .faults_injected
            .get("retryable")
            .copied()
            .unwrap_or(0)
            > before
    })
    .await;
    env.emu.set_faults(&slow_parts(100)).await;
}

#[tokio::test]
async fn reinits_far_apart_with_progress_between_do_not_fail_a_long_upload() {
    let env = Env::with_faults(slow_parts(100)).await;
    let mut config = env.config();
    config.parts_in_flight = vodup::config::PartsInFlight::Fixed(1);
    config.retry.max_elapsed = Duration::from_secs(1);
    let path = env.write(&env.src, "long.mp4", &test_bytes(40 * PART as usize, 90));
    let ledger = Ledger::connect(&config).await.unwrap();
    let record = enqueue_named(&ledger, &path, PART, "{}", None)
        .await
        .unwrap();
    let engine = Engine::new(&config, ledger, Arc::new(NoProgress)).unwrap();
    let task =
        tokio::spawn(async move { engine.upload(record.key, &CancellationToken::new()).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    inject_one_reinit(&env).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let accepted = env.emu.stats().await.parts_accepted;
    assert!(
        accepted >= 5,
        "parts went on between the re-inits: {accepted}"
    );
    inject_one_reinit(&env).await;
    let outcome = task.await.unwrap().unwrap();
    assert!(matches!(outcome, Outcome::Done(_)), "{outcome:?}");
}

#[tokio::test]
async fn a_part_the_service_found_damaged_is_re_hashed_and_sent_again() {
    let damaged = Faults {
        retryable_rate: 0.5,
        retryable_codes: vec![-10006],
        actions: vec!["UploadPartEx".into()],
        ..Faults::default()
    };
    let env = Env::with_faults(damaged).await;
    let data = test_bytes(6 * PART as usize + 1, 91);
    let path = env.write(&env.src, "bumpy.mp4", &data);
    let Outcome::Done(done) = upload(&env, &env.config(), &path).await else {
        panic!("a damaged part is sent again: {:?}", env.record(&path))
    };
    assert_eq!(fetch(done.url.as_deref().unwrap()).await, data);
    let stats = env.emu.stats().await;
    assert!(
        stats.faults_injected.get("retryable").copied().unwrap_or(0) > 0,
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_part_rewritten_in_place_behind_an_unchanged_mtime_is_caught_by_the_service() {
    let env = Env::with_faults(slow_parts(300)).await;
    let mut config = env.config();
    config.parts_in_flight = vodup::config::PartsInFlight::Fixed(1);
    let data = test_bytes(4 * PART as usize, 92);
    let path = env.write(&env.src, "sly.mp4", &data);
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let task = tokio::spawn({
        let (config, path) = (config.clone(), path.clone());
        async move {
            let ledger = Ledger::connect(&config).await.unwrap();
            let record = enqueue_named(&ledger, &path, PART, "{}", None)
                .await
                .unwrap();
            let engine = Engine::new(&config, ledger, Arc::new(NoProgress)).unwrap();
            engine
                .upload(record.key, &CancellationToken::new())
                .await
                .unwrap()
        }
    });
    wait_until(
        "the first part is confirmed",
        Duration::from_secs(20),
        || async { env.emu.stats().await.parts_accepted >= 1 },
    )
    .await;
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(SeekFrom::Start(3 * PART)).unwrap();
        file.write_all(&test_bytes(PART as usize, 93)).unwrap();
        file.set_modified(mtime).unwrap();
    }
    let outcome = task.await.unwrap();
    assert!(
        matches!(outcome, Outcome::SetAside(FileState::Superseded, _)),
        "{outcome:?}"
    );
    assert_eq!(env.emu.stats().await.finishes, 0, "never finished as a mix");
}

#[tokio::test]
async fn with_parts_in_flight_auto_every_byte_still_arrives_once() {
    let env = Env::new().await;
    let mut config = env.config();
    config.parts_in_flight = vodup::config::PartsInFlight::Auto;
    config.max_parts_in_flight = 16;
    let data = test_bytes(24 * PART as usize + 7, 94);
    let path = env.write(&env.src, "auto.mp4", &data);
    let Outcome::Done(done) = upload(&env, &config, &path).await else {
        panic!("{:?}", env.record(&path))
    };
    assert_eq!(fetch(done.url.as_deref().unwrap()).await, data);
    let stats = env.emu.stats().await;
    assert_eq!(stats.parts_accepted - stats.duplicate_parts, 25);
}

#[tokio::test]
async fn a_redirect_from_the_endpoint_is_never_followed() {
    let env = Env::new().await;
    // Every call answered with a redirect to a working service (the emulator): followed, the
    // signature would go there and the fileId come from there.
    let target = env.emu.endpoint.clone();
    let app = axum::Router::new().fallback(
        move |axum::extract::RawQuery(query): axum::extract::RawQuery| {
            let to = format!("{target}?{}", query.unwrap_or_default());
            async move {
                (
                    axum::http::StatusCode::FOUND,
                    [(axum::http::header::LOCATION, to)],
                )
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut config = env.config();
    config.endpoint = format!("http://{addr}/v2/index.php");
    let path = env.write(&env.src, "redirected.mp4", &test_bytes(PART as usize, 60));
    let outcome = upload(&env, &config, &path).await;
    let Outcome::Failed(error) = outcome else {
        panic!("a redirect is not an answer: {outcome:?}");
    };
    assert_eq!(error.code, -302);
    assert!(error.message.contains("redirect"), "{}", error.message);
    assert!(error.message.contains("not followed"), "{}", error.message);
    assert!(
        !error.message.contains("signature") && !error.message.contains('?'),
        "the Location's query (it echoes the signature) is not shown: {}",
        error.message
    );
    let stats = env.emu.stats().await;
    assert_eq!(
        stats.inits.values().sum::<u64>(),
        0,
        "nothing reached {stats:?}"
    );
    assert_eq!(env.record(&path).unwrap().state, FileState::Failed);
}
