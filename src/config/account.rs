//! Accounts: the credentials a file is signed and sent with. The top-level `endpoint`,
//! `secret_id`, key and `uid` are the default account; a `[[watch]]` may set its own (the key only
//! from `secret_key_file`). An account is named by something people recognise and that is not
//! secret: its `account` key, else `secret_id@host`. The ledger records each file's account by
//! that name, and the engine holds one client and signer per name. Not the key's ways in
//! (`secrets.rs`) nor the rest of the watch table (`watch.rs`).

use super::error::{invalid, ConfigError};
use super::{Config, Watch};
use crate::protocol::SecretKey;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// An account's name, as the ledger, the logs and `vodup status` show it. Never secret.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct AccountName(String);

impl AccountName {
    pub fn new(name: impl Into<String>) -> AccountName {
        AccountName(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `secret_id@host` (with `:port` when the endpoint names one other than its scheme's), the
    /// host as the URL parser normalises it (lower case) and any loopback address spelled
    /// `localhost`: nodes whose configs spell one endpoint differently name one account alike.
    fn derived(secret_id: &str, endpoint: &str) -> AccountName {
        let host = url::Url::parse(endpoint)
            .ok()
            .and_then(|u| {
                let host = match u.host()? {
                    url::Host::Ipv4(ip) if ip.is_loopback() => "localhost".to_owned(),
                    url::Host::Ipv6(ip) if ip.is_loopback() => "localhost".to_owned(),
                    host => host.to_string(),
                };
                Some(u.port().map_or(host.clone(), |p| format!("{host}:{p}")))
            })
            .unwrap_or_default();
        AccountName(format!("{secret_id}@{host}"))
    }
}

impl fmt::Display for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One account's credentials, resolved: what the engine signs and sends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: AccountName,
    pub endpoint: String,
    pub secret_id: String,
    pub secret_key: SecretKey,
    pub uid: String,
}

impl Config {
    /// The top-level account: what `vodup upload` and a watch without account keys use.
    pub fn default_account(&self) -> Account {
        let endpoint = self.endpoint.clone();
        Account {
            name: self.account.clone().map_or_else(
                || AccountName::derived(&self.secret_id, &endpoint),
                AccountName,
            ),
            secret_id: self.secret_id.clone(),
            secret_key: self.secret().clone(),
            uid: self.uid.clone(),
            endpoint,
        }
    }

    /// The account of a watch: its own keys where it sets them, the top-level ones elsewhere.
    pub fn account_of(&self, watch: &Watch) -> Account {
        let top = self.default_account();
        let own_keys = watch.secret_id.is_some()
            || watch.endpoint.is_some()
            || watch.uid.is_some()
            || watch.account.is_some();
        if !own_keys {
            return top;
        }
        let endpoint = watch.endpoint.clone().unwrap_or(top.endpoint);
        let secret_id = watch.secret_id.clone().unwrap_or(top.secret_id);
        Account {
            name: watch
                .account
                .clone()
                .map_or_else(|| AccountName::derived(&secret_id, &endpoint), AccountName),
            secret_key: watch.secret_key.clone().unwrap_or(top.secret_key),
            uid: watch.uid.clone().unwrap_or(top.uid),
            secret_id,
            endpoint,
        }
    }

    /// Every account the config uses, by name, the default one first among equals.
    pub fn accounts(&self) -> Vec<Account> {
        let mut by_name = BTreeMap::new();
        let top = self.default_account();
        by_name.insert(top.name.clone(), top);
        for watch in &self.watch {
            let account = self.account_of(watch);
            by_name.entry(account.name.clone()).or_insert(account);
        }
        by_name.into_values().collect()
    }

    /// Record each watch's account name in the watch (where the intake reads it).
    pub fn resolve_accounts(&mut self) {
        let names: Vec<AccountName> = self.watch.iter().map(|w| self.account_of(w).name).collect();
        for (watch, name) in self.watch.iter_mut().zip(names) {
            watch.account_name = Some(name);
        }
    }

    /// One name, one set of credentials: two watches whose accounts would share a name must
    /// be the same account. The message names keys, never a key's value.
    pub(super) fn validate_accounts(&self) -> Result<(), ConfigError> {
        let top = self.default_account();
        check_name("account", &top.name)?;
        let mut seen: BTreeMap<AccountName, (String, Account)> = BTreeMap::new();
        seen.insert(top.name.clone(), ("the top-level account".into(), top));
        for (i, watch) in self.watch.iter().enumerate() {
            let key = format!("watch[{i}]");
            watch.validate_account_keys(&key)?;
            let account = self.account_of(watch);
            check_name(&format!("{key}.account"), &account.name)?;
            match seen.get(&account.name) {
                // The key is compared, never shown.
                Some((first, other)) if account != *other => {
                    return Err(invalid(
                        format!("{key}.account"),
                        format!(
                            "its account is named `{}` like {first}, with other credentials \
                             (endpoint, secret_id, key or uid): give one of them its own \
                             `account = \"...\"`",
                            account.name
                        ),
                    ))
                }
                Some(_) => {}
                None => {
                    seen.insert(account.name.clone(), (key, account));
                }
            }
        }
        Ok(())
    }
}

fn check_name(key: &str, name: &AccountName) -> Result<(), ConfigError> {
    if name.0.trim().is_empty() || name.0.chars().any(char::is_control) {
        return Err(invalid(
            key,
            "must be a non-empty name without control characters",
        ));
    }
    Ok(())
}

impl Watch {
    /// A watch's own account keys: `secret_id` and `secret_key_file` go together (a key never
    /// goes with another account's id), the endpoint is a URL, the uid is not empty.
    fn validate_account_keys(&self, key: &str) -> Result<(), ConfigError> {
        match (&self.secret_id, &self.secret_key_file) {
            (Some(id), Some(_)) if id.trim().is_empty() => {
                return Err(invalid(format!("{key}.secret_id"), "must not be empty"))
            }
            (Some(_), None) => return Err(invalid(
                format!("{key}.secret_key_file"),
                "is required with the watch's own secret_id (a watch's key comes only from a file)",
            )),
            (None, Some(_)) => {
                return Err(invalid(
                    format!("{key}.secret_id"),
                    "is required with the watch's own secret_key_file",
                ))
            }
            _ => {}
        }
        if self.secret_key_file.is_some() && self.secret_key.as_ref().is_none_or(|k| k.is_empty()) {
            return Err(invalid(
                format!("{key}.secret_key_file"),
                "names a file with no key in it (or it was not read)",
            ));
        }
        if let Some(endpoint) = &self.endpoint {
            let ok =
                url::Url::parse(endpoint).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                return Err(invalid(
                    format!("{key}.endpoint"),
                    format!("`{endpoint}` is not an http or https URL"),
                ));
            }
        }
        if self.uid.as_ref().is_some_and(|u| u.trim().is_empty()) {
            return Err(invalid(format!("{key}.uid"), "must not be empty"));
        }
        Ok(())
    }
}
