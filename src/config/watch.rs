//! The `[[watch]]` table: one drop folder, which files in it are taken, when they are complete,
//! what happens to them after the upload ([`AfterUpload`]) and the hooks run when one is done or
//! failed. Its defaults and its validation live here; the top-level keys are `mod.rs`, the
//! watch's own account keys are checked and resolved in `account.rs`.

use super::account::AccountName;
use super::error::{invalid, ConfigError};
use crate::protocol::retry::humantime_serde;
use crate::protocol::{Processing, SecretKey};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// A completion hook: a command (argv, no shell) and/or a webhook URL, whose POSTs are signed
/// with the key in `webhook_secret_file` when it is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hook {
    pub command: Vec<String>,
    pub webhook: Option<String>,
    /// A file (mode 0600) holding the key the webhook's POSTs are signed with (HMAC-SHA256).
    pub webhook_secret_file: Option<PathBuf>,
    /// That key, read when the config is loaded; never written anywhere.
    #[serde(skip)]
    pub webhook_secret: Option<SecretKey>,
}

/// What happens to a source file once the service confirmed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterUpload {
    Keep,
    Delete,
    Move,
}

impl AfterUpload {
    /// The word the config and the ledger use.
    pub fn as_str(self) -> &'static str {
        match self {
            AfterUpload::Keep => "keep",
            AfterUpload::Delete => "delete",
            AfterUpload::Move => "move",
        }
    }

    pub fn parse(word: &str) -> Option<AfterUpload> {
        [AfterUpload::Keep, AfterUpload::Delete, AfterUpload::Move]
            .into_iter()
            .find(|a| a.as_str() == word)
    }
}

/// One watched drop folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watch {
    pub path: PathBuf,
    /// The folder's name in the ledger (default: its path). Hosts of a fleet that mount one
    /// shared folder at different paths give it the same name: rows key on the name and the
    /// path relative to the folder.
    pub name: Option<String>,
    #[serde(default = "Watch::default_include")]
    pub include: Vec<String>,
    #[serde(default = "Watch::default_exclude")]
    pub exclude: Vec<String>,
    #[serde(default = "Watch::default_recursive")]
    pub recursive: bool,
    #[serde(default = "Watch::default_after_upload")]
    pub after_upload: AfterUpload,
    pub done_dir: Option<PathBuf>,
    pub failed_dir: Option<PathBuf>,
    /// Write `NAME.vod.json` (fileId, url, fileSha, size, finished, instant) next to a done file
    /// where it ends up: in `done_dir` when moved, beside it when kept; none when deleted.
    #[serde(default)]
    pub done_sidecar: bool,
    /// Quiet time after the writer closed the file (close-write seen) or renamed it in.
    #[serde(default = "Watch::default_settle", with = "humantime_serde")]
    pub settle: Duration,
    /// Quiet time for a file with no write evidence: found by a scan, present at start, or on a
    /// network file system whose writers send no events here.
    #[serde(default = "Watch::default_settle_unseen", with = "humantime_serde")]
    pub settle_unseen: Duration,
    #[serde(default)]
    pub processing: Processing,
    /// Run when a file from this folder is done.
    pub on_done: Option<Hook>,
    /// Run when a file from this folder failed for good.
    pub on_failed: Option<Hook>,
    /// This folder's own account (see `account.rs`): its name, and the keys that differ from
    /// the top-level ones. The key comes only from `secret_key_file`.
    pub account: Option<String>,
    pub endpoint: Option<String>,
    pub secret_id: Option<String>,
    #[serde(default, deserialize_with = "super::secrets::unquoted_path")]
    pub secret_key_file: Option<PathBuf>,
    pub uid: Option<String>,
    /// The key read from `secret_key_file` when the config is loaded.
    #[serde(skip)]
    pub secret_key: Option<SecretKey>,
    /// The name of the account files from this folder go to, set by
    /// [`super::Config::resolve_accounts`]; `None` means the top-level account.
    #[serde(skip)]
    pub account_name: Option<AccountName>,
}

