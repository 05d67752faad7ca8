//! The configuration file: serde structs, every default in one place, and `validate()` that names
//! the bad key. Secrets may come from the file, a separate file, or the environment (read once at
//! start-up and removed from it, see [`take_secrets_from_env`]), and are held only as
//! [`SecretKey`], which never prints.

use crate::protocol::retry::{humantime_serde, RetryPolicy};
use crate::protocol::{PartSize, Processing, SecretKey, Timeouts};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

pub const DEFAULT_ENDPOINT: &str = "https://vod2.qcloud.com/v2/index.php";
pub const SECRET_KEY_ENV: &str = "VODUP_SECRET_KEY";
/// Reserved for the ledger's encryption password; taken out of the environment like the key.
pub const LEDGER_PASSWORD_ENV: &str = "VODUP_LEDGER_PASSWORD";
/// The variables that may hold secrets: read once at start-up, then removed from the environment
/// so that no child process (a hook command) inherits them.
const SECRET_ENVS: [&str; 2] = [SECRET_KEY_ENV, LEDGER_PASSWORD_ENV];

/// The secret variables as they were when [`take_secrets_from_env`] removed them.
static TAKEN_FROM_ENV: OnceLock<Vec<(&'static str, Option<String>)>> = OnceLock::new();

/// Read the secret variables and remove them from the process environment. Call it once, first
/// thing in `main`, while the process has a single thread: removing a variable races with any
/// other thread reading the environment.
pub fn take_secrets_from_env() {
    let taken = SECRET_ENVS
        .iter()
        .map(|&name| {
            let value = std::env::var(name).ok();
            std::env::remove_var(name);
            (name, value)
        })
        .collect();
    let _ = TAKEN_FROM_ENV.set(taken);
}

/// A secret variable: as taken at start-up, or (when nothing took them, as in a library user or
/// a test) as the environment holds it now.
pub fn secret_from_env(name: &str) -> Option<String> {
    match TAKEN_FROM_ENV.get() {
        Some(taken) => taken
            .iter()
            .find(|(taken, _)| *taken == name)
            .and_then(|(_, value)| value.clone()),
        None => std::env::var(name).ok(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub endpoint: String,
    pub secret_id: String,
    pub secret_key: Option<SecretKey>,
    #[serde(deserialize_with = "unquoted_path")]
    pub secret_key_file: Option<PathBuf>,
    pub uid: String,
    pub ledger: PathBuf,
    pub part_size: u64,
    pub parts_in_flight: usize,
    /// Files uploaded at the same time; their parts share `parts_in_flight`.
    pub files_in_flight: usize,
    /// A file that has waited this long behind running uploads starts anyway (up to twice
    /// `files_in_flight` files), so huge files never hold small ones back for long.
    #[serde(with = "humantime_serde")]
    pub interleave_after: Duration,
    /// How long a signature is valid (at most 90 days).
    #[serde(with = "humantime_serde")]
    pub signature_validity: Duration,
    /// On SIGTERM, how long parts in flight may take to finish before they are abandoned.
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
    /// Every watched folder is rescanned this often (catches what a network filesystem never
    /// reported); 0 disables the periodic rescan.
    #[serde(with = "humantime_serde")]
    pub rescan_interval: Duration,
    /// `auto` (human on a terminal, plain under systemd), `human` or `json`.
    pub log_format: LogFormat,
    /// Processing options signed for `vodup upload` (watches have their own).
    pub processing: Processing,
    /// Upload rate limit across all parts in flight, bytes/s ("40MiB"); absent or "0" = none.
    pub max_upload_rate: Option<Rate>,
    /// Time-of-day windows (local time) with their own rate limit.
    pub rate_schedule: Vec<RateWindow>,
    pub retry: RetryPolicy,
    pub timeouts: Timeouts,
    pub metrics: MetricsConfig,
    pub watch: Vec<Watch>,
}

/// `secret_key_file`, refused without quoting a bad value: it may be the key itself, written into
/// the wrong key.
fn unquoted_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    PathBuf::deserialize(d)
        .map(Some)
        .map_err(|_| serde::de::Error::custom("must be a path string (its value is not shown)"))
}

/// A rate in bytes per second, written like "40MiB" or "5MB"; 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(pub u64);

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Rate(n)),
            Raw::Text(t) if t.trim() == "unlimited" => Ok(Rate(0)),
            Raw::Text(t) => t
                .trim()
                .parse::<bytesize::ByteSize>()
                .map(|b| Rate(b.as_u64()))
                .map_err(|e| {
                    serde::de::Error::custom(format!("`{t}` is not a rate in bytes/s: {e}"))
                }),
        }
    }
}

