//! Successful uploads: parallel parts, resume lists, restarts, instant upload, repeated finish.

use super::{part_of, HALF, MIB};
use crate::helpers::raw::assert_code;
use crate::helpers::{start_emulator, test_bytes};
use base64::Engine as _;
use serde_json::json;
use vodup::clock::unix_now;
use vodup::emulator::{Faults, DEFAULT_VERIFY_KEY};
use vodup::hash::{md5_hex, sha1_hex};
use vodup::protocol::signature::verify_content;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_out_of_order_parts_assemble_into_the_original_bytes() {
    let emu = start_emulator(Faults::default()).await;
    let data = test_bytes(3 * MIB + HALF, 1);
    let sha = sha1_hex(&data);
    let sig = emu.sign(&sha, "clip one.mp4");
    assert_code(
        &emu.init(&sha, data.len() as u64, MIB as u64, &sig).await,
        0,
        0,
    );

    let sends =
        [3, 1, 0, 2].map(|i| emu.part(&sha, (i * MIB) as u64, part_of(&data, MIB, i), &sig));
    for answer in futures::future::join_all(sends).await {
        assert_eq!(
            answer,
            json!({"code": 0, "message": "", "codeDesc": "", "canRetry": 0})
        );
    }
    let done = emu.finish(&sha, &sig).await;
    assert_code(&done, 0, 0);
    let file_id = done["fileId"].as_str().expect("fileId is a string");
    assert!(!file_id.is_empty() && file_id.bytes().all(|b| b.is_ascii_digit()));
    let url = done["url"].as_str().expect("url is a string");
    assert_eq!(
        url,
        format!("{}/files/{file_id}/clip%20one.mp4", emu.base())
    );
    assert_eq!(emu.download(url).await, data);

    let content = done["verify_content"].as_str().expect("verify_content");
    let plain = base64::engine::general_purpose::STANDARD
        .decode(content)
        .unwrap();
    let plain = String::from_utf8(plain).unwrap();
    let exp: u64 = plain[40..]
        .strip_prefix("ExpTime=")
        .and_then(|rest| rest.split('&').next())
        .and_then(|exp| exp.parse().ok())
        .expect("ExpTime in verify_content");
    assert!(
        (unix_now() + 86_300..=unix_now() + 86_400).contains(&exp),
        "{exp}"
    );
    assert_eq!(content, verify_content(DEFAULT_VERIFY_KEY, exp, file_id));

    let stats = emu.stats().await;
    assert_eq!((stats.parts_accepted, stats.duplicate_parts), (4, 0));
    assert_eq!(stats.bytes_received, data.len() as u64);
    assert_eq!(stats.parts_by_sha[&sha], 4);
    assert_eq!((stats.finishes, stats.finish_failures), (1, 0));
    assert_eq!(stats.inits["0"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_files_upload_at_once_with_eight_parts_in_flight_each() {
    let emu = start_emulator(Faults::default()).await;
    let files: Vec<Vec<u8>> = (0..3)
        .map(|seed| test_bytes(8 * MIB - 1000, 10 + seed))
        .collect();
    let uploads = files.iter().enumerate().map(|(n, data)| {
        let emu = &emu;
        async move {
            let sha = sha1_hex(data);
            let sig = emu.sign(&sha, &format!("f{n}.mp4"));
            assert_code(
                &emu.init(&sha, data.len() as u64, MIB as u64, &sig).await,
                0,
                0,
            );
            emu.upload_parts(&sha, data, MIB, &sig).await;
            let done = emu.finish(&sha, &sig).await;
            assert_code(&done, 0, 0);
            (
                done["fileId"].as_str().unwrap().to_owned(),
                done["url"].as_str().unwrap().to_owned(),
            )
        }
    });
    let done = futures::future::join_all(uploads).await;
    for ((file_id, url), data) in done.iter().zip(&files) {
        assert_eq!(emu.download(url).await, *data, "file {file_id}");
    }
    let mut ids: Vec<&String> = done.iter().map(|(id, _)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "fileIds are unique");
    assert_eq!(emu.stats().await.parts_accepted, 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_lists_the_held_parts_and_keeps_the_first_part_size() {
    let emu = start_emulator(Faults::default()).await;
    let data = test_bytes(3 * MIB + HALF, 2);
    let (sha, size) = (sha1_hex(&data), data.len() as u64);
    let sig = emu.sign(&sha, "a.mp4");
    assert_code(&emu.init(&sha, size, MIB as u64, &sig).await, 0, 0);
    for i in [3, 0] {
        assert_code(
            &emu.part(&sha, (i * MIB) as u64, part_of(&data, MIB, i), &sig)
                .await,
            0,
            0,
        );
    }

    let sig2 = emu.sign(&sha, "a.mp4");
    let resume = emu.init(&sha, size, HALF as u64, &sig2).await;
    assert_code(&resume, 1, 0);
    assert_eq!(resume["dataSize"], MIB);
    let expected = json!([
        {"offset": 0, "dataSize": MIB, "dataMd5": md5_hex(part_of(&data, MIB, 0))},
        {"offset": 3 * MIB, "dataSize": HALF, "dataMd5": md5_hex(part_of(&data, MIB, 3))},
    ]);
    assert_eq!(resume["listParts"], expected);

    for i in [1, 2] {
        assert_code(
            &emu.part(&sha, (i * MIB) as u64, part_of(&data, MIB, i), &sig2)
                .await,
            0,
            0,
        );
    }
    let done = emu.finish(&sha, &sig2).await;
    assert_code(&done, 0, 0);
    assert_eq!(emu.download(done["url"].as_str().unwrap()).await, data);
    assert_eq!(emu.stats().await.inits["1"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_emulator_remembers_parts_part_size_signature_and_files() {
    let mut emu = start_emulator(Faults::default()).await;
    let data = test_bytes(2 * MIB + HALF, 3);
    let (sha, size) = (sha1_hex(&data), data.len() as u64);
    let sig1 = emu.sign(&sha, "kept.mp4");
    assert_code(&emu.init(&sha, size, HALF as u64, &sig1).await, 0, 0);
    for i in [0, 2] {
        assert_code(
            &emu.part(&sha, (i * HALF) as u64, part_of(&data, HALF, i), &sig1)
                .await,
            0,
            0,
        );
    }

    emu.restart().await;
    let part4 = emu
        .part(&sha, (4 * HALF) as u64, part_of(&data, HALF, 4), &sig1)
        .await;
    assert_code(&part4, 0, 0);
    let sig2 = emu.sign(&sha, "kept.mp4");
    let resume = emu.init(&sha, size, MIB as u64, &sig2).await;
    assert_code(&resume, 1, 0);
    assert_eq!(
        resume["dataSize"], HALF,
        "the original part size, not the one asked"
    );
    let listed: Vec<(u64, String)> = resume["listParts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["offset"].as_u64().unwrap(),
                p["dataMd5"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(u64, String)> = [0, 2, 4]
        .map(|i| ((i * HALF) as u64, md5_hex(part_of(&data, HALF, i))))
        .into();
    assert_eq!(listed, expected);
    let stale = emu
        .part(&sha, HALF as u64, part_of(&data, HALF, 1), &sig1)
        .await;
    assert_code(&stale, -10002, 0);
    for i in [1, 3] {
        assert_code(
            &emu.part(&sha, (i * HALF) as u64, part_of(&data, HALF, i), &sig2)
                .await,
            0,
            0,
        );
    }
    let done = emu.finish(&sha, &sig2).await;
    assert_code(&done, 0, 0);

    emu.restart().await;
    let sig3 = emu.sign(&sha, "kept.mp4");
    let instant = emu.init(&sha, size, HALF as u64, &sig3).await;
    assert_code(&instant, 2, 0);
    assert_eq!(instant["fileId"], done["fileId"]);
    let url = instant["url"].as_str().unwrap();
    assert!(
        url.starts_with(&emu.base()),
        "{url} is served by the new emulator"
    );
    assert_eq!(emu.download(url).await, data);
    assert_eq!(emu.finish(&sha, &sig3).await["fileId"], done["fileId"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_upload_and_repeated_finish_return_the_same_file() {
    let emu = start_emulator(Faults::default()).await;
    let data = test_bytes(1000, 4);
    let sha = sha1_hex(&data);
    let sig1 = emu.sign(&sha, "small.mov");
    assert_code(&emu.init(&sha, 1000, HALF as u64, &sig1).await, 0, 0);
    assert_code(&emu.part(&sha, 0, &data, &sig1).await, 0, 0);
    let first = emu.finish(&sha, &sig1).await;
    assert_code(&first, 0, 0);

    let again = emu.finish(&sha, &sig1).await;
    assert_code(&again, 0, 0);
    assert_eq!(
        (&again["fileId"], &again["url"]),
        (&first["fileId"], &first["url"])
    );

    let sig2 = emu.sign(&sha, "small.mov");
    let instant = emu.init(&sha, 1000, MIB as u64, &sig2).await;
    assert_code(&instant, 2, 0);
    assert_eq!(
        (&instant["fileId"], &instant["url"]),
        (&first["fileId"], &first["url"])
    );
    assert_code(&emu.finish(&sha, &sig1).await, -10002, 0);
    let url = first["url"].as_str().unwrap();
    let renamed = emu
        .http
        .get(url.replace("small.mov", "other.mov"))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 404);
    let latest = emu.finish(&sha, &sig2).await;
    assert_eq!(
        (&latest["fileId"], &latest["url"]),
        (&first["fileId"], &first["url"])
    );

    let stats = emu.stats().await;
    assert_eq!((stats.finishes, stats.finish_failures), (3, 1));
    assert_eq!((stats.inits["0"], stats.inits["2"]), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_part_sent_again_succeeds_and_counts_as_duplicate() {
    let emu = start_emulator(Faults::default()).await;
    let data = test_bytes(HALF + 10, 5);
    let sha = sha1_hex(&data);
    let sig = emu.sign(&sha, "d.mp4");
    assert_code(
        &emu.init(&sha, data.len() as u64, HALF as u64, &sig).await,
        0,
        0,
    );
    for _ in 0..2 {
        assert_code(
            &emu.part(&sha, 0, part_of(&data, HALF, 0), &sig).await,
            0,
            0,
        );
    }
    let stats = emu.stats().await;
    assert_eq!((stats.parts_accepted, stats.duplicate_parts), (2, 1));
    assert_eq!(stats.bytes_received, 2 * HALF as u64);
    assert_eq!(stats.parts_by_sha[&sha], 2);
    let resume = emu.init(&sha, data.len() as u64, HALF as u64, &sig).await;
    assert_eq!(resume["listParts"].as_array().unwrap().len(), 1);
}
