//! The `ledger` key: where the ledger is, a SQLite file (one host) or a PostgreSQL server (a
//! fleet of hosts), and the PostgreSQL password's ways in: in the URL, else
//! `VODUP_LEDGER_PASSWORD` (taken out of the environment at start-up like the secret key), else
//! `ledger_password_file`. The password never prints: [`LedgerLocation`] shows the URL without it,
//! and errors about these keys never quote a value. Connecting is the ledger's business
//! ([`crate::ledger::Ledger::connect`]), not this module's.

use super::error::{invalid, ConfigError};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the ledger is: `ledger = "/var/lib/vodup/ledger.db"` or
/// `ledger = "postgres://vodup@db.example:5432/vodup"` (also `postgresql://`).
#[derive(Clone, PartialEq, Eq)]
pub enum LedgerLocation {
    /// The SQLite file at this path.
    Sqlite(PathBuf),
    /// The PostgreSQL database at this URL.
    Postgres(PostgresUrl),
}

/// A PostgreSQL URL, held without its password, and the password from wherever it came.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    /// The URL as written, less the password: what is shown.
    shown: String,
    /// `shown` less the TLS parameters vodup reads itself: what the driver parses.
    driver: String,
    password: Option<LedgerPassword>,
    tls: LedgerTls,
}

/// How the connection to PostgreSQL is encrypted: libpq's `sslmode`, `sslrootcert`, and the
/// client certificate `sslcert` with its key `sslkey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerTls {
    pub mode: TlsMode,
    /// Every host is a loopback address or a Unix socket: nothing crosses a network.
    pub local: bool,
    /// PEM file of the certificates that may sign the server's (`sslrootcert`); none: the
    /// system's trust store.
    pub root_file: Option<PathBuf>,
    /// The PEM files of this client's certificate (chain) and its private key (`sslcert`,
    /// `sslkey`), for servers that authenticate clients by certificate (`cert` in pg_hba.conf).
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Whether TLS is used. A certificate is always checked (chain and host name) when it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// `sslmode=disable`: clear text. The default for a loopback host or a Unix socket, where
    /// nothing crosses a network (and a local server's certificate is often a self-signed one).
    Disable,
    /// TLS when the server offers it (`allow`, `prefer`), its certificate checked.
    Prefer,
    /// TLS or no connection (`require`, `verify-ca`, `verify-full`; the default for any other
    /// host). `require` and `verify-ca` check the host name too: stricter than libpq.
    Require,
}

/// The PostgreSQL password; its `Debug` is redacted and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct LedgerPassword(Vec<u8>);

impl LedgerPassword {
    /// The bytes to hand to the server, and nowhere else.
    pub fn reveal(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for LedgerPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LedgerPassword(<redacted>)")
    }
}

const SCHEMES: [&str; 2] = ["postgres://", "postgresql://"];

impl LedgerLocation {
    /// A path, or a URL of one of the PostgreSQL schemes. The error never quotes `text`.
    pub fn parse(text: &str) -> Result<LedgerLocation, String> {
        if SCHEMES.iter().any(|s| text.starts_with(s)) {
            PostgresUrl::parse(text).map(LedgerLocation::Postgres)
        } else if text.is_empty() {
            Err("must be a path or a postgres:// URL".into())
        } else {
            Ok(LedgerLocation::Sqlite(PathBuf::from(text)))
        }
    }

    /// The SQLite file, if the ledger is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            LedgerLocation::Sqlite(path) => Some(path),
            LedgerLocation::Postgres(_) => None,
        }
    }
}

impl PostgresUrl {
    /// Parse a `postgres://` URL (as libpq and tokio-postgres read it: a password in it is the
    /// part of `user:password@` before the first `@`, percent-encoded), keeping the password
    /// apart. The error names what is wrong without quoting the URL.
    pub fn parse(text: &str) -> Result<PostgresUrl, String> {
        let (driver, mode, files) = without_tls(text)?;
        let parsed: tokio_postgres::Config = driver
            .parse()
            .map_err(|e| format!("is not a PostgreSQL URL ({e}); its value is not shown"))?;
        let local = parsed.get_hosts().iter().all(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            tokio_postgres::config::Host::Unix(_) => true,
        }) && parsed.get_hostaddrs().iter().all(|ip| ip.is_loopback());
        let mode = mode.unwrap_or(if local {
            TlsMode::Disable
        } else {
            TlsMode::Require
        });
        Ok(PostgresUrl {
            shown: without_password(text),
            driver: without_password(&driver),
            password: parsed.get_password().map(|p| LedgerPassword(p.to_vec())),
            tls: LedgerTls {
                mode,
                local,
                root_file: files.root,
                client: files.client,
            },
        })
    }

    /// The URL for the driver: without the password and without `sslmode` and `sslrootcert`,
    /// which vodup applies itself ([`PostgresUrl::tls`]).
    pub fn for_driver(&self) -> &str {
        &self.driver
    }

    pub fn tls(&self) -> &LedgerTls {
        &self.tls
    }

    /// The URL without its password (the password goes to the server separately).
    pub fn as_str(&self) -> &str {
        &self.shown
    }

    pub fn password(&self) -> Option<&LedgerPassword> {
        self.password.as_ref()
    }
}

