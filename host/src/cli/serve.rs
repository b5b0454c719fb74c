//! `sluice serve`: the HTTP front door, with worker slots in the same
//! process. Alone it is the whole platform on one machine (in-memory
//! queue, state in a data directory); with `--redis` it is one of many
//! front doors sharing a Redis with `sluice worker` nodes.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sluice_scheduler::QueueConfig;

use crate::backend::DEFAULT_PREFIX;
use crate::node::BackendConfig;
use crate::platform::PlatformConfig;
use crate::runtime::{MIB, RuntimeConfig};
use crate::server::body_rate::BodyRate;
use crate::server::connections::ConnectionConfig;
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
    /// Worker slots in this process [default: two per core]; 0 makes a
    /// pure front door (with `--redis`, `sluice worker` nodes run the jobs).
    #[arg(long, env = "SLUICE_WORKERS")]
    pub workers: Option<usize>,
    /// Sandbox limits.
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// Job delivery settings.
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    /// Largest call body accepted.
    #[arg(long, env = "SLUICE_MAX_BODY_MB", default_value_t = platform_defaults().max_body / MIB)]
    pub max_body_mb: usize,
    /// Deploy limits.
    #[command(flatten)]
    pub deploys: DeployLimitArgs,
    /// How long hourly usage totals are kept (e.g. `400days`); older hours are dropped.
    #[arg(long, env = "SLUICE_USAGE_RETENTION", default_value_t = platform_defaults().usage_retention.into())]
    pub usage_retention: humantime::Duration,
    /// Most jobs waiting in the queue, all tenants together; beyond it
    /// callers get 503 `overloaded`.
    #[arg(long, env = "SLUICE_QUEUE_DEPTH", default_value_t = QueueConfig::default().capacity)]
    pub queue_depth: usize,
    /// Most MiB of request bodies waiting in the queue, all tenants together.
    #[arg(long, env = "SLUICE_QUEUE_MB", default_value_t = QueueConfig::default().queue_bytes / MIB as u64)]
    pub queue_mb: u64,
    /// Jobs one tenant may have waiting; beyond it the tenant gets 429 `queue_quota`.
    #[arg(long, env = "SLUICE_TENANT_QUEUE_QUOTA", default_value_t = QueueConfig::default().tenant_queue_quota)]
    pub tenant_queue_quota: usize,
    /// MiB of request bodies one tenant may have waiting; beyond it 429 `queue_quota`.
    #[arg(long, env = "SLUICE_TENANT_QUEUE_MB", default_value_t = QueueConfig::default().tenant_queue_bytes / MIB as u64)]
    pub tenant_queue_mb: u64,
    /// Requests per second per tenant (token bucket rate).
    #[arg(long, env = "SLUICE_RATE", default_value_t = platform_defaults().rate_per_second)]
    pub rate: u32,
    /// Burst per tenant above the rate.
    #[arg(long, env = "SLUICE_BURST", default_value_t = platform_defaults().rate_burst)]
    pub burst: u32,
    /// Where jobs and state live.
    #[command(flatten)]
    pub backend: BackendArgs,
    /// How long shutdown waits for in-flight work.
    #[arg(long, env = "SLUICE_DRAIN_TIMEOUT", default_value_t = serve_defaults().drain_timeout.into())]
    pub drain_timeout: humantime::Duration,
    /// How often the calls recorded since are aggregated into the usage
    /// totals (and the usage log compacted): shorter keeps `/v1/usage`
    /// fresher, longer makes fewer, larger batches; at least 1 s.
    #[arg(long, env = "SLUICE_METER_INTERVAL", default_value_t = serve_defaults().meter_interval.into())]
    pub meter_interval: humantime::Duration,
    /// Also serve `/metrics` without a token on this address (e.g.
    /// `127.0.0.1:9464`, for a local scraper). Without it, `/metrics` on
    /// the API address needs the admin token.
    #[arg(long, env = "SLUICE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Connection limits and timeouts.
    #[command(flatten)]
    pub connections: ConnectionArgs,
}

