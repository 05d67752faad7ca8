//! The PostgreSQL ledger against a real server (helpers/postgres.rs; skipped, loudly, where there
//! are no PostgreSQL binaries): each `Ledger` here is a pool of its own, as each node of a fleet
//! has, on a database of the test's own. What a fleet relies on: one row per file however many
//! nodes record it, claims that never overlap, a lapsed claim taken over and the old holder's
//! writes fenced, files keyed on the watch's name and the path in its folder (hosts mount the
//! folder at different paths), migrations run once, and the pool coming back after a restart.
//! What both backends promise is the contract suite's (tests/it/ledger_contract/).

use crate::helpers::postgres::{self, Cluster};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vodup::config::{AccountName, Config, LedgerLocation};
use vodup::ledger::BackendError;
use vodup::ledger::{
    FileIdentity, FileKey, FileState, FileVersion, Inode, Lease, Ledger, LedgerError, NewFile,
    Postgres, Wanted, WatchRoot,
};

const A: &str = "AKIDa@vod.example";
const PART: u64 = 1_048_576;

/// A fresh database's URL, or `None` (after the helper's loud message) without PostgreSQL.
fn database() -> Option<String> {
    Some(postgres::shared()?.create_database())
}

fn location(url: &str) -> LedgerLocation {
    LedgerLocation::parse(url).unwrap()
}

/// A node: a ledger of its own pool on the database at `url`, migrated.
async fn node(url: &str) -> Ledger {
    let LedgerLocation::Postgres(url) = location(url) else {
        panic!("{url} is not PostgreSQL");
    };
    Ledger::from(Postgres::open(&url).await.unwrap())
}

/// The watch `drop`, mounted at `path` on this host.
fn drop_at(path: &str) -> WatchRoot {
    WatchRoot {
        name: "drop".into(),
        path: PathBuf::from(path),
    }
}

fn lease(node: &str, secs: u64) -> Lease {
    Lease {
        node: node.into(),
        length: Duration::from_secs(secs),
    }
}

/// `name` in the watch `root`, found by that host (inode 7 unless told).
fn watched(root: &WatchRoot, name: &str) -> NewFile {
    NewFile {
        path: root.path.join(name),
        identity: FileIdentity {
            inode: Inode { dev: 1, ino: 7 },
            version: FileVersion {
                size: 3_000_000,
                mtime_ns: 42,
            },
        },
        part_size: PART,
        watch: Some(root.clone()),
        processing: "{}".into(),
        state: FileState::Queued,
        account: Some(AccountName::new(A)),
    }
}

/// The same file given to `vodup upload` (no watch).
fn named(path: &Path) -> NewFile {
    NewFile {
        path: path.to_owned(),
        watch: None,
        ..watched(&drop_at("/"), "x")
    }
}

fn wanted(watches: &[WatchRoot], limit: usize) -> Wanted<'_> {
    Wanted {
        limit,
        watches,
        queued_before: None,
        one_part: false,
        accounts: &ACCOUNTS,
    }
}

