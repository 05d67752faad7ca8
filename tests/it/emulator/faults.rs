//! Injected faults: each kind is observed by a client, never changes the state, and can be scoped.

use super::{part_of, HALF};
use crate::helpers::raw::assert_code;
use crate::helpers::{start_emulator, test_bytes, wait_until};
use reqwest::Method;
use std::time::Duration;
use vodup::emulator::{Faults, DEFAULT_RETRYABLE_CODES};
use vodup::hash::sha1_hex;

fn only_parts(faults: Faults) -> Faults {
    Faults {
        actions: vec!["UploadPartEx".into()],
        ..faults
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_faults_answer_can_retry_1_and_store_nothing() {
    let emu = start_emulator(Faults::default()).await;
    let data = test_bytes(HALF, 30);
    let sha = sha1_hex(&data);
    let sig = emu.sign(&sha, "a.mp4");
    assert_code(&emu.init(&sha, HALF as u64, HALF as u64, &sig).await, 0, 0);
    emu.set_faults(&Faults {
        retryable_rate: 1.0,
        ..Faults::default()
    })
    .await;
    for answer in [
        emu.part(&sha, 0, &data, &sig).await,
        emu.init(&sha, HALF as u64, HALF as u64, &sig).await,
    ] {
        assert_eq!(answer["canRetry"], 1, "{answer}");
        assert!(
            DEFAULT_RETRYABLE_CODES.contains(&answer["code"].as_i64().unwrap()),
            "{answer}"
        );
    }
    emu.set_faults(&Faults::default()).await;
    assert_code(&emu.init(&sha, HALF as u64, HALF as u64, &sig).await, 0, 0);
    let stats = emu.stats().await;
    assert_eq!(stats.parts_rejected["injected"], 1);
    assert_eq!(stats.faults_injected["retryable"], 2);
    assert_eq!(stats.parts_accepted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_faults_answer_can_retry_0_with_the_chosen_code() {
    let faults = Faults {
        final_rate: 1.0,
        final_codes: vec![4300],
        ..Faults::default()
    };
    let emu = start_emulator(faults).await;
    let sha = sha1_hex(b"final");
    let answer = emu
        .init(&sha, 10, HALF as u64, &emu.sign(&sha, "a.mp4"))
        .await;
    assert_code(&answer, 4300, 0);
    assert_eq!(emu.stats().await.inits["4300"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_faults_answer_500_or_503_without_json() {
    let emu = start_emulator(Faults {
        http_503_rate: 1.0,
        ..Faults::default()
    })
    .await;
    let query = [("Action", "InitUploadEx".to_owned())];
    let response = emu.call(Method::GET, &query, None).await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.json::<serde_json::Value>().await.is_err());
    emu.set_faults(&Faults {
        http_500_rate: 1.0,
        ..Faults::default()
    })
    .await;
    assert_eq!(
        emu.call(Method::GET, &query, None).await.unwrap().status(),
        500
    );
    let injected = emu.stats().await.faults_injected;
    assert_eq!((injected["http_503"], injected["http_500"]), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_a_transport_error_and_stores_nothing() {
    let emu = start_emulator(Faults::default()).await;
    let data = test_bytes(2 * HALF, 31);
    let sha = sha1_hex(&data);
    let sig = emu.sign(&sha, "a.mp4");
    assert_code(
        &emu.init(&sha, data.len() as u64, HALF as u64, &sig).await,
        0,
        0,
    );
    emu.set_faults(&only_parts(Faults {
        drop_rate: 1.0,
        drop_after_bytes: 65_536,
        ..Faults::default()
    }))
    .await;
    let query = emu.part_query(
        &sha,
        0,
        HALF as u64,
        &vodup::hash::md5_hex(part_of(&data, HALF, 0)),
        &sig,
    );
    let error = emu
        .call(Method::POST, &query, Some(part_of(&data, HALF, 0).to_vec()))
        .await
        .expect_err("the connection is closed without an answer");
    assert!(!error.is_status() && !error.is_timeout(), "{error:?}");
    emu.set_faults(&Faults::default()).await;
    let after = emu.init(&sha, data.len() as u64, HALF as u64, &sig).await;
    assert_code(&after, 0, 0);
    let stats = emu.stats().await;
    assert_eq!(
        (
            stats.faults_injected["drop"],
            stats.parts_rejected["injected"]
        ),
        (1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_times_the_client_out_and_does_not_delay_shutdown() {
    let faults = Faults {
        stall_rate: 1.0,
        stall_ms: 30_000,
        ..Faults::default()
    };
    let mut emu = start_emulator(faults).await;
    let sha = sha1_hex(b"stall");
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let query = [
        ("Action", "InitUploadEx".to_owned()),
        ("fileSha", sha.clone()),
    ];
    let error = impatient
        .get(&emu.endpoint)
        .query(&query)
        .send()
        .await
        .expect_err("stalled");
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(emu.stats().await.faults_injected["stall"], 1);

    let patient = emu.http.get(&emu.endpoint).query(&query).send();
    let pending = tokio::spawn(patient);
    wait_until(
        "the second request stalls",
        Duration::from_secs(5),
        || async { emu.stats().await.faults_injected["stall"] == 2 },
    )
    .await;
    emu.cancel.cancel();
    wait_until("the emulator stops", Duration::from_secs(1), || async {
        emu.is_stopped()
    })
    .await;
    let cut_short = pending.await.unwrap().expect("an answer before closing");
    assert_eq!(cut_short.status(), 503);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_apply_only_to_their_file_sha_and_actions() {
    let (a, b) = (test_bytes(1000, 32), test_bytes(1000, 33));
    let (sha_a, sha_b) = (sha1_hex(&a), sha1_hex(&b));
    let scoped = Faults {
        retryable_rate: 1.0,
        file_sha: Some(sha_a.clone()),
        ..Faults::default()
    };
    let emu = start_emulator(scoped).await;
    let (sig_a, sig_b) = (emu.sign(&sha_a, "a.mp4"), emu.sign(&sha_b, "b.mp4"));
    let faulty = emu.init(&sha_a, 1000, HALF as u64, &sig_a).await;
    assert_eq!(faulty["canRetry"], 1, "{faulty}");
    assert_code(&emu.init(&sha_b, 1000, HALF as u64, &sig_b).await, 0, 0);
    let finish_503 = Faults {
        http_503_rate: 1.0,
        actions: vec!["FinishUploadEx".into()],
        ..Faults::default()
    };
    emu.set_faults(&finish_503).await;
    assert_code(&emu.part(&sha_b, 0, &b, &sig_b).await, 0, 0);
    let finish = [
        ("Action", "FinishUploadEx".to_owned()),
        ("fileSha", sha_b.clone()),
        ("signature", sig_b),
    ];
    assert_eq!(
        emu.call(Method::GET, &finish, None).await.unwrap().status(),
        503
    );
    let stats = emu.stats().await;
    assert_eq!(
        (
            stats.faults_injected["retryable"],
            stats.faults_injected["http_503"]
        ),
        (1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_and_requests_inject_the_same_faults() {
    let coin = Faults {
        retryable_rate: 0.5,
        ..Faults::default()
    };
    let emu = start_emulator(coin.clone()).await;
    let sha = sha1_hex(b"coin");
    let sig = emu.sign(&sha, "a.mp4");
    let mut runs = Vec::new();
    for _ in 0..2 {
        emu.set_faults(&coin).await;
        let mut codes = Vec::new();
        for _ in 0..24 {
            codes.push(
                emu.init(&sha, 10, HALF as u64, &sig).await["code"]
                    .as_i64()
                    .unwrap(),
            );
        }
        runs.push(codes);
    }
    assert_eq!(runs[0], runs[1]);
    let faulted = runs[0].iter().filter(|&&c| c < 0).count();
    assert!((4..=20).contains(&faulted), "{:?}", runs[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_faults_can_be_read_and_invalid_sets_are_refused() {
    let emu = start_emulator(Faults::default()).await;
    let url = format!("{}/_admin/faults", emu.base());
    let set = Faults {
        latency_ms: 1,
        actions: vec!["InitUploadEx".into()],
        ..Faults::default()
    };
    emu.set_faults(&set).await;
    let read = emu.faults().await;
    assert_eq!(read, set);
    let bad_rate = serde_json::json!({"drop_rate": 2.0});
    assert_eq!(
        emu.http
            .post(&url)
            .json(&bad_rate)
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let unknown = serde_json::json!({"explode_rate": 1.0});
    assert!(emu
        .http
        .post(&url)
        .json(&unknown)
        .send()
        .await
        .unwrap()
        .status()
        .is_client_error());
    let read = emu.faults().await;
    assert_eq!(read, set, "refused sets change nothing");

    let sha = sha1_hex(b"reset");
    emu.init(&sha, 10, HALF as u64, &emu.sign(&sha, "a.mp4"))
        .await;
    assert_eq!(emu.stats().await.inits["0"], 1);
    emu.reset_stats().await;
    assert_eq!(emu.stats().await, vodup::emulator::Stats::default());
}
