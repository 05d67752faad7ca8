//! Progress display for `vodup upload`: on a terminal, one bar per file (indicatif) that the log
//! writes above ([`AboveBars`]) and a result line replaces once the file ends; plain log lines
//! otherwise ([`Lines`]); and the closing [`Summary`]. It does not print the results themselves
//! (that is `commands.rs`).

use crate::ledger::FileKey;
use crate::upload::{Event, Outcome, Progress};
use indicatif::{HumanBytes, HumanDuration, MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tracing::info;

/// Whether `vodup upload` draws bars: on a terminal, without `--json`.
pub fn use_bars(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// The process's bars: one set, so that the log can write above them.
fn terminal() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(MultiProgress::new)
}

/// One bar per file on a terminal.
#[derive(Debug)]
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<FileKey, ProgressBar>>,
}

impl Default for Bars {
    fn default() -> Self {
        Bars {
            multi: terminal().clone(),
            bars: Mutex::default(),
        }
    }
}

impl Bars {
    fn bar(&self, key: FileKey, path: &Path) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        bars.entry(key)
            .or_insert_with(|| {
                let style = ProgressStyle::with_template(
                    "{prefix:30!} {msg:10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("the template is valid")
                .progress_chars("=> ");
                let name = crate::shown::shown(Path::new(path.file_name().unwrap_or_default()));
                self.multi
                    .add(ProgressBar::new(0))
                    .with_style(style)
                    .with_prefix(name.to_string())
            })
            .clone()
    }

    /// The file ended: its bar goes, and `print` (its result line) is written in its place.
    pub fn ended(&self, key: FileKey, print: impl FnOnce()) {
        let bar = self
            .bars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        if let Some(bar) = bar {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.multi.suspend(print);
    }

    /// Run `f` (which prints) with the bars out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.multi.suspend(f)
    }
}

impl Progress for Bars {
    fn event(&self, key: FileKey, path: &Path, event: Event) {
        let bar = self.bar(key, path);
        match event {
            Event::Hashing { size } => {
                bar.set_length(size);
                bar.set_message("hashing");
            }
            Event::Hashed { bytes } => bar.inc(bytes),
            Event::Uploading { total, confirmed } => {
                // From the hashing pass's count to the upload's: rate and eta start afresh.
                bar.set_message("uploading");
                bar.reset();
                bar.set_length(total);
                bar.set_position(confirmed);
            }
            Event::PartConfirmed { len } => bar.inc(len),
            Event::Finishing => bar.set_message("finishing"),
        }
    }
}

/// The log's writer under bars: each line is written with the bars out of the way, so lines do
/// not tear the bars apart.
#[derive(Debug, Clone, Copy, Default)]
pub struct AboveBars;

impl std::io::Write for AboveBars {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        terminal().suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for AboveBars {
    type Writer = AboveBars;

    fn make_writer(&'a self) -> AboveBars {
        AboveBars
    }
}

/// Progress as log lines (one per milestone and per 10% of bytes): plain text when stderr is not
/// a terminal, JSON under `--log-format json`.
#[derive(Debug, Default)]
pub struct Lines {
    files: Mutex<HashMap<FileKey, (u64, u64, u64)>>,
}

impl Progress for Lines {
    fn event(&self, key: FileKey, path: &Path, event: Event) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let path = crate::shown::shown(path);
        match event {
            Event::Hashing { size } => info!(%path, size, "hashing"),
            Event::Hashed { .. } => {}
            Event::Uploading { total, confirmed } => {
                files.insert(key, (total, confirmed, percent(confirmed, total) / 10));
                info!(%path, total, confirmed, "uploading");
            }
            Event::PartConfirmed { len } => {
                if let Some((total, done, shown)) = files.get_mut(&key) {
                    *done += len;
                    let tenth = percent(*done, *total) / 10;
                    if tenth > *shown {
                        *shown = tenth;
                        info!(%path, percent = tenth * 10, confirmed = *done, total = *total, "progress");
                    }
                }
            }
            Event::Finishing => info!(%path, "finishing"),
        }
    }
}

