//! The real `vodup` binary prints shell completion scripts generated from its clap definitions,
//! with no config file needed.

use std::process::{Command, Stdio};

fn completions(shell: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vodup"))
        .args(["--config", "/nonexistent/vodup.toml", "completions", shell])
        .env_remove("VODUP_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("vodup runs");
    assert!(
        out.status.success(),
        "{shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("a completion script is UTF-8")
}

fn assert_completes_subcommands(shell: &str, script: &str) {
    for word in ["upload", "check-config", "status", "retry", "completions"] {
        assert!(
            script.contains(word),
            "{shell} script lacks {word}:\n{script}"
        );
    }
}

#[test]
fn completions_bash_prints_a_script_that_completes_the_subcommands() {
    let script = completions("bash");
    assert!(script.contains("complete -F"), "{script}");
    assert_completes_subcommands("bash", &script);
}

#[test]
fn completions_zsh_prints_a_compdef_script() {
    let script = completions("zsh");
    assert!(script.starts_with("#compdef vodup"), "{script}");
    assert_completes_subcommands("zsh", &script);
}

#[test]
fn completions_fish_prints_complete_commands() {
    let script = completions("fish");
    assert!(script.contains("complete -c vodup"), "{script}");
    assert_completes_subcommands("fish", &script);
}

#[test]
fn completions_refuses_an_unknown_shell() {
    let out = Command::new(env!("CARGO_BIN_EXE_vodup"))
        .args(["completions", "tcsh"])
        .stdin(Stdio::null())
        .output()
        .expect("vodup runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}
