//! Tenants, for the admin: create one (its API key is shown once; only a
//! hash is stored), list and read them, rotate and revoke their keys, set
//! their limits, read their usage and delete them.

// utoipa's `path` macro names `params(...)` types by their full path.
#![allow(unused_qualifications)]

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sluice_core::TenantId;
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{Admin, JsonBody, PathParam, QueryParams};
use super::openapi::api_errors;
use super::usage::{UsagePeriod, UsageReport};
use super::{Api, format_time};
use crate::store::tenants::{MAX_GRACE, Tenant, TenantChange, TenantError, TenantLimits};

/// How long rotated-out keys keep working when the rotation does not say: a day.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Tenants per page by default, and at most.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;

/// A tenant to create.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateTenant {
    /// 1 to 64 characters of `a-z`, `0-9`, `-` and `_`; unique.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$", example = "acme")]
    pub name: String,
}

/// A created tenant and its API key, shown this once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantCreated {
    /// The tenant's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its API key (`sk_…`); only a hash is kept, so keep it safe.
    pub api_key: String,
}

/// One of a tenant's API keys, without the key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    /// Names the key for revocation (`k_…`).
    pub id: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When it stops working (RFC 3339); absent while it is current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// A tenant as the admin sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantView {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Its keys that still work, oldest first.
    pub keys: Vec<KeyView>,
    /// The limits set for it; unset ones are each node's own.
    pub limits: TenantLimits,
}

impl From<&Tenant> for TenantView {
    fn from(tenant: &Tenant) -> Self {
        let now = sluice_scheduler::now_ms();
        Self {
            id: tenant.id.to_string(),
            name: tenant.name.clone(),
            created_at: format_time(tenant.created_at_ms),
            keys: tenant
                .keys
                .iter()
                .filter(|key| key.is_valid_at(now))
                .map(|key| KeyView {
                    id: key.id.clone(),
                    created_at: format_time(key.created_at_ms),
                    expires_at: key.expires_at_ms.map(format_time),
                })
                .collect(),
            limits: tenant.limits,
        }
    }
}

/// Which tenants to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantListing {
    /// Where to go on: the `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Tenants per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

/// A page of tenants, in name order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantList {
    /// The tenants on this page.
    pub tenants: Vec<TenantView>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// A key rotation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the keys it replaces keep working, seconds (0 to 2 592 000;
    /// default 86 400). 0 ends them at once.
    #[schema(minimum = 0, maximum = 2_592_000)]
    #[serde(default, deserialize_with = "sluice_core::whole_number::optional")]
    pub grace_seconds: Option<u64>,
}

/// A new key, shown this once, and the tenant it belongs to.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyRotated {
    /// The new key (`sk_…`); only a hash is kept, so keep it safe.
    pub api_key: String,
    /// The new key's id.
    pub key_id: String,
    /// The tenant after the rotation: the replaced keys carry their expiry.
    pub tenant: TenantView,
}

/// What deleting a tenant removed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantDeletedView {
    /// The deleted tenant's id: its usage stays readable under it.
    pub id: String,
    /// Its name, free for a new tenant now.
    pub name: String,
    /// Jobs cancelled or forgotten with their results.
    pub jobs: u64,
    /// Functions deleted.
    pub functions: usize,
}

api_errors!(
    /// What creating a tenant can answer.
    CreateTenantErrors: InvalidRequest, Unauthorized, Conflict, StoreUnavailable, Internal
);

api_errors!(
    /// What reading tenants can answer.
    ReadTenantErrors: InvalidRequest, Unauthorized, NotFound, StoreUnavailable, Internal
);

api_errors!(
    /// What changing a tenant can answer.
    ChangeTenantErrors: InvalidRequest, Unauthorized, NotFound, Conflict, StoreUnavailable, Internal
);

api_errors!(
    /// What deleting a tenant can answer.
    DeleteTenantErrors: Unauthorized, NotFound, QueueUnavailable, StoreUnavailable, Internal
);

/// Creates a tenant.
#[utoipa::path(
    post,
    path = "/v1/tenants",
    tag = "tenants",
    request_body = CreateTenant,
    responses((status = 201, description = "Created; the key is shown once", body = TenantCreated), CreateTenantErrors),
    security(("admin" = []))
)]
pub async fn create_tenant(
    State(api): State<Arc<Api>>,
    _admin: Admin,
    JsonBody(body): JsonBody<CreateTenant>,
) -> Result<(StatusCode, Json<TenantCreated>), ApiError> {
    let (tenant, api_key) = api.platform.stores.tenants.create(&body.name).await?;
    Ok((StatusCode::CREATED, Json(TenantCreated { id: tenant.id.to_string(), name: tenant.name, api_key })))
}

/// Every tenant, in name order, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/tenants",
    tag = "tenants",
    params(TenantListing),
    responses((status = 200, body = TenantList), ReadTenantErrors),
    security(("admin" = []))
)]
pub async fn list_tenants(
    State(api): State<Arc<Api>>,
    _admin: Admin,
    QueryParams(listing): QueryParams<TenantListing>,
) -> Result<Json<TenantList>, ApiError> {
    let limit = listing.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_PAGE}, not {limit}")));
    }
    // One more than the page tells whether another page follows.
    let mut tenants = api.platform.stores.tenants.list(listing.cursor.as_deref(), limit + 1).await?;
    let next_cursor = (tenants.len() > limit).then(|| {
        tenants.truncate(limit);
        tenants.last().map(|t| t.name.clone()).unwrap_or_default()
    });
    Ok(Json(TenantList { tenants: tenants.iter().map(TenantView::from).collect(), next_cursor }))
}

