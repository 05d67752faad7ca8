//! The crate's protocol client against the emulator: each answer parsed into the typed result the
//! engine sees, and each failure classified as PROTOCOL.md §6 says; and against a raw server whose
//! answer never ends.

use crate::helpers::{start_emulator, test_bytes, TestEmulator};
use bytes::Bytes;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use vodup::emulator::Faults;
use vodup::hash::{md5_hex, sha1_hex};
use vodup::protocol::{
    classify, CallError, Client, InitAnswer, InitRequest, Pace, PartRequest, Timeouts, Verdict,
};

const PART: usize = 524_288;

fn client(emu: &TestEmulator) -> Client {
    let timeouts = Timeouts {
        connect: Duration::from_secs(2),
        request: Duration::from_secs(2),
    };
    Client::new(&emu.endpoint, &timeouts, "test").unwrap()
}

fn init<'a>(sha: &'a str, size: usize, signature: &'a str) -> InitRequest<'a> {
    InitRequest {
        file_sha: sha,
        file_size: size as u64,
        part_size: PART as u64,
        signature,
    }
}

async fn send(
    c: &Client,
    sha: &str,
    sig: &str,
    offset: usize,
    bytes: &[u8],
) -> Result<(), CallError> {
    let md5 = md5_hex(bytes);
    let request = PartRequest {
        file_sha: sha,
        offset: offset as u64,
        data_size: bytes.len() as u64,
        data_md5: &md5,
        signature: sig,
    };
    c.upload_part(request, Bytes::copy_from_slice(bytes)).await
}

/// The service's code and canRetry of a failed call.
fn code(result: &Result<impl std::fmt::Debug, CallError>) -> (i64, Option<i64>) {
    let error = result.as_ref().expect_err("the call must fail");
    let service = error
        .service()
        .unwrap_or_else(|| panic!("not a service error: {error}"));
    (service.code, service.can_retry)
}

#[tokio::test]
async fn a_whole_upload_through_the_client_resumes_and_then_is_instant() {
    let emu = start_emulator(Faults::default()).await;
    let c = client(&emu);
    let data = test_bytes(3 * PART + 1000, 70);
    let sha = sha1_hex(&data);
    let sig = emu.sign(&sha, "client.mp4");
    assert_eq!(
        c.init(init(&sha, data.len(), &sig)).await.unwrap(),
        InitAnswer::New
    );
    send(&c, &sha, &sig, PART, &data[PART..2 * PART])
        .await
        .unwrap();
    send(&c, &sha, &sig, 3 * PART, &data[3 * PART..])
        .await
        .unwrap();
    let sig = emu.sign(&sha, "client.mp4");
    let InitAnswer::Resume { part_size, held } =
        c.init(init(&sha, data.len(), &sig)).await.unwrap()
    else {
        panic!("a second init of a partial upload resumes");
    };
    assert_eq!(part_size, Some(PART as u64));
    let mut offsets: Vec<(u64, u64)> = held.iter().map(|h| (h.offset, h.len)).collect();
    offsets.sort_unstable();
    assert_eq!(
        offsets,
        [(PART as u64, PART as u64), (3 * PART as u64, 1000)]
    );
    assert_eq!(
        held.iter()
            .find(|h| h.offset == 3 * PART as u64)
            .unwrap()
            .hash
            .as_deref(),
        Some(md5_hex(&data[3 * PART..]).as_str())
    );
    send(&c, &sha, &sig, 0, &data[..PART]).await.unwrap();
    send(&c, &sha, &sig, 2 * PART, &data[2 * PART..3 * PART])
        .await
        .unwrap();
    let done = c.finish(&sha, &sig).await.unwrap();
    assert!(done.verify_content.is_some());
    assert_eq!(emu.download(done.url.as_deref().unwrap()).await, data);
    let sig = emu.sign(&sha, "again.mp4");
    let InitAnswer::Instant { file_id, url } = c.init(init(&sha, data.len(), &sig)).await.unwrap()
    else {
        panic!("a finished file is an instant upload");
    };
    assert_eq!((file_id, url), (done.file_id, done.url));
}

