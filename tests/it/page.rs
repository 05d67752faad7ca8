//! The status page: `/files.json` pages newest first, every answer is locked down (CSP without
//! inline code, nosniff, no referrer, no framing), GET only; and in a real browser (headless
//! Chromium) the page lists the files, a hostile name shows as text and a done file its fileId.

use crate::helpers::env::{free_port, test_bytes, wait_until, Daemon, Env, PART};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The name of a file that would run script if a page put it in as markup.
const HOSTILE: &str = "<img src=x onerror=alert(1)>.mp4";

/// The daemon with the listener on a free loopback port, and `names` dropped and done (an empty
/// name stays waiting).
async fn serving(env: &Env, names: &[&str]) -> (Daemon, String) {
    let port = free_port();
    let mut config = env.config();
    config.http.listen = Some(([127, 0, 0, 1], port).into());
    let daemon = Daemon::start(config).await;
    for (i, name) in names.iter().enumerate() {
        env.write(
            &env.drop,
            name,
            &test_bytes(2 * PART as usize + 1000 * i, 70 + i as u64),
        );
        // One at a time, so the ledger's order is the drop order.
        let done = env.done.join(name);
        wait_until("the file done", Duration::from_secs(30), || async {
            done.exists()
        })
        .await;
    }
    (daemon, format!("http://127.0.0.1:{port}"))
}