/// Connection limits and timeouts of the front door.
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// Connections admitted at once [default: from the file-descriptor
    /// limit, raised to its hard maximum, less a reserve]. At the cap the
    /// longest-idle connection is closed to admit a new one; only when every
    /// connection has a request in progress do newcomers get 503.
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
    /// The whole request head must arrive within this; a silent or slow
    /// client's connection is closed after it.
    #[arg(long, env = "SLUICE_HEADER_TIMEOUT", default_value_t = connection_defaults().header_timeout.into())]
    pub header_timeout: humantime::Duration,
    /// A kept-alive connection with no request is closed after this.
    #[arg(long, env = "SLUICE_IDLE_TIMEOUT", default_value_t = connection_defaults().idle_timeout.into())]
    pub idle_timeout: humantime::Duration,
    /// Time a request body has before --body-min-rate-kb is enforced.
    #[arg(long, env = "SLUICE_BODY_GRACE", default_value_t = connection_defaults().body_rate.grace.into())]
    pub body_grace: humantime::Duration,
    /// After the grace, a request body must arrive at this average rate
    /// (KiB/s) or the request is answered 408 `request_timeout`; a response
    /// must be read at it too or its connection is closed.
    #[arg(long, env = "SLUICE_BODY_MIN_RATE_KB", default_value_t = connection_defaults().body_rate.min_bytes_per_second / 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_min_rate_kb: u64,
    /// After an early answer (413, 401…) to a client still sending, how
    /// long the server keeps reading and discarding before it closes.
    #[arg(long, env = "SLUICE_LINGER_TIMEOUT", default_value_t = connection_defaults().linger_timeout.into())]
    pub linger_timeout: humantime::Duration,
    /// Most bytes read and discarded while lingering (MiB).
    #[arg(long, env = "SLUICE_LINGER_MAX_MB", default_value_t = connection_defaults().linger_bytes / MIB as u64)]
    pub linger_max_mb: u64,
    /// Bytes read and discarded a second by every lingering connection
    /// together (MiB/s); past it, clients still sending refused bodies are
    /// slowed down by TCP's flow control.
    #[arg(long, env = "SLUICE_LINGER_RATE_MB", default_value_t = connection_defaults().linger_rate / MIB as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub linger_rate_mb: u64,
}

impl ConnectionArgs {
    /// The connection settings these flags describe.
    pub fn config(&self) -> ConnectionConfig {
        ConnectionConfig {
            max_connections: self.max_connections.map(|max| usize::try_from(max).unwrap_or(usize::MAX)),
            header_timeout: *self.header_timeout,
            idle_timeout: *self.idle_timeout,
            body_rate: BodyRate {
                grace: *self.body_grace,
                min_bytes_per_second: self.body_min_rate_kb.saturating_mul(1024),
            },
            linger_timeout: *self.linger_timeout,
            linger_bytes: self.linger_max_mb.saturating_mul(MIB as u64),
            linger_rate: self.linger_rate_mb.saturating_mul(MIB as u64),
        }
    }
}

/// The connection defaults, which the flags show and start from.
fn connection_defaults() -> ConnectionConfig {
    ConnectionConfig::default()
}

/// Where jobs and state live; the same option for `serve` and `worker`.
#[derive(Args)]
pub struct BackendArgs {
    /// Queue jobs and keep state in Redis (`redis://host:port`, or
    /// `rediss://` for TLS verified against the system's roots or
    /// `SSL_CERT_FILE`) instead of in memory and the data directory:
    /// accepted jobs survive a restart, and several front doors and
    /// `sluice worker` nodes share one platform. A worker node needs it.
    #[arg(long, env = "SLUICE_REDIS", hide_env_values = true)]
    pub redis: Option<String>,
    /// Prefix of every Redis key (several deployments can share one Redis;
    /// front doors and workers of one deployment must agree).
    #[arg(long, env = "SLUICE_REDIS_PREFIX", default_value = DEFAULT_PREFIX)]
    pub redis_prefix: String,
}

impl std::fmt::Debug for BackendArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.config(), f)
    }
}

impl BackendArgs {
    /// The backend these flags describe.
    pub fn config(&self) -> BackendConfig {
        BackendConfig { redis_url: self.redis.clone(), redis_prefix: self.redis_prefix.clone() }
    }
}

/// The platform's defaults, which the flags show and start from.
fn platform_defaults() -> PlatformConfig {
    PlatformConfig::new(PathBuf::new())
}

/// The node's defaults, which the flags show and start from.
pub(super) fn serve_defaults() -> ServeConfig {
    ServeConfig::new(platform_defaults())
}