#[tokio::test]
async fn every_refusal_is_parsed_and_classified_as_the_protocol_says() {
    let emu = start_emulator(Faults::default()).await;
    let c = client(&emu);
    let data = test_bytes(2 * PART, 71);
    let sha = sha1_hex(&data);
    let sig = emu.sign(&sha, "refused.mp4");

    let unsigned = c.init(init(&sha, data.len(), "bm90IGEgc2lnbmF0dXJl")).await;
    assert_eq!(code(&unsigned), (-10002, Some(0)));
    assert_eq!(
        classify(unsigned.as_ref().unwrap_err(), false),
        Verdict::Final
    );

    let empty = c.init(init(&sha, 0, &sig)).await;
    assert_eq!(code(&empty), (-10003, Some(0)));

    let orphan = send(&c, &sha, &sig, 0, &data[..PART]).await;
    assert_eq!(code(&orphan), (-10005, Some(1)));
    assert_eq!(
        classify(orphan.as_ref().unwrap_err(), false),
        Verdict::Reinit
    );

    c.init(init(&sha, data.len(), &sig)).await.unwrap();
    let bad_md5 = PartRequest {
        file_sha: &sha,
        offset: 0,
        data_size: PART as u64,
        data_md5: &md5_hex(b"other"),
        signature: &sig,
    };
    let bad_md5 = c
        .upload_part(bad_md5, Bytes::copy_from_slice(&data[..PART]))
        .await;
    assert_eq!(code(&bad_md5), (-10006, Some(1)));
    assert_eq!(
        classify(bad_md5.as_ref().unwrap_err(), false),
        Verdict::Retry(Pace::Normal)
    );

    let md5 = md5_hex(&data[..PART]);
    let short = PartRequest {
        file_sha: &sha,
        offset: 0,
        data_size: PART as u64,
        data_md5: &md5,
        signature: &sig,
    };
    let short = c
        .upload_part(short, Bytes::copy_from_slice(&data[..PART - 1]))
        .await;
    assert_eq!(code(&short), (-10006, Some(1)));

    let misaligned = send(&c, &sha, &sig, 1000, &data[1000..1000 + PART]).await;
    assert_eq!(code(&misaligned), (-10003, Some(0)));
    assert_eq!(
        classify(misaligned.as_ref().unwrap_err(), false),
        Verdict::Final
    );

    send(&c, &sha, &sig, 0, &data[..PART]).await.unwrap();
    let missing = c.finish(&sha, &sig).await;
    assert_eq!(code(&missing), (-10003, Some(1)));
    assert_eq!(
        classify(missing.as_ref().unwrap_err(), false),
        Verdict::Reinit,
        "finish with a part missing re-inits"
    );

    let stale = send(
        &c,
        &sha,
        &emu.sign(&sha, "refused.mp4"),
        PART,
        &data[PART..],
    )
    .await;
    assert_eq!(
        code(&stale),
        (-10002, Some(0)),
        "a signature that is not the latest init's"
    );
}

