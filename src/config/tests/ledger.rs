//! The `ledger` key: a SQLite path or a PostgreSQL URL, its password and TLS.

use super::*;

#[test]
fn a_ledger_path_is_the_sqlite_ledger_as_before_and_the_default_too() {
    let config = check(&format!("{}ledger = \"/srv/vodup/ledger.db\"\n", minimal())).unwrap();
    let path = PathBuf::from("/srv/vodup/ledger.db");
    assert_eq!(config.ledger, LedgerLocation::Sqlite(path.clone()));
    assert_eq!(config.ledger.sqlite_path(), Some(path.as_path()));
    let default = check(&minimal()).unwrap().ledger;
    assert_eq!(
        default,
        LedgerLocation::Sqlite("/var/lib/vodup/ledger.db".into())
    );
}

/// A config of a PostgreSQL ledger at `url`, its password resolved as `load` does.
fn postgres(url: &str, extra: &str, env: Option<&str>) -> Result<Config, ConfigError> {
    let text = format!("{}ledger = {url:?}\n{extra}", minimal());
    let mut config = Config::parse(&text).unwrap();
    config.resolve_ledger_password(env.map(str::to_owned))?;
    config.validate()?;
    Ok(config)
}

fn password(config: &Config) -> Option<Vec<u8>> {
    match &config.ledger {
        LedgerLocation::Postgres(url) => url.password().map(|p| p.reveal().to_vec()),
        LedgerLocation::Sqlite(_) => panic!("not PostgreSQL"),
    }
}

#[test]
fn a_postgres_url_is_the_postgres_ledger_and_never_shows_its_password() {
    for scheme in ["postgres", "postgresql"] {
        let url = format!("{scheme}://vodup:s3cr3t-url@db.example:5432/vodup");
        let config = postgres(&url, "", None).unwrap();
        let LedgerLocation::Postgres(parsed) = &config.ledger else {
            panic!("{url} is not PostgreSQL");
        };
        assert_eq!(
            parsed.as_str(),
            format!("{scheme}://vodup@db.example:5432/vodup")
        );
        assert_eq!(password(&config).as_deref(), Some(&b"s3cr3t-url"[..]));
        assert_eq!(config.ledger.sqlite_path(), None);
        let shown = format!("{} {:?} {config:?}", config.ledger, config.ledger);
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("db.example:5432/vodup"), "{shown}");
    }
}

#[test]
fn a_password_in_the_url_query_string_is_used_and_never_shown() {
    let url =
        "postgres://vodup@db.example/vodup?connect_timeout=5&password=qu3ry-s3cr3t&sslmode=disable";
    let config = postgres(url, "", None).unwrap();
    assert_eq!(password(&config).as_deref(), Some(&b"qu3ry-s3cr3t"[..]));
    let shown = format!("{} {:?} {config:?}", config.ledger, config.ledger);
    assert!(!shown.contains("qu3ry"), "{shown}");
    assert!(
        shown.contains("connect_timeout=5&sslmode=disable"),
        "{shown}"
    );
}

#[test]
fn the_ledger_password_comes_from_the_url_else_the_environment_else_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ledger.pw");
    std::fs::write(&file, "from-file\n").unwrap();
    let with_file = format!("ledger_password_file = {:?}\n", file.display().to_string());
    let in_url = "postgres://vodup:from-url@db/vodup";
    let bare = "postgres://vodup@db/vodup";
    let cases = [
        (
            in_url,
            with_file.as_str(),
            Some("from-env"),
            Some("from-url"),
        ),
        (bare, with_file.as_str(), Some("from-env"), Some("from-env")),
        (bare, with_file.as_str(), None, Some("from-file")),
        (bare, "", None, None),
    ];
    for (url, extra, env, want) in cases {
        let config = postgres(url, extra, env).unwrap();
        let got = password(&config);
        assert_eq!(
            got.as_deref(),
            want.map(str::as_bytes),
            "{url} {extra} {env:?}"
        );
    }
}

