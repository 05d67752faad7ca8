use super::*;
use crate::protocol::SecretKey;

fn minimal() -> String {
    "secret_id = \"AKID1\"\nsecret_key = \"k\"\n".into()
}

fn check(text: &str) -> Result<Config, String> {
    let config = Config::parse(text)?;
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

const EXAMPLE: &str = include_str!("../../../config.example.toml");

/// The example as an admin fills it in: their own secret_id, and the key in the file it names.
fn example_filled(dir: &Path) -> PathBuf {
    let key_file = dir.join("secret");
    std::fs::write(&key_file, "real-key\n").unwrap();
    let text = EXAMPLE
        .replace(secrets::PLACEHOLDER_SECRET_ID, "AKIDreal")
        .replace(
            "\"/etc/vodup/secret\"",
            &format!("{:?}", key_file.display().to_string()),
        );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_example_config_parses_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&example_filled(dir.path())).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!(config.endpoint, DEFAULT_ENDPOINT);
    assert_eq!(config.part_size, 1_048_576);
    assert!(!config.watch.is_empty());
}

#[test]
fn parts_in_flight_is_auto_or_a_number_and_nothing_else() {
    let fixed = check(&format!("{}parts_in_flight = 12\n", minimal())).unwrap();
    assert_eq!(fixed.parts_in_flight, PartsInFlight::Fixed(12));
    let auto = check(&format!("{}parts_in_flight = \"auto\"\n", minimal())).unwrap();
    assert_eq!(auto.parts_in_flight, PartsInFlight::Auto);
    for bad in ["\"many\"", "0", "1000"] {
        let error = check(&format!("{}parts_in_flight = {bad}\n", minimal())).unwrap_err();
        assert!(error.contains("parts_in_flight"), "{bad}: {error}");
    }
    let error = check(&format!("{}max_parts_in_flight = 1\n", minimal())).unwrap_err();
    assert!(error.contains("max_parts_in_flight"), "{error}");
}

#[test]
fn defaults_fill_everything_but_the_credentials() {
    let config = check(&minimal()).unwrap();
    assert_eq!(config.parts_in_flight, PartsInFlight::Auto);
    assert_eq!(config.max_parts_in_flight, 64);
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
fn a_time_of_day_that_is_not_one_is_refused_at_load_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vodup.toml");
    let cases = [
        (
            "from = \"25:00\"\nto = \"06:00\"",
            "line 4",
            "`rate_schedule.from`",
        ),
        (
            "from = \"22:00\"\nto = \"6\"",
            "line 5",
            "`rate_schedule.to`",
        ),
    ];
    for (window, line, key) in cases {
        let schedule = format!("[[rate_schedule]]\n{window}\nmax_upload_rate = \"1MiB\"\n");
        std::fs::write(&path, format!("{}{schedule}", minimal())).unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains(line) && err.contains(key), "{window}: {err}");
        assert!(err.contains("not a time of day"), "{window}: {err}");
    }
}

#[test]
fn rate_windows_are_parsed_when_read() {
    let text = "[[rate_schedule]]\nfrom = \"22:00\"\nto = \"06:30\"\nmax_upload_rate = 0\n";
    let config = check(&format!("{}{text}", minimal())).unwrap();
    let window = &config.rate_schedule[0];
    assert_eq!(
        (window.from.to_string(), window.to.to_string()),
        ("22:00".into(), "06:30".into())
    );
}

#[test]
fn keys_in_a_table_are_named_with_the_table() {
    let err = check(&format!("{}[retry]\nbase = 5\n", minimal())).unwrap_err();
    assert!(err.contains("`retry.base`"), "{err}");
    let text = format!("{}[[watch]]\npath = \"/d\"\nsettle = 5\n", minimal());
    assert!(check(&text).unwrap_err().contains("`watch.settle`"));
}

#[test]
fn a_quiet_period_too_short_to_trust_is_refused() {
    for field in ["settle", "settle_unseen"] {
        let text = format!(
            "{}[[watch]]\npath = \"/d\"\n{field} = \"20ms\"\n",
            minimal()
        );
        let err = check(&text).unwrap_err();
        assert!(
            err.contains(&format!("watch[0].{field}")) && err.contains("100ms"),
            "{err}"
        );
    }
    let text = format!(
        "{}[[watch]]\npath = \"/d\"\nsettle = \"100ms\"\n",
        minimal()
    );
    assert!(check(&text).is_ok());
}

