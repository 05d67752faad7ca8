//! `vod-emulator`: the UGC upload service emulator on its own (see `vodup::emulator`).
//!
//! Parses flags, starts logging (to stderr), binds, prints one ready line on stdout and serves until
//! Ctrl-C or SIGTERM.

use anyhow::Context as _;
use clap::Parser;
use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;
use vodup::emulator::{Emulator, EmulatorConfig, Faults, DEFAULT_VERIFY_KEY};
use vodup::protocol::SecretKey;

/// Serve the VOD "UGC upload" protocol at http://ADDR/v2/index.php, strictly, with optional faults.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on; port 0 picks a free port (the ready line shows it).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory of the emulator's state (uploads, parts, finished files); created if missing.
    #[arg(long = "data", value_name = "DIR")]
    data: PathBuf,
    /// Secret id that signatures must name (`s`).
    #[arg(long)]
    secret_id: String,
    /// Secret key of that id. Prefer the environment variable: flags show in `ps`.
    #[arg(long, env = "VOD_EMULATOR_SECRET_KEY", hide_env_values = true)]
    secret_key: String,
    /// Seed of the fault RNG: the same seed and request order inject the same faults.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Probability of a JSON error with canRetry 1 (code -10004, -10005 or 6200).
    #[arg(long, default_value_t = 0.0)]
    retryable_rate: f64,
    /// Probability of a JSON error with canRetry 0 (code -10003 or 4300).
    #[arg(long, default_value_t = 0.0)]
    final_rate: f64,
    /// Probability of an HTTP 500 answer.
    #[arg(long = "http-500-rate", default_value_t = 0.0)]
    http_500_rate: f64,
    /// Probability of an HTTP 503 answer.
    #[arg(long = "http-503-rate", default_value_t = 0.0)]
    http_503_rate: f64,
    /// Probability of closing the connection without an answer.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Body bytes read before a dropped connection is closed.
    #[arg(long, default_value_t = 0)]
    drop_after_bytes: u64,
    /// Delay added to every protocol request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Probability of holding a request `--stall-ms` before handling it.
    #[arg(long, default_value_t = 0.0)]
    stall_rate: f64,
    /// Length of a stall, in milliseconds.
    #[arg(long, default_value_t = 0)]
    stall_ms: u64,
    /// Limit faults to these actions (comma-separated, e.g. UploadPartEx); default: all three.
    #[arg(long, value_delimiter = ',')]
    fault_actions: Vec<String>,
    /// Limit faults to the requests of this fileSha.
    #[arg(long)]
    fault_file_sha: Option<String>,
    /// Key of the HMAC in finish answers' `verify_content`.
    #[arg(long, default_value = DEFAULT_VERIFY_KEY)]
    verify_key: String,
    /// Log JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

impl Cli {
    fn config(&self) -> EmulatorConfig {
        let faults = Faults {
            retryable_rate: self.retryable_rate,
            final_rate: self.final_rate,
            http_500_rate: self.http_500_rate,
            http_503_rate: self.http_503_rate,
            drop_rate: self.drop_rate,
            drop_after_bytes: self.drop_after_bytes,
            latency_ms: self.latency_ms,
            stall_rate: self.stall_rate,
            stall_ms: self.stall_ms,
            actions: self.fault_actions.clone(),
            file_sha: self.fault_file_sha.clone(),
            ..Faults::default()
        };
        EmulatorConfig {
            listen: self.listen,
            data_dir: self.data.clone(),
            secrets: vec![(
                self.secret_id.clone(),
                SecretKey::new(self.secret_key.clone()),
            )],
            faults,
            seed: self.seed,
        }
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = term.recv() => Ok(()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    let emulator = Emulator::bind(cli.config())
        .await
        .context("cannot start the emulator")?
        .with_verify_key(cli.verify_key);
    println!("vod-emulator listening on {}", emulator.endpoint());
    std::io::stdout().flush()?;
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        match shutdown_signal().await {
            Ok(()) => {
                tracing::info!("shutting down");
                on_signal.cancel();
            }
            Err(error) => tracing::error!(%error, "cannot listen for signals"),
        }
    });
    emulator.run(cancel).await?;
    Ok(())
}