/// The accounts the test nodes have: `A`.
static ACCOUNTS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| vec![A.into()]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_enqueue_from_two_nodes_of_one_file_makes_one_row_under_each_mount() {
    let Some(url) = database() else { return };
    let (a, b) = (node(&url).await, node(&url).await);
    let (at_a, at_b) = (drop_at("/mnt/a/drop"), drop_at("/srv/shared/drop"));
    let (file_a, file_b) = (watched(&at_a, "sub/v.mp4"), watched(&at_b, "sub/v.mp4"));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (ledger, new) = if i % 2 == 0 {
            (a.clone(), file_a.clone())
        } else {
            (b.clone(), file_b.clone())
        };
        tasks.spawn(async move { ledger.enqueue(new).await.unwrap() });
    }
    let keys: HashSet<FileKey> = tasks.join_all().await.iter().map(|r| r.key).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(a.files().await.unwrap().len(), 1);
    // Each host sees the row under its own folder of the watch.
    a.know_watches(std::slice::from_ref(&at_a));
    b.know_watches(std::slice::from_ref(&at_b));
    let key = *keys.iter().next().unwrap();
    let seen_by_a = a.file(key).await.unwrap().unwrap();
    let seen_by_b = b.file(key).await.unwrap().unwrap();
    assert_eq!(seen_by_a.path, Path::new("/mnt/a/drop/sub/v.mp4"));
    assert_eq!(seen_by_a.origin.as_deref(), Some(Path::new("/mnt/a/drop")));
    assert_eq!(seen_by_b.path, Path::new("/srv/shared/drop/sub/v.mp4"));
    let found = b.latest_for_path(&at_b.path.join("sub/v.mp4")).await;
    assert_eq!(found.unwrap().map(|r| r.key), Some(key));
    // A host without that watch shows the row by the watch's name, with no folder.
    let c = node(&url).await;
    let unknown = c.file(key).await.unwrap().unwrap();
    assert_eq!(
        (unknown.path, unknown.origin),
        ("drop/sub/v.mp4".into(), None)
    );
    // The same path given to `vodup upload` is a row of its own.
    let cli = a.enqueue(named(Path::new("/mnt/a/drop/sub/v.mp4"))).await;
    assert_ne!(cli.unwrap().key, key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_nodes_claiming_at_once_never_get_the_same_file() {
    let Some(url) = database() else { return };
    let (a, b) = (node(&url).await, node(&url).await);
    let root = drop_at("/drop");
    for i in 0..200 {
        a.enqueue(watched(&root, &format!("f{i:03}.mp4")))
            .await
            .unwrap();
    }
    // Both start together and pause a moment between rounds, so that on a busy machine one
    // does not take all 200 before the other is scheduled.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let claimer = |ledger: Ledger, name: &'static str| {
        let (root, start) = (root.clone(), start.clone());
        tokio::spawn(async move {
            let (lease, mut taken) = (lease(name, 60), Vec::new());
            start.wait().await;
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let claims = ledger
                    .claim_next(&lease, wanted(std::slice::from_ref(&root), 5))
                    .await
                    .unwrap();
                if claims.is_empty() {
                    return taken;
                }
                for (claim, record) in claims {
                    assert_eq!(record.node.as_deref(), Some(name));
                    assert_eq!(record.origin.as_deref(), Some(Path::new("/drop")));
                    taken.push(claim.key);
                }
            }
        })
    };
    let (by_a, by_b) = (claimer(a.clone(), "a"), claimer(b.clone(), "b"));
    let (by_a, by_b) = (by_a.await.unwrap(), by_b.await.unwrap());
    let all: HashSet<FileKey> = by_a.iter().chain(&by_b).copied().collect();
    assert_eq!(by_a.len() + by_b.len(), 200, "a file was claimed twice");
    assert_eq!(all.len(), 200);
    assert!(
        !by_a.is_empty() && !by_b.is_empty(),
        "one node took everything"
    );
}

#[tokio::test]
async fn postgres_a_file_of_an_account_a_node_lacks_is_left_to_a_node_that_has_it() {
    let Some(url) = database() else { return };
    let l = node(&url).await;
    let root = [drop_at("/drop")];
    let mut other = watched(&root[0], "other.mp4");
    other.account = Some(AccountName::new("AKIDb@vod.example"));
    let theirs = l.enqueue(other).await.unwrap();
    let ours = l.enqueue(watched(&root[0], "ours.mp4")).await.unwrap();
    let n1 = lease("n1", 30);
    let taken = l.claim_next(&n1, wanted(&root, 10)).await.unwrap();
    let keys: Vec<_> = taken.iter().map(|(c, _)| c.key).collect();
    assert_eq!(keys, [ours.key], "only the file of an account n1 has");
    assert_eq!(
        l.owed_accounts().await.unwrap().len(),
        2,
        "both accounts are owed files"
    );
    let b = vec!["AKIDb@vod.example".to_owned()];
    let n2 = lease("n2", 30);
    let wanted_b = Wanted {
        accounts: &b,
        ..wanted(&root, 10)
    };
    let taken = l.claim_next(&n2, wanted_b).await.unwrap();
    let keys: Vec<_> = taken.iter().map(|(c, _)| c.key).collect();
    assert_eq!(keys, [theirs.key], "the node that has the account takes it");
}

