//! Functions: deploy, list, inspect, roll back and delete a tenant's own;
//! call any function (the tenant's or a built-in) synchronously or as an
//! async job.

// utoipa's `path` macro names `params(...)` types by their full path.
#![allow(unused_qualifications)]

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_LENGTH, HeaderMap, HeaderValue, LOCATION};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use sluice_core::{ErrorCode, Version, World};
use sluice_scheduler::JobStatus;
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{AuthTenant, JsonBody, PathParam, read_body, read_call};
use super::jobs::{failure_response, output_response};
use super::openapi::api_errors;
use super::{Api, format_time};
use crate::builtins;
use crate::platform::{Resolved, SyncCall};
use crate::store::functions::{FunctionRecord, MIN_KEPT_VERSIONS};
use crate::store::tenants::Tenant;

/// A function's name in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct FunctionPath {
    /// 1 to 64 characters of `a-z`, `0-9`, `-` and `_`.
    #[param(example = "resize", pattern = "^[a-z0-9_-]{1,64}$")]
    pub name: String,
}

/// Bytes of any media type: a component, an image, a function's output.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(pub Vec<u8>);

/// A deployment's outcome.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Deployed {
    /// The function's name.
    pub name: String,
    /// The now active version, `sha256:<hex>` of the component.
    pub version: String,
    /// Component size in bytes.
    pub size: u64,
    /// The world the component implements, which says where it is called:
    /// `transform` at `/invoke` and `/jobs`, `http` at `/http/{path}`.
    pub world: World,
}

/// One deployed version.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    /// `sha256:<hex>` of the component.
    pub version: String,
    /// Component size in bytes.
    pub size: u64,
    /// When it was first deployed (RFC 3339).
    pub deployed_at: String,
    /// The world its component implements.
    pub world: World,
}

/// A function as its tenant sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FunctionView {
    /// Its name.
    pub name: String,
    /// True for a function every tenant can call and none can replace.
    pub builtin: bool,
    /// The version calls run.
    pub active_version: String,
    /// The world the active version implements: `transform` is called at
    /// `/invoke` and `/jobs`, `http` at `/http/{path}`.
    pub world: World,
    /// Every deployed version, oldest first (empty for built-ins).
    pub versions: Vec<VersionView>,
}

/// A built-in function in the list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BuiltinView {
    /// Its name.
    pub name: String,
    /// What it does.
    pub summary: String,
    /// The version compiled into this node.
    pub version: String,
}

/// The tenant's functions and the built-ins.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FunctionList {
    /// The tenant's own functions.
    pub functions: Vec<FunctionView>,
    /// Functions every tenant can call.
    pub builtins: Vec<BuiltinView>,
    /// What this node lets a tenant deploy, so a client can check before uploading.
    pub limits: DeployLimits,
}

/// What this node lets a tenant deploy.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct DeployLimits {
    /// Largest component a deploy may upload, in bytes (`--max-component-mb`).
    pub max_component_bytes: u64,
    /// Functions a tenant may have (`--max-functions`).
    pub max_functions: u64,
    /// Versions kept per function; older inactive ones are pruned (`--max-versions`).
    pub max_versions: u64,
}

/// A deleted function.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    /// Its name.
    pub name: String,
    /// Always true.
    pub deleted: bool,
}

/// Which version to make active.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct Rollback {
    /// A deployed version; without it, the one before the active one.
    #[serde(default)]
    pub version: Option<String>,
}

/// An accepted async job.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobAccepted {
    /// The job's id; `GET /v1/jobs/{id}` follows it.
    pub id: String,
    /// `queued`, or its status now when an `Idempotency-Key` named an existing job.
    pub status: JobStatus,
}

/// A call's parameters: any `key=value` pairs, passed to the function in order.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallParams {
    /// Function parameters, e.g. `width=400&format=webp` for `resize`.
    #[param(value_type = Option<Object>, style = Form, explode)]
    #[serde(flatten)]
    pub params: std::collections::HashMap<String, String>,
}

