//! `POST /v1/tenants`: the admin creates a tenant and receives its API key
//! once (only a hash is stored).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Api;
use super::error::ApiError;
use super::extract::{Admin, JsonBody};
use super::openapi::api_errors;

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

api_errors!(
    /// What creating a tenant can answer.
    CreateTenantErrors: InvalidRequest, Unauthorized, Conflict, StoreUnavailable, Internal
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
