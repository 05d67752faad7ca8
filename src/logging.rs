//! Logging set-up and the process's shutdown signal.
//!
//! Human output with colours on a terminal; under systemd, plain lines that start with their
//! syslog priority (`<3>` for an error: journald strips it and files the line at that priority) and
//! carry no timestamp (journald adds it); JSON lines for log shippers. Nothing here ever sees the secret key:
//! it lives only in `SecretKey`, whose `Debug` is redacted.

use crate::config::LogFormat;
use std::io::IsTerminal as _;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;
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
        LogFormat::Auto if under_systemd() => builder
            .with_ansi(false)
            .event_format(Journal::default())
            .try_init(),
        LogFormat::Auto if std::io::stderr().is_terminal() => builder.try_init(),
        LogFormat::Auto | LogFormat::Human => builder.with_ansi(false).try_init(),
    };
    // A subscriber already installed (tests) is fine.
    let _ = result;
}

/// A line for journald's stream transport: `<N>` (the syslog priority of the event's level, which
/// journald strips and records as the line's priority, so `journalctl -p err` finds errors), the
/// level's name, then spans, target and fields as the plain format writes them, without a time.
struct Journal {
    rest: format::Format<format::Full, ()>,
}

impl Default for Journal {
    fn default() -> Self {
        Journal {
            rest: format::format()
                .without_time()
                .with_level(false)
                .with_ansi(false),
        }
    }
}

/// The syslog priority journald files a line of this level under.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

impl<S, N> FormatEvent<S, N> for Journal
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let level = event.metadata().level();
        write!(writer, "<{}>{level} ", priority(level))?;
        self.rest.format_event(ctx, writer, event)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Captures what the subscriber writes.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn journal_lines_start_with_their_priority_and_no_space() {
        let capture = Capture::default();
        let out = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(Level::DEBUG)
            .event_format(Journal::default())
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("file", path = "/srv/vodup/drop/a.mp4");
            let _entered = span.enter();
            tracing::error!(reason = "boom", "upload failed");
            tracing::warn!("slow");
            tracing::info!("done");
            tracing::debug!("detail");
        });
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        let prefixes: Vec<&str> = lines.iter().map(|line| &line[..3]).collect();
        assert_eq!(prefixes, ["<3>", "<4>", "<6>", "<7>"], "{text}");
        assert!(lines[0].starts_with("<3>ERROR file{"), "{}", lines[0]);
        assert!(lines[0].contains("upload failed"), "{}", lines[0]);
        assert!(lines[0].contains("reason=\"boom\""), "{}", lines[0]);
        assert!(lines[0].contains("/srv/vodup/drop/a.mp4"), "{}", lines[0]);
        assert!(lines.iter().all(|line| !line.contains("  ")), "{text}");
    }
}