/// One tenant: its keys (never the keys themselves) and its limits.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}",
    tag = "tenants",
    params(("tenant" = String, Path, description = "The tenant's name")),
    responses((status = 200, body = TenantView), ReadTenantErrors),
    security(("admin" = []))
)]
pub async fn get_tenant(
    State(api): State<Arc<Api>>,
    _admin: Admin,
    PathParam(name): PathParam<String>,
) -> Result<Json<TenantView>, ApiError> {
    let tenant = api.platform.stores.tenants.get(&name).await?.ok_or(TenantError::NotFound(name))?;
    Ok(Json(TenantView::from(&tenant)))
}

/// Deletes a tenant: its keys stop working on every node, its queued jobs
/// are cancelled, its results and functions are removed. Its usage stays,
/// readable by its id.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}",
    tag = "tenants",
    params(("tenant" = String, Path, description = "The tenant's name")),
    responses((status = 200, body = TenantDeletedView), DeleteTenantErrors),
    security(("admin" = []))
)]
pub async fn delete_tenant(
    State(api): State<Arc<Api>>,
    _admin: Admin,
    PathParam(name): PathParam<String>,
) -> Result<Json<TenantDeletedView>, ApiError> {
    let deleted = api.platform.delete_tenant(&name).await?.ok_or(TenantError::NotFound(name))?;
    api.forget_rates(&deleted.tenant.id);
    Ok(Json(TenantDeletedView {
        id: deleted.tenant.id.to_string(),
        name: deleted.tenant.name,
        jobs: deleted.jobs,
        functions: deleted.functions,
    }))
}

/// Gives a tenant a new key; the keys it had keep working for the grace
/// period, then stop.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/keys",
    tag = "tenants",
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body(content = RotateKey, description = "Optional; an empty body means the default grace period"),
    responses((status = 201, description = "Rotated; the new key is shown once", body = KeyRotated), ChangeTenantErrors),
    security(("admin" = []))
)]
pub async fn rotate_key(
    State(api): State<Arc<Api>>,
    _admin: Admin,
    PathParam(name): PathParam<String>,
    JsonBody(body): JsonBody<Option<RotateKey>>,
) -> Result<(StatusCode, Json<KeyRotated>), ApiError> {
    let grace = body.and_then(|body| body.grace_seconds).map_or(DEFAULT_GRACE, Duration::from_secs);
    if grace > MAX_GRACE {
        return Err(TenantError::GraceTooLong(grace).into());
    }
    let changed = api.platform.stores.tenants.change(&name, &TenantChange::RotateKey { grace }).await?;
    let api_key = changed.new_key.ok_or_else(|| ApiError::internal(&"a rotation made no key"))?;
    let key_id = changed.tenant.keys.last().map(|key| key.id.clone()).unwrap_or_default();
    Ok((StatusCode::CREATED, Json(KeyRotated { api_key, key_id, tenant: TenantView::from(&changed.tenant) })))
}

/// Revokes one of a tenant's keys at once, on every node.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}/keys/{key}",
    tag = "tenants",
    params(
        ("tenant" = String, Path, description = "The tenant's name"),
        ("key" = String, Path, description = "The key's id (`k_…`)")
    ),
    responses((status = 200, body = TenantView), ChangeTenantErrors),
    security(("admin" = []))
)]
pub async fn revoke_key(
    State(api): State<Arc<Api>>,
    _admin: Admin,
    PathParam((name, key)): PathParam<(String, String)>,
) -> Result<Json<TenantView>, ApiError> {
    let changed = api.platform.stores.tenants.change(&name, &TenantChange::RevokeKey(key)).await?;
    Ok(Json(TenantView::from(&changed.tenant)))
}

/// Replaces a tenant's limits; every node applies them to its next requests.
#[utoipa::path(
    put,
    path = "/v1/tenants/{tenant}/limits",
    tag = "tenants",
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body = TenantLimits,
    responses((status = 200, body = TenantView), ChangeTenantErrors),
    security(("admin" = []))
)]
pub async fn set_limits(
    State(api): State<Arc<Api>>,
    _admin: Admin,
    PathParam(name): PathParam<String>,
    JsonBody(limits): JsonBody<TenantLimits>,
) -> Result<Json<TenantView>, ApiError> {
    let changed = api.platform.stores.tenants.change(&name, &TenantChange::SetLimits(limits)).await?;
    Ok(Json(TenantView::from(&changed.tenant)))
}

/// A tenant's usage, by name, or by id for a deleted tenant.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/usage",
    tag = "tenants",
    params(("tenant" = String, Path, description = "The tenant's name, or its id (`t_…`) once deleted"), UsagePeriod),
    responses((status = 200, body = UsageReport), ReadTenantErrors),
    security(("admin" = []))
)]
pub async fn tenant_usage(
    State(api): State<Arc<Api>>,
    _admin: Admin,
    PathParam(tenant): PathParam<String>,
    QueryParams(period): QueryParams<UsagePeriod>,
) -> Result<Json<UsageReport>, ApiError> {
    let (id, name) = match api.platform.stores.tenants.get(&tenant).await? {
        Some(found) => (found.id, found.name),
        None if is_tenant_id(&tenant) => (TenantId(tenant.clone()), tenant),
        None => return Err(TenantError::NotFound(tenant).into()),
    };
    Ok(Json(super::usage::report(&api, &id, name, &period).await?))
}

/// True when `value` has the form of a tenant id (`t_` + 16 hex digits).
fn is_tenant_id(value: &str) -> bool {
    value.strip_prefix("t_").is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}
