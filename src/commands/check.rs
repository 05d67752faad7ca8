//! `vodup check-config`: the config as read, its folders, its ledger and what it exposes.

use crate::config::{Config, LedgerLocation};
use crate::daemon::folders;
use crate::error::Error;
use std::path::Path;
use std::process::ExitCode;

/// `vodup check-config`: beyond what loading validated, check the folders exist and are
/// writable, and warn when a file holding the secret key is readable by others. A SQLite
/// ledger's folder must be writable; a PostgreSQL ledger must answer, and its server version and
/// schema state are printed (never its password; nothing is migrated).
pub async fn check_config(path: &Path, config: &Config) -> Result<ExitCode, Error> {
    let mut problems = Vec::new();
    for (i, watch) in config.watch.iter().enumerate() {
        let dirs = [
            ("path", Some(&watch.path)),
            ("done_dir", watch.done_dir.as_ref()),
            ("failed_dir", watch.failed_dir.as_ref()),
        ];
        for (key, dir) in dirs {
            if let Some(dir) = dir {
                if let Err(why) = writable_dir(dir) {
                    problems.push(format!("watch[{i}].{key}: {}: {why}", dir.display()));
                }
            }
        }
    }
    match &config.ledger {
        LedgerLocation::Sqlite(db) => {
            let ledger_dir = db
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if let Err(why) = writable_dir(ledger_dir) {
                problems.push(format!("ledger: {}: {why}", ledger_dir.display()));
            }
        }
        LedgerLocation::Postgres(url) => match check_postgres(url).await {
            Ok(Ok(state)) => println!("ledger {}: {state}", url.as_str()),
            Ok(Err(refused)) => problems.push(format!("ledger {}: {refused}", url.as_str())),
            Err(e) => problems.push(e.to_string()),
        },
    }
    let warnings = config
        .warnings
        .iter()
        .cloned()
        .chain(secret_exposure(path, config))
        .chain(password_exposure(path, config))
        .chain(config.watch.iter().flat_map(folders::across_file_systems));
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    if problems.is_empty() {
        println!(
            "{}: ok ({} watch folder(s), endpoint {})",
            path.display(),
            config.watch.len(),
            config.endpoint
        );
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    Ok(ExitCode::FAILURE)
}

/// Connect to the PostgreSQL ledger: its server version and schema state as one line, or (the
/// inner error) why this vodup would refuse it. Nothing is migrated.
async fn check_postgres(
    url: &crate::config::PostgresUrl,
) -> Result<Result<String, String>, crate::ledger::LedgerError> {
    let ledger = crate::ledger::Postgres::connect(url)?;
    let version = ledger.server_version().await?;
    let schema = ledger.schema().await?;
    let link = match ledger.encryption().await? {
        Some(tls) => format!("over TLS ({tls}, certificate checked)"),
        None => "in CLEAR TEXT (no TLS: sslmode, or a server without ssl)".to_owned(),
    };
    let line = format!("PostgreSQL {version}, {schema}, {link}");
    Ok(if schema.is_newer() {
        Err(line)
    } else {
        Ok(line)
    })
}

/// The PostgreSQL ledger's password readable by others: in `ledger_password_file`, or in the
/// config file's `ledger` URL.
fn password_exposure(config_path: &Path, config: &Config) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let readable = |file: &Path, others: u32| {
        let mode = std::fs::metadata(file).ok()?.permissions().mode();
        (mode & others != 0).then_some(mode & 0o777)
    };
    let mut warnings = Vec::new();
    if let Some(file) = config.ledger_password_file.as_deref() {
        if let Some(mode) = readable(file, 0o044) {
            warnings.push(format!(
                "ledger_password_file {} is readable by others (mode {mode:o}); make it 0600",
                file.display()
            ));
        }
    }
    let in_url = std::fs::read_to_string(config_path).is_ok_and(|text| {
        let table: Option<toml::Table> = toml::from_str(&text).ok();
        let url = table.as_ref().and_then(|t| t.get("ledger")?.as_str());
        let url = url.and_then(|url| crate::config::PostgresUrl::parse(url).ok());
        url.is_some_and(|url| url.password().is_some())
    });
    if let Some(mode) = in_url.then(|| readable(config_path, 0o004)).flatten() {
        warnings.push(format!(
            "the config file {} holds the ledger password in its URL and is readable by others \
             (mode {mode:o}); make it 0600, or move the password to ledger_password_file or \
             ${}",
            config_path.display(),
            crate::config::LEDGER_PASSWORD_ENV
        ));
    }
    warnings
}

/// Whether `dir` is a folder this process can create files in (tried with a hidden file, which
/// the watcher ignores).
fn writable_dir(dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err("is not an existing folder".into());
    }
    let probe = dir.join(format!(".vodup-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| format!("is not writable: {e}"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Files holding a secret key (the top-level one, a watch's, a webhook's) that others can read.
fn secret_exposure(config_path: &Path, config: &Config) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let holder = config
        .secret_key_file
        .as_deref()
        .map(|f| ("secret_key_file".to_owned(), f, 0o044));
    let watch_holders = config.watch.iter().enumerate().flat_map(|(i, w)| {
        let key = w
            .secret_key_file
            .as_deref()
            .map(|f| (format!("watch[{i}].secret_key_file"), f, 0o044));
        let hooks = [("on_done", &w.on_done), ("on_failed", &w.on_failed)]
            .into_iter()
            .filter_map(move |(field, hook)| {
                let file = hook.as_ref()?.webhook_secret_file.as_deref()?;
                Some((
                    format!("watch[{i}].{field}.webhook_secret_file"),
                    file,
                    0o044,
                ))
            });
        key.into_iter().chain(hooks)
    });
    let in_config = std::fs::read_to_string(config_path)
        .map(|t| {
            t.lines().any(|l| {
                l.trim_start().starts_with("secret_key")
                    && l.contains('=')
                    && !l.trim_start().starts_with("secret_key_file")
            })
        })
        .unwrap_or(false);
    let mut warnings = Vec::new();
    let candidates = [
        in_config.then_some(("the config file".to_owned(), config_path, 0o004)),
        holder,
    ];
    for (what, file, others) in candidates.into_iter().flatten().chain(watch_holders) {
        if let Ok(meta) = std::fs::metadata(file) {
            let mode = meta.permissions().mode();
            if mode & others != 0 {
                warnings.push(format!(
                    "{what} {} holds the secret key and is readable by others (mode {:o}); \
                     make it 0600 (or move the key to secret_key_file with mode 0600)",
                    file.display(),
                    mode & 0o777
                ));
            }
        }
    }
    warnings
}