/// The files a ledger URL names for TLS.
#[derive(Debug, Default)]
struct TlsFiles {
    root: Option<PathBuf>,
    client: Option<(PathBuf, PathBuf)>,
}

/// `text` less its `sslmode`, `sslrootcert`, `sslcert` and `sslkey` parameters, and what they
/// said. An `sslmode` that libpq does not know, or a certificate without its key (or a key
/// without its certificate), is an error.
fn without_tls(text: &str) -> Result<(String, Option<TlsMode>, TlsFiles), String> {
    let Some((address, query)) = text.split_once('?') else {
        return Ok((text.to_owned(), None, TlsFiles::default()));
    };
    let (mut mode, mut root_file, mut kept) = (None, None, Vec::new());
    let (mut cert, mut key) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let decoded = url::form_urlencoded::parse(pair.as_bytes()).next();
        match decoded.as_ref().map(|(k, v)| (k.as_ref(), v.as_ref())) {
            Some(("sslmode", value)) => {
                mode = Some(match value {
                    "disable" => TlsMode::Disable,
                    "allow" | "prefer" => TlsMode::Prefer,
                    "require" | "verify-ca" | "verify-full" => TlsMode::Require,
                    other => {
                        return Err(format!(
                            "has sslmode={other}: use disable, prefer, require or verify-full"
                        ))
                    }
                })
            }
            Some(("sslrootcert", value)) => root_file = Some(PathBuf::from(value)),
            Some(("sslcert", value)) => cert = Some(PathBuf::from(value)),
            Some(("sslkey", value)) => key = Some(PathBuf::from(value)),
            _ => kept.push(pair),
        }
    }
    let client = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err("has sslcert or sslkey without the other: give both".into()),
    };
    let driver = match kept.is_empty() {
        true => address.to_owned(),
        false => format!("{address}?{}", kept.join("&")),
    };
    let files = TlsFiles {
        root: root_file,
        client,
    };
    Ok((driver, mode, files))
}

/// `scheme://user:password@rest?password=…` as `scheme://user@rest`: the credentials are what
/// comes before the first `@`, as tokio-postgres reads them, and a `password` parameter of the
/// query string (libpq's other way to give one) is dropped too.
fn without_password(text: &str) -> String {
    let Some(scheme) = SCHEMES.iter().find(|s| text.starts_with(*s)) else {
        return text.to_owned();
    };
    let rest = &text[scheme.len()..];
    let (address, query) = match rest.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (rest, None),
    };
    let address = match address.find('@') {
        Some(at) => match address[..at].split_once(':') {
            Some((user, _password)) => format!("{user}{}", &address[at..]),
            None => address.to_owned(),
        },
        None => address.to_owned(),
    };
    let query: Vec<&str> = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|pair| !pair.is_empty() && !pair.starts_with("password="))
        .collect();
    match query.is_empty() {
        true => format!("{scheme}{address}"),
        false => format!("{scheme}{address}?{}", query.join("&")),
    }
}

impl fmt::Display for LedgerLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerLocation::Sqlite(path) => write!(f, "{}", crate::shown::shown(path)),
            LedgerLocation::Postgres(url) => f.write_str(url.as_str()),
        }
    }
}

impl fmt::Debug for LedgerLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerLocation::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            LedgerLocation::Postgres(url) => f.debug_tuple("Postgres").field(url).finish(),
        }
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresUrl")
            .field("url", &self.shown)
            .field("password", &self.password)
            .finish()
    }
}

impl From<PathBuf> for LedgerLocation {
    fn from(path: PathBuf) -> LedgerLocation {
        LedgerLocation::Sqlite(path)
    }
}

impl From<&Path> for LedgerLocation {
    fn from(path: &Path) -> LedgerLocation {
        LedgerLocation::Sqlite(path.to_owned())
    }
}

impl<'de> Deserialize<'de> for LedgerLocation {
    /// Errors never quote the value: a URL may hold the password.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "must be a path or a postgres:// URL string (its value is not shown)",
            )
        })?;
        LedgerLocation::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Give a PostgreSQL ledger without a password in its URL the one from the environment, else
