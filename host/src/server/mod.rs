//! The HTTP front door (axum on hyper and tokio) and the embedded node
//! around it.
//!
//! [`run`] is the whole `sluice serve`: it opens the platform, starts the
//! worker slots and the periodic meter, serves the API on the listener it is
//! given, and on shutdown stops accepting, drains in-flight requests and
//! queued jobs under a timeout, aggregates the last usage and returns.
//!
//! Handlers are thin and split by resource: [`tenants`], [`functions`],
//! [`jobs`], [`queue`], [`usage`], [`ops`], and the [`console`] page; the
//! work they start lives in [`crate::platform`]. Around them: [`extract`] (who is calling, bodies
//! under a cap), [`error`] (the one error → response mapping), [`limits`]
//! (per-tenant rates), [`connections`] (the accept loop: timeouts, the
//! connection cap, lingering close), [`body_rate`] (the request body's
//! minimum rate), [`panics`] (a panicking handler answers 500) and
//! [`openapi`] (the document, generated from the handlers).

pub mod body_rate;
pub mod connections;
pub mod console;
pub mod error;
pub mod extract;
pub mod functions;
pub mod http_calls;
pub mod jobs;
pub mod limits;
pub mod openapi;
pub mod ops;
pub mod panics;
pub mod queue;
pub mod tenants;
pub mod usage;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::{CONNECTION, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sluice_core::{ErrorCode, TenantId};
use sluice_scheduler::QueueConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::backend::DEFAULT_PREFIX;
use crate::node::{BackendConfig, Node};
use crate::platform::{Platform, PlatformConfig};
use crate::store::tenants::Tenant;
use connections::{Admission, ConnectionConfig};
use error::ApiError;
use limits::TenantRates;

/// Settings of an embedded node beyond the platform's.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The platform (data dir, limits, rates).
    pub platform: PlatformConfig,
    /// Queue bounds and result TTL.
    pub queue: QueueConfig,
    /// Worker slots in this process.
    pub workers: usize,
    /// Connection timeouts, the connection cap and lingering close.
    pub connections: ConnectionConfig,
    /// How long shutdown waits for in-flight requests and queued jobs.
    pub drain_timeout: Duration,
    /// How often usage is aggregated in the background.
    pub meter_interval: Duration,
    /// The admin token; `None` keeps the stored one or generates one.
    pub admin_token: Option<String>,
    /// Where jobs and state live: this process and the data dir, or a
    /// shared Redis (durable, shared by many front doors and workers).
    pub backend: BackendConfig,
    /// A second address serving `/metrics` without a token, for a scraper
    /// on loopback or a private network; `None` serves metrics only to the
    /// admin token on the API address.
    pub metrics_listen: Option<SocketAddr>,
}

impl ServeConfig {
    /// Defaults around `platform`: two worker slots per core.
    pub fn new(platform: PlatformConfig) -> Self {
        Self {
            platform,
            queue: QueueConfig::default(),
            workers: crate::worker::default_slots(),
            connections: ConnectionConfig::default(),
            drain_timeout: Duration::from_secs(30),
            meter_interval: Duration::from_secs(60),
            admin_token: None,
            backend: BackendConfig { redis_url: None, redis_prefix: DEFAULT_PREFIX.to_owned() },
            metrics_listen: None,
        }
    }
}

/// What [`run`] reports once the node is up.
#[derive(Debug, Clone)]
pub struct Started {
    /// A freshly generated admin token (shown once), if one was generated.
    pub generated_admin_token: Option<String>,
    /// Where the token-less metrics listener is bound, if one was asked for.
    pub metrics_addr: Option<SocketAddr>,
}

/// Front-door state shared by every request.
pub struct Api {
    /// The platform the handlers drive.
    pub platform: Arc<Platform>,
    /// Per-tenant request rates on this front door.
    rates: TenantRates,
    /// Per-tenant usage-report rates on this front door.
    usage_rates: TenantRates,
    /// `/openapi.json`, rendered once.
    openapi: Bytes,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("platform", &self.platform).finish_non_exhaustive()
    }
}