/// From `from` to `to` (local time, "HH:MM"; may wrap past midnight) the limit is `max_upload_rate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateWindow {
    pub from: String,
    pub to: String,
    pub max_upload_rate: Rate,
}

/// The optional Prometheus listener.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port` to serve `/metrics` on; absent = off.
    pub listen: Option<std::net::SocketAddr>,
}

/// A completion hook: a command (argv, no shell) and/or a webhook URL.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hook {
    pub command: Vec<String>,
    pub webhook: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: DEFAULT_ENDPOINT.into(),
            secret_id: String::new(),
            secret_key: None,
            secret_key_file: None,
            uid: "vodup".into(),
            ledger: PathBuf::from("/var/lib/vodup/ledger.db"),
            part_size: PartSize::OneMiB.bytes(),
            parts_in_flight: 8,
            files_in_flight: 2,
            interleave_after: Duration::from_secs(30),
            signature_validity: Duration::from_secs(24 * 3600),
            shutdown_deadline: Duration::from_secs(30),
            rescan_interval: Duration::from_secs(300),
            log_format: LogFormat::Auto,
            processing: Processing::default(),
            max_upload_rate: None,
            rate_schedule: Vec::new(),
            retry: RetryPolicy::default(),
            timeouts: Timeouts::default(),
            metrics: MetricsConfig::default(),
            watch: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Human,
    Json,
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
}

impl Watch {
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
            include: Watch::default_include(),
            exclude: Watch::default_exclude(),
            recursive: true,
            after_upload: AfterUpload::Keep,
            done_dir: None,
            failed_dir: None,
            settle: Watch::default_settle(),
            settle_unseen: Watch::default_settle_unseen(),
            processing: Processing::default(),
            on_done: None,
            on_failed: None,
        }
    }
}

impl Config {
    /// Read, parse, resolve the secret and validate.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        config.resolve_secret(secret_from_env(SECRET_KEY_ENV))?;
        config.validate()?;
        Ok(config)
    }

    /// Parse TOML text; the error names the key and the line, never quotes the text (which may
    /// hold the secret key).
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            let key = e.span().and_then(|span| key_at(text, span.start));
            let mut message = e.message().trim_end().replace('\n', " ");
            if key.as_deref().is_some_and(names_a_secret) && message.contains(['`', '"', '\'']) {
                message = "invalid value (not shown: it may be the secret)".into();
            }
            if let Some(key) = key {
                message = format!("key `{key}`: {message}");
            }
            match line {
                Some(line) => format!("line {line}: {message}"),
                None => message,
            }
        })
    }

    /// The secret key comes from `secret_key`, else `secret_key_file`, else the environment.
    pub fn resolve_secret(&mut self, from_env: Option<String>) -> Result<(), ConfigError> {
        if self.secret_key.is_some() {
            return Ok(());
        }
        if let Some(file) = &self.secret_key_file {
            // The path is not quoted: a key written into `secret_key_file` by mistake would be.
            let text = std::fs::read_to_string(file).map_err(|e| {
                invalid(
                    "secret_key_file",
                    format!("cannot read the file it names: {e}"),
                )
            })?;
            self.secret_key = Some(SecretKey::new(text.trim()));
        } else if let Some(key) = from_env {
            self.secret_key = Some(SecretKey::new(key));
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = url::Url::parse(&self.endpoint)
            .map_err(|e| invalid("endpoint", format!("`{}` is not a URL: {e}", self.endpoint)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("endpoint", "must be an http or https URL"));
        }
        if self.secret_id.trim().is_empty() {
            return Err(invalid("secret_id", "is required"));
        }
        match &self.secret_key {
            Some(key) if !key.is_empty() => {}
            _ => {
                return Err(invalid(
                    "secret_key",
                    format!("is required (or secret_key_file, or ${SECRET_KEY_ENV})"),
                ))
            }
        }
        if self.uid.trim().is_empty() {
            return Err(invalid("uid", "must not be empty"));
        }
        if self.part_size().is_none() {
            return Err(invalid(
                "part_size",
                format!("{} is not 524288 or 1048576", self.part_size),
            ));
        }
        if self.parts_in_flight == 0 || self.parts_in_flight > 256 {
            return Err(invalid("parts_in_flight", "must be between 1 and 256"));
        }
        if self.files_in_flight == 0 {
            return Err(invalid("files_in_flight", "must be at least 1"));
        }
        let validity = self.signature_validity.as_secs();
        if validity <= 600 || validity > crate::protocol::signature::MAX_VALIDITY_SECS {
            return Err(invalid(
                "signature_validity",
                "must be more than 10 minutes and at most 90 days",
            ));
        }
        for (key, duration) in [
            ("timeouts.connect", self.timeouts.connect),
            ("timeouts.request", self.timeouts.request),
            ("retry.base", self.retry.base),
            ("retry.slow_base", self.retry.slow_base),
            ("retry.cap", self.retry.cap),
        ] {
            // Zero would make every call time out at once, or retries spin without a pause.
            if duration.is_zero() {
                return Err(invalid(key, "must be more than zero"));
            }
        }
        if self.retry.max_attempts == 0 {
            return Err(invalid("retry.max_attempts", "must be at least 1"));
        }
        for (i, window) in self.rate_schedule.iter().enumerate() {
            for (field, value) in [("from", &window.from), ("to", &window.to)] {
                if crate::ratelimit::parse_time_of_day(value).is_none() {
                    return Err(invalid(
                        format!("rate_schedule[{i}].{field}"),
                        format!("`{value}` is not HH:MM"),
                    ));
                }
            }
        }
        for (i, watch) in self.watch.iter().enumerate() {
            watch.validate(&format!("watch[{i}]"))?;
        }
        Ok(())
    }

    pub fn part_size(&self) -> Option<PartSize> {
        PartSize::from_bytes(self.part_size)
    }

    pub fn secret(&self) -> &SecretKey {
        self.secret_key
            .as_ref()
            .expect("validate() guarantees a secret key")
    }
}