impl ServeArgs {
    /// The node configuration these flags describe.
    pub fn config(&self) -> ServeConfig {
        let mut platform = PlatformConfig::new(self.data_dir.clone());
        self.sandbox.apply(&mut platform);
        platform.max_body = self.max_body_mb.saturating_mul(MIB);
        self.deploys.apply(&mut platform);
        platform.usage_retention = *self.usage_retention;
        platform.rate_per_second = self.rate;
        platform.rate_burst = self.burst;
        let mut config = ServeConfig::new(platform);
        if let Some(workers) = self.workers {
            config.workers = workers;
        }
        config.queue = QueueConfig {
            capacity: self.queue_depth,
            queue_bytes: self.queue_mb.saturating_mul(MIB as u64),
            tenant_queue_quota: self.tenant_queue_quota,
            tenant_queue_bytes: self.tenant_queue_mb.saturating_mul(MIB as u64),
            ..self.delivery.queue_config()
        };
        config.admin_token = self.admin_token.clone();
        config.drain_timeout = *self.drain_timeout;
        config.meter_interval = (*self.meter_interval).max(Duration::from_secs(1));
        config.connections = self.connections.config();
        config.backend = self.backend.config();
        config.metrics_listen = self.metrics_listen;
        config
    }
}

/// What deploys may cost a node: component size, compiles at once, and
/// how many functions and versions a tenant keeps.
#[derive(Debug, Args)]
pub struct DeployLimitArgs {
    /// Largest component a deploy may upload (apart from --max-body-mb).
    #[arg(long, env = "SLUICE_MAX_COMPONENT_MB", default_value_t = platform_defaults().max_component / MIB)]
    pub max_component_mb: usize,
    /// Compiles at once on this node [default: one per core].
    #[arg(long, env = "SLUICE_COMPILE_CONCURRENCY")]
    pub compile_concurrency: Option<usize>,
    /// Deploys of one tenant compiling at once; more get 429 `compile_busy`.
    #[arg(long, env = "SLUICE_TENANT_COMPILES", default_value_t = platform_defaults().tenant_compiles)]
    pub tenant_compiles: usize,
    /// Functions a tenant may have; one more gets 403 `function_quota`.
    #[arg(long, env = "SLUICE_MAX_FUNCTIONS", default_value_t = platform_defaults().max_functions)]
    pub max_functions: usize,
    /// Versions kept per function (at least 2); older inactive ones are pruned.
    #[arg(long, env = "SLUICE_MAX_VERSIONS", default_value_t = platform_defaults().max_versions)]
    pub max_versions: usize,
}

impl DeployLimitArgs {
    /// Writes these limits into `platform`.
    pub fn apply(&self, platform: &mut PlatformConfig) {
        platform.max_component = self.max_component_mb.saturating_mul(MIB);
        if let Some(compiles) = self.compile_concurrency {
            platform.compile_concurrency = compiles;
        }
        platform.tenant_compiles = self.tenant_compiles;
        platform.max_functions = self.max_functions;
        platform.max_versions = self.max_versions;
    }
}

/// Sandbox limits, shared by `serve` and `worker`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Default function deadline.
    #[arg(long, env = "SLUICE_TIMEOUT_MS", default_value_t = runtime_defaults().timeout_ms())]
    pub timeout_ms: u64,
    /// Linear memory a function may use.
    #[arg(long, env = "SLUICE_MEMORY_MB", default_value_t = runtime_defaults().memory_limit / MIB)]
    pub memory_mb: usize,
    /// Compiled functions kept in memory besides the built-ins; the least
    /// recently used beyond it are dropped and reload from the artifact cache.
    #[arg(long, env = "SLUICE_MAX_LOADED_FUNCTIONS", default_value_t = platform_defaults().max_loaded_functions, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_loaded_functions: usize,
}

impl SandboxArgs {
    /// Writes these limits into `platform`.
    pub fn apply(&self, platform: &mut PlatformConfig) {
        platform.runtime.timeout = Duration::from_millis(self.timeout_ms);
        platform.runtime.memory_limit = self.memory_mb.saturating_mul(MIB);
        platform.max_loaded_functions = self.max_loaded_functions;
    }
}