#[test]
fn parse_errors_name_the_right_line() {
    let err = Config::parse("secret_id = \"a\"\nbogus = 1\n").unwrap_err();
    assert!(err.contains("line 2") && err.contains("bogus"), "{err}");
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
        Config::parse("secret_id = \"a\"\nsecret_key_file = \"/nonexistent/s3cr3t\"\n").unwrap();
    let err = config.resolve_secret(None).unwrap_err().to_string();
    assert!(err.contains("secret_key_file"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
}

#[test]
fn debug_of_a_config_never_shows_the_secret() {
    let config = check("secret_id = \"AKID1\"\nsecret_key = \"s3cr3t-value\"\n").unwrap();
    assert!(!format!("{config:?}").contains("s3cr3t-value"));
}

#[test]
fn the_listener_is_http_listen_or_its_old_name_but_not_both() {
    let http = check(&format!(
        "{}[http]\nlisten = \"127.0.0.1:9464\"\n",
        minimal()
    ))
    .unwrap();
    assert_eq!(http.http_listen(), Some(([127, 0, 0, 1], 9464).into()));
    let old = check(&format!(
        "{}[metrics]\nlisten = \"127.0.0.1:9465\"\n",
        minimal()
    ))
    .unwrap();
    assert_eq!(old.http_listen(), Some(([127, 0, 0, 1], 9465).into()));
    assert_eq!(
        check(&minimal()).unwrap().http_listen(),
        None,
        "off by default"
    );
    let both = format!(
        "{}[http]\nlisten = \"127.0.0.1:1\"\n[metrics]\nlisten = \"127.0.0.1:2\"\n",
        minimal()
    );
    let error = check(&both).unwrap_err();
    assert!(
        error.contains("http.listen") && error.contains("metrics.listen"),
        "{error}"
    );
}

#[test]
fn the_example_keeps_the_listener_off_and_sidecars_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&example_filled(dir.path())).unwrap();
    assert_eq!(config.http_listen(), None);
    assert!(!config.watch[0].done_sidecar);
}

fn two_accounts(key_file: &std::path::Path) -> String {
    format!(
        "endpoint = \"https://vod.example/v2/index.php\"\nsecret_id = \"AKIDtop\"\nsecret_key = \"top-key\"\n\
         uid = \"7\"\n\
         [[watch]]\npath = \"/drop-b\"\nsecret_id = \"AKIDb\"\nsecret_key_file = {:?}\n\
         endpoint = \"http://127.0.0.1:9000/v2/index.php\"\n\
         [[watch]]\npath = \"/drop-top\"\n",
        key_file.display().to_string()
    )
}

#[test]
fn a_watch_with_its_own_keys_has_its_own_account_and_one_without_inherits_the_top_level_one() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("b.key");
    std::fs::write(&key_file, "s3cr3t-b\n").unwrap();
    let mut config = Config::parse(&two_accounts(&key_file)).unwrap();
    config.resolve_secret(None).unwrap();
    config.validate().unwrap();
    config.resolve_accounts();
    let own = config.account_of(&config.watch[0]);
    assert_eq!(own.name.as_str(), "AKIDb@localhost:9000");
    assert_eq!(own.secret_id, "AKIDb");
    assert_eq!(own.secret_key, SecretKey::new("s3cr3t-b"));
    assert_eq!(own.endpoint, "http://127.0.0.1:9000/v2/index.php");
    assert_eq!(own.uid, "7", "the uid it does not set is the top-level one");
    let inherited = config.account_of(&config.watch[1]);
    assert_eq!(inherited, config.default_account());
    assert_eq!(inherited.name.as_str(), "AKIDtop@vod.example");
    assert_eq!(inherited.secret_key, SecretKey::new("top-key"));
    assert_eq!(config.accounts().len(), 2);
    assert_eq!(config.watch[0].account_name.as_ref(), Some(&own.name));
    assert_eq!(config.watch[1].account_name.as_ref(), Some(&inherited.name));
    assert!(!format!("{config:?}").contains("s3cr3t-b"));
}

