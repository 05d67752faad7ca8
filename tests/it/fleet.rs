//! The fleet tests: several `vodup run` processes sharing one PostgreSQL ledger. Here so far: the
//! throwaway PostgreSQL they run on (helpers/postgres.rs), which must start, hand out databases
//! that do not see each other, and come back after a restart, as a fleet test restarting the
//! ledger's server mid-run relies on.

use crate::helpers::postgres::{self, Cluster};
use tokio_postgres::{Client, Error, NoTls};

/// A client of the database at `url`, its connection driven in the background.
async fn connect(url: &str) -> Result<Client, Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test]
async fn postgres_cluster_starts_creates_databases_and_restarts() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let first = cluster.create_database();
    let second = cluster.create_database();
    assert_ne!(first, second);

    let client = connect(&first)
        .await
        .expect("connects to the first database");
    let version: String = client
        .query_one("SELECT version()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(version.starts_with("PostgreSQL "), "{version}");
    client.batch_execute("CREATE TABLE mark ()").await.unwrap();
    let other = connect(&second).await.expect("connects to the second one");
    let unseen: bool = other
        .query_one("SELECT to_regclass('mark') IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(unseen, "a table of the first database shows in the second");

    cluster.stop();
    assert!(
        connect(&first).await.is_err(),
        "connected to a stopped server"
    );
    assert!(
        client.query_one("SELECT 1", &[]).await.is_err(),
        "a connection outlived its server"
    );

    cluster.start_again();
    let client = connect(&first).await.expect("connects after the restart");
    let kept: bool = client
        .query_one("SELECT to_regclass('mark') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(kept, "the restart lost the first database's table");
}

/// On CI's server (`VODUP_TEST_POSTGRES`) when there is one, so that CI checks it is usable.
#[tokio::test]
async fn postgres_shared_server_creates_databases() {
    let Some(server) = postgres::shared() else {
        return;
    };
    let url = server.create_database();
    let client = connect(&url).await.expect("connects to the new database");
    let name: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(url.ends_with(&format!("/{name}")), "{url} is not {name}");
}

// ---- several `vodup run` processes on one shared drop folder and one PostgreSQL ledger ----

use crate::helpers::env::{slow_parts, test_bytes, wait_until, Env, PART, SECRET_ID, SECRET_KEY};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Each node's lease: short, so takeovers happen within a test's patience.
const LEASE_SECS: u64 = 3;
/// Parts in flight per node.
const IN_FLIGHT: u64 = 4;

/// One node: a `vodup run` process with its own config (`node = NAME`) and log file.
struct Node {
    name: &'static str,
    config: PathBuf,
    log: PathBuf,
    child: tokio::process::Child,
}

impl Node {
    fn start(env: &Env, ledger: &str, name: &'static str) -> Node {
        Node::start_as(env, ledger, name, name)
    }

    /// A process under the node name `name`, with its config and log named `label`.
    fn start_as(env: &Env, ledger: &str, label: &str, name: &'static str) -> Node {
        Node::launch(env, ledger, label, name, &env.emu.endpoint)
    }

    /// A process under the node name `name` that reaches the service at `endpoint`.
    fn launch(env: &Env, ledger: &str, label: &str, name: &'static str, endpoint: &str) -> Node {
        let config = env.dir.path().join(format!("{label}.toml"));
        let text = format!(
            "endpoint = {endpoint:?}\nsecret_id = {SECRET_ID:?}\nsecret_key = {SECRET_KEY:?}\n\
             ledger = {ledger:?}\nnode = {name:?}\nlease = \"{LEASE_SECS}s\"\n\
             part_size = {PART}\nparts_in_flight = {IN_FLIGHT}\nfiles_in_flight = 2\n\
             shutdown_deadline = \"2s\"\nrescan_interval = \"2s\"\n\
             [retry]\nbase = \"5ms\"\ncap = \"100ms\"\nmax_attempts = 200\nmax_elapsed = \"120s\"\nslow_base = \"20ms\"\n\
             [timeouts]\nconnect = \"2s\"\nrequest = \"5s\"\n\
             [[watch]]\nname = \"shared\"\npath = {drop:?}\nafter_upload = \"move\"\ndone_dir = {done:?}\n\
             failed_dir = {failed:?}\nsettle = \"300ms\"\nsettle_unseen = \"1s\"\n",
            drop = env.drop.display().to_string(),
            done = env.done.display().to_string(),
            failed = env.failed.display().to_string(),
        );
        std::fs::write(&config, text).unwrap();
        let log = env.dir.path().join(format!("{label}.log"));
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vodup"))
            .arg("--config")
            .arg(&config)
            .args(["--log-format", "json", "run"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("vodup run starts");
        Node {
            name,
            config,
            log,
            child,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid()).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Still running: it did not exit on its own (a ledger outage is not fatal).
    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// `vodup nodes` through this node's config.
    async fn nodes(&self) -> String {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vodup"))
            .arg("--config")
            .arg(&self.config)
            .arg("nodes")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `vodup status --json` through this node's config: every file the shared ledger knows.
    async fn status(&self) -> Vec<Value> {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vodup"))
            .arg("--config")
            .arg(&self.config)
            .args(["status", "--json"])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        crate::helpers::env::json_lines(&out.stdout)
    }
}

/// `count` files of `parts` parts each, in the shared drop folder; their contents by name.
fn drop_files(env: &Env, count: usize, parts: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let name = format!("f{seed}-{i}.mp4");
            let data = test_bytes(parts * PART as usize - i, seed * 100 + i as u64);
            env.write(&env.drop, &name, &data);
            (name, data)
        })
        .collect()
}

/// Every file is in the done folder exactly once with its exact bytes, the drop folder is
/// empty, and the ledger has one done, disposed-of row per file.
async fn all_moved_once(env: &Env, node: &Node, files: &[(String, Vec<u8>)], patience: Duration) {
    for (name, data) in files {
        let moved = env.done.join(name);
        wait_until(&format!("{name} moved"), patience, || async {
            moved.exists()
        })
        .await;
        assert_eq!(
            &std::fs::read(&moved).unwrap(),
            data,
            "{name}: bytes differ"
        );
    }
    let done: Vec<PathBuf> = list(&env.done);
    assert_eq!(
        done.len(),
        files.len(),
        "each file moved exactly once: {done:?}"
    );
    assert!(
        list(&env.drop).is_empty(),
        "left in the drop folder: {:?}",
        list(&env.drop)
    );
    let rows = node.status().await;
    assert_eq!(rows.len(), files.len(), "one row per file: {rows:#?}");
    wait_until("every row disposed of", Duration::from_secs(10), || async {
        node.status()
            .await
            .iter()
            .all(|r| r["state"] == "done" && r["disposed"] == true)
    })
    .await;
}

fn list(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// The names of the files `node` holds a live claim on and is uploading.
async fn uploading_on(observer: &Node, node: &str) -> BTreeSet<String> {
    let rows = observer.status().await;
    rows.iter()
        .filter(|r| r["node"] == node && r["state"] == "uploading" && !r["lease_until"].is_null())
        .filter(|r| r["confirmed_bytes"].as_u64().unwrap_or(0) > 0)
        .map(file_name)
        .collect()
}

fn file_name(row: &Value) -> String {
    let path = row["path"].as_str().unwrap();
    path.rsplit('/').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_one_folder_upload_and_move_every_file_exactly_once() {
    let Some(cluster) = postgres::shared() else {
        return;
    };
    let ledger = cluster.create_database();
    let env = Env::with_faults(slow_parts(50)).await;
    let files = drop_files(&env, 8, 6, 1);
    let nodes = ["a", "b", "c"].map(|n| Node::start(&env, &ledger, n));
    all_moved_once(&env, &nodes[0], &files, Duration::from_secs(90)).await;
    let stats = env.emu.stats().await;
    let parts: u64 = files
        .iter()
        .map(|(_, d)| d.len().div_ceil(PART as usize) as u64)
        .sum();
    assert_eq!(stats.duplicate_parts, 0, "{stats:?}");
    assert_eq!(stats.parts_accepted, parts, "{stats:?}");
    assert_eq!(
        stats.finishes,
        files.len() as u64,
        "each file finished once: {stats:?}"
    );
    let rows = nodes[1].status().await;
    for row in &rows {
        let node = row["node"].as_str().unwrap_or("");
        assert!(["a", "b", "c"].contains(&node), "{row:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_upload_has_its_files_finished_by_the_others_within_its_lease() {
    let Some(cluster) = postgres::shared() else {
        return;
    };
    let ledger = cluster.create_database();
    let env = Env::with_faults(slow_parts(300)).await;
    let files = drop_files(&env, 2, 24, 2);
    let a = Node::start(&env, &ledger, "a");
    wait_until("a uploads both files", Duration::from_secs(30), || async {
        uploading_on(&a, "a").await.len() == 2
    })
    .await;
    let held = uploading_on(&a, "a").await;
    assert_eq!(held.len(), 2);
    let (b, c) = (
        Node::start(&env, &ledger, "b"),
        Node::start(&env, &ledger, "c"),
    );
    let before = env.emu.stats().await;
    a.signal(rustix::process::Signal::KILL);
    let killed = Instant::now();
    wait_until(
        "b or c took a's files over",
        Duration::from_secs(LEASE_SECS + 10),
        || async {
            let rows = b.status().await;
            held.iter().all(|name| {
                rows.iter()
                    .any(|r| &file_name(r) == name && (r["node"] == "b" || r["node"] == "c"))
            })
        },
    )
    .await;
    let taken_after = killed.elapsed();
    assert!(
        taken_after <= Duration::from_secs(LEASE_SECS + 5),
        "taken over after {taken_after:?}, lease {LEASE_SECS}s"
    );
    all_moved_once(&env, &c, &files, Duration::from_secs(60)).await;
    let after = env.emu.stats().await;
    assert!(
        after.duplicate_parts - before.duplicate_parts <= 2 * IN_FLIGHT,
        "re-sent more than a's parts in flight: {after:?}"
    );
    assert_eq!(after.finishes, files.len() as u64, "{after:?}");
    for row in b.status().await {
        assert_ne!(row["node"], "a", "a never came back: {row:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_frozen_past_its_lease_calls_the_service_no_more_and_lands_nothing_after_the_takeover(
) {
    let Some(cluster) = postgres::shared() else {
        return;
    };
    let ledger = cluster.create_database();
    let env = Env::with_faults(slow_parts(300)).await;
    let files = drop_files(&env, 2, 24, 3);
    let b = Node::start(&env, &ledger, "b");
    wait_until("b uploads both files", Duration::from_secs(30), || async {
        uploading_on(&b, "b").await.len() == 2
    })
    .await;
    let held = uploading_on(&b, "b").await;
    assert_eq!(held.len(), 2);
    b.signal(rustix::process::Signal::STOP);
    let c = Node::start(&env, &ledger, "c");
    wait_until(
        "c took b's files over",
        Duration::from_secs(LEASE_SECS + 10),
        || async {
            let rows = c.status().await;
            held.iter().all(|name| {
                rows.iter()
                    .any(|r| &file_name(r) == name && r["node"] == "c")
            })
        },
    )
    .await;
    // Every call b had made before the freeze has reached the service by now.
    let b_agent = format!("vodup/{} (node b)", env!("CARGO_PKG_VERSION"));
    let b_calls = |stats: &vodup::emulator::Stats| stats.calls_by_agent.get(&b_agent).copied();
    let before_thaw = b_calls(&env.emu.stats().await);
    assert!(before_thaw.is_some_and(|n| n > 0), "b's calls are counted");
    b.signal(rustix::process::Signal::CONT);
    all_moved_once(&env, &c, &files, Duration::from_secs(60)).await;
    // b, thawed, learns it lost the files (its renewal or its next write says so) and stops.
    wait_until(
        "b notices it lost its files",
        Duration::from_secs(10),
        || async {
            let log = b.log();
            log.contains("took this file over") || log.contains("claim lost")
        },
    )
    .await;
    // Once all is done, nothing of b's lands any more: the rows stay as c left them.
    let settled = c.status().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        c.status().await,
        settled,
        "a write landed after the takeover"
    );
    for row in &settled {
        assert_eq!(row["node"], "c", "{row:#}");
        assert_eq!(row["state"], "done");
    }
    assert_eq!(list(&env.done).len(), files.len(), "no double move");
    let stats = env.emu.stats().await;
    assert_eq!(
        stats.finishes,
        files.len() as u64,
        "b finished a file at the service after losing it: {stats:?}"
    );
    // Thawed, b renewed (and found its files lost) before it said anything more to the service.
    assert_eq!(
        b_calls(&stats),
        before_thaw,
        "b called the service for a file it had lost: {:?}",
        stats.calls_by_agent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_spell_the_endpoint_differently_share_one_account_and_fail_nothing() {
    let Some(cluster) = postgres::shared() else {
        return;
    };
    let ledger = cluster.create_database();
    let env = Env::new().await;
    assert!(
        env.emu.endpoint.contains("127.0.0.1"),
        "{}",
        env.emu.endpoint
    );
    let spelled = env.emu.endpoint.replace("127.0.0.1", "localhost");
    let a = Node::start(&env, &ledger, "a");
    let b = Node::launch(&env, &ledger, "b", "b", &spelled);
    let files = drop_files(&env, 8, 3, 5);
    all_moved_once(&env, &a, &files, Duration::from_secs(60)).await;
    for row in a.status().await {
        assert_eq!(row["state"], "done", "{row:#}");
    }
    let nodes = a.nodes().await;
    let accounts: Vec<&str> = nodes.lines().filter(|l| l.contains("account ")).collect();
    assert_eq!(accounts.len(), 2, "{nodes}");
    assert_eq!(
        accounts[0].trim(),
        accounts[1].trim(),
        "one account: {nodes}"
    );
    assert!(!b.log().contains("not in the config"), "{}", b.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_under_a_live_node_name_refuses_to_start_and_takes_nothing() {
    let Some(cluster) = postgres::shared() else {
        return;
    };
    let ledger = cluster.create_database();
    let env = Env::with_faults(slow_parts(300)).await;
    let files = drop_files(&env, 2, 24, 4);
    let mut a = Node::start(&env, &ledger, "a");
    wait_until("a uploads both files", Duration::from_secs(30), || async {
        uploading_on(&a, "a").await.len() == 2
    })
    .await;
    let before = env.emu.stats().await;
    // A copied config on another host: the same `node`.
    let mut copy = Node::start_as(&env, &ledger, "a-copy", "a");
    let exited = tokio::time::timeout(Duration::from_secs(LEASE_SECS + 15), copy.child.wait())
        .await
        .expect("the second process gives up")
        .unwrap();
    assert!(!exited.success(), "{exited:?}");
    let log = copy.log();
    assert!(log.contains("is in use"), "{log}");
    assert!(log.contains("Give each host its own"), "{log}");
    // a kept its claims all along: nothing was taken from it and sent again.
    all_moved_once(&env, &a, &files, Duration::from_secs(60)).await;
    let after = env.emu.stats().await;
    assert_eq!(
        after.duplicate_parts, before.duplicate_parts,
        "parts were sent twice: a's files changed hands"
    );
    assert!(!a.log().contains("claim lost"), "{}", a.log());
    let nodes = a.nodes().await;
    let runs: Vec<&str> = nodes.lines().filter(|l| l.contains("process ")).collect();
    assert_eq!(runs.len(), 1, "one process runs node a: {nodes}");
    // A run that died (kill -9) leaves the name renewed moments ago: the next start waits a
    // renewal period, sees no renewal, and takes the name.
    a.signal(rustix::process::Signal::KILL);
    a.child.wait().await.unwrap();
    let mut again = Node::start_as(&env, &ledger, "a-again", "a");
    wait_until(
        "a restart after a crash starts",
        Duration::from_secs(LEASE_SECS + 15),
        || async { again.log().contains("node started") },
    )
    .await;
    assert!(again.is_running(), "{}", again.log());
    assert!(again.log().contains("waiting to see"), "{}", again.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_wait_for_a_restarted_postgresql_and_go_on() {
    let Some(cluster) = postgres::Cluster::start() else {
        return;
    };
    let ledger = cluster.create_database();
    let env = Env::with_faults(slow_parts(250)).await;
    let files = drop_files(&env, 4, 16, 4);
    let mut nodes = [
        Node::start(&env, &ledger, "a"),
        Node::start(&env, &ledger, "b"),
    ];
    wait_until("uploads under way", Duration::from_secs(30), || async {
        !uploading_on(&nodes[0], "a").await.is_empty()
            || !uploading_on(&nodes[0], "b").await.is_empty()
    })
    .await;
    cluster.stop();
    tokio::time::sleep(Duration::from_secs(LEASE_SECS + 1)).await;
    cluster.start_again();
    all_moved_once(&env, &nodes[1], &files, Duration::from_secs(90)).await;
    for node in &mut nodes {
        assert!(node.is_running(), "{} exited: {}", node.name, node.log());
    }
    let stats = env.emu.stats().await;
    assert_eq!(stats.finishes, files.len() as u64, "{stats:?}");
}
