//! Progress display for `vodup upload`: bars on a terminal (indicatif), plain lines otherwise.

use crate::ledger::FileKey;
use crate::upload::{Event, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use tracing::info;

/// One bar per file on a terminal.
#[derive(Debug, Default)]
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<FileKey, ProgressBar>>,
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
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                self.multi
                    .add(ProgressBar::new(0))
                    .with_style(style)
                    .with_prefix(name.into_owned())
            })
            .clone()
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
            Event::Uploading { total, confirmed } => {
                bar.set_length(total);
                bar.set_position(confirmed);
                bar.reset_eta();
                bar.set_message("uploading");
            }
            Event::PartConfirmed { len } => bar.inc(len),
            Event::Finishing => bar.set_message("finishing"),
        }
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
