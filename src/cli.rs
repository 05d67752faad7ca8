//! The command line: clap derive, every flag documented.

use crate::config::LogFormat;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Resumable, exactly-once uploads of video files to a VOD service.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        short,
        long,
        global = true,
        env = "VODUP_CONFIG",
        default_value = "/etc/vodup/config.toml"
    )]
    pub config: PathBuf,
    /// More logging: -v for debug, -vv for trace (RUST_LOG overrides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log format; overrides the config's `log_format`.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: watch the configured drop folders and upload what lands there.
    Run,
    /// Try vodup with no setup: start the emulator on loopback and watch a temporary drop folder.
    Demo {
        /// Drop folder to watch (default: a new temporary folder).
        #[arg(long)]
        drop: Option<PathBuf>,
    },
    /// Upload files now, in the foreground; run it again to resume after an interruption.
    Upload {
        /// Files to upload.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print one JSON object per file instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show the files of the ledger: state, progress, file id, last error. By default every file
    /// still owed something (an upload, an after-upload action) and the latest ones that ended,
    /// with a line saying how many older ones there are; the options select otherwise.
    Status {
        /// Print one JSON object per file, one per line, instead of a table.
        #[arg(long)]
        json: bool,
        /// Every file, however old.
        #[arg(long)]
        all: bool,
        /// Only files in this state (queued, hashing, uploading, finishing, done, failed,
        /// waiting, superseded, gone); repeat for several.
        #[arg(long, value_parser = parse_state)]
        state: Vec<crate::ledger::FileState>,
        /// Only files changed within this long (e.g. "24h", "7d").
        #[arg(long, value_parser = parse_age)]
        since: Option<std::time::Duration>,
        /// Only files of the watch of this name (its `name`, else its path).
        #[arg(long)]
        watch: Option<String>,
        /// At most this many files (by default, of those that ended: 50).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// List the nodes that share the ledger: when each last renewed its claims, and how many
    /// files it holds. A node silent for longer than `lease` is presumed dead; its files are
    /// taken over.
    Nodes {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put failed files back in the queue.
    Retry {
        /// The file to retry.
        #[arg(required_unless_present = "failed", conflicts_with = "failed")]
        file: Option<PathBuf>,
        /// Retry every failed file.
        #[arg(long)]
        failed: bool,
    },
    /// Validate the configuration and name any bad key.
    CheckConfig,
    /// Print the completion script for a shell to stdout.
    ///
    /// For example `vodup completions bash > ~/.local/share/bash-completion/completions/vodup`.
    /// The Debian package installs them for bash, zsh and fish.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn parse_state(text: &str) -> Result<crate::ledger::FileState, String> {
    crate::ledger::FileState::parse(text).ok_or_else(|| {
        "not a state: use queued, hashing, uploading, finishing, done, failed, waiting, \
         superseded or gone"
            .into()
    })
}

fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("not a duration like \"24h\" or \"7d\": {e}"))
}
