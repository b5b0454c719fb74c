//! `sluice-bench`: the benchmark report and the load generator.
//!
//! - `report [--quick]` runs every scenario and writes `bench/results/REPORT.md`.
//! - `abuse [--quick]` runs only the report's abuse section and prints it.
//! - `neighbours [--quick]` runs only the noisy-neighbour section and prints it.
//! - `soak [--quick]` runs only the soak section and prints it.
//! - `peer [--quick]` runs only the `wasmtime serve` comparison and prints it.
//! - `compare --photos DIR` runs the native vs WASM (vs libvips) comparison
//!   on any folder of images with any resize parameters.
//! - `queue` moves tiny jobs through one Redis (P10) and prints jobs/s.
//! - `load` drives one loopback URL at a constant rate (open loop) or with
//!   a fixed number of clients (closed loop) and prints percentiles.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice_bench::loadgen::{self, Target};
use sluice_bench::report::{self, CompareOptions, ReportOptions};

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
        /// Shorter runs (about six minutes on two cores).
        #[arg(long)]
        quick: bool,
        /// Where REPORT.md and the SVG plots go.
        #[arg(long, default_value_os_t = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results")))]
        out: PathBuf,
    },
    /// Run only the abuse section (P12) and print it as Markdown.
    Abuse {
        /// Shorter runs.
        #[arg(long)]
        quick: bool,
    },
    /// Run only the noisy-neighbour section (P11) and print it as Markdown.
    Neighbours {
        /// Shorter runs.
        #[arg(long)]
        quick: bool,
    },
    /// Run only the soak (P8) and print it as Markdown.
    Soak {
        /// Shorter runs.
        #[arg(long)]
        quick: bool,
    },
    /// Run only the `wasmtime serve` comparison (P7) and print it as
    /// Markdown; without `--quick` it installs wasmtime-cli when missing.
    Peer {
        /// Shorter runs, and no install.
        #[arg(long)]
        quick: bool,
    },
    /// Time the resize natively, in WASM and (when pyvips is installed)
    /// in libvips on every image of a folder, stage by stage, and print
    /// the per-photo table.
    Compare {
        /// The folder of images.
        #[arg(long)]
        photos: PathBuf,
        /// A resize parameter, `name=value` (repeatable) [default: width=400].
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Timed runs per photo and side.
        #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u64).range(1..=1000))]
        runs: u64,
        /// Print JSON instead of Markdown.
        #[arg(long)]
        json: bool,
        /// Where the SVG plots go.
        #[arg(long, default_value = "compare-plots")]
        out: PathBuf,
    },
    /// Move tiny jobs through one Redis as fast as it goes (P10) and print
    /// jobs per second.
    Queue {
        /// A Redis on loopback; without it a `redis-server` is started on a free port.
        #[arg(long)]
        redis: Option<String>,
        /// Jobs to move.
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        jobs: u64,
        /// Tasks enqueueing.
        #[arg(long, default_value_t = report::scenarios::QUEUE_PRODUCERS as u64, value_parser = clap::value_parser!(u64).range(1..=1024))]
        producers: u64,
        /// Tasks reserving and completing.
        #[arg(long, default_value_t = report::scenarios::QUEUE_WORKERS as u64, value_parser = clap::value_parser!(u64).range(1..=1024))]
        workers: u64,
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

fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected name=value, got `{text}`")),
    }
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
            Command::Soak { quick } => {
                println!("{}", report::soak_section(quick).await?);
                Ok(())
            }
            Command::Peer { quick } => {
                println!("{}", report::peer_section(quick).await?);
                Ok(())
            }
            Command::Compare { photos, params, runs, json, out } => {
                let params = if params.is_empty() { report::scenarios::report_params() } else { params };
                let runs = usize::try_from(runs).context("runs")?;
                let options = CompareOptions { photos, params, runs, json, out_dir: out };
                println!("{}", report::compare(&options).await?);
                Ok(())
            }
            Command::Queue { redis, jobs, producers, workers } => {
                let moved = report::scenarios::tiny_jobs_cli(redis.as_deref(), jobs, producers, workers).await?;
                println!(
                    "{} tiny jobs, {} producers, {} workers: {:.2} s = {:.0} jobs/s",
                    moved.jobs,
                    moved.producers,
                    moved.workers,
                    moved.elapsed.as_secs_f64(),
                    moved.per_second()
                );
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