#[test]
fn an_unreadable_ledger_password_file_is_named_by_its_key_only() {
    let extra = "ledger_password_file = \"/nonexistent/s3cr3t-pw\"\n";
    let err = postgres("postgres://vodup@db/vodup", extra, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ledger_password_file"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
    let err = Config::parse(&format!("{}ledger_password_file = 4242\n", minimal())).unwrap_err();
    assert!(
        err.contains("ledger_password_file") && !err.contains("4242"),
        "{err}"
    );
}

#[test]
fn a_ledger_password_file_for_a_sqlite_ledger_is_refused() {
    let mut config = Config::parse(&format!(
        "{}ledger_password_file = \"/etc/pw\"\n",
        minimal()
    ))
    .unwrap();
    let err = config
        .resolve_ledger_password(None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ledger_password_file"), "{err}");
}

#[test]
fn a_ledger_url_that_is_not_one_is_refused_naming_the_key_without_quoting_it() {
    let text = format!(
        "{}ledger = \"postgres://vodup:s3cr3t-bad@db:port/x\"\n",
        minimal()
    );
    let err = Config::parse(&text).unwrap_err();
    assert!(err.contains("ledger") && err.contains("line 3"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
    let err = Config::parse(&format!("{}ledger = 5\n", minimal())).unwrap_err();
    assert!(err.contains("ledger"), "{err}");
}

#[test]
fn the_example_as_shipped_is_refused_for_its_placeholders() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = dir.path().join("shipped.toml");
    std::fs::write(&shipped, EXAMPLE).unwrap();
    let error = Config::load(&shipped).unwrap_err().to_string();
    assert!(
        error.contains("secret_id") && error.contains("placeholder"),
        "{error}"
    );
    // The secret_id replaced, the example's key (written into the key file, or inline) still is.
    let filled = example_filled(dir.path());
    std::fs::write(dir.path().join("secret"), secrets::PLACEHOLDER_SECRET_KEY).unwrap();
    let error = Config::load(&filled).unwrap_err().to_string();
    assert!(
        error.contains("secret_key") && error.contains("placeholder"),
        "{error}"
    );
    let inline = EXAMPLE
        .replace(secrets::PLACEHOLDER_SECRET_ID, "AKIDreal")
        .replace(
            "# secret_key = \"replace-me\"",
            "secret_key = \"replace-me\"",
        )
        .replace("secret_key_file = \"/etc/vodup/secret\"", "");
    std::fs::write(&shipped, inline).unwrap();
    let error = Config::load(&shipped).unwrap_err().to_string();
    assert!(error.contains("placeholder"), "{error}");
    assert!(
        !error.contains(secrets::PLACEHOLDER_SECRET_KEY),
        "never quoted: {error}"
    );
}

#[test]
fn both_secret_key_and_secret_key_file_is_a_warning_naming_the_winner() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("secret");
    std::fs::write(&key_file, "from-file").unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "secret_id = \"AKID1\"\nsecret_key = \"inline\"\nsecret_key_file = {:?}\n",
            key_file.display().to_string()
        ),
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    assert!(config.secret().is("inline"));
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    let warning = &config.warnings[0];
    assert!(warning.contains("secret_key wins"), "{warning}");
    assert!(
        warning.contains(&key_file.display().to_string()),
        "{warning}"
    );
    assert!(
        !warning.contains("inline") && !warning.contains("from-file"),
        "{warning}"
    );
}

#[test]
fn a_webhook_secret_file_is_read_at_load_and_refused_empty_or_without_a_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("hook.secret");
    let write = |hook: &str| {
        let path = dir.path().join("c.toml");
        let text = format!(
            "{}[[watch]]\npath = {:?}\n[watch.on_done]\n{hook}",
            minimal(),
            dir.path().display().to_string()
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let signed = format!(
        "webhook = \"https://cms.example/hook\"\nwebhook_secret_file = {:?}\n",
        key.display().to_string()
    );
    std::fs::write(&key, "hook-key\n").unwrap();
    let config = Config::load(&write(&signed)).unwrap();
    let hook = config.watch[0].on_done.as_ref().unwrap();
    assert!(hook.webhook_secret.as_ref().unwrap().is("hook-key"));
    assert!(
        !format!("{config:?}").contains("hook-key"),
        "Debug redacts it"
    );

    std::fs::write(&key, "\n").unwrap();
    let error = Config::load(&write(&signed)).unwrap_err().to_string();
    assert!(
        error.contains("webhook_secret_file") && error.contains("empty"),
        "{error}"
    );

    std::fs::write(&key, "hook-key").unwrap();
    let unsigned = format!(
        "command = [\"true\"]\nwebhook_secret_file = {:?}\n",
        key.display().to_string()
    );
    let error = Config::load(&write(&unsigned)).unwrap_err().to_string();
    assert!(error.contains("no `webhook`"), "{error}");
}

#[test]
fn one_webhook_url_takes_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.secret"), dir.path().join("b.secret"));
    std::fs::write(&a, "key-a").unwrap();
    std::fs::write(&b, "key-b").unwrap();
    let watch = |name: &str, key: &Path| {
        let folder = dir.path().join(name);
        std::fs::create_dir_all(&folder).unwrap();
        format!(
            "[[watch]]\npath = {:?}\n[watch.on_done]\nwebhook = \"https://cms.example/hook\"\n\
             webhook_secret_file = {:?}\n",
            folder.display().to_string(),
            key.display().to_string()
        )
    };
    let path = dir.path().join("c.toml");
    let text = format!("{}{}{}", minimal(), watch("one", &a), watch("two", &b));
    std::fs::write(&path, text).unwrap();
    let error = Config::load(&path).unwrap_err().to_string();
    assert!(
        error.contains("watch[1].on_done.webhook_secret_file"),
        "{error}"
    );
    let text = format!("{}{}{}", minimal(), watch("one", &a), watch("two", &a));
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap();
}
