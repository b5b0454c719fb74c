//! The `sluice` command line: argument definitions (clap derive, every flag
//! also settable as `SLUICE_*`) and the commands behind them.

pub mod run;
pub mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sluice: run image transforms as sandboxed WebAssembly functions.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The `sluice` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one function call locally, without a server.
    Run(run::RunArgs),
    /// Run the platform: HTTP API, worker slots and queue in one process.
    Serve(serve::ServeArgs),
}

/// Runs the parsed command line and returns the process exit code.
pub fn execute(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(args) => run::execute(args),
        Command::Serve(args) => serve::execute(args),
    }
}

/// Parses a `key=value` pair for `--param`.
pub fn parse_param(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected key=value, got `{raw}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_split_at_the_first_equals_sign() {
        assert_eq!(parse_param("width=400"), Ok(("width".to_owned(), "400".to_owned())));
        assert_eq!(parse_param("note=a=b"), Ok(("note".to_owned(), "a=b".to_owned())));
        assert_eq!(parse_param("empty="), Ok(("empty".to_owned(), String::new())));
        assert!(parse_param("=x").is_err());
        assert!(parse_param("novalue").is_err());
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