api_errors!(
    /// What listing functions can answer.
    ListErrors: Unauthorized, StoreUnavailable, Internal
);
api_errors!(
    /// What a deployment can answer.
    DeployErrors: InvalidRequest, NotWasm, CoreModule, CompileFailed, UnsupportedImports, WrongWorld,
    ComponentTooComplex, CompileTimeout, Unauthorized, FunctionQuota, Conflict, ComponentTooLarge, RateLimited,
    CompileBusy, StoreUnavailable, Internal, Overloaded
);
api_errors!(
    /// What inspecting a function can answer.
    GetErrors: InvalidRequest, Unauthorized, NotFound, StoreUnavailable, Internal
);
api_errors!(
    /// What deleting a function can answer.
    DeleteErrors: InvalidRequest, Unauthorized, NotFound, Conflict, StoreUnavailable, Internal
);
api_errors!(
    /// What a rollback can answer.
    RollbackErrors: InvalidRequest, Unauthorized, NotFound, StoreUnavailable, Internal
);
api_errors!(
    /// What a sync call can answer.
    InvokeErrors: InvalidRequest, Unauthorized, NotFound, WrongWorld, BodyTooLarge, InvalidInput, RateLimited,
    QueueQuota, FunctionTrapped, FunctionError, MemoryLimit, OutputTooLarge, WorkerLost,
    FunctionUnavailable, JobCancelled, Internal, Overloaded, QueueUnavailable, StoreUnavailable, Timeout
);
api_errors!(
    /// What submitting an async job can answer.
    SubmitErrors: InvalidRequest, IdempotencyKeyTooLong, Unauthorized, NotFound, WrongWorld, BodyTooLarge,
    IdempotencyConflict, RateLimited, QueueQuota, ResultStorageFull, Internal, Overloaded,
    QueueUnavailable, StoreUnavailable, ResultStorageExhausted
);

/// Lists the tenant's functions and the built-ins.
#[utoipa::path(
    get,
    path = "/v1/functions",
    tag = "functions",
    responses((status = 200, body = FunctionList), ListErrors),
    security(("tenant" = []))
)]
pub async fn list_functions(
    State(api): State<Arc<Api>>,
    AuthTenant(tenant): AuthTenant,
) -> Result<Json<FunctionList>, ApiError> {
    let records = api.platform.stores.functions.list(&tenant.id).await?;
    let builtins = builtins::TRANSFORMS
        .iter()
        .filter_map(|builtin| {
            let resolved = api.platform.builtin(builtin.name)?;
            Some(BuiltinView {
                name: builtin.name.to_owned(),
                summary: builtin.summary.to_owned(),
                version: resolved.version.to_string(),
            })
        })
        .collect();
    let config = &api.platform.config;
    let limits = DeployLimits {
        max_component_bytes: config.max_component as u64,
        max_functions: config.max_functions as u64,
        max_versions: config.max_versions.max(MIN_KEPT_VERSIONS) as u64,
    };
    Ok(Json(FunctionList { functions: records.iter().map(function_view).collect(), builtins, limits }))
}

/// Deploys a new version of a function (the body is the component).
#[utoipa::path(
    put,
    path = "/v1/functions/{name}",
    tag = "functions",
    params(FunctionPath),
    request_body(content = Binary, content_type = "application/octet-stream", description = "A WebAssembly component implementing `transform`"),
    responses(
        (status = 201, description = "A new version, now active", body = Deployed),
        (status = 200, description = "These bytes were deployed before; that version is active", body = Deployed),
        DeployErrors
    ),
    security(("tenant" = []))
)]
pub async fn deploy(
    State(api): State<Arc<Api>>,
    AuthTenant(tenant): AuthTenant,
    PathParam(FunctionPath { name }): PathParam<FunctionPath>,
    request: Request,
) -> Result<(StatusCode, Json<Deployed>), Response> {
    api.rate_limit(&tenant).map_err(IntoResponse::into_response)?;
    if api.platform.is_builtin(&name) {
        return Err(builtin_conflict(&name).into_response());
    }
    let limit = api.platform.config.max_component;
    let declared = request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(size) = declared.filter(|size| *size > limit as u64) {
        drain_if_small(request, size).await;
        return Err(component_too_large(Some(size), limit));
    }
    let bytes = match read_body(request, limit).await {
        Ok(bytes) => bytes,
        Err(err) if err.code == ErrorCode::BodyTooLarge => return Err(component_too_large(None, limit)),
        Err(err) => return Err(err.into_response()),
    };
    let (record, is_new) = api
        .platform
        .deploy(&tenant.id, &name, bytes.into())
        .await
        .map_err(|err| ApiError::from(err).into_response())?;
    let active = record.versions.iter().find(|v| v.version == record.active);
    let (size, world) = active.map_or((0, World::Transform), |v| (v.size, v.world));
    tracing::info!(tenant = %tenant.id, function = %name, version = %record.active, "deployed");
    let status = if is_new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(Deployed { name, version: record.active.to_string(), size, world })))
}

/// Shows a function and its versions.
#[utoipa::path(
    get,
    path = "/v1/functions/{name}",
    tag = "functions",
    params(FunctionPath),
    responses((status = 200, body = FunctionView), GetErrors),
    security(("tenant" = []))
)]
pub async fn get_function(
    State(api): State<Arc<Api>>,
    AuthTenant(tenant): AuthTenant,
    PathParam(FunctionPath { name }): PathParam<FunctionPath>,
) -> Result<Json<FunctionView>, ApiError> {
    if let Some(record) = api.platform.stores.functions.get(&tenant.id, &name).await? {
        return Ok(Json(function_view(&record)));
    }
    match api.platform.builtin(&name) {
        Some(resolved) => Ok(Json(FunctionView {
            name,
            builtin: true,
            active_version: resolved.version.to_string(),
            world: resolved.world,
            versions: Vec::new(),
        })),
        None => Err(no_function(&name)),
    }
}