async fn get_json(url: &str) -> Value {
    let response = reqwest::get(url).await.unwrap();
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

fn names(page: &Value) -> Vec<&str> {
    page["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn files_json_pages_newest_first_and_every_answer_is_locked_down() {
    let env = Env::new().await;
    let (daemon, base) = serving(&env, &["one.mp4", "two.mp4", HOSTILE]).await;

    let first = get_json(&format!("{base}/files.json?limit=2")).await;
    assert_eq!(
        names(&first),
        [HOSTILE, "two.mp4"],
        "newest first, escaped text"
    );
    let next = first["next"].as_i64().expect("a next page");
    let second = get_json(&format!("{base}/files.json?limit=2&before={next}")).await;
    assert_eq!(names(&second), ["one.mp4"]);
    assert!(second["next"].is_null(), "the last page");

    let record = env.record(&env.drop.join("one.mp4")).unwrap();
    let one = &second["files"][0];
    assert_eq!(one["state"], "done");
    assert_eq!(one["fileId"].as_str(), record.file_id.as_deref());
    assert_eq!(one["url"].as_str(), record.url.as_deref());
    assert_eq!(one["percent"], 100.0);
    assert_eq!(one["watch"].as_str(), Some(env.drop.to_str().unwrap()));
    assert_eq!(
        one["path"].as_str(),
        Some(env.drop.join("one.mp4").to_str().unwrap())
    );
    assert_eq!(
        one["movedTo"].as_str(),
        Some(env.done.join("one.mp4").to_str().unwrap())
    );
    for secretish in ["processing", "signature", "secret"] {
        let text = second.to_string();
        assert!(!text.contains(secretish), "{secretish} in {text}");
    }

    let client = reqwest::Client::new();
    for path in ["/", "/app.js", "/app.css", "/files.json", "/metrics"] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert!(response.status().is_success(), "{path}");
        let header = |name: &str| {
            let value = response.headers().get(name);
            value
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let csp = header("content-security-policy");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
    }
    let page = reqwest::get(format!("{base}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !page.contains("<script>") && !page.contains("<style"),
        "no inline code"
    );
    let post = client
        .post(format!("{base}/files.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        post.status(),
        reqwest::StatusCode::METHOD_NOT_ALLOWED,
        "read-only"
    );
    daemon.stop().await;
}

/// The browser to test with, or `None` when there is none and it is not required: `cargo test`
/// works on a machine with only the Rust toolchain, while CI sets `VODUP_REQUIRE_BROWSER=1` (and
/// installs Chromium), so there a missing browser fails the test.
fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() && std::env::var("VODUP_REQUIRE_BROWSER").as_deref() != Ok("1") {
        eprintln!(
            "chromium is not installed: browser test skipped (apt-get install chromium; \
             VODUP_REQUIRE_BROWSER=1 makes this a failure, as in CI)"
        );
        return None;
    }
    Some(found.expect(
        "chromium is not installed, and VODUP_REQUIRE_BROWSER=1: the status page is tested in a \
         real browser (apt-get install -y chromium)",
    ))
}

/// Run headless Chromium on `url` with `args`; its stdout.
async fn browse(browser: &Path, profile: &Path, args: &[&str], url: &str) -> String {
    let mut command = tokio::process::Command::new(browser);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("chromium finished in time")
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn the_page_in_a_browser_lists_files_with_hostile_names_as_text() {
    let Some(browser) = chromium() else { return };
    let env = Env::new().await;
    let names = ["Interview - Jane Doe.mp4", HOSTILE, "Trailer final v3.mov"];
    let (daemon, base) = serving(&env, &names).await;
    env.write(&env.drop, "empty.mp4", b"");
    wait_until(
        "the empty file waiting",
        Duration::from_secs(30),
        || async {
            env.record(&env.drop.join("empty.mp4"))
                .is_some_and(|r| r.state == vodup::ledger::FileState::Waiting)
        },
    )
    .await;
    let profile = tempfile::tempdir().unwrap();

    let dom = browse(
        &browser,
        profile.path(),
        &["--dump-dom"],
        &format!("{base}/"),
    )
    .await;
    assert!(
        dom.contains("&lt;img src=x onerror=alert(1)&gt;.mp4"),
        "the hostile name as text: {dom}"
    );
    assert!(!dom.contains("<img"), "no img element: {dom}");
    let done = env.record(&env.drop.join("Trailer final v3.mov")).unwrap();
    let file_id = done.file_id.expect("done");
    assert!(
        dom.contains(&format!("<code class=\"id\">{file_id}</code>")),
        "the done file's fileId: {dom}"
    );
    assert!(dom.contains("Interview - Jane Doe.mp4"), "{dom}");
    assert!(dom.contains("empty: taken once it has content"), "{dom}");
    assert_eq!(dom.matches("<tr class=\"state-done\">").count(), 3, "{dom}");

    let shot = env.dir.path().join("status-page.png");
    let arg = format!("--screenshot={}", shot.display());
    browse(
        &browser,
        profile.path(),
        &[&arg, "--window-size=1200,700"],
        &format!("{base}/"),
    )
    .await;
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if std::env::var("VODUP_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status-page.png");
        std::fs::create_dir_all(docs.parent().unwrap()).unwrap();
        std::fs::copy(&shot, docs).unwrap();
    }
    daemon.stop().await;
}

/// A raw HTTP/1.1 GET of `/files.json` to `port` naming `host`: the status code.
async fn status_for_host(port: u16, host: &str) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!("GET /files.json HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let head = String::from_utf8_lossy(&answer);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_page_answers_only_its_own_host_names() {
    let env = Env::new().await;
    let port = free_port();
    let mut config = env.config();
    config.http.listen = Some(([127, 0, 0, 1], port).into());
    config.http.allowed_hosts = vec!["vodup.example.com".into()];
    let daemon = Daemon::start(config).await;
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "vodup.example.com".into(),
    ] {
        assert_eq!(status_for_host(port, &host).await, 200, "{host}");
    }
    // DNS rebinding: a name the attacker controls, pointed at 127.0.0.1.
    for host in ["evil.example", "127.0.0.1.evil.example"] {
        assert_eq!(status_for_host(port, host).await, 421, "{host}");
    }
    daemon.stop().await;
}

#[tokio::test]
async fn with_a_token_the_page_and_metrics_answer_only_requests_that_carry_it() {
    let env = Env::new().await;
    let port = free_port();
    let token_file = env.dir.path().join("http.token");
    std::fs::write(&token_file, "t0ken-of-the-page\n").unwrap();
    let text = std::fs::read_to_string(env.config_file(&format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = {:?}\n",
        token_file.display().to_string()
    )))
    .unwrap();
    let path = env.dir.path().join("token.toml");
    std::fs::write(&path, text).unwrap();
    let config = vodup::config::Config::load(&path).unwrap();
    assert!(!format!("{config:?}").contains("t0ken-of-the-page"));
    let daemon = Daemon::start(config).await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for route in ["/", "/files.json", "/metrics", "/app.js"] {
        let url = format!("{base}{route}");
        let bare = http.get(&url).send().await.unwrap();
        assert_eq!(bare.status(), 401, "{route}");
        let challenge = bare.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Basic realm="), "{challenge}");
        let body = bare.text().await.unwrap();
        assert!(!body.contains("t0ken"), "{body}");
        let wrong = http.get(&url).bearer_auth("t0ken-of-the-pag").send().await;
        assert_eq!(wrong.unwrap().status(), 401, "{route}: a near miss");
        let bearer = http.get(&url).bearer_auth("t0ken-of-the-page").send().await;
        assert_eq!(bearer.unwrap().status(), 200, "{route}: bearer");
        let basic = http
            .get(&url)
            .basic_auth("anyone", Some("t0ken-of-the-page"))
            .send()
            .await;
        assert_eq!(basic.unwrap().status(), 200, "{route}: basic");
        let basic_wrong = http
            .get(&url)
            .basic_auth("t0ken-of-the-page", None::<&str>)
            .send();
        assert_eq!(
            basic_wrong.await.unwrap().status(),
            401,
            "{route}: token as user"
        );
    }
    // A browser given the token as basic authentication's password (as it would ask for it)
    // shows the page, whose script then reads /files.json with the same credentials.
    if let Some(browser) = chromium() {
        let data = test_bytes(PART as usize, 61);
        let file = env.write(&env.drop, "behind a token.mp4", &data);
        wait_until("the file is done", Duration::from_secs(30), || async {
            env.record(&file)
                .is_some_and(|r| r.state == vodup::ledger::FileState::Done)
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let url = format!("http://viewer:t0ken-of-the-page@127.0.0.1:{port}/");
        let dom = browse(&browser, profile.path(), &["--dump-dom"], &url).await;
        assert!(dom.contains("behind a token.mp4"), "{dom}");
        assert!(dom.contains("<tr class=\"state-done\">"), "{dom}");
    }
    daemon.stop().await;
}

#[tokio::test]
async fn a_page_on_a_public_address_needs_http_public() {
    let env = Env::new().await;
    let mut config = env.config();
    config.http.listen = Some(([0, 0, 0, 0], 9464).into());
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("http.public"), "{error}");
    config.http.public = true;
    config.validate().unwrap();
    // A token of its own is a login: no need to vouch for the network.
    config.http.public = false;
    config.http.token_file = Some(env.dir.path().join("http.token"));
    config.validate().unwrap();
}

#[tokio::test]
async fn slow_clients_cannot_hold_the_page_or_the_daemon() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let env = Env::new().await;
    let port = free_port();
    let mut config = env.config();
    config.http.listen = Some(([127, 0, 0, 1], port).into());
    let daemon = Daemon::start(config).await;
    // Slowloris: many connections, each a request head begun and never ended.
    let slow = vodup::http::MAX_CONNECTIONS + 40;
    let mut held = Vec::new();
    for _ in 0..slow {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        held.push(stream);
    }
    // Uploads go on meanwhile.
    let data = test_bytes(PART as usize, 80);
    env.write(&env.drop, "during-the-attack.mp4", &data);
    let done = env.done.join("during-the-attack.mp4");
    wait_until(
        "the upload during the attack",
        Duration::from_secs(30),
        || async { done.exists() },
    )
    .await;
    // Every slow connection is closed by the server: at once past the limit, the others once
    // their head timed out.
    let started = std::time::Instant::now();
    for stream in &mut held {
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(
            vodup::http::HEADER_TIMEOUT + Duration::from_secs(5),
            async {
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            },
        )
        .await;
        assert!(
            closed.is_ok(),
            "a slow connection held past its head timeout"
        );
    }
    assert!(started.elapsed() <= vodup::http::HEADER_TIMEOUT + Duration::from_secs(5));
    drop(held);
    let base = format!("http://127.0.0.1:{port}");
    wait_until(
        "the page answers again",
        Duration::from_secs(10),
        || async {
            reqwest::get(format!("{base}/files.json"))
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await;
    daemon.stop().await;
}
