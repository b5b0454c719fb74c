//! A tenant's view of its share of the queue: how much of its work waits
//! and runs, how long the oldest job has waited, and the bounds in force;
//! the operator reads any tenant's at `/v1/tenants/{tenant}/queue`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sluice_scheduler::{QueueConfig, TenantLimits, now_ms};
use utoipa::ToSchema;

use super::Api;
use super::error::ApiError;
use super::extract::{Admin, AuthTenant, PathParam};
use super::openapi::api_errors;
use crate::store::tenants::{Tenant, TenantError};

/// The bounds a tenant's jobs are held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueQuota {
    /// Jobs that may wait at once; past it, 429 `queue_quota`.
    pub queued_jobs: u64,
    /// Bytes of request bodies that may wait at once; past it, 429 `queue_quota`.
    pub queued_bytes: u64,
    /// Jobs that may run at once; the rest wait their turn.
    pub running: u64,
}

impl QueueQuota {
    /// The bounds in force for a tenant with `limits` on a queue with `config`:
    /// the tenant's own where an operator set them, else the queue's.
    pub fn effective(config: &QueueConfig, limits: &TenantLimits) -> Self {
        Self {
            queued_jobs: limits.queued.map_or(config.tenant_queue_quota as u64, u64::from),
            queued_bytes: config.tenant_queue_bytes,
            running: limits.running.map_or(config.tenant_concurrency as u64, u64::from),
        }
    }
}

/// A tenant's share of the queue now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    /// Jobs waiting for a worker.
    pub queued: u64,
    /// Bytes of the waiting jobs' request bodies.
    pub queued_bytes: u64,
    /// Jobs a worker runs now.
    pub running: u64,
    /// How long the job waiting longest has waited, ms; null when none waits.
    pub oldest_queued_age_ms: Option<u64>,
    /// The bounds in force.
    pub quota: QueueQuota,
}

api_errors!(
    /// What the queue view can answer.
    QueueErrors: Unauthorized, QueueUnavailable, StoreUnavailable, Internal
);

/// The caller's queued and running jobs, the oldest one's wait, and its quota.
#[utoipa::path(
    get,
    path = "/v1/queue",
    tag = "jobs",
    responses((status = 200, body = QueueView), QueueErrors),
    security(("tenant" = []))
)]
pub async fn queue_view(
    State(api): State<Arc<Api>>,
    AuthTenant(tenant): AuthTenant,
) -> Result<Json<QueueView>, ApiError> {
    Ok(Json(view(&api, &tenant).await?))
}

api_errors!(
    /// What an operator's look at a tenant's queue can answer.
    TenantQueueErrors: Unauthorized, NotFound, QueueUnavailable, StoreUnavailable, Internal
);

/// A tenant's queued and running jobs, the oldest one's wait, and its
/// quota, as the tenant itself sees them at `/v1/queue`.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/queue",
    tag = "tenants",
    params(("tenant" = String, Path, description = "The tenant's name")),
    responses((status = 200, body = QueueView), TenantQueueErrors),
    security(("admin" = []))
)]
pub async fn tenant_queue(
    State(api): State<Arc<Api>>,
    _admin: Admin,
    PathParam(name): PathParam<String>,
) -> Result<Json<QueueView>, ApiError> {
    let tenant = api.platform.stores.tenants.get(&name).await?.ok_or(TenantError::NotFound(name))?;
    Ok(Json(view(&api, &tenant).await?))
}

async fn view(api: &Api, tenant: &Tenant) -> Result<QueueView, ApiError> {
    let queue = &api.platform.queue;
    let mine = queue.tenant_queue(&tenant.id).await?;
    let now = now_ms();
    Ok(QueueView {
        queued: mine.queued,
        queued_bytes: mine.queued_bytes,
        running: mine.running,
        oldest_queued_age_ms: mine.oldest_queued_at_ms.map(|at| now.saturating_sub(at)),
        quota: QueueQuota::effective(&queue.config(), &tenant.limits.for_jobs()),
    })
}
