//! The `vodup` binary: parse the command line, set up logging, load the config, call the library.

use anyhow::Context as _;
use clap::Parser as _;
use std::process::ExitCode;
use std::time::Duration;
use vodup::cli::{Cli, Command};
use vodup::config::Config;
use vodup::{commands, logging};

fn main() -> ExitCode {
    // Before any thread exists: hook commands must not inherit the secret key.
    vodup::config::take_secrets_from_env();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vodup: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// After the work is done, how long blocking tasks (a hash of a large file, say) may take to
/// notice the shutdown before the process exits anyway.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(2);

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let result = dispatch(cli, &runtime);
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    result
}

/// `vodup run`: the daemon, reloading from the config file it was started with.
async fn daemon(cli: &Cli, config: Config) -> Result<(), vodup::error::Error> {
    logging::init(cli.log_format, cli.verbose, Some(config.log_format));
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let options = vodup::daemon::Options {
        reload_from: Some(cli.config.clone()),
        ready: None,
    };
    vodup::daemon::run_with(config, options, logging::shutdown_signal()).await
}

fn dispatch(cli: Cli, runtime: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let load = || Config::load(&cli.config).map_err(anyhow::Error::from);
    match cli.command {
        Command::CheckConfig => {
            let config = load()?;
            Ok(runtime.block_on(commands::check_config(&cli.config, &config))?)
        }
        Command::Demo { drop } => {
            logging::init(cli.log_format, cli.verbose, None);
            Ok(runtime.block_on(vodup::demo::demo(drop, logging::shutdown_signal()))?)
        }
        Command::Run => {
            let config = load()?;
            runtime.block_on(daemon(&cli, config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Upload { files, json } => {
            let config = load()?;
            let bars = vodup::progress::use_bars(json);
            logging::init_upload(cli.log_format, cli.verbose, Some(config.log_format), bars);
            for warning in &config.warnings {
                tracing::warn!("{warning}");
            }
            Ok(runtime.block_on(commands::upload(config, files, json))?)
        }
        Command::Status {
            json,
            all,
            state,
            since,
            watch,
            limit,
        } => {
            let query = commands::StatusQuery {
                json,
                all,
                states: state,
                since,
                watch,
                limit,
            };
            Ok(runtime.block_on(commands::status(&load()?, &query))?)
        }
        Command::Nodes { json } => Ok(runtime.block_on(commands::nodes(&load()?, json))?),
        Command::Retry { file, failed: _ } => {
            let config = load()?;
            Ok(runtime.block_on(commands::retry(&config, file.as_deref()))?)
        }
        Command::Completions { shell } => {
            vodup::manual::write_completion(shell, &mut std::io::stdout().lock())
                .context("cannot write the completion script")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
