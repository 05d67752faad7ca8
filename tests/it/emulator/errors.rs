//! Every error code the emulator answers by itself, with its `canRetry`.

use super::{part_of, HALF, MIB};
use crate::helpers::raw::assert_code;
use crate::helpers::{start_emulator, test_bytes};
use reqwest::Method;
use vodup::clock::unix_now;
use vodup::emulator::Faults;
use vodup::hash::{md5_hex, sha1_hex};
use vodup::protocol::SecretKey;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_answer_10002_naming_the_failed_check() {
    let emu = start_emulator(Faults::default()).await;
    let sha = sha1_hex(b"signed");
    let other = sha1_hex(b"other");
    let wrong_key = emu
        .claims(&sha, "a.mp4")
        .sign(&SecretKey::new("wrong"))
        .encoded;
    let mut expired = emu.claims(&sha, "a.mp4");
    (expired.issued_at, expired.expires_at) = (unix_now() - 7200, unix_now() - 3600);
    let expired = expired.sign(&emu.secret_key).encoded;
    let mut stranger = emu.claims(&sha, "a.mp4");
    stranger.secret_id = "AKIDunknown".into();
    let stranger = stranger.sign(&emu.secret_key).encoded;
    let cases = [
        (wrong_key, "hmac does not match"),
        (expired, "signature expired"),
        (
            emu.sign(&other, "a.mp4"),
            "signature fs does not match fileSha",
        ),
        (stranger, "unknown secret id"),
        ("not base64!".to_owned(), "signature is not valid base64"),
    ];
    for (signature, desc) in &cases {
        let answer = emu.init(&sha, 10, HALF as u64, signature).await;
        assert_code(&answer, -10002, 0);
        assert_eq!(answer["codeDesc"], *desc);
    }
    assert_eq!(emu.stats().await.inits["-10002"], cases.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_and_finish_need_the_signature_of_the_latest_init() {
    let emu = start_emulator(Faults::default()).await;
    let data = test_bytes(HALF, 20);
    let sha = sha1_hex(&data);
    let (sig1, sig2) = (emu.sign(&sha, "a.mp4"), emu.sign(&sha, "a.mp4"));
    assert_code(&emu.init(&sha, HALF as u64, HALF as u64, &sig1).await, 0, 0);
    assert_code(&emu.init(&sha, HALF as u64, HALF as u64, &sig2).await, 0, 0);
    let stale = emu.part(&sha, 0, &data, &sig1).await;
    assert_code(&stale, -10002, 0);
    assert!(stale["codeDesc"]
        .as_str()
        .unwrap()
        .contains("most recent init"));
    assert_code(&emu.part(&sha, 0, &data, &sig2).await, 0, 0);
    assert_code(&emu.finish(&sha, &sig1).await, -10002, 0);
    assert_code(&emu.finish(&sha, &sig2).await, 0, 0);
    assert_eq!(emu.stats().await.parts_rejected["signature"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_malformed_or_misrouted_parameters_answer_10001() {
    let emu = start_emulator(Faults::default()).await;
    let data = test_bytes(HALF, 21);
    let sha = sha1_hex(&data);
    let sig = emu.sign(&sha, "a.mp4");
    let init = |size: &str| {
        vec![
            ("Action", "InitUploadEx".to_owned()),
            ("fileSha", sha.clone()),
            ("fileSize", size.to_owned()),
            ("dataSize", HALF.to_string()),
            ("signature", sig.clone()),
        ]
    };
    let mut no_size = init("1");
    no_size.retain(|(k, _)| *k != "fileSize");
    let answer = emu.call_json(Method::GET, &no_size, None).await;
    assert_code(&answer, -10001, 0);
    assert_eq!(answer["codeDesc"], "missing parameter `fileSize`");
    for size in ["12a", "-1", "0x10", "01"] {
        assert_code(
            &emu.call_json(Method::GET, &init(size), None).await,
            -10001,
            0,
        );
    }
    let upper = [
        ("Action", "FinishUploadEx".to_owned()),
        ("fileSha", sha.to_uppercase()),
        ("signature", sig.clone()),
    ];
    assert_code(&emu.call_json(Method::GET, &upper, None).await, -10001, 0);
    assert_code(&emu.call_json(Method::GET, &[], None).await, -10001, 0);
    let unknown = [("Action", "DeleteVodFile".to_owned())];
    assert_code(&emu.call_json(Method::GET, &unknown, None).await, -10001, 0);
    assert_code(
        &emu.call_json(Method::POST, &init(&HALF.to_string()), None)
            .await,
        -10001,
        0,
    );

    assert_code(&emu.init(&sha, HALF as u64, HALF as u64, &sig).await, 0, 0);
    let part = emu.part_query(&sha, 0, HALF as u64, &md5_hex(&data), &sig);
    let get = emu.call_json(Method::GET, &part, None).await;
    assert_code(&get, -10001, 0);
    assert!(get["codeDesc"].as_str().unwrap().contains("POST"));
    let no_md5: Vec<_> = part
        .iter()
        .filter(|(k, _)| *k != "dataMd5")
        .cloned()
        .collect();
    assert_code(
        &emu.call_json(Method::POST, &no_md5, Some(data.clone()))
            .await,
        -10001,
        0,
    );
    let rejected = emu.stats().await.parts_rejected;
    assert_eq!((rejected["method"], rejected["param"]), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_differ_from_data_size_or_md5_answer_10006_retryable() {
    let emu = start_emulator(Faults::default()).await;
    let data = test_bytes(2 * HALF, 22);
    let sha = sha1_hex(&data);
    let sig = emu.sign(&sha, "a.mp4");
    assert_code(
        &emu.init(&sha, data.len() as u64, HALF as u64, &sig).await,
        0,
        0,
    );
    let first = part_of(&data, HALF, 0);
    let query = emu.part_query(&sha, 0, HALF as u64, &md5_hex(first), &sig);
    let mut damaged = first.to_vec();
    damaged[1000] ^= 1;
    let md5 = emu.call_json(Method::POST, &query, Some(damaged)).await;
    assert_code(&md5, -10006, 1);
    assert!(md5["codeDesc"].as_str().unwrap().contains("md5"));
    let short = emu
        .call_json(Method::POST, &query, Some(first[..1000].to_vec()))
        .await;
    assert_code(&short, -10006, 1);
    let long = emu
        .call_json(Method::POST, &query, Some(data.clone()))
        .await;
    assert_code(&long, -10006, 1);

    assert_code(
        &emu.init(&sha, data.len() as u64, HALF as u64, &sig).await,
        0,
        0,
    );
    let rejected = emu.stats().await.parts_rejected;
    assert_eq!((rejected["md5"], rejected["length"]), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_and_sizes_off_the_part_plan_answer_10003_final() {
    let emu = start_emulator(Faults::default()).await;
    let data = test_bytes(2 * MIB + HALF, 23);
    let sha = sha1_hex(&data);
    let sig = emu.sign(&sha, "a.mp4");
    assert_code(
        &emu.init(&sha, data.len() as u64, MIB as u64, &sig).await,
        0,
        0,
    );
    let cases: [(u64, &[u8]); 4] = [
        (1000, &data[1000..1000 + MIB]),
        (3 * MIB as u64, &data[..HALF]),
        (2 * MIB as u64, &data[..MIB]),
        (0, &data[..HALF]),
    ];
    for (offset, bytes) in cases {
        assert_code(&emu.part(&sha, offset, bytes, &sig).await, -10003, 0);
    }
    let rejected = emu.stats().await.parts_rejected;
    assert_eq!((rejected["offset"], rejected["size"]), (2, 2));
    assert_code(
        &emu.part(&sha, 2 * MIB as u64, part_of(&data, MIB, 2), &sig)
            .await,
        0,
        0,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_or_finish_without_init_answers_10005_retryable() {
    let emu = start_emulator(Faults::default()).await;
    let data = test_bytes(1000, 24);
    let sha = sha1_hex(&data);
    let sig = emu.sign(&sha, "a.mp4");
    assert_code(&emu.part(&sha, 0, &data, &sig).await, -10005, 1);
    assert_code(&emu.finish(&sha, &sig).await, -10005, 1);
    assert_eq!(emu.stats().await.parts_rejected["no_upload"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_with_a_missing_part_is_retryable_and_says_how_many() {
    let emu = start_emulator(Faults::default()).await;
    let data = test_bytes(3 * HALF + 7, 25);
    let sha = sha1_hex(&data);
    let sig = emu.sign(&sha, "a.mp4");
    assert_code(
        &emu.init(&sha, data.len() as u64, HALF as u64, &sig).await,
        0,
        0,
    );
    for i in [0, 1, 3] {
        assert_code(
            &emu.part(&sha, (i * HALF) as u64, part_of(&data, HALF, i), &sig)
                .await,
            0,
            0,
        );
    }
    let missing = emu.finish(&sha, &sig).await;
    assert_code(&missing, -10003, 1);
    assert_eq!(missing["message"], "1 of 4 parts missing");
    assert!(missing["codeDesc"]
        .as_str()
        .unwrap()
        .contains(&(2 * HALF).to_string()));
    assert_code(
        &emu.part(&sha, 2 * HALF as u64, part_of(&data, HALF, 2), &sig)
            .await,
        0,
        0,
    );
    assert_code(&emu.finish(&sha, &sig).await, 0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sha1_mismatch_at_finish_is_final_and_discards_the_parts() {
    let emu = start_emulator(Faults::default()).await;
    let data = test_bytes(HALF + 3, 26);
    let claimed = sha1_hex(b"not these bytes");
    let sig = emu.sign(&claimed, "a.mp4");
    assert_code(
        &emu.init(&claimed, data.len() as u64, HALF as u64, &sig)
            .await,
        0,
        0,
    );
    emu.upload_parts(&claimed, &data, HALF, &sig).await;
    let finish = emu.finish(&claimed, &sig).await;
    assert_code(&finish, -10003, 0);
    assert!(finish["codeDesc"].as_str().unwrap().contains("discarded"));
    assert_code(
        &emu.part(&claimed, 0, part_of(&data, HALF, 0), &sig).await,
        -10005,
        1,
    );
    let again = emu
        .init(&claimed, data.len() as u64, HALF as u64, &sig)
        .await;
    assert_code(&again, 0, 0);
    assert!(again.get("listParts").is_none());
    assert_eq!(emu.stats().await.finish_failures, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_refuses_empty_or_resized_files_and_odd_part_sizes() {
    let emu = start_emulator(Faults::default()).await;
    let sha = sha1_hex(b"sizes");
    let sig = emu.sign(&sha, "a.mp4");
    assert_code(&emu.init(&sha, 0, HALF as u64, &sig).await, -10003, 0);
    for data_size in [1000, 2 * MIB as u64, 0] {
        assert_code(&emu.init(&sha, 5000, data_size, &sig).await, -10003, 0);
    }
    assert_code(&emu.init(&sha, 5000, MIB as u64, &sig).await, 0, 0);
    let resized = emu.init(&sha, 5001, MIB as u64, &sig).await;
    assert_code(&resized, -10003, 0);
    assert!(resized["codeDesc"].as_str().unwrap().contains("5000"));
    assert_eq!(emu.stats().await.inits["-10003"], 5);
}