#[tokio::test]
async fn http_errors_drops_and_stalls_are_retryable_transport_outcomes() {
    let emu = start_emulator(Faults::default()).await;
    let c = client(&emu);
    let data = test_bytes(PART, 72);
    let sha = sha1_hex(&data);
    let sig = emu.sign(&sha, "flaky.mp4");
    c.init(init(&sha, data.len(), &sig)).await.unwrap();

    emu.set_faults(&Faults {
        http_503_rate: 1.0,
        ..Faults::default()
    })
    .await;
    let unavailable = send(&c, &sha, &sig, 0, &data).await.unwrap_err();
    assert!(
        matches!(unavailable, CallError::Http { status: 503, .. }),
        "{unavailable}"
    );
    assert_eq!(classify(&unavailable, false), Verdict::Retry(Pace::Normal));

    emu.set_faults(&Faults {
        drop_rate: 1.0,
        drop_after_bytes: 1000,
        ..Faults::default()
    })
    .await;
    let dropped = send(&c, &sha, &sig, 0, &data).await.unwrap_err();
    assert!(matches!(dropped, CallError::Transport { .. }), "{dropped}");
    assert_eq!(classify(&dropped, false), Verdict::Retry(Pace::Normal));

    emu.set_faults(&Faults {
        stall_rate: 1.0,
        stall_ms: 5_000,
        ..Faults::default()
    })
    .await;
    let stalled = send(&c, &sha, &sig, 0, &data).await.unwrap_err();
    assert!(
        matches!(&stalled, CallError::Transport { detail, .. } if detail.starts_with("timeout")),
        "{stalled}"
    );

    emu.set_faults(&Faults {
        retryable_rate: 1.0,
        retryable_codes: vec![6200],
        ..Faults::default()
    })
    .await;
    let busy = c.finish(&sha, &sig).await;
    assert_eq!(code(&busy).0, 6200, "platform codes are errors too");
    emu.set_faults(&Faults::default()).await;
    send(&c, &sha, &sig, 0, &data).await.unwrap();
    assert_eq!(
        emu.stats().await.parts_accepted,
        1,
        "no injected fault stored the part"
    );
}

/// Most a server may write before a client refuses an endless answer: the answer limit, plus what
/// the sockets' buffers on both sides hold.
const ENDLESS_BOUND: u64 = 64 << 20;
/// Where the endless server gives up by itself, so that a client that buffers everything fails
/// the test instead of taking the machine's memory.
const ENDLESS_CEILING: u64 = 256 << 20;

/// A server on `127.0.0.1:0` that answers its first request with HTTP 200 and
/// `{"code":0,"message":"AAAA…` without end (chunked, or announcing 3 GB), until the client hangs
/// up. The task returns the bytes of body it wrote.
async fn endless_server(chunked: bool) -> (String, JoinHandle<u64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v2/index.php", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut buf = [0; 4096];
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client sent a whole request");
            request.extend_from_slice(&buf[..n]);
        }
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_owned()
        } else {
            format!("Content-Length: {}", 3u64 << 30)
        };
        let head =
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing}\r\n\r\n");
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut block = b"{\"code\":0,\"message\":\"".to_vec();
        block.resize(64 * 1024, b'A');
        let mut written = 0u64;
        while written < ENDLESS_CEILING {
            let frame = if chunked {
                [format!("{:x}\r\n", block.len()).as_bytes(), &block, b"\r\n"].concat()
            } else {
                block.clone()
            };
            if socket.write_all(&frame).await.is_err() {
                break;
            }
            written += block.len() as u64;
            block.fill(b'A');
        }
        written
    });
    (endpoint, task)
}

#[tokio::test]
async fn an_endless_answer_is_refused_as_not_a_protocol_answer_after_a_bounded_read() {
    let timeouts = Timeouts {
        connect: Duration::from_secs(2),
        request: Duration::from_secs(20),
    };
    for (chunked, action) in [(true, "init"), (false, "init"), (true, "finish")] {
        let (endpoint, server) = endless_server(chunked).await;
        let c = Client::new(&endpoint, &timeouts, "test").unwrap();
        let started = Instant::now();
        let error = match action {
            "init" => c
                .init(init(&"a".repeat(40), 10 * PART, "c2ln"))
                .await
                .map(drop),
            _ => c.finish(&"a".repeat(40), "c2ln").await.map(drop),
        }
        .expect_err("an endless answer is not an answer");
        let case = format!("{action}, chunked {chunked}: {error}");
        assert!(
            matches!(error, CallError::BadBody { status: 200, .. }),
            "{case}"
        );
        assert_eq!(classify(&error, false), Verdict::Retry(Pace::Few), "{case}");
        assert!(
            error.to_string().contains("{\"code\":0,\"message\":\"AAAA"),
            "the first bytes are kept: {case}"
        );
        let written = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the client hangs up")
            .unwrap();
        assert!(
            written < ENDLESS_BOUND,
            "{written} bytes written before the client hung up: {case}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}: {case}",
            started.elapsed()
        );
    }
}