fn percent(done: u64, total: u64) -> u64 {
    (done * 100).checked_div(total).unwrap_or(100)
}

/// Passes events on and counts the bytes the service confirmed in this run (for the summary).
pub struct Counted {
    inner: Arc<dyn Progress>,
    sent: AtomicU64,
}

impl Counted {
    pub fn new(inner: Arc<dyn Progress>) -> Counted {
        Counted {
            inner,
            sent: AtomicU64::new(0),
        }
    }

    /// Bytes of parts confirmed so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Progress for Counted {
    fn event(&self, key: FileKey, path: &Path, event: Event) {
        if let Event::PartConfirmed { len } = event {
            self.sent.fetch_add(len, Ordering::Relaxed);
        }
        self.inner.event(key, path, event);
    }
}

/// What a `vodup upload` run did, for its last line.
#[derive(Debug)]
pub struct Summary {
    started: Instant,
    done: u64,
    /// Sizes of the files done.
    bytes: u64,
    instant: u64,
    failed: u64,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            started: Instant::now(),
            done: 0,
            bytes: 0,
            instant: 0,
            failed: 0,
        }
    }
}

impl Summary {
    /// A file of `size` bytes ended so.
    pub fn add(&mut self, outcome: &Outcome, size: u64) {
        match outcome {
            Outcome::Done(done) => {
                self.done += 1;
                self.bytes += size;
                self.instant += u64::from(done.instant);
            }
            _ => self.failed += 1,
        }
    }

    /// A file that could not even be queued.
    pub fn refused(&mut self) {
        self.failed += 1;
    }

    /// `vodup: 3 files uploaded, 12.00 MiB in 2.1s (5.71 MiB/s sent), 1 instant upload, 0 not
    /// uploaded` (failed, interrupted or set aside).
    pub fn line(&self, sent: u64) -> String {
        self.line_after(self.started.elapsed(), sent)
    }

    fn line_after(&self, elapsed: Duration, sent: u64) -> String {
        let rate = sent as f64 / elapsed.as_secs_f64().max(0.001);
        let plural =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        format!(
            "vodup: {} uploaded, {} in {} ({}/s sent), {}, {} not uploaded",
            plural(self.done, "file", "files"),
            HumanBytes(self.bytes),
            took(elapsed),
            HumanBytes(rate as u64),
            plural(self.instant, "instant upload", "instant uploads"),
            self.failed,
        )
    }
}

/// `0.4s`, `12.3s`, or `3 minutes` past a minute.
fn took(elapsed: Duration) -> String {
    if elapsed < Duration::from_secs(60) {
        format!("{:.1}s", elapsed.as_secs_f64())
    } else {
        HumanDuration(elapsed).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{FileRecord, FileState, RecordedError};
    use crate::upload::Finished;

    #[test]
    fn the_summary_counts_files_bytes_instant_uploads_and_failures() {
        let mut summary = Summary::default();
        let done = |instant| {
            Outcome::Done(Finished::of(FileRecord {
                instant,
                ..FileRecord::moved_sample()
            }))
        };
        summary.add(&done(false), 3 << 20);
        summary.add(&done(true), 1 << 20);
        let error = RecordedError {
            code: 1,
            message: "m".into(),
            code_desc: String::new(),
        };
        summary.add(&Outcome::Failed(error), 5);
        summary.add(&Outcome::SetAside(FileState::Gone, "x".into()), 5);
        summary.refused();
        let line = summary.line_after(Duration::from_secs(2), 3 << 20);
        assert_eq!(
            line,
            "vodup: 2 files uploaded, 4.00 MiB in 2.0s (1.50 MiB/s sent), 1 instant upload, 3 not uploaded"
        );
    }
}
