//! `vodup demo`: the daemon on an embedded default, for a first try with nothing set up. It starts
//! the emulator on loopback with a fresh random key, writes a config pointing at it (so
//! `vodup -c ... status` works from another terminal) and watches a temporary drop folder.

use crate::config::{AfterUpload, Config, Watch};
use crate::emulator::{Emulator, EmulatorConfig, Faults};
use crate::error::Error;
use crate::protocol::SecretKey;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const DEMO_SECRET_ID: &str = "AKIDvodupdemo";

pub async fn demo(
    drop: Option<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<ExitCode, Error> {
    let base = std::env::temp_dir().join(format!("vodup-demo-{}", std::process::id()));
    let drop = drop.unwrap_or_else(|| base.join("drop"));
    let done = base.join("done");
    for dir in [&base, &drop, &done, &base.join("failed")] {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            what: "cannot create",
            path: dir.clone(),
            source,
        })?;
    }
    let key = hex::encode(rand::random::<[u8; 16]>());
    let emulator = Emulator::bind(EmulatorConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        data_dir: base.join("emulator"),
        secrets: vec![(DEMO_SECRET_ID.into(), SecretKey::new(key.clone()))],
        faults: Faults::default(),
        seed: 0,
    })
    .await?;
    let endpoint = emulator.endpoint();
    let stop_emulator = CancellationToken::new();
    let served = tokio::spawn(emulator.run(stop_emulator.clone()));

    let mut watch = Watch::new(drop.clone());
    watch.after_upload = AfterUpload::Move;
    watch.done_dir = Some(done.clone());
    watch.failed_dir = Some(base.join("failed"));
    watch.settle = Duration::from_secs(2);
    let config = Config {
        endpoint: endpoint.clone(),
        secret_id: DEMO_SECRET_ID.into(),
        secret_key: Some(SecretKey::new(key.clone())),
        ledger: base.join("ledger.db").into(),
        watch: vec![watch],
        ..Config::default()
    };
    let config_path = base.join("vodup.toml");
    write_config(&config_path, &config, &key, &drop, &done)?;
    println!("vodup demo: emulator at {endpoint}");
    println!(
        "vodup demo: drop video files (.mp4, .mov, .mkv, ...) into {}",
        drop.display()
    );
    println!("vodup demo: uploaded files move to {}", done.display());
    println!(
        "vodup demo: see them with: cargo run --release -- -c {} status",
        config_path.display()
    );
    let result = crate::daemon::run(config, shutdown).await;
    stop_emulator.cancel();
    let _ = served.await;
    result.map(|()| ExitCode::SUCCESS)
}

/// The demo's config as a file, for `vodup -c FILE status` from another terminal.
fn write_config(
    path: &Path,
    config: &Config,
    key: &str,
    drop: &Path,
    done: &Path,
) -> Result<(), Error> {
    let text = format!(
        "# written by `vodup demo`\nendpoint = {:?}\nsecret_id = {:?}\nsecret_key = {:?}\n\
         ledger = {:?}\n\n[[watch]]\npath = {:?}\nafter_upload = \"move\"\ndone_dir = {:?}\n",
        config.endpoint,
        config.secret_id,
        key,
        config.ledger.to_string(),
        drop.display().to_string(),
        done.display().to_string(),
    );
    std::fs::write(path, text).map_err(|source| Error::Io {
        what: "cannot write",
        path: path.to_owned(),
        source,
    })
}
