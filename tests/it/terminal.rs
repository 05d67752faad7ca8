//! `vodup upload` on a terminal: the real binary under a pseudo-terminal (util-linux `script`),
//! against the emulator. What the screen shows: a bar per file while it goes, then its one-line
//! result, and a closing summary; log lines only with `-v`.

use crate::helpers::env::{test_bytes, Env, PART};
use std::path::Path;
use std::time::Duration;
use tokio::process::Command;

/// Run `vodup ARGS` under a pseudo-terminal; what it wrote to the terminal, escape sequences and
/// carriage returns removed.
async fn on_a_terminal(config: &Path, args: &str) -> String {
    let vodup = env!("CARGO_BIN_EXE_vodup");
    let command = format!("'{vodup}' --config '{}' {args}", config.display());
    let run = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .env_remove("INVOCATION_ID")
        .stdin(std::process::Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("vodup ends in time")
        .expect("script runs");
    plain(&String::from_utf8_lossy(&out.stdout))
}

/// The text without ANSI escape sequences (CSI `ESC [ ... letter`) and carriage returns.
fn plain(screen: &str) -> String {
    let mut out = String::new();
    let mut chars = screen.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' if chars.peek() == Some(&'[') => {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            '\u{1b}' | '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// The text from `start` to the end of its line (a bar erased by cursor moves, which [`plain`]
/// drops, may stand before it).
#[track_caller]
fn line_from<'a>(screen: &'a str, start: &str) -> &'a str {
    let at = screen
        .find(start)
        .unwrap_or_else(|| panic!("no `{start}` in:\n{screen}"));
    screen[at..].lines().next().unwrap_or_default()
}

#[tokio::test]
async fn upload_on_a_terminal_shows_a_result_line_per_file_and_a_summary_and_no_info_log() {
    let env = Env::new().await;
    let config = env.config_file("");
    let a = env.write(&env.src, "first.mp4", &test_bytes(3 * PART as usize, 71));
    let b = env.write(&env.src, "second.mp4", &test_bytes(PART as usize + 9, 72));
    let screen = on_a_terminal(
        &config,
        &format!("upload '{}' '{}'", a.display(), b.display()),
    )
    .await;
    for name in ["first.mp4", "second.mp4"] {
        let result = line_from(
            &screen,
            &format!("{}: fileId ", env.src.join(name).display()),
        );
        assert!(result.contains(" url http://"), "{result}");
    }
    let summary = line_from(&screen, "vodup: 2 files uploaded");
    assert!(
        summary.contains("0 instant uploads") && summary.contains("0 not uploaded"),
        "{summary}"
    );
    assert!(
        !screen.contains("INFO"),
        "log lines between the bars:\n{screen}"
    );
    assert!(screen.contains("uploading"), "no bar was drawn:\n{screen}");

    // The same content again is an instant upload; with -v the log lines are back.
    let copy = env.write(&env.src, "copy.mp4", &test_bytes(PART as usize + 9, 72));
    let screen = on_a_terminal(&config, &format!("-v upload '{}'", copy.display())).await;
    assert!(screen.contains("(instant upload)"), "{screen}");
    assert!(screen.contains("1 instant upload,"), "{screen}");
    assert!(screen.contains("INFO"), "-v shows the log:\n{screen}");
}