/// from `password_file` (its content, less a final line ending). `ledger_password_file` is
/// refused for a SQLite ledger, which has no password.
pub(super) fn resolve_password(
    location: &mut LedgerLocation,
    from_env: Option<String>,
    password_file: Option<&Path>,
) -> Result<(), ConfigError> {
    let url = match location {
        LedgerLocation::Postgres(url) => url,
        LedgerLocation::Sqlite(_) if password_file.is_some() => {
            return Err(invalid(
                "ledger_password_file",
                "is only for a PostgreSQL ledger (ledger = \"postgres://...\")",
            ))
        }
        LedgerLocation::Sqlite(_) => return Ok(()),
    };
    if url.password.is_some() {
        return Ok(());
    }
    if let Some(password) = from_env {
        url.password = Some(LedgerPassword(password.into_bytes()));
    } else if let Some(file) = password_file {
        // Neither the path nor the content is quoted: either may be the password.
        let mut bytes = std::fs::read(file).map_err(|e| {
            invalid(
                "ledger_password_file",
                format!("cannot read the file it names: {e}"),
            )
        })?;
        for ending in [b'\n', b'\r'] {
            if bytes.last() == Some(&ending) {
                bytes.pop();
            }
        }
        url.password = Some(LedgerPassword(bytes));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_taken_out_of_the_url() {
        let url = PostgresUrl::parse("postgres://vodup:s3cr%40t@db.example:5432/vodup").unwrap();
        assert_eq!(url.as_str(), "postgres://vodup@db.example:5432/vodup");
        assert_eq!(url.password().unwrap().reveal(), b"s3cr@t");
        let plain = PostgresUrl::parse("postgresql://db.example/vodup?sslmode=disable").unwrap();
        assert_eq!(
            plain.as_str(),
            "postgresql://db.example/vodup?sslmode=disable"
        );
        assert!(plain.password().is_none());
    }

    #[test]
    fn a_client_certificate_is_read_from_sslcert_and_sslkey_together() {
        let url = PostgresUrl::parse(
            "postgres://u@db.example/v?sslcert=%2Fetc%2Fvodup%2Fc.pem&connect_timeout=5&sslkey=%2Fetc%2Fvodup%2Fc.key",
        )
        .unwrap();
        assert_eq!(
            url.tls().client,
            Some(("/etc/vodup/c.pem".into(), "/etc/vodup/c.key".into()))
        );
        assert_eq!(
            url.for_driver(),
            "postgres://u@db.example/v?connect_timeout=5"
        );
        assert_eq!(
            PostgresUrl::parse("postgres://u@db.example/v")
                .unwrap()
                .tls()
                .client,
            None
        );
        for half in ["sslcert=/c.pem", "sslkey=/c.key"] {
            let error =
                PostgresUrl::parse(&format!("postgres://u@db.example/v?{half}")).unwrap_err();
            assert!(error.contains("without the other"), "{error}");
        }
    }

    #[test]
    fn tls_is_required_off_the_host_preferred_on_it_and_read_from_libpq_parameters() {
        let mode = |url: &str| PostgresUrl::parse(url).unwrap().tls().mode;
        assert_eq!(mode("postgres://u@db.example/v"), TlsMode::Require);
        assert_eq!(mode("postgres://u@10.0.0.5:5432/v"), TlsMode::Require);
        assert_eq!(mode("postgres://u@127.0.0.1/v"), TlsMode::Disable);
        assert_eq!(mode("postgres://u@localhost/v"), TlsMode::Disable);
        assert_eq!(mode("postgres://u@[::1]:5432/v"), TlsMode::Disable);
        assert_eq!(mode("postgres://u@%2Frun%2Fpostgresql/v"), TlsMode::Disable);
        assert_eq!(
            mode("postgres://u@localhost/v?hostaddr=203.0.113.9"),
            TlsMode::Require,
            "a remote address under a local name"
        );
        assert_eq!(
            mode("postgres://u@db.example/v?sslmode=disable"),
            TlsMode::Disable
        );
        assert_eq!(
            mode("postgres://u@localhost/v?sslmode=verify-full"),
            TlsMode::Require
        );
        assert_eq!(
            mode("postgres://u@db.example/v?sslmode=prefer"),
            TlsMode::Prefer
        );
        let url = PostgresUrl::parse(
            "postgres://u:pw@db.example/v?connect_timeout=5&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(
            url.tls().root_file.as_deref(),
            Some(Path::new("/etc/ca.pem"))
        );
        assert_eq!(
            url.for_driver(),
            "postgres://u@db.example/v?connect_timeout=5"
        );
        assert!(
            url.as_str().contains("sslmode=verify-full"),
            "shown as written"
        );
        let bad = PostgresUrl::parse("postgres://u@db/v?sslmode=sometimes").unwrap_err();
        assert!(bad.contains("sslmode=sometimes"), "{bad}");
    }

    #[test]
    fn a_bad_url_is_refused_without_quoting_it() {
        let err = LedgerLocation::parse("postgres://u:s3cr3t@db:notaport/x").unwrap_err();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(err.contains("not a PostgreSQL URL"), "{err}");
    }
}
