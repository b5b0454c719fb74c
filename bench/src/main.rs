//! `sluice-bench`: the benchmark report and the load generator.
//!
//! - `report [--quick]` runs every scenario and writes `bench/results/REPORT.md`.
//! - `abuse [--quick]` runs only the report's abuse section and prints it.
//! - `neighbours [--quick]` runs only the noisy-neighbour section and prints it.
//! - `load` drives one loopback URL at a constant rate (open loop) or with
//!   a fixed number of clients (closed loop) and prints percentiles.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice_bench::loadgen::{self, Target};
use sluice_bench::report::{self, ReportOptions};

/// Sluice's benchmark report and load generator.
#[derive(Debug, Parser)]
#[command(name = "sluice-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every scenario and write the report with its plots.
    Report {
        /// Shorter runs (under five minutes on two cores).
        #[arg(long)]
        quick: bool,
        /// Where REPORT.md and the SVG plots go.
        #[arg(long, default_value_os_t = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results")))]
        out: PathBuf,
    },
    /// Run only the abuse section (A1) and print it as Markdown.
    Abuse {
        /// Shorter runs.
        #[arg(long)]
        quick: bool,
    },
    /// Run only the noisy-neighbour section (N1) and print it as Markdown.
    Neighbours {
        /// Shorter runs.
        #[arg(long)]
        quick: bool,
    },
    /// Load one loopback URL with POST requests and print latency percentiles.
    Load {
        /// Target (127.0.0.1, ::1 or localhost only).
        #[arg(long)]
        url: String,
        /// Bearer token.
        #[arg(long, env = "SLUICE_API_KEY", hide_env_values = true)]
        key: String,
        /// File sent as each request's body.
        #[arg(long)]
        body: PathBuf,
        /// Requests per second (open loop); without it, closed loop.
        #[arg(long)]
        rate: Option<f64>,
        /// Closed-loop clients, or the open loop's most requests in flight.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// How long to run (at most 10 minutes).
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
}

async fn load(
    url: &str,
    key: &str,
    body: &PathBuf,
    rate: Option<f64>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let duration = duration.min(Duration::from_secs(600));
    let body = std::fs::read(body).with_context(|| format!("cannot read {}", body.display()))?;
    let target = Target::new(url, key, body.into())?;
    let result = match rate {
        Some(rate) => loadgen::open_loop(&target, rate, duration, connections, "open loop", false).await,
        None => loadgen::closed_loop(&target, connections, duration, 10_000_000, "closed loop", false).await,
    };
    println!(
        "ok {} errors {} in {:.1} s = {:.1} requests/s",
        result.ok,
        result.errors,
        result.elapsed.as_secs_f64(),
        result.throughput()
    );
    for quantile in [0.5, 0.9, 0.99, 0.999] {
        println!("p{:<5} {:>9.2} ms", quantile * 100.0, result.latency_ms(quantile));
    }
    println!("max    {:>9.2} ms", result.latency.max() as f64 / 1000.0);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let tokio = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(tokio) => tokio,
        Err(err) => {
            eprintln!("sluice-bench: cannot start tokio: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = tokio.block_on(async {
        match cli.command {
            Command::Report { quick, out } => {
                let goals = report::run(&ReportOptions { quick, out_dir: out }).await?;
                println!("{}", report::summary_table(&goals));
                Ok(())
            }
            Command::Abuse { quick } => {
                println!("{}", report::abuse_section(quick).await?);
                Ok(())
            }
            Command::Neighbours { quick } => {
                println!("{}", report::neighbours_section(quick).await?);
                Ok(())
            }
            Command::Load { url, key, body, rate, connections, duration } => {
                load(&url, &key, &body, rate, connections, duration).await
            }
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sluice-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}
