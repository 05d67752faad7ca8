//! The configuration file: the top-level keys as serde structs, every default in one place,
//! `Config::load` (read, parse, resolve the secret, validate) and errors that name the bad key and
//! line. The `[[watch]]` table is `watch.rs`; the secret key's ways in and keeping it unquoted are
//! `secrets.rs`; the ledger's location and PostgreSQL password `ledger.rs`; accounts (the top-level one and a watch's own) `account.rs`; the error type is `error.rs`, the tests `tests.rs`. Values with a domain of their own are parsed into that domain's types as the file
//! is read (rates and time-of-day windows: [`crate::ratelimit`]; retry and timeouts:
//! [`crate::protocol`]); nothing here is re-parsed later.

mod account;
mod error;
mod ledger;
mod secrets;
mod validate;
mod watch;

pub use account::{Account, AccountName};
pub use error::ConfigError;
pub use ledger::{LedgerLocation, LedgerPassword, LedgerTls, PostgresUrl, TlsMode};
pub use secrets::{secret_from_env, take_secrets_from_env, LEDGER_PASSWORD_ENV, SECRET_KEY_ENV};
pub use watch::{AfterUpload, Hook, Watch};

use crate::protocol::retry::{humantime_serde, RetryPolicy};
use crate::protocol::{PartSize, Processing, SecretKey, Timeouts};
use crate::ratelimit::{Rate, RateWindow};
use error::invalid;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_ENDPOINT: &str = "https://vod2.qcloud.com/v2/index.php";
/// The fewest parts in flight `parts_in_flight = "auto"` goes down to, and so the least
/// `max_parts_in_flight`.
pub const MIN_PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The top-level account's name (default `secret_id@host`), as the ledger and status show it.
    pub account: Option<String>,
    pub endpoint: String,
    pub secret_id: String,
    pub secret_key: Option<SecretKey>,
    #[serde(deserialize_with = "secrets::unquoted_path")]
    pub secret_key_file: Option<PathBuf>,
    pub uid: String,
    /// The SQLite file, or the PostgreSQL URL of a fleet's shared ledger.
    pub ledger: LedgerLocation,
    /// A file holding the PostgreSQL ledger's password, when neither the URL nor
    /// `VODUP_LEDGER_PASSWORD` gives it.
    #[serde(deserialize_with = "secrets::unquoted_path")]
    pub ledger_password_file: Option<PathBuf>,
    /// This host's name in the ledger (default: the host name): the node that holds a file.
    pub node: Option<String>,
    /// A node that has not renewed its claim on a file for this long is presumed dead, and
    /// another node may take the file over.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    pub part_size: u64,
    /// Parts in flight across all files: `"auto"` (found from measured goodput and part latency, between 2 and
    /// `max_parts_in_flight`) or a fixed number.
    pub parts_in_flight: PartsInFlight,
    /// The most parts in flight `"auto"` may reach.
    pub max_parts_in_flight: usize,
    /// Files uploaded at the same time; their parts share `parts_in_flight`. A file of one part
    /// takes an eighth of a place, so a burst of small files runs eight times as wide.
    pub files_in_flight: usize,
    /// A file that has waited this long behind running uploads starts anyway (up to twice
    /// `files_in_flight` places), so huge files never hold small ones back for long.
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
    /// The row of a done file whose source left the watch (deleted, moved), or of a version set
    /// aside, is forgotten this long after its last change: the ledger stops growing. 0 (the
    /// default) keeps every row.
    #[serde(with = "humantime_serde")]
    pub forget_after: Duration,
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
    pub http: HttpConfig,
    /// The old name of `[http]`: `[metrics] listen` still works (not both).
    pub metrics: MetricsConfig,
    pub watch: Vec<Watch>,
    /// What `load` found worth a warning but not a refusal (both `secret_key` and
    /// `secret_key_file` set, say): `run` logs these, `check-config` prints them.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// The optional HTTP listener: the status page (`/`, `/files.json`) and `/metrics`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `host:port` to listen on; absent = off.
    pub listen: Option<std::net::SocketAddr>,
    /// Host names the page answers to besides IP literals and `localhost` (a request naming
    /// another is refused: DNS rebinding), e.g. the name a reverse proxy passes on.
    pub allowed_hosts: Vec<String>,
    /// Listen on an address other than loopback without `token_file`: refused unless set, to
    /// say that the network in front of it (a firewall, a reverse proxy that authenticates) is
    /// trusted.
    pub public: bool,
    /// A file holding the token every request must carry: `Authorization: Bearer TOKEN`, or
    /// HTTP basic authentication with the token as the password (any user name; what a browser
    /// asks for). With it, the listener may take a non-loopback address.
    pub token_file: Option<PathBuf>,
    /// The token `token_file` holds, read at load.
    #[serde(skip)]
    pub token: Option<crate::protocol::SecretKey>,
}