#[test]
fn an_endpoint_spelled_differently_names_the_same_account() {
    let name = |endpoint: &str| {
        let mut config = Config::parse(&format!(
            "endpoint = {endpoint:?}\nsecret_id = \"AKIDa\"\nsecret_key = \"k\"\n"
        ))
        .unwrap();
        config.resolve_secret(None).unwrap();
        config.default_account().name.as_str().to_owned()
    };
    for loopback in [
        "http://127.0.0.1:9000/v2/index.php",
        "http://localhost:9000/v2/index.php",
        "http://LOCALHOST:9000/v2/index.php",
        "http://[::1]:9000/v2/index.php",
        "http://127.0.0.2:9000/",
    ] {
        assert_eq!(name(loopback), "AKIDa@localhost:9000", "{loopback}");
    }
    for remote in [
        "https://VOD.Example/v2/index.php",
        "https://vod.example:443/v2/index.php",
    ] {
        assert_eq!(name(remote), "AKIDa@vod.example", "{remote}");
    }
    assert_eq!(name("https://vod.example:8443/"), "AKIDa@vod.example:8443");
}

#[test]
fn a_watch_account_key_is_never_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let base =
        "secret_id = \"a\"\nsecret_key = \"k\"\n[[watch]]\npath = \"/d\"\nsecret_id = \"b\"\n";
    // Written into the config itself: refused, pointing to the file, without the value.
    let err = Config::parse(&format!("{base}secret_key = \"s3cr3t-w\"\n")).unwrap_err();
    assert!(!err.contains("s3cr3t-w"), "{err}");
    assert!(
        err.contains("secret_key_file") && err.contains("line 6"),
        "{err}"
    );
    // A key written where the file's path belongs: refused without quoting it.
    let err = Config::parse(&format!("{base}secret_key_file = 424242\n")).unwrap_err();
    assert!(
        !err.contains("424242") && err.contains("secret_key_file"),
        "{err}"
    );
    // A file that cannot be read: named by its key, not its path.
    let mut config = Config::parse(&format!(
        "{base}secret_key_file = \"/nonexistent/s3cr3t\"\n"
    ))
    .unwrap();
    let err = config.resolve_secret(None).unwrap_err().to_string();
    assert!(
        err.contains("watch[0].secret_key_file") && !err.contains("s3cr3t"),
        "{err}"
    );
    // An id without its key, or a key without its id.
    let err = check(base).unwrap_err();
    assert!(err.contains("watch[0].secret_key_file"), "{err}");
    let key_file = dir.path().join("k");
    std::fs::write(&key_file, "s3cr3t-f").unwrap();
    let text = format!(
        "secret_id = \"a\"\nsecret_key = \"k\"\n[[watch]]\npath = \"/d\"\nsecret_key_file = {:?}\n",
        key_file.display().to_string()
    );
    let mut config = Config::parse(&text).unwrap();
    config.resolve_secret(None).unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.contains("watch[0].secret_id") && !err.contains("s3cr3t"),
        "{err}"
    );
}

#[test]
fn two_different_accounts_under_one_name_are_refused_without_quoting_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("b.key");
    std::fs::write(&key_file, "s3cr3t-b").unwrap();
    // Same secret_id and host as the top-level account, another key: the same derived name.
    let text = format!(
        "secret_id = \"AKIDtop\"\nsecret_key = \"top-key\"\n\
         [[watch]]\npath = \"/d\"\nsecret_id = \"AKIDtop\"\nsecret_key_file = {:?}\n",
        key_file.display().to_string()
    );
    let mut config = Config::parse(&text).unwrap();
    config.resolve_secret(None).unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("watch[0].account"), "{err}");
    assert!(!err.contains("s3cr3t") && !err.contains("top-key"), "{err}");
    // Named apart, they are two accounts.
    let mut config = Config::parse(&format!("{text}account = \"second app\"\n")).unwrap();
    config.resolve_secret(None).unwrap();
    config.validate().unwrap();
    assert_eq!(config.accounts().len(), 2);
}

mod ledger;
