//! Endpoints for operators and tools: liveness, readiness and the API
//! document (public), and Prometheus metrics (admin only here; also served
//! without a token on the separate `--metrics-listen` address, which is
//! meant to stay on loopback or a private network).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sluice_scheduler::QueueError;
use utoipa::ToSchema;

use super::Api;
use super::error::ApiError;
use super::extract::Admin;
use super::openapi::api_errors;

/// How long readiness and metrics wait for the queue.
const QUEUE_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The process is up.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// The node can take calls.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Ready {
    /// Always `ready`.
    pub status: String,
    /// Worker nodes heard from recently.
    pub worker_nodes: usize,
}

api_errors!(
    /// What readiness can answer.
    ReadyErrors: QueueUnavailable
);

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".to_owned() })
}

/// Readiness: the queue answers; also how many worker nodes are alive.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, body = Ready), ReadyErrors))]
pub async fn readyz(State(api): State<Arc<Api>>) -> Result<Json<Ready>, ApiError> {
    match tokio::time::timeout(QUEUE_CHECK_TIMEOUT, api.platform.queue.workers()).await {
        Ok(Ok(worker_nodes)) => Ok(Json(Ready { status: "ready".to_owned(), worker_nodes })),
        Ok(Err(err)) => Err(err.into()),
        Err(_) => Err(QueueError::Unavailable(format!("no answer within {QUEUE_CHECK_TIMEOUT:?}")).into()),
    }
}

api_errors!(
    /// What the admin-only metrics can answer.
    MetricsErrors: Unauthorized, StoreUnavailable
);

/// Prometheus metrics in the text exposition format; admin only.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        MetricsErrors
    ),
    security(("admin" = []))
)]
pub async fn metrics(State(api): State<Arc<Api>>, _admin: Admin) -> Response {
    exposition(&api).await
}

/// The metrics as the separate metrics listener serves them: no token, as
/// its address is the operator's to keep private.
pub async fn unauthenticated_metrics(State(api): State<Arc<Api>>) -> Response {
    exposition(&api).await
}

/// Busy tenants a scrape looks at: those past the named ones are summed,
/// and past this many they are not counted (a bound on the scrape's work).
const BUSY_TENANTS_SCANNED: usize = 1000;

async fn exposition(api: &Api) -> Response {
    if let Ok(Ok(depth)) = tokio::time::timeout(QUEUE_CHECK_TIMEOUT, api.platform.queue.depth()).await {
        api.platform.metrics.queue_depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
    let busy = api.platform.queue.busy_tenants(BUSY_TENANTS_SCANNED);
    if let Ok(Ok(busy)) = tokio::time::timeout(QUEUE_CHECK_TIMEOUT, busy).await {
        api.platform.metrics.set_tenant_queues(&busy);
    }
    let loaded = api.platform.loaded_versions().len();
    api.platform.metrics.loaded_functions.set(i64::try_from(loaded).unwrap_or(i64::MAX));
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], api.platform.metrics.render()).into_response()
}

/// This API's OpenAPI document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub async fn openapi(State(api): State<Arc<Api>>) -> Response {
    ([(CONTENT_TYPE, "application/json")], api.openapi.clone()).into_response()
}
