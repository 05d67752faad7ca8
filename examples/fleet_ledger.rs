//! The claim rate of one PostgreSQL ledger, for `bench/fleet_ledger.sh`.
//!
//! `fleet_ledger URL NODES SECONDS`: queues files in the ledger at URL, then runs NODES nodes,
//! each its own connection pool and lease, for SECONDS. Each node does what a daemon does for a
//! file at the least: claims up to `files_in_flight` (2) owed files in one statement, records the
//! file done, and records its disposal (which releases the claim). Prints claims/s (each a whole
//! claim → done → disposed cycle), then the baseline: the same NODES clients each running a
//! one-row `UPDATE` in a loop on the same server (transactions/s), so the ratio says how close
//! the claim's three transactions come to the server's plain write rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vodup::config::Config;
use vodup::ledger::{Disposed, FileIdentity, FileState, Lease, Ledger, NewFile, Wanted, WatchRoot};

/// Files queued for the run; the nodes stop early if they drain them.
const QUEUED: usize = 20_000;
/// Connections queueing them at once (durable commits, so concurrency is what makes it quick).
const QUEUERS: usize = 32;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, nodes, seconds] = &args[..] else {
        return Err("usage: fleet_ledger URL NODES SECONDS".into());
    };
    let (nodes, run) = (
        nodes.parse::<usize>()?,
        Duration::from_secs(seconds.parse()?),
    );
    let config: Config = toml::from_str(&format!("ledger = {url:?}"))?;
    let watch = WatchRoot {
        name: "bench".into(),
        path: "/srv/bench".into(),
    };
    let ledger = Ledger::connect(&config).await?;
    queue(&ledger, &watch).await?;

    let claims = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + run;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..nodes {
        let ledger = Ledger::connect(&config).await?;
        let (watch, claims) = (watch.clone(), claims.clone());
        let lease = Lease {
            node: format!("bench-{n}"),
            length: Duration::from_secs(30),
        };
        tasks.spawn(async move {
            let watches = [watch];
            while Instant::now() < deadline {
                let wanted = Wanted {
                    limit: 2,
                    watches: &watches,
                    queued_before: None,
                    one_part: false,
                    accounts: &[],
                };
                let taken = ledger.claim_next(&lease, wanted).await?;
                if taken.is_empty() {
                    break; // drained
                }
                for (claim, _) in taken {
                    ledger.finish(claim, "id", None, true).await?;
                    ledger
                        .mark_disposed(claim, Disposed::Kept, None, None)
                        .await?;
                    claims.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok::<_, vodup::ledger::LedgerError>(Instant::now())
        });
    }
    let mut ended = started;
    while let Some(done) = tasks.join_next().await {
        ended = ended.max(done??);
    }
    let took = ended - started;
    let claimed = claims.load(Ordering::Relaxed) as f64 / took.as_secs_f64();
    let plain = plain_updates(url, nodes, run).await?;
    println!("nodes {nodes}");
    println!("claims/s {claimed:.0}");
    println!("baseline one-row updates/s {plain:.0}");
    println!("ratio claims/s to updates/s {:.3}", claimed / plain);
    Ok(())
}

/// Queue the run's files (rows only: no file is read), from several connections at once.
async fn queue(ledger: &Ledger, watch: &WatchRoot) -> Result<(), Box<dyn std::error::Error>> {
    let mut tasks = tokio::task::JoinSet::new();
    for q in 0..QUEUERS {
        let (ledger, watch) = (ledger.clone(), watch.clone());
        tasks.spawn(async move {
            for i in (q..QUEUED).step_by(QUEUERS) {
                let identity = FileIdentity::new(1, i as u64 + 1, 1, (1, 0));
                ledger
                    .enqueue(NewFile {
                        path: watch.path.join(format!("f{i:06}.mp4")),
                        identity,
                        part_size: 1_048_576,
                        watch: Some(watch.clone()),
                        processing: "{}".into(),
                        state: FileState::Queued,
                        account: None,
                    })
                    .await?;
            }
            Ok::<_, vodup::ledger::LedgerError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// The baseline: `clients` connections each updating its own row in a loop for `run`;
/// transactions per second in all.
async fn plain_updates(
    url: &str,
    clients: usize,
    run: Duration,
) -> Result<f64, Box<dyn std::error::Error>> {
    let (setup, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    setup
        .batch_execute(
            "DROP TABLE IF EXISTS bench_counter; \
             CREATE TABLE bench_counter (id INT PRIMARY KEY, n BIGINT NOT NULL); \
             INSERT INTO bench_counter SELECT g, 0 FROM generate_series(0, 999) g;",
        )
        .await?;
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + run;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients as i32 {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let done = done.clone();
        tasks.spawn(async move {
            let update = client
                .prepare("UPDATE bench_counter SET n = n + 1 WHERE id = $1")
                .await?;
            while Instant::now() < deadline {
                client.execute(&update, &[&c]).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, tokio_postgres::Error>(())
        });
    }
    while let Some(finished) = tasks.join_next().await {
        finished??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / run.as_secs_f64())
}