/// Deletes a function and all its versions.
#[utoipa::path(
    delete,
    path = "/v1/functions/{name}",
    tag = "functions",
    params(FunctionPath),
    responses((status = 200, body = Deleted), DeleteErrors),
    security(("tenant" = []))
)]
pub async fn delete_function(
    State(api): State<Arc<Api>>,
    AuthTenant(tenant): AuthTenant,
    PathParam(FunctionPath { name }): PathParam<FunctionPath>,
) -> Result<Json<Deleted>, ApiError> {
    if api.platform.is_builtin(&name) {
        return Err(builtin_conflict(&name));
    }
    api.platform.delete(&tenant.id, &name).await?;
    Ok(Json(Deleted { name, deleted: true }))
}

/// Makes an earlier version active.
#[utoipa::path(
    post,
    path = "/v1/functions/{name}/rollback",
    tag = "functions",
    params(FunctionPath),
    request_body(content = Rollback, description = "Optional; an empty body means the previous version"),
    responses((status = 200, body = FunctionView), RollbackErrors),
    security(("tenant" = []))
)]
pub async fn rollback(
    State(api): State<Arc<Api>>,
    AuthTenant(tenant): AuthTenant,
    PathParam(FunctionPath { name }): PathParam<FunctionPath>,
    JsonBody(body): JsonBody<Option<Rollback>>,
) -> Result<Json<FunctionView>, ApiError> {
    let version = body.and_then(|body| body.version);
    let version = version.map(Version::from);
    let record = api.platform.rollback(&tenant.id, &name, version.as_ref()).await?;
    Ok(Json(function_view(&record)))
}

/// Calls a function and waits for its output.
#[utoipa::path(
    post,
    path = "/v1/functions/{name}/invoke",
    tag = "functions",
    params(FunctionPath, CallParams),
    request_body(content = Binary, content_type = "application/octet-stream", description = "The function's input, e.g. an image, of any media type; it may be empty"),
    responses(
        (status = 200, description = "The function's output, with its own media type", content_type = "*/*", body = inline(Binary),
         headers(
            ("Sluice-Job-Id" = String, description = "The job that ran the call"),
            ("Sluice-Usage-Wall-Us" = u64, description = "Wall-clock time of the call, µs"),
            ("Sluice-Usage-Cpu-Us" = u64, description = "CPU time of the call, µs"),
            ("Sluice-Usage-Bytes-In" = u64, description = "Input size"),
            ("Sluice-Usage-Bytes-Out" = u64, description = "Output size"),
            ("Sluice-Usage-Peak-Memory-Bytes" = u64, description = "Largest linear memory the call reached"),
         )),
        InvokeErrors
    ),
    security(("tenant" = []))
)]
pub async fn invoke(
    State(api): State<Arc<Api>>,
    AuthTenant(tenant): AuthTenant,
    PathParam(FunctionPath { name }): PathParam<FunctionPath>,
    request: Request,
) -> Result<Response, ApiError> {
    let function = api.precheck(&tenant, &name, World::Transform).await?;
    let call = read_call(request, api.platform.config.max_body).await?;
    match api.platform.call_sync(&tenant, function, call).await? {
        SyncCall::Succeeded { record, output } => Ok(output_response(&record, output)),
        SyncCall::Failed(record) => Ok(failure_response(&record)),
        SyncCall::Pending { record, waited } => Err(still_pending(&record, waited)),
    }
}

/// The answer to a sync caller whose job had no result in time: 504
/// `timeout`; the job goes on and can be looked up by its id.
pub(super) fn still_pending(record: &sluice_scheduler::JobRecord, waited: std::time::Duration) -> ApiError {
    ApiError::new(
        ErrorCode::Timeout,
        format!("no result within {}ms; the job is still {}", waited.as_millis(), record.status.as_str()),
    )
}

