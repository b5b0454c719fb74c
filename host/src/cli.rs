//! The `sluice` command line: argument definitions (clap derive, every flag
//! also settable as `SLUICE_*`) and the commands behind them.

pub mod client;
pub mod new;
pub mod run;
pub mod serve;
pub mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sluice: run image transforms as sandboxed WebAssembly functions.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Server and key for the client commands.
    #[command(flatten)]
    pub connection: client::Connection,
}

/// The `sluice` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scaffold a function project from a template.
    New(new::NewArgs),
    /// Build the function project in a directory into a component.
    Build(new::BuildArgs),
    /// Run one function call locally, without a server.
    Run(run::RunArgs),
    /// Run the platform: HTTP API, worker slots and queue in one process
    /// (or, with --redis, a front door of a shared platform).
    Serve(Box<serve::ServeArgs>),
    /// Run a worker node that takes jobs from a shared Redis queue.
    Worker(worker::WorkerArgs),
    /// Manage tenants: create, list, keys, limits, usage, delete (admin).
    Tenant(client::TenantArgs),
    /// Deploy a component as a new version of a function.
    Deploy(client::DeployArgs),
    /// Call a function and wait for its output.
    Invoke(client::InvokeArgs),
    /// Submit async jobs and fetch their status and results.
    #[command(subcommand)]
    Job(client::JobCommand),
    /// Print what a job's function wrote to stdout and stderr.
    Logs(client::LogsArgs),
    /// Show the tenant's usage totals.
    Usage(client::UsageArgs),
    /// Show the tenant's queued and running jobs and its queue quota.
    Queue,
}

/// Runs the parsed command line and returns the process exit code.
pub fn execute(cli: Cli) -> ExitCode {
    use client::ClientCommand;
    let client_command = match cli.command {
        Command::New(args) => return new::execute_new(args),
        Command::Build(args) => return new::execute_build(args),
        Command::Run(args) => return run::execute(args),
        Command::Serve(args) => return serve::execute(*args),
        Command::Worker(args) => return worker::execute(args),
        Command::Tenant(command) => ClientCommand::Tenant(command),
        Command::Deploy(args) => ClientCommand::Deploy(args),
        Command::Invoke(args) => ClientCommand::Invoke(args),
        Command::Job(command) => ClientCommand::Job(command),
        Command::Logs(args) => ClientCommand::Logs(args),
        Command::Usage(args) => ClientCommand::Usage(args),
        Command::Queue => ClientCommand::Queue,
    };
    client::execute(cli.connection, client_command)
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