/// `[metrics] listen`, the listener's first name, kept working.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// The same as `[http] listen`; setting both is refused.
    pub listen: Option<std::net::SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            account: None,
            endpoint: DEFAULT_ENDPOINT.into(),
            secret_id: String::new(),
            secret_key: None,
            secret_key_file: None,
            uid: "vodup".into(),
            ledger: LedgerLocation::Sqlite(PathBuf::from("/var/lib/vodup/ledger.db")),
            ledger_password_file: None,
            node: None,
            lease: Duration::from_secs(30),
            part_size: PartSize::OneMiB.bytes(),
            parts_in_flight: PartsInFlight::Auto,
            max_parts_in_flight: 64,
            files_in_flight: 2,
            interleave_after: Duration::from_secs(30),
            signature_validity: Duration::from_secs(24 * 3600),
            shutdown_deadline: Duration::from_secs(30),
            rescan_interval: Duration::from_secs(300),
            forget_after: Duration::ZERO,
            log_format: LogFormat::Auto,
            processing: Processing::default(),
            max_upload_rate: None,
            rate_schedule: Vec::new(),
            retry: RetryPolicy::default(),
            timeouts: Timeouts::default(),
            http: HttpConfig::default(),
            metrics: MetricsConfig::default(),
            watch: Vec::new(),
            warnings: Vec::new(),
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
        config.refuse_placeholder_id()?;
        config.resolve_secret(secret_from_env(SECRET_KEY_ENV))?;
        config.resolve_ledger_password(secret_from_env(LEDGER_PASSWORD_ENV))?;
        config.resolve_webhook_secrets()?;
        config.resolve_http_token()?;
        config.validate()?;
        config.resolve_accounts();
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
            if key.as_deref() == Some("watch.secret_key") {
                message =
                    "a watch's own key is read only from a file: use `secret_key_file`".into();
            } else if key.as_deref().is_some_and(secrets::names_a_secret)
                && message.contains(['`', '"', '\''])
            {
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

    /// The example's placeholder `secret_id`, at the top or in a watch, is refused before any key
    /// file is read: that is the first thing to fix in a config copied from the example.
    fn refuse_placeholder_id(&self) -> Result<(), ConfigError> {
        if self.secret_id == secrets::PLACEHOLDER_SECRET_ID {
            return Err(secrets::placeholder("secret_id"));
        }
        for (i, watch) in self.watch.iter().enumerate() {
            if watch.secret_id.as_deref() == Some(secrets::PLACEHOLDER_SECRET_ID) {
                return Err(secrets::placeholder(&format!("watch[{i}].secret_id")));
            }
        }
        Ok(())
    }

    /// The secret key comes from `secret_key`, else `secret_key_file`, else the environment; a
    /// watch's own key only from its `secret_key_file`. Both keys set is a warning naming the
    /// winner; a key (from wherever) that is the example's placeholder is refused.
    pub fn resolve_secret(&mut self, from_env: Option<String>) -> Result<(), ConfigError> {
        if self.secret_key.is_none() {
            let file = self.secret_key_file.as_deref();
            self.secret_key = secrets::read_key("secret_key_file", file, from_env)?;
        } else if let Some(file) = &self.secret_key_file {
            self.warnings.push(format!(
                "both secret_key and secret_key_file are set: secret_key wins, and {} is not read; \
                 remove one",
                file.display()
            ));
        }
        if self
            .secret_key
            .as_ref()
            .is_some_and(|key| key.is(secrets::PLACEHOLDER_SECRET_KEY))
        {
            return Err(secrets::placeholder("secret_key"));
        }
        for (i, watch) in self.watch.iter_mut().enumerate() {
            if let (None, Some(file)) = (&watch.secret_key, &watch.secret_key_file) {
                let key = format!("watch[{i}].secret_key_file");
                watch.secret_key = secrets::read_key(&key, Some(file), None)?;
            }
        }
        Ok(())
    }

    /// A PostgreSQL ledger's password comes from its URL, else the environment (`from_env`),
    /// else `ledger_password_file`.
    pub fn resolve_ledger_password(&mut self, from_env: Option<String>) -> Result<(), ConfigError> {
        let file = self.ledger_password_file.as_deref();
        ledger::resolve_password(&mut self.ledger, from_env, file)
    }

    /// Read `http.token_file`; an empty or unreadable one is an error naming the key.
    fn resolve_http_token(&mut self) -> Result<(), ConfigError> {
        let key = "http.token_file";
        if let Some(token) = secrets::read_key(key, self.http.token_file.as_deref(), None)? {
            if token.is_empty() {
                return Err(error::invalid(key, "the file it names is empty"));
            }
            self.http.token = Some(token);
        }
        Ok(())
    }

    /// Read each hook's `webhook_secret_file`; an empty or unreadable one is an error naming it.
    fn resolve_webhook_secrets(&mut self) -> Result<(), ConfigError> {
        for (i, watch) in self.watch.iter_mut().enumerate() {
            for (field, hook) in [
                ("on_done", &mut watch.on_done),
                ("on_failed", &mut watch.on_failed),
            ] {
                let Some(hook) = hook else { continue };
                let key = format!("watch[{i}].{field}.webhook_secret_file");
                if let Some(secret) =
                    secrets::read_key(&key, hook.webhook_secret_file.as_deref(), None)?
                {
                    if secret.is_empty() {
                        return Err(error::invalid(key, "the file it names is empty"));
                    }
                    hook.webhook_secret = Some(secret);
                }
            }
        }
        // A delivery finds its key by its URL: one URL, one key.
        let mut keys: Vec<(&str, Option<&crate::protocol::SecretKey>)> = Vec::new();
        for (i, watch) in self.watch.iter().enumerate() {
            for (field, hook) in [("on_done", &watch.on_done), ("on_failed", &watch.on_failed)] {
                let Some((url, key)) = hook
                    .as_ref()
                    .and_then(|h| Some((h.webhook.as_deref()?, h.webhook_secret.as_ref())))
                else {
                    continue;
                };
                match keys.iter().find(|(u, _)| *u == url) {
                    Some((_, other)) if *other != key => {
                        return Err(error::invalid(
                            format!("watch[{i}].{field}.webhook_secret_file"),
                            "another hook posts to the same webhook with another key (or none): \
                             give one URL one webhook_secret_file",
                        ))
                    }
                    Some(_) => {}
                    None => keys.push((url, key)),
                }
            }
        }
        Ok(())
    }

    /// Where the HTTP listener (status page and metrics) listens: `[http] listen`, or its old
    /// name `[metrics] listen`; `None` = off.
    pub fn http_listen(&self) -> Option<std::net::SocketAddr> {
        self.http.listen.or(self.metrics.listen)
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

/// `parts_in_flight`: `"auto"` or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartsInFlight {
    Auto,
    Fixed(usize),
}

impl<'de> Deserialize<'de> for PartsInFlight {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(usize),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(PartsInFlight::Fixed(n)),
            Raw::Word(w) if w == "auto" => Ok(PartsInFlight::Auto),
            Raw::Word(_) => Err(serde::de::Error::custom(
                "must be \"auto\" or a number of parts",
            )),
        }
    }
}

#[cfg(test)]
mod tests;