impl Api {
    /// Takes a rate token for `tenant`, or says when to come back.
    fn rate_limit(&self, tenant: &Tenant) -> Result<(), ApiError> {
        let own = self.rates.rate_for(tenant.limits.rate_per_second, tenant.limits.burst);
        self.rates.check(tenant.id.as_str(), own).map_err(|wait| {
            ApiError::new(ErrorCode::RateLimited, "too many requests for this tenant; slow down")
                .retry_after(wait.as_secs_f64().ceil() as u64)
        })
    }

    /// Drops a deleted tenant's rate buckets.
    fn forget_rates(&self, tenant: &TenantId) {
        self.rates.forget(tenant.as_str());
        self.usage_rates.forget(tenant.as_str());
    }

    /// Takes a usage-report token for `tenant`, or says when to come back.
    fn usage_rate_limit(&self, tenant: &TenantId) -> Result<(), ApiError> {
        self.usage_rates.check(tenant.as_str(), None).map_err(|wait| {
            let (per_second, burst) = usage::USAGE_RATE;
            ApiError::new(
                ErrorCode::RateLimited,
                format!("usage reports are limited to {per_second} a second (bursts of {burst}) per tenant"),
            )
            .retry_after(wait.as_secs_f64().ceil() as u64)
        })
    }
}

/// Every route, with its OpenAPI annotations.
fn routes() -> OpenApiRouter<Arc<Api>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(tenants::create_tenant, tenants::list_tenants))
        .routes(routes!(tenants::get_tenant, tenants::delete_tenant))
        .routes(routes!(tenants::rotate_key))
        .routes(routes!(tenants::revoke_key))
        .routes(routes!(tenants::set_limits))
        .routes(routes!(tenants::tenant_usage))
        .routes(routes!(queue::tenant_queue))
        .routes(routes!(functions::list_functions))
        .routes(routes!(functions::deploy, functions::get_function, functions::delete_function))
        .routes(routes!(functions::rollback))
        .routes(routes!(functions::invoke))
        .routes(routes!(functions::submit))
        // Any path below `/http` (documented in `openapi::ApiDoc`).
        .route("/v1/functions/{name}/http", http_calls::route())
        .route("/v1/functions/{name}/http/", http_calls::route())
        .route("/v1/functions/{name}/http/{*path}", http_calls::route())
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::job_status, jobs::cancel_job))
        .routes(routes!(queue::queue_view))
        .routes(routes!(jobs::job_result))
        .routes(routes!(jobs::job_logs))
        .routes(routes!(usage::usage_report))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
        // The console is a page, not API: it stays out of the document.
        .route("/console", console::redirect_route())
        .route("/console/", console::index_route())
        .route("/console/{file}", console::file_route())
}

/// The OpenAPI document of every route (`/openapi.json`).
pub fn document() -> utoipa::openapi::OpenApi {
    openapi::finish(routes().split_for_parts().1)
}

/// The API over `platform`: the router with its fallbacks and middleware.
pub fn router(platform: Arc<Platform>) -> anyhow::Result<axum::Router> {
    Ok(api_and_router(platform)?.1)
}

fn api_and_router(platform: Arc<Platform>) -> anyhow::Result<(Arc<Api>, axum::Router)> {
    let (router, document) = routes().split_for_parts();
    let openapi =
        Bytes::from(openapi::finish(document).to_pretty_json().context("cannot render the OpenAPI document")?);
    let rates = TenantRates::new(platform.config.rate_per_second, platform.config.rate_burst);
    let usage_rates = TenantRates::new(usage::USAGE_RATE.0, usage::USAGE_RATE.1);
    let api = Arc::new(Api { platform, rates, usage_rates, openapi });
    let router = router
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn(panics::catch_panic))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&api), observe))
        .with_state(Arc::clone(&api));
    Ok((api, router))
}

/// The token-less metrics listener: `/metrics` and nothing else.
async fn serve_metrics(addr: SocketAddr, api: Arc<Api>) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen for metrics on {addr}"))?;
    let bound = listener.local_addr().context("metrics listener address")?;
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "metrics are served without a token on a non-loopback address; keep it private");
    }
    let router = axum::Router::new()
        .route("/metrics", axum::routing::get(ops::unauthenticated_metrics))
        .fallback(no_route)
        .with_state(api);
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router).await {
            tracing::error!(cause = %err, "the metrics listener failed");
        }
    });
    Ok((bound, task))
}