/// Longest `Idempotency-Key` accepted, in bytes: enough for any UUID or
/// request hash a client would use, and a bound on what a caller makes
/// the server hash and compare.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Accepts a call as an async job.
#[utoipa::path(
    post,
    path = "/v1/functions/{name}/jobs",
    tag = "functions",
    params(
        FunctionPath,
        CallParams,
        ("Idempotency-Key" = Option<String>, Header, description = "The same key with the same request names the same job; at most 255 bytes"),
    ),
    request_body(content = Binary, content_type = "application/octet-stream", description = "The function's input, e.g. an image, of any media type; it may be empty"),
    responses(
        (status = 202, description = "Accepted", body = JobAccepted,
         headers(("Location" = String, description = "The job's status URL"))),
        SubmitErrors
    ),
    security(("tenant" = []))
)]
pub async fn submit(
    State(api): State<Arc<Api>>,
    AuthTenant(tenant): AuthTenant,
    PathParam(FunctionPath { name }): PathParam<FunctionPath>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        Some(value) if value.len() > MAX_IDEMPOTENCY_KEY => {
            return Err(ApiError::new(
                ErrorCode::IdempotencyKeyTooLong,
                format!(
                    "the Idempotency-Key header is {} bytes; at most {MAX_IDEMPOTENCY_KEY} are accepted",
                    value.len()
                ),
            ));
        }
        Some(value) => Some(
            value.to_str().map_err(|_| ApiError::bad_request("the Idempotency-Key header must be visible ASCII"))?,
        ),
        None => None,
    };
    let function = api.precheck(&tenant, &name, World::Transform).await?;
    let call = read_call(request, api.platform.config.max_body).await?;
    let accepted = api.platform.submit(&tenant, function, call, key).await?;
    let mut response =
        (StatusCode::ACCEPTED, Json(JobAccepted { id: accepted.id.to_string(), status: accepted.status }))
            .into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/jobs/{}", accepted.id)) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

impl Api {
    /// Resolves the function, checks it is of the `world` the route calls
    /// and takes a rate token: the checks that come before a body is read.
    pub(super) async fn precheck(&self, tenant: &Tenant, name: &str, world: World) -> Result<Resolved, ApiError> {
        let resolved = self.platform.resolve(&tenant.id, name).await?.ok_or_else(|| no_function(name))?;
        if resolved.world != world {
            let (kind, path) = match resolved.world {
                World::Transform => ("a transform", resolved.world.call_path(name)),
                World::Http => ("a wasi:http component", resolved.world.call_path(name)),
            };
            return Err(ApiError::new(
                ErrorCode::WrongWorld,
                format!("function `{name}` is {kind}: call it at {path}"),
            ));
        }
        self.rate_limit(tenant)?;
        Ok(resolved)
    }
}

fn function_view(record: &FunctionRecord) -> FunctionView {
    FunctionView {
        name: record.name.clone(),
        builtin: false,
        active_version: record.active.to_string(),
        world: record.versions.iter().find(|v| v.version == record.active).map_or(World::Transform, |v| v.world),
        versions: record
            .versions
            .iter()
            .map(|v| VersionView {
                version: v.version.to_string(),
                size: v.size,
                deployed_at: format_time(v.deployed_at_ms),
                world: v.world,
            })
            .collect(),
    }
}

/// The response header of a `component_too_large` refusal naming the
/// limit in bytes, so a client can say it without parsing the message.
pub const MAX_COMPONENT_HEADER: &str = "sluice-max-component-bytes";

/// `size` bytes (or so) as MiB, with a decimal when it is not whole.
pub fn mib(size: u64) -> String {
    let mib = 1024 * 1024;
    if size.is_multiple_of(mib) { (size / mib).to_string() } else { format!("{:.1}", size as f64 / mib as f64) }
}

/// A refused component a little over the limit is read and discarded
/// (bounded in bytes and time) before the answer, so a client that writes
/// its whole body before reading (most do) gets the 413 rather than a
/// reset connection; a far larger one is answered at once.
async fn drain_if_small(request: Request, declared: u64) {
    const DRAIN_BYTES: u64 = 16 * 1024 * 1024;
    const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);
    if declared > DRAIN_BYTES {
        return;
    }
    let mut body = request.into_body();
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut drained = 0u64;
        while drained <= DRAIN_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => drained += frame.data_ref().map_or(0, |data| data.len() as u64),
                _ => break,
            }
        }
    })
    .await;
}

/// 413 `component_too_large` with the limit in the message and in [`MAX_COMPONENT_HEADER`].
fn component_too_large(size: Option<u64>, limit: usize) -> Response {
    let message = match size {
        Some(size) => format!(
            "the component is {} MiB; this server accepts at most {} MiB (--max-component-mb)",
            mib(size),
            mib(limit as u64)
        ),
        None => format!(
            "the component is over {} MiB, the most this server accepts (--max-component-mb)",
            mib(limit as u64)
        ),
    };
    let mut response = ApiError::new(ErrorCode::ComponentTooLarge, message).into_response();
    response.headers_mut().insert(MAX_COMPONENT_HEADER, HeaderValue::from(limit as u64));
    response
}

fn no_function(name: &str) -> ApiError {
    ApiError::not_found(format!("no function named {name:?}"))
}

fn builtin_conflict(name: &str) -> ApiError {
    ApiError::new(ErrorCode::Conflict, format!("`{name}` is a built-in function and cannot be replaced or deleted"))
}