/// How jobs are delivered and kept; front doors and workers sharing a
/// Redis should agree on these.
#[derive(Debug, Args)]
pub struct DeliveryArgs {
    /// How long job status and results are kept (e.g. `1h`, `30m`).
    #[arg(long, env = "SLUICE_JOB_TTL", default_value_t = QueueConfig::default().result_ttl.into())]
    pub job_ttl: humantime::Duration,
    /// How long a worker may go silent on a job before another worker takes
    /// it over. Running jobs renew their lease three times per timeout, so this only
    /// bounds how late a crashed worker's job is retried.
    #[arg(long, env = "SLUICE_VISIBILITY_TIMEOUT_MS", default_value_t = default_visibility_timeout_ms(), value_parser = clap::value_parser!(u64).range(100..))]
    pub visibility_timeout_ms: u64,
    /// Deliveries before a job that keeps trapping (or whose workers keep
    /// dying) is dead-lettered and ends `failed`.
    #[arg(long, env = "SLUICE_MAX_DELIVERIES", default_value_t = QueueConfig::default().max_deliveries, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_deliveries: u32,
    /// Stored async results one tenant may have, in MiB; past it the
    /// tenant's new async jobs get 429 `result_storage_full` until results
    /// expire. Sync results are not stored once delivered.
    #[arg(long, env = "SLUICE_TENANT_RESULT_MB", default_value_t = QueueConfig::default().tenant_result_bytes / MIB as u64)]
    pub tenant_result_mb: u64,
    /// Stored results of all tenants, in MiB, in this node's memory (or in
    /// Redis); past it new async jobs get 503 `result_storage_exhausted`.
    #[arg(long, env = "SLUICE_RESULT_STORAGE_MB", default_value_t = QueueConfig::default().result_bytes / MIB as u64)]
    pub result_storage_mb: u64,
    /// Dead-lettered jobs kept for inspection; older ones are dropped (in
    /// Redis the stream is trimmed approximately).
    #[arg(long, env = "SLUICE_MAX_DEAD_LETTERS", default_value_t = QueueConfig::default().max_dead_letters)]
    pub max_dead_letters: usize,
    /// Ended sync calls whose job records each tenant keeps (for `GET
    /// /v1/jobs` and the job's record), newest first; older ones are
    /// dropped before the job TTL, so records of sync calls do not grow
    /// with the request rate.
    #[arg(long, env = "SLUICE_SYNC_JOBS_KEPT", default_value_t = QueueConfig::default().sync_records_per_tenant, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub sync_jobs_kept: usize,
    /// Jobs one tenant may have running at once, over every worker; its
    /// other jobs wait their turn while other tenants' run [default: one per
    /// core].
    #[arg(long, env = "SLUICE_TENANT_CONCURRENCY", value_parser = clap::value_parser!(u64).range(1..))]
    pub tenant_concurrency: Option<u64>,
}

impl DeliveryArgs {
    /// The queue settings these flags describe (other bounds at their defaults).
    pub fn queue_config(&self) -> QueueConfig {
        QueueConfig {
            result_ttl: *self.job_ttl,
            visibility_timeout: Duration::from_millis(self.visibility_timeout_ms),
            max_deliveries: self.max_deliveries,
            tenant_result_bytes: self.tenant_result_mb.saturating_mul(MIB as u64),
            result_bytes: self.result_storage_mb.saturating_mul(MIB as u64),
            max_dead_letters: self.max_dead_letters,
            sync_records_per_tenant: self.sync_jobs_kept,
            tenant_concurrency: self
                .tenant_concurrency
                .map_or(QueueConfig::default().tenant_concurrency, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            ..QueueConfig::default()
        }
    }
}

/// The sandbox's defaults, which the flags show and start from.
pub(super) fn runtime_defaults() -> RuntimeConfig {
    RuntimeConfig::default()
}

/// The flag's default in its unit: the queue's default visibility timeout.
fn default_visibility_timeout_ms() -> u64 {
    u64::try_from(QueueConfig::default().visibility_timeout.as_millis()).unwrap_or(u64::MAX)
}

/// Runs `sluice serve` until SIGINT or SIGTERM; a second signal exits at once.
pub fn execute(args: ServeArgs) -> ExitCode {
    block_on("serve", serve(args))
}

/// Runs `future` on a multi-threaded tokio runtime; reports its error as `sluice {command}: …`.
pub fn block_on(command: &str, future: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start tokio")
        .and_then(|tokio| tokio.block_on(future));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sluice {command}: {err:#}");
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
        if let Some(metrics) = started.metrics_addr {
            println!("sluice metrics on http://{metrics}/metrics");
        }
    })
    .await
}

/// Resolves on the first SIGINT or SIGTERM; a second one ends the process.
pub async fn shutdown_signal() {
    wait_for_signal().await;
    tracing::info!("signal received; draining (send it again to exit now)");
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("sluice: second signal, exiting without draining");
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