async fn no_route() -> ApiError {
    ApiError::not_found("no such route")
}

async fn wrong_method() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "this path does not take that method")
}

/// Around every request: the connection cap's refusal, a tracing span, and
/// metrics labelled by route template (never by raw path, so tenants'
/// names and ids do not become label values).
async fn observe(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let extensions = request.extensions();
    let route = extensions.get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let over_cap = extensions.get::<ConnectInfo<Admission>>().is_some_and(|ConnectInfo(a)| !a.admitted);
    let span = tracing::info_span!("request", route = %route, method = %request.method());
    let response = if over_cap {
        let mut response =
            ApiError::new(ErrorCode::Overloaded, "too many open connections; try again shortly").into_response();
        response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        response
    } else {
        next.run(request).instrument(span).await
    };
    let metrics = &api.platform.metrics;
    metrics.requests.with_label_values(&[&route, response.status().as_str()]).inc();
    metrics.request_seconds.with_label_values(&[&route]).observe(started.elapsed().as_secs_f64());
    response
}

/// RFC 3339 with seconds, UTC (`2026-11-21T00:00:00Z`). Instants past
/// the end of year 9999 (which RFC 3339 cannot write, and the formatter
/// would panic on) are written as its last second.
pub(crate) fn format_time(ms: u64) -> String {
    const LAST_WRITABLE_MS: u64 = 253_402_300_799_999;
    let ms = ms.min(LAST_WRITABLE_MS);
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Runs an embedded node on `listener` until `shutdown` resolves, then
/// drains and returns. `on_start` is told once everything is up.
pub async fn run(
    listener: TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
    on_start: impl FnOnce(Started),
) -> anyhow::Result<()> {
    let node = Node::start(
        config.platform.clone(),
        config.queue,
        &config.backend,
        config.workers,
        crate::backend::node_name(),
    )
    .await?;
    let platform = Arc::clone(&node.platform);
    let generated = platform
        .stores
        .tenants
        .configure_admin(config.admin_token.as_deref())
        .await
        .context("cannot store the admin token")?;
    let meter = tokio::spawn(meter_loop(Arc::clone(&platform), config.meter_interval, node.stopping()));
    let (api, app) = api_and_router(Arc::clone(&platform))?;
    let metrics = match config.metrics_listen {
        Some(addr) => Some(serve_metrics(addr, api).await?),
        None => None,
    };
    let addr = listener.local_addr().context("listener address")?;
    let max_connections = connections::connection_limit(config.connections.max_connections);
    on_start(Started { generated_admin_token: generated, metrics_addr: metrics.as_ref().map(|(addr, _)| *addr) });
    tracing::info!(%addr, workers = config.workers, max_connections, "serving");

    let (stop_serving, serving_stopped) = watch::channel(false);
    let server = connections::serve(listener, app, config.connections.clone(), max_connections, async move {
        let mut stopped = serving_stopped;
        let _ = stopped.wait_for(|stop| *stop).await;
    });
    let mut server = tokio::spawn(server);
    let served = tokio::select! {
        () = shutdown => None,
        served = &mut server => Some(served),
    };
    if let Some(served) = served {
        served.context("the HTTP server task failed")?;
    }

    tracing::info!("shutting down: draining requests and queued jobs");
    let deadline = tokio::time::Instant::now() + config.drain_timeout;
    let _ = stop_serving.send(true);
    if tokio::time::timeout_at(deadline, &mut server).await.is_err() {
        tracing::warn!("in-flight requests did not finish within the drain timeout");
        server.abort();
    }
    node.drain(deadline).await;
    meter.abort();
    if let Some((_, task)) = metrics {
        task.abort();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_past_year_9999_are_written_as_its_last_second() {
        assert_eq!(format_time(253_402_300_800_000), "9999-12-31T23:59:59Z");
        assert_eq!(format_time(u64::MAX), "9999-12-31T23:59:59Z");
    }
}
