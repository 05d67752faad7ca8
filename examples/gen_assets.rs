//! Writes the generated files the Debian package installs: `cargo run --example gen_assets -- OUT`
//! puts the man pages in `OUT/man` and the bash, zsh and fish completions in `OUT/completions`
//! (see `vodup::manual`). `.ci/run` calls it with `target/assets` before `cargo deb`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: gen_assets OUTDIR");
        return ExitCode::from(2);
    };
    match vodup::manual::write_all(&out) {
        Ok(paths) => {
            for path in paths {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen_assets: cannot write into {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}
