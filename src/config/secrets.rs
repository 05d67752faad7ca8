//! The secret key's ways in, and keeping it out of sight: `secret_key`, else `secret_key_file`,
//! else the environment (read once at start-up and removed from it, see [`take_secrets_from_env`]).
//! Errors about these keys never quote a value: it may be the key. The key itself is held as
//! [`SecretKey`] (in `protocol`), which never prints.

use super::error::{invalid, ConfigError};
use crate::protocol::SecretKey;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const SECRET_KEY_ENV: &str = "VODUP_SECRET_KEY";
/// The PostgreSQL ledger's password (when its URL has none); taken out of the environment like
/// the key.
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

/// The example config's placeholder credentials: a config that still holds one is refused by
/// `check-config` and `run`, not sent to the service to fail every upload with -10002.
pub const PLACEHOLDER_SECRET_ID: &str = "AKIDexampleexampleexample";
pub const PLACEHOLDER_SECRET_KEY: &str = "replace-me";

/// The error for a key that still holds the example's placeholder.
pub(super) fn placeholder(key: &str) -> ConfigError {
    invalid(
        key,
        "still holds the example config's placeholder: put your own value here",
    )
}

/// `secret_key_file`, refused without quoting a bad value: it may be the key itself, written into
/// the wrong key.
pub(super) fn unquoted_path<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<PathBuf>, D::Error> {
    PathBuf::deserialize(d)
        .map(Some)
        .map_err(|_| serde::de::Error::custom("must be a path string (its value is not shown)"))
}

/// Whether a dotted key is `secret_key` or `secret_key_file` (top-level or a watch's),
/// `ledger_password_file`, or inside one of them.
pub(super) fn names_a_secret(key: &str) -> bool {
    let mut parts = key.split('.');
    let top = parts.next().unwrap_or(key);
    let second = if top == "watch" { parts.next() } else { None };
    [Some(top), second]
        .into_iter()
        .flatten()
        .any(|k| matches!(k, "secret_key" | "secret_key_file" | "ledger_password_file"))
}

/// The key from the file `key_file` names (trimmed), else `from_env`; none if neither is given.
/// `key` is the config key that named the file, for the error.
pub(super) fn read_key(
    key: &str,
    key_file: Option<&Path>,
    from_env: Option<String>,
) -> Result<Option<SecretKey>, ConfigError> {
    let Some(file) = key_file else {
        return Ok(from_env.map(SecretKey::new));
    };
    // The path is not quoted: a key written into `secret_key_file` by mistake would be.
    let text = std::fs::read_to_string(file)
        .map_err(|e| invalid(key, format!("cannot read the file it names: {e}")))?;
    Ok(Some(SecretKey::new(text.trim())))
}
