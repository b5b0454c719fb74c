//! `sluice serve`: the platform on one machine — HTTP API, worker slots,
//! in-memory queue, state in a data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sluice_scheduler::QueueConfig;

use crate::platform::PlatformConfig;
use crate::runtime::MIB;
use crate::server::{self, ServeConfig};

/// Arguments of `sluice serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where tenants, functions, usage and compiled artifacts are kept.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "sluice-data")]
    pub data_dir: PathBuf,
    /// Token for admin calls (creating tenants). When absent, one is
    /// generated and printed once; only its hash is stored.
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Worker slots in this process [default: one per core].
    #[arg(long, env = "SLUICE_WORKERS")]
    pub workers: Option<usize>,
    /// Default function deadline.
    #[arg(long, env = "SLUICE_TIMEOUT_MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Linear memory a function may use.
    #[arg(long, env = "SLUICE_MEMORY_MB", default_value_t = 256)]
    pub memory_mb: usize,
    /// Largest request body (and component) accepted.
    #[arg(long, env = "SLUICE_MAX_BODY_MB", default_value_t = 16)]
    pub max_body_mb: usize,
    /// Most jobs waiting in the queue; beyond it callers get 503.
    #[arg(long, env = "SLUICE_QUEUE_DEPTH", default_value_t = 1024)]
    pub queue_depth: usize,
    /// How long job status and results are kept (e.g. `1h`, `30m`).
    #[arg(long, env = "SLUICE_JOB_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub job_ttl: Duration,
    /// Requests per second per tenant (token bucket rate).
    #[arg(long, env = "SLUICE_RATE", default_value_t = 100)]
    pub rate: u32,
    /// Burst per tenant above the rate.
    #[arg(long, env = "SLUICE_BURST", default_value_t = 200)]
    pub burst: u32,
    /// Calls a tenant may have queued or running at once.
    #[arg(long, env = "SLUICE_MAX_CONCURRENCY", default_value_t = 16)]
    pub max_concurrency: usize,
    /// Queue jobs in Redis (`redis://host:port`) instead of in memory, so
    /// accepted jobs survive a restart of this process.
    #[arg(long, env = "SLUICE_REDIS")]
    pub redis: Option<String>,
    /// How long shutdown waits for in-flight work.
    #[arg(long, env = "SLUICE_DRAIN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
}

impl ServeArgs {
    /// The node configuration these flags describe.
    pub fn config(&self) -> ServeConfig {
        let mut platform = PlatformConfig::new(self.data_dir.clone());
        platform.runtime.timeout = Duration::from_millis(self.timeout_ms);
        platform.runtime.memory_limit = self.memory_mb.saturating_mul(MIB);
        platform.max_body = self.max_body_mb.saturating_mul(MIB);
        platform.rate_per_second = self.rate;
        platform.rate_burst = self.burst;
        platform.max_concurrency = self.max_concurrency;
        let mut config = ServeConfig::new(platform);
        if let Some(workers) = self.workers {
            config.workers = workers;
        }
        config.queue = QueueConfig { capacity: self.queue_depth, result_ttl: self.job_ttl, ..QueueConfig::default() };
        config.admin_token = self.admin_token.clone();
        config.drain_timeout = self.drain_timeout;
        config.redis_url = self.redis.clone();
        config
    }
}

/// Runs `sluice serve` until SIGINT or SIGTERM; a second signal exits at once.
pub fn execute(args: ServeArgs) -> ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start tokio")
        .and_then(|tokio| tokio.block_on(serve(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sluice serve: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().context("listener address")?;
    let config = args.config();
    let data_dir = config.platform.data_dir.clone();
    server::run(listener, config, shutdown_signal(), |started| {
        if let Some(token) = started.generated_admin_token {
            println!("admin token (shown once, store it now): {token}");
        }
        println!("sluice listening on http://{addr} (data in {})", data_dir.display());
    })
    .await
}

/// Resolves on the first SIGINT or SIGTERM; a second one ends the process.
async fn shutdown_signal() {
    wait_for_signal().await;
    tracing::info!("signal received; draining (send it again to exit now)");
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("sluice serve: second signal, exiting without draining");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // Without signal handlers the process can only be killed; wait forever.
            std::future::pending::<()>().await;
        }
    }
}