#[tokio::test]
async fn postgres_a_node_takes_only_files_of_the_watches_it_has() {
    let Some(url) = database() else { return };
    let l = node(&url).await;
    let (drop, other) = (
        drop_at("/drop"),
        WatchRoot {
            name: "other".into(),
            path: "/other".into(),
        },
    );
    let mine = l.enqueue(watched(&drop, "a.mp4")).await.unwrap();
    let theirs = l.enqueue(watched(&other, "b.mp4")).await.unwrap();
    l.enqueue(named(Path::new("/cli.mp4"))).await.unwrap();
    let n = lease("n", 30);
    let taken = l
        .claim_next(&n, wanted(std::slice::from_ref(&drop), 10))
        .await
        .unwrap();
    let keys: Vec<FileKey> = taken.iter().map(|(c, _)| c.key).collect();
    assert_eq!(
        keys,
        [mine.key],
        "not the other watch's, not a `vodup upload` file"
    );
    assert!(l.claim_next(&n, wanted(&[], 10)).await.unwrap().is_empty());
    let taken = l.claim_next(&n, wanted(&[drop, other], 10)).await.unwrap();
    assert_eq!(
        taken.iter().map(|(c, _)| c.key).collect::<Vec<_>>(),
        [theirs.key]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_connecting_at_the_same_moment_migrate_once() {
    let Some(url) = database() else { return };
    let config = Config {
        ledger: location(&url),
        ..Config::default()
    };
    let connects = (0..4).map(|_| Ledger::connect(&config));
    for ledger in futures::future::join_all(connects).await {
        ledger.unwrap();
    }
    let client = connect(&url).await;
    let versions = client
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .unwrap();
    assert_eq!(versions.len(), postgres_migrations(), "each migration once");
    // A schema a newer vodup wrote is refused, and named without a password.
    client
        .execute("INSERT INTO schema_migrations (version) VALUES (99)", &[])
        .await
        .unwrap();
    let with_password = url.replacen("postgres://postgres@", "postgres://postgres:pw-s3cr3t@", 1);
    let config = Config {
        ledger: location(&with_password),
        ..Config::default()
    };
    let refused = Ledger::connect(&config).await.unwrap_err();
    assert!(
        matches!(
            refused,
            LedgerError::Backend(BackendError::PostgresSchema { .. })
        ),
        "{refused}"
    );
    let shown = format!("{refused} {refused:?}");
    assert!(
        shown.contains("newer") && !shown.contains("s3cr3t"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_ledger_works_again_once_the_server_restarts() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database();
    let l = node(&url).await;
    let root = drop_at("/drop");
    let f = l.enqueue(watched(&root, "a.mp4")).await.unwrap();
    cluster.stop();
    assert!(l.file(f.key).await.is_err(), "answered without a server");
    cluster.start_again();
    let mut answer = l.file(f.key).await;
    for _ in 0..20 {
        if answer.is_ok() {
            break;
        }
        // A connection the pool held may fail once more before it is dropped.
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = l.file(f.key).await;
    }
    assert_eq!(answer.unwrap().map(|r| r.key), Some(f.key));
    let claimed = l
        .claim_next(&lease("n", 30), wanted(&[root], 1))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn postgres_check_config_shows_server_and_schema_and_never_the_password() {
    let Some(url) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let with_password = url.replacen("postgres://postgres@", "postgres://postgres:pw-s3cr3t@", 1);
    let config = dir.path().join("vodup.toml");
    let text = format!("secret_id = \"AKID\"\nsecret_key = \"k\"\nledger = {with_password:?}\n");
    std::fs::write(&config, text).unwrap();
    let vodup = |args: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_vodup"));
        command.arg("--config").arg(&config).args(args);
        command
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null());
        command.output()
    };
    let check = vodup(&["check-config"]).await.unwrap();
    let shown = |out: &std::process::Output| {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("s3cr3t"), "{text}");
        text
    };
    let text = shown(&check);
    assert!(check.status.success(), "{text}");
    assert!(
        text.contains("PostgreSQL 15")
            && text.contains(&format!("{} migration(s) pending", postgres_migrations())),
        "{text}"
    );
    assert!(text.contains(&url), "the URL without its password: {text}");
    assert!(text.contains("holds the ledger password"), "{text}");
    let status = vodup(&["status", "--json"]).await.unwrap();
    assert!(status.status.success(), "{}", shown(&status));
    let check = vodup(&["check-config"]).await.unwrap();
    assert!(shown(&check).contains("up to date"), "migrated by `status`");
}

/// How many migrations the PostgreSQL ledger has (the files of `migrations/postgres`).
fn postgres_migrations() -> usize {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres");
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("sql".as_ref()))
        .count()
}

/// `vodup ARGS` with `config`; its status and its stdout and stderr together.
async fn run_vodup(config: &Path, args: &[&str]) -> (bool, String) {
    let (ok, stdout, stderr) = crate::helpers::env::run_vodup(config, args).await;
    (ok, format!("{stdout}{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_uploads_and_refuses_clear_text_and_an_unknown_certificate() {
    let Some(cluster) = Cluster::start_tls() else {
        return;
    };
    let url = url::Url::parse(&cluster.create_database()).unwrap();
    let (port, db) = (url.port().unwrap(), url.path().trim_start_matches('/'));
    let ca = cluster.ca_file().display().to_string();
    let ledger = |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/{db}{query}");
    let env = crate::helpers::env::Env::new().await;
    let base = std::fs::read_to_string(env.config_file("")).unwrap();
    let config_for = |ledger_url: &str| {
        let sqlite = format!("ledger = {:?}", env.ledger_path().display().to_string());
        let text = base.replace(&sqlite, &format!("ledger = {ledger_url:?}"));
        assert_ne!(text, base);
        let path = env
            .dir
            .path()
            .join(format!("c{:x}.toml", rand::random::<u32>()));
        std::fs::write(&path, text).unwrap();
        path
    };

    // Verified TLS: check-config says so, and a file goes up with its ledger over it.
    let good = config_for(&ledger(
        "localhost",
        &format!("?sslmode=verify-full&sslrootcert={ca}"),
    ));
    let (ok, text) = run_vodup(&good, &["check-config"]).await;
    assert!(ok, "{text}");
    assert!(text.contains("over TLS (TLSv1.3"), "{text}");
    let data = crate::helpers::env::test_bytes(3 * crate::helpers::env::PART as usize, 81);
    let file = env.write(&env.src, "over-tls.mp4", &data);
    let (ok, text) = run_vodup(&good, &["upload", file.to_str().unwrap()]).await;
    assert!(ok, "{text}");
    let (_, status) = run_vodup(&good, &["status", "--json"]).await;
    let rows = crate::helpers::env::json_lines(status.as_bytes());
    let url = rows[0]["url"].as_str().unwrap();
    assert_eq!(crate::helpers::env::fetch(url).await, data);

    // A non-loopback name defaults to TLS required; 127.0.0.1 is in the certificate too.
    let by_ip = config_for(&ledger(
        "127.0.0.1",
        &format!("?sslmode=require&sslrootcert={ca}"),
    ));
    let (ok, text) = run_vodup(&by_ip, &["check-config"]).await;
    assert!(ok && text.contains("over TLS"), "{text}");

    // Clear text: refused by this server (TLS only), so the link was TLS above.
    let plain = config_for(&ledger("127.0.0.1", "?sslmode=disable"));
    let (ok, text) = run_vodup(&plain, &["check-config"]).await;
    assert!(!ok, "{text}");
    // A certificate no trusted CA signed (the system store does not hold the test CA).
    let unknown = config_for(&ledger("localhost", "?sslmode=verify-full"));
    let (ok, text) = run_vodup(&unknown, &["check-config"]).await;
    assert!(!ok, "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");

    // A role the server admits by client certificate only (`cert` in pg_hba.conf).
    cluster.admin("CREATE ROLE vodup_cert LOGIN");
    cluster.admin(&format!("CREATE DATABASE {db}_cert OWNER vodup_cert"));
    let (cert, key) = cluster.client_cert();
    let as_cert = |query: &str| {
        format!(
            "postgres://vodup_cert@localhost:{port}/{db}_cert?sslmode=verify-full&sslrootcert={ca}{query}"
        )
    };
    let with_cert = config_for(&as_cert(&format!(
        "&sslcert={}&sslkey={}",
        cert.display(),
        key.display()
    )));
    let (ok, text) = run_vodup(&with_cert, &["check-config"]).await;
    assert!(ok && text.contains("over TLS"), "{text}");
    let (ok, text) = run_vodup(&with_cert, &["status"]).await;
    assert!(ok, "{text}");
    let without = config_for(&as_cert(""));
    let (ok, text) = run_vodup(&without, &["check-config"]).await;
    assert!(!ok, "admitted without its certificate: {text}");
    let key_only = config_for(&as_cert(&format!("&sslkey={}", key.display())));
    let (ok, text) = run_vodup(&key_only, &["check-config"]).await;
    assert!(!ok && text.contains("without the other"), "{text}");
}
