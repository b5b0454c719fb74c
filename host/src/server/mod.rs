//! The HTTP front door (hyper on tokio) and the embedded node around it.
//!
//! [`run`] is the whole `sluice serve`: it opens the platform, starts the
//! worker slots and the periodic meter, serves the API on the listener it is
//! given, and on shutdown stops accepting, drains in-flight requests and
//! queued jobs under a timeout, aggregates the last usage and returns.
//!
//! Submodules: [`http`] (errors, bodies), [`limits`] (per-tenant rates),
//! [`routes`] (the API).

pub mod http;
pub mod limits;
pub mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use sluice_scheduler::QueueConfig;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::backend::{Backend, DEFAULT_PREFIX};
use crate::platform::{Platform, PlatformConfig};
use crate::worker;
use http::ApiError;
use routes::Api;

/// Settings of an embedded node beyond the platform's.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The platform (data dir, limits, rates).
    pub platform: PlatformConfig,
    /// Queue bounds and result TTL.
    pub queue: QueueConfig,
    /// Worker slots in this process.
    pub workers: usize,
    /// Open connections served at once; more get 503.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests and queued jobs.
    pub drain_timeout: Duration,
    /// How often usage is aggregated in the background.
    pub meter_interval: Duration,
    /// The admin token; `None` keeps the stored one or generates one.
    pub admin_token: Option<String>,
    /// Queue jobs and keep state in Redis at this URL (durable, shared by
    /// many front doors and workers) instead of in memory and the data dir.
    pub redis_url: Option<String>,
    /// Key prefix in Redis.
    pub redis_prefix: String,
}

impl ServeConfig {
    /// Defaults around `platform`: one worker per core.
    pub fn new(platform: PlatformConfig) -> Self {
        Self {
            platform,
            queue: QueueConfig::default(),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_connections: 1024,
            drain_timeout: Duration::from_secs(30),
            meter_interval: Duration::from_secs(60),
            admin_token: None,
            redis_url: None,
            redis_prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

/// What [`run`] reports once the node is up.
#[derive(Debug, Clone)]
pub struct Started {
    /// A freshly generated admin token (shown once), if one was generated.
    pub generated_admin_token: Option<String>,
}

/// Runs an embedded node on `listener` until `shutdown` resolves, then
/// drains and returns. `on_start` is told once everything is up.
pub async fn run(
    listener: TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
    on_start: impl FnOnce(Started),
) -> anyhow::Result<()> {
    let backend =
        Backend::connect(config.redis_url.as_deref(), &config.redis_prefix, config.queue, &config.platform.data_dir)
            .await?;
    let drain = backend.drain;
    let platform =
        Platform::open(config.platform.clone(), backend.queue, backend.stores).context("cannot open the platform")?;
    let generated = platform
        .stores
        .tenants
        .configure_admin(config.admin_token.as_deref())
        .await
        .context("cannot store the admin token")?;
    platform.warm().await;

    let (stop_workers, stop) = watch::channel(false);
    let node = crate::backend::node_name();
    let mut workers = worker::spawn_slots(Arc::clone(&platform), config.workers, &node, drain, stop.clone());
    let heartbeat = match config.workers {
        0 => None,
        _ => Some(worker::start_heartbeat(&platform, node).await),
    };
    let meter = tokio::spawn(meter_loop(Arc::clone(&platform), config.meter_interval, stop));
    let api = Arc::new(Api::new(Arc::clone(&platform), config.queue.result_ttl));
    on_start(Started { generated_admin_token: generated });
    tracing::info!(addr = %listener.local_addr().context("listener address")?, workers = config.workers, "serving");

    let connections = Arc::new(Semaphore::new(config.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: pause, do not spin.
                    tracing::warn!(cause = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let permit = Arc::clone(&connections).try_acquire_owned().ok();
        let api = Arc::clone(&api);
        let service = service_fn(move |request| {
            let api = Arc::clone(&api);
            let overloaded = permit.is_none();
            async move {
                if overloaded {
                    let error = ApiError::new(
                        hyper::StatusCode::SERVICE_UNAVAILABLE,
                        "overloaded",
                        "too many open connections; try again shortly",
                    )
                    .retry_after(1);
                    return Ok::<_, std::convert::Infallible>(error.into_response());
                }
                Ok(api.handle(request).await)
            }
        });
        let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, cause = %err, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tracing::info!("shutting down: draining requests and queued jobs");
    let deadline = tokio::time::Instant::now() + config.drain_timeout;
    if tokio::time::timeout_at(deadline, graceful.shutdown()).await.is_err() {
        tracing::warn!("in-flight requests did not finish within the drain timeout");
    }
    let _ = stop_workers.send(true);
    let drained = tokio::time::timeout_at(deadline, async { while workers.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("jobs were still running at the drain timeout");
        workers.abort_all();
    }
    meter.abort();
    if let Some(heartbeat) = heartbeat {
        heartbeat.abort();
    }
    platform.aggregate_usage().await.context("final usage aggregation")?;
    Ok(())
}

async fn meter_loop(platform: Arc<Platform>, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if let Err(err) = platform.aggregate_usage().await {
            tracing::error!(cause = %format!("{err:#}"), "usage aggregation failed");
        }
    }
}
