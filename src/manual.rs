//! The generated documentation of the command line: man pages (clap_mangen) and shell completion
//! scripts (clap_complete), both rendered from the clap definitions in [`crate::cli`], so they
//! cannot drift from the real flags.
//!
//! It owns no text of its own and no install paths: `vodup completions SHELL` prints one script,
//! `examples/gen_assets.rs` writes everything into a folder for `cargo deb` (Cargo.toml's
//! `[package.metadata.deb]` says where each file goes).

use crate::cli::Cli;
use clap::CommandFactory as _;
use clap_complete::Shell;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The name the scripts and pages are written for: the installed binary.
pub const BIN_NAME: &str = "vodup";

/// The shells whose completion scripts the package installs.
pub const PACKAGED_SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Write the completion script of `shell` for `vodup` to `out`.
pub fn write_completion(shell: Shell, out: &mut dyn Write) -> io::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN_NAME, &mut script);
    out.write_all(&script)?;
    out.flush()
}

/// Write the completion scripts of [`PACKAGED_SHELLS`] into `dir`, named as each shell expects
/// (`vodup.bash`, `_vodup`, `vodup.fish`); returns their paths.
pub fn write_completions(dir: &Path) -> io::Result<Vec<PathBuf>> {
    PACKAGED_SHELLS
        .iter()
        .map(|&shell| clap_complete::generate_to(shell, &mut Cli::command(), BIN_NAME, dir))
        .collect()
}

/// Write one man page (section 1) for `vodup` and one for each subcommand (`vodup-run.1`,
/// `vodup-upload.1`, ...) into `dir`; returns their paths, `vodup.1` first.
pub fn write_man_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut paths = Vec::new();
    write_man_page_tree(cmd, dir, &mut paths)?;
    Ok(paths)
}

/// The page of `cmd`, then those of its visible subcommands, recursively.
fn write_man_page_tree(cmd: clap::Command, dir: &Path, paths: &mut Vec<PathBuf>) -> io::Result<()> {
    let source = format!("{BIN_NAME} {}", env!("CARGO_PKG_VERSION"));
    let subcommands: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .cloned()
        .collect();
    paths.push(clap_mangen::Man::new(cmd).source(source).generate_to(dir)?);
    for sub in subcommands {
        write_man_page_tree(sub, dir, paths)?;
    }
    Ok(())
}

/// Everything the package installs from here: man pages into `out/man`, completion scripts into
/// `out/completions` (both created if missing); returns the paths written.
pub fn write_all(out: &Path) -> io::Result<Vec<PathBuf>> {
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut paths = write_man_pages(&man)?;
    paths.extend(write_completions(&completions)?);
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_of(paths: &[PathBuf], name: &str) -> String {
        let path = paths
            .iter()
            .find(|p| p.file_name().unwrap() == format!("{name}.1").as_str())
            .unwrap_or_else(|| panic!("no man page {name}.1 among {paths:?}"));
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn writes_a_man_page_that_names_its_command_for_vodup_and_every_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_man_pages(dir.path()).unwrap();
        let mut names = vec!["vodup".to_owned()];
        names.extend(
            Cli::command()
                .get_subcommands()
                .filter(|s| s.get_name() != "help")
                .map(|s| format!("vodup-{}", s.get_name())),
        );
        assert_eq!(paths.len(), names.len(), "{paths:?}");
        for name in &names {
            let page = page_of(&paths, name);
            // roff's preamble defines strings first; the title macro is the first request.
            let title = page
                .lines()
                .find(|l| !l.starts_with(".ie") && !l.starts_with(".el"));
            assert!(
                title.is_some_and(|t| t.starts_with(&format!(".TH {name} 1 "))),
                "{name}: {title:?}"
            );
            assert!(page.contains(".SH NAME"), "{name}");
            assert!(page.contains(".SH SYNOPSIS"), "{name}");
            assert!(page.contains(&format!("vodup {}", env!("CARGO_PKG_VERSION"))));
        }
        for sub in [
            "run",
            "upload",
            "status",
            "nodes",
            "retry",
            "check-config",
            "completions",
        ] {
            assert!(names.contains(&format!("vodup-{sub}")), "{sub}");
        }
    }

    #[test]
    fn a_subcommand_page_documents_its_own_flags_and_the_global_ones() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_man_pages(dir.path()).unwrap();
        let upload = page_of(&paths, "vodup-upload");
        assert!(upload.contains("\\-\\-json"), "{upload}");
        assert!(upload.contains("\\-\\-config"), "{upload}");
        assert!(upload.contains("FILES"), "{upload}");
    }

    #[test]
    fn writes_completions_for_bash_zsh_and_fish_under_the_names_each_shell_expects() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_all(dir.path()).unwrap();
        for name in ["vodup.bash", "_vodup", "vodup.fish"] {
            let path = dir.path().join("completions").join(name);
            assert!(paths.contains(&path), "{name} not in {paths:?}");
            let script = std::fs::read_to_string(&path).unwrap();
            assert!(script.contains("check-config"), "{name}");
        }
        assert!(dir.path().join("man/vodup.1").is_file());
    }
}
