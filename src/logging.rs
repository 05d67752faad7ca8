//! Logging set-up and the process's shutdown signal.
//!
//! Human output with colours on a terminal; plain lines without colours or timestamps under
//! systemd (journald adds both); JSON lines for log shippers. Nothing here ever sees the secret key:
//! it lives only in `SecretKey`, whose `Debug` is redacted.

use crate::config::LogFormat;
use std::io::IsTerminal as _;
use tracing_subscriber::EnvFilter;

/// Whether we run under systemd (journald sets `JOURNAL_STREAM` for its services).
pub fn under_systemd() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some() || std::env::var_os("INVOCATION_ID").is_some()
}

/// Install the global subscriber. `flag` (the CLI) overrides `config`; `RUST_LOG` overrides the
/// level given by `verbose`.
pub fn init(flag: Option<LogFormat>, verbose: u8, config: Option<LogFormat>) {
    install(flag, verbose, config, "info", std::io::stderr);
}

/// [`init`] for `vodup upload`: under progress bars (`bars`), the log writes above them and,
/// below `-v`, shows only warnings and errors (each file's result line says the rest).
pub fn init_upload(flag: Option<LogFormat>, verbose: u8, config: Option<LogFormat>, bars: bool) {
    if bars {
        install(flag, verbose, config, "warn", crate::progress::AboveBars);
    } else {
        init(flag, verbose, config);
    }
}

fn install<W>(flag: Option<LogFormat>, verbose: u8, config: Option<LogFormat>, quiet: &str, out: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let level = match verbose {
        0 => quiet,
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},hyper=info,reqwest=info,h2=info")));
    let format = flag.or(config).unwrap_or(LogFormat::Auto);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(out);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Human if std::io::stderr().is_terminal() => builder.try_init(),
        LogFormat::Auto if under_systemd() => builder.with_ansi(false).without_time().try_init(),
        LogFormat::Auto if std::io::stderr().is_terminal() => builder.try_init(),
        LogFormat::Auto | LogFormat::Human => builder.with_ansi(false).try_init(),
    };
    // A subscriber already installed (tests) is fine.
    let _ = result;
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("can install a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received: stopping"),
    }
}