impl Watch {
    /// The folder's name in the ledger: `name`, or the path as written.
    pub fn ledger_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.path.to_string_lossy().into_owned())
    }

    /// The folder's canonical path (the path as written, if it cannot be resolved): how the
    /// ledger records a file's watch, and what the watcher compares events with.
    pub fn folder(&self) -> PathBuf {
        std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone())
    }

    pub fn default_include() -> Vec<String> {
        [
            "mp4", "mov", "m4v", "mkv", "avi", "wmv", "flv", "webm", "mpg", "mpeg", "ts", "mts",
            "m2ts", "mxf", "3gp", "f4v", "rm", "rmvb", "vob", "ogv",
        ]
        .iter()
        .map(|ext| format!("*.{ext}"))
        .collect()
    }
    pub fn default_exclude() -> Vec<String> {
        [".*", "*.part", "*.tmp", "*.crdownload", "~*"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
    fn default_recursive() -> bool {
        true
    }
    fn default_after_upload() -> AfterUpload {
        AfterUpload::Keep
    }
    pub fn default_settle() -> Duration {
        Duration::from_secs(5)
    }
    pub fn default_settle_unseen() -> Duration {
        Duration::from_secs(30)
    }

    /// A watch of `path` with every default.
    pub fn new(path: PathBuf) -> Watch {
        Watch {
            path,
            name: None,
            include: Watch::default_include(),
            exclude: Watch::default_exclude(),
            recursive: true,
            after_upload: AfterUpload::Keep,
            done_dir: None,
            failed_dir: None,
            done_sidecar: false,
            settle: Watch::default_settle(),
            settle_unseen: Watch::default_settle_unseen(),
            processing: Processing::default(),
            on_done: None,
            on_failed: None,
            account: None,
            endpoint: None,
            secret_id: None,
            secret_key_file: None,
            uid: None,
            secret_key: None,
            account_name: None,
        }
    }
}

impl Watch {
    /// The shortest `settle` and `settle_unseen` taken.
    pub const MIN_SETTLE: Duration = Duration::from_millis(100);

    pub(super) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(invalid(format!("{key}.path"), "must not be empty"));
        }
        for (field, globs) in [("include", &self.include), ("exclude", &self.exclude)] {
            for glob in globs {
                globset::Glob::new(glob).map_err(|e| {
                    invalid(format!("{key}.{field}"), format!("bad glob `{glob}`: {e}"))
                })?;
            }
        }
        for (field, hook) in [("on_done", &self.on_done), ("on_failed", &self.on_failed)] {
            let Some(hook) = hook else { continue };
            if hook.command.is_empty() && hook.webhook.is_none() {
                return Err(invalid(
                    format!("{key}.{field}"),
                    "needs `command` or `webhook`",
                ));
            }
            if hook.webhook_secret_file.is_some() && hook.webhook.is_none() {
                return Err(invalid(
                    format!("{key}.{field}.webhook_secret_file"),
                    "signs a webhook's POSTs, and this hook has no `webhook`",
                ));
            }
            if let Some(url) = &hook.webhook {
                let ok = url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
                if !ok {
                    return Err(invalid(
                        format!("{key}.{field}.webhook"),
                        format!("`{url}` is not an http(s) URL"),
                    ));
                }
            }
        }
        for (field, quiet) in [
            ("settle", self.settle),
            ("settle_unseen", self.settle_unseen),
        ] {
            if quiet < Watch::MIN_SETTLE {
                return Err(invalid(
                    format!("{key}.{field}"),
                    format!(
                        "must be at least {}: a shorter quiet period could take a file before \
                         the events that follow its close (a write, a rename) have arrived",
                        humantime::format_duration(Watch::MIN_SETTLE)
                    ),
                ));
            }
        }
        if self.after_upload == AfterUpload::Move && self.done_dir.is_none() {
            return Err(invalid(
                format!("{key}.done_dir"),
                "is required when after_upload = \"move\"",
            ));
        }
        Ok(())
    }
}