/// The key on the line holding byte `offset` of `text`, if that line is `key = value`, prefixed
/// with the table it is in (`retry.base`; `watch.settle` in any `[[watch]]`).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = &text[..offset.min(text.len())];
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let bare = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let header = |l: &str| {
        let header = l.trim().strip_prefix('[')?.split(']').next()?;
        let header = header.trim_start_matches('[').trim();
        (!header.is_empty() && header.chars().all(bare)).then_some(header.to_owned())
    };
    let Some((key, _)) = line.split_once('=') else {
        return header(line);
    };
    let key = key.trim();
    if key.is_empty() || !key.chars().all(bare) {
        return None;
    }
    let table = before[..start].lines().rev().find_map(header);
    Some(table.map_or_else(|| key.to_owned(), |table| format!("{table}.{key}")))
}

/// Whether a dotted key is `secret_key` or `secret_key_file`, or inside one of them.
fn names_a_secret(key: &str) -> bool {
    let top = key.split('.').next().unwrap_or(key);
    matches!(top, "secret_key" | "secret_key_file")
}

impl Watch {
    fn validate(&self, key: &str) -> Result<(), ConfigError> {
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
        if self.after_upload == AfterUpload::Move && self.done_dir.is_none() {
            return Err(invalid(
                format!("{key}.done_dir"),
                "is required when after_upload = \"move\"",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> String {
        "secret_id = \"AKID1\"\nsecret_key = \"k\"\n".into()
    }

    fn check(text: &str) -> Result<Config, String> {
        let config = Config::parse(text)?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn the_example_config_parses_and_validates() {
        let text = include_str!("../config.example.toml");
        let config = check(text).unwrap();
        assert_eq!(config.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(config.part_size, 1_048_576);
        assert!(!config.watch.is_empty());
    }

    #[test]
    fn defaults_fill_everything_but_the_credentials() {
        let config = check(&minimal()).unwrap();
        assert_eq!(config.parts_in_flight, 8);
        assert_eq!(config.uid, "vodup");
        assert_eq!(config.signature_validity, Duration::from_secs(86_400));
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("part_size = 4096", "part_size"),
            ("parts_in_flight = 0", "parts_in_flight"),
            ("endpoint = \"ftp://x\"", "endpoint"),
            ("signature_validity = \"100days\"", "signature_validity"),
            (
                "[[watch]]\npath = \"/d\"\nafter_upload = \"move\"",
                "watch[0].done_dir",
            ),
            (
                "[[watch]]\npath = \"/d\"\ninclude = [\"[\"]",
                "watch[0].include",
            ),
        ];
        for (extra, key) in cases {
            let err = check(&format!("{}{extra}\n", minimal())).unwrap_err();
            assert!(err.contains(key), "{extra}: {err}");
        }
    }

    #[test]
    fn unknown_and_mistyped_keys_are_named() {
        let err = check(&format!("{}part_szie = 1\n", minimal())).unwrap_err();
        assert!(err.contains("part_szie"), "{err}");
        let err = check(&format!("{}[retry]\nbase = 5\n", minimal())).unwrap_err();
        assert!(err.contains("base"), "{err}");
    }

    #[test]
    fn a_missing_secret_is_named_and_the_environment_fills_it() {
        let mut config = Config::parse("secret_id = \"AKID1\"\n").unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("secret_key"), "{err}");
        config.resolve_secret(Some("from-env".into())).unwrap();
        config.validate().unwrap();
        assert_eq!(config.secret(), &SecretKey::new("from-env"));
    }

    #[test]
    fn parse_errors_never_quote_the_secret() {
        let err = Config::parse("secret_id = \"a\"\nsecret_key = s3cr3t-value\n").unwrap_err();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(
            err.contains("line 2") && err.contains("secret_key"),
            "{err}"
        );
        let err = Config::parse("secret_id = \"a\"\nsecret_key: Zm9vYmFy==\n").unwrap_err();
        assert!(!err.contains("Zm9vYmFy"), "{err}");
    }

    #[test]
    fn a_secret_of_the_wrong_type_is_named_and_never_quoted() {
        let cases = [
            ("secret_key = 12345678", "secret_key", "12345678"),
            ("secret_key = true", "secret_key", "true"),
            ("secret_key = 1.5e3", "secret_key", "1500"),
            ("secret_key = [\"s3cr3t-a\"]", "secret_key", "s3cr3t-a"),
            (
                "secret_key = { k = \"s3cr3t-t\" }",
                "secret_key",
                "s3cr3t-t",
            ),
            ("secret_key_file = 98765", "secret_key_file", "98765"),
            ("secret_key_file = false", "secret_key_file", "false"),
        ];
        for (line, key, value) in cases {
            let err = Config::parse(&format!("secret_id = \"a\"\n{line}\n")).unwrap_err();
            assert!(!err.contains(value), "{line}: {err}");
            assert!(err.contains(key) && err.contains("line 2"), "{line}: {err}");
        }
        let err = Config::parse("secret_id = \"a\"\n[secret_key]\nk = 424242\n").unwrap_err();
        assert!(
            !err.contains("424242") && err.contains("secret_key"),
            "{err}"
        );
    }

    #[test]
    fn an_unreadable_secret_key_file_is_named_without_its_path() {
        let mut config =
            Config::parse("secret_id = \"a\"\nsecret_key_file = \"/nonexistent/s3cr3t\"\n")
                .unwrap();
        let err = config.resolve_secret(None).unwrap_err().to_string();
        assert!(err.contains("secret_key_file"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn zero_or_negative_timeouts_and_backoffs_are_refused_naming_the_key() {
        for key in [
            "timeouts.connect",
            "timeouts.request",
            "retry.base",
            "retry.slow_base",
            "retry.cap",
        ] {
            let (table, field) = key.split_once('.').unwrap();
            for value in ["0s", "0ms", "-1s", "-500ms"] {
                let text = format!("{}[{table}]\n{field} = \"{value}\"\n", minimal());
                let err = check(&text).unwrap_err();
                assert!(err.contains(key), "{key} = {value}: {err}");
            }
            for value in ["0s", "-1s"] {
                let text = format!("{}[{table}]\n{field} = \"{value}\"\n", minimal());
                let err = check(&text).unwrap_err();
                assert!(
                    err.contains("must be more than zero"),
                    "{key} = {value}: {err}"
                );
            }
        }
    }

    #[test]
    fn keys_in_a_table_are_named_with_the_table() {
        let err = check(&format!("{}[retry]\nbase = 5\n", minimal())).unwrap_err();
        assert!(err.contains("`retry.base`"), "{err}");
        let text = format!("{}[[watch]]\npath = \"/d\"\nsettle = 5\n", minimal());
        assert!(check(&text).unwrap_err().contains("`watch.settle`"));
    }

    #[test]
    fn parse_errors_name_the_right_line() {
        let err = Config::parse("secret_id = \"a\"\nbogus = 1\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("bogus"), "{err}");
    }

    #[test]
    fn debug_of_a_config_never_shows_the_secret() {
        let config = check("secret_id = \"AKID1\"\nsecret_key = \"s3cr3t-value\"\n").unwrap();
        assert!(!format!("{config:?}").contains("s3cr3t-value"));
    }
}
