//! The v1 API: the route table, dispatch, and one handler per route.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_core::{CallRequest, TenantId, Version};
use sluice_scheduler::{Job, JobId, JobRecord, JobStatus, QueueError, now_ms};

use super::http::{ApiError, Resp, bearer, json_response, parse_json, query_pairs, read_body};
use super::limits::TenantRates;
use crate::builtins;
use crate::platform::{DeployError, Platform, Resolved};
use crate::store::StoreError;
use crate::store::functions::{FunctionRecord, RegistryError};
use crate::store::idempotency::Claim;
use crate::store::tenants::{Tenant, TenantError};
use crate::store::usage::BUCKET_MS;

/// Every route: method and path template. `/openapi.json` documents exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/tenants"),
    ("GET", "/v1/functions"),
    ("PUT", "/v1/functions/{name}"),
    ("GET", "/v1/functions/{name}"),
    ("DELETE", "/v1/functions/{name}"),
    ("POST", "/v1/functions/{name}/rollback"),
    ("POST", "/v1/functions/{name}/invoke"),
    ("POST", "/v1/functions/{name}/jobs"),
    ("GET", "/v1/jobs/{id}"),
    ("GET", "/v1/jobs/{id}/result"),
    ("GET", "/v1/usage"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

/// The OpenAPI document of [`ROUTES`], kept in the repository.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Small JSON bodies (tenant creation, rollback) never need more.
const MAX_JSON_BODY: usize = 64 * 1024;

/// How long a sync call may wait beyond the function's own deadline (queueing, I/O).
const SYNC_GRACE: Duration = Duration::from_secs(2);

/// Front-door state shared by every connection.
pub struct Api {
    platform: Arc<Platform>,
    rates: TenantRates,
    job_ttl: Duration,
}

impl Api {
    /// The API over `platform`; idempotency keys are kept for `job_ttl`.
    pub fn new(platform: Arc<Platform>, job_ttl: Duration) -> Self {
        let rates = TenantRates::new(platform.config.rate_per_second, platform.config.rate_burst);
        Self { platform, rates, job_ttl }
    }

    /// Answers one request; records its metrics.
    pub async fn handle(&self, request: Request<Incoming>) -> Resp {
        let started = Instant::now();
        let (route, response) = match match_route(request.method(), request.uri().path()) {
            Match::Found(route, params) => (route, self.dispatch(route, params, request).await),
            Match::WrongMethod(route) => (
                route,
                Err(ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "this path does not take that method",
                )),
            ),
            Match::None => ("unmatched", Err(ApiError::not_found("no such route"))),
        };
        let response = response.unwrap_or_else(ApiError::into_response);
        let metrics = &self.platform.metrics;
        metrics.requests.with_label_values(&[route, response.status().as_str()]).inc();
        metrics.request_seconds.with_label_values(&[route]).observe(started.elapsed().as_secs_f64());
        response
    }

    #[tracing::instrument(skip_all, fields(route = route, method = %request.method()))]
    async fn dispatch(
        &self,
        route: &'static str,
        params: Vec<String>,
        request: Request<Incoming>,
    ) -> Result<Resp, ApiError> {
        let param = |i: usize| params.get(i).cloned().unwrap_or_default();
        match (request.method().as_str(), route) {
            ("GET", "/healthz") => Ok(json_response(StatusCode::OK, &json!({"status": "ok"}))),
            ("GET", "/readyz") => self.readyz().await,
            ("GET", "/metrics") => self.metrics().await,
            ("GET", "/openapi.json") => {
                Ok(bytes_response(StatusCode::OK, "application/json", Bytes::from_static(OPENAPI.as_bytes())))
            }
            ("POST", "/v1/tenants") => self.create_tenant(request).await,
            _ => {
                let tenant = self.authenticate(&request).await?;
                match (request.method().as_str(), route) {
                    ("GET", "/v1/functions") => self.list_functions(&tenant).await,
                    ("PUT", "/v1/functions/{name}") => self.deploy(&tenant, &param(0), request).await,
                    ("GET", "/v1/functions/{name}") => self.get_function(&tenant, &param(0)).await,
                    ("DELETE", "/v1/functions/{name}") => self.delete_function(&tenant, &param(0)).await,
                    ("POST", "/v1/functions/{name}/rollback") => self.rollback(&tenant, &param(0), request).await,
                    ("POST", "/v1/functions/{name}/invoke") => self.invoke(&tenant, &param(0), request).await,
                    ("POST", "/v1/functions/{name}/jobs") => self.submit(&tenant, &param(0), request).await,
                    ("GET", "/v1/jobs/{id}") => self.job_status(&tenant, &param(0)).await,
                    ("GET", "/v1/jobs/{id}/result") => self.job_result(&tenant, &param(0)).await,
                    ("GET", "/v1/usage") => self.usage(&tenant, request.uri().query()).await,
                    _ => Err(ApiError::not_found("no such route")),
                }
            }
        }
    }

    async fn authenticate(&self, request: &Request<Incoming>) -> Result<Tenant, ApiError> {
        let key = bearer(request).ok_or_else(ApiError::unauthorized)?;
        let tenant = self.platform.stores.tenants.authenticate(key).await.map_err(|err| store_error(&err))?;
        tenant.ok_or_else(ApiError::unauthorized)
    }

    async fn is_admin(&self, request: &Request<Incoming>) -> Result<bool, ApiError> {
        match bearer(request) {
            Some(token) => self.platform.stores.tenants.is_admin(token).await.map_err(|err| store_error(&err)),
            None => Ok(false),
        }
    }

    fn rate_limit(&self, tenant: &Tenant) -> Result<(), ApiError> {
        self.rates.check(&tenant.id).map_err(|wait| {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests for this tenant; slow down")
                .retry_after(wait.as_secs_f64().ceil() as u64)
        })
    }

    /// Ready when the queue answers; also says how many worker nodes are alive.
    async fn readyz(&self) -> Result<Resp, ApiError> {
        match tokio::time::timeout(Duration::from_secs(1), self.platform.queue.workers()).await {
            Ok(Ok(nodes)) => Ok(json_response(StatusCode::OK, &json!({"status": "ready", "worker_nodes": nodes}))),
            Ok(Err(err)) => Err(unavailable(&err)),
            Err(_) => Err(unavailable(&QueueError::Unavailable("no answer within 1s".to_owned()))),
        }
    }

    async fn metrics(&self) -> Result<Resp, ApiError> {
        if let Ok(Ok(depth)) = tokio::time::timeout(Duration::from_secs(1), self.platform.queue.depth()).await {
            self.platform.metrics.queue_depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
        let text = self.platform.metrics.render();
        Ok(bytes_response(StatusCode::OK, "text/plain; version=0.0.4", Bytes::from(text)))
    }

    async fn create_tenant(&self, request: Request<Incoming>) -> Result<Resp, ApiError> {
        if !self.is_admin(&request).await? {
            return Err(ApiError::unauthorized());
        }
        #[derive(Deserialize)]
        struct Body {
            name: String,
        }
        let body: Body = parse_json(&read_body(request, MAX_JSON_BODY).await?)?;
        match self.platform.stores.tenants.create(&body.name).await {
            Ok((tenant, key)) => {
                Ok(json_response(StatusCode::CREATED, &json!({"id": tenant.id, "name": tenant.name, "api_key": key})))
            }
            Err(err @ TenantError::InvalidName(_)) => Err(ApiError::bad_request(err.to_string())),
            Err(err @ TenantError::NameTaken(_)) => {
                Err(ApiError::new(StatusCode::CONFLICT, "conflict", err.to_string()))
            }
            Err(TenantError::Store(err)) => Err(store_error(&err)),
        }
    }

    async fn list_functions(&self, tenant: &Tenant) -> Result<Resp, ApiError> {
        let records = self.platform.stores.functions.list(&tenant.id).await.map_err(|err| store_error(&err))?;
        let functions: Vec<Value> = records.iter().map(function_json).collect();
        let builtins: Vec<Value> = builtins::TRANSFORMS
            .iter()
            .filter_map(|b| {
                let resolved = self.platform.builtin(b.name)?;
                Some(json!({"name": b.name, "summary": b.summary, "version": resolved.version}))
            })
            .collect();
        Ok(json_response(StatusCode::OK, &json!({"functions": functions, "builtins": builtins})))
    }

    async fn deploy(&self, tenant: &Tenant, name: &str, request: Request<Incoming>) -> Result<Resp, ApiError> {
        self.rate_limit(tenant)?;
        if self.platform.is_builtin(name) {
            return Err(builtin_conflict(name));
        }
        let bytes = read_body(request, self.platform.config.max_body).await?;
        match self.platform.deploy(&tenant.id, name, bytes.to_vec()).await {
            Ok((record, is_new)) => {
                let status = if is_new { StatusCode::CREATED } else { StatusCode::OK };
                let size = record.versions.iter().find(|v| v.version == record.active).map_or(0, |v| v.size);
                tracing::info!(tenant = %tenant.id, function = name, version = %record.active, "deployed");
                Ok(json_response(status, &json!({"name": name, "version": record.active, "size": size})))
            }
            Err(DeployError::BuiltinName(_)) => Err(builtin_conflict(name)),
            Err(err @ DeployError::InvalidName(_)) => Err(ApiError::bad_request(err.to_string())),
            Err(DeployError::Invalid(err)) => {
                let code = err.code().as_str();
                Err(ApiError::new(StatusCode::BAD_REQUEST, code, err.to_string()))
            }
            Err(err @ DeployError::CompileTimeout(_)) => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, "compile_timeout", err.to_string()))
            }
            Err(DeployError::Store(err)) => Err(store_error(&err)),
            Err(DeployError::Internal(err)) => Err(ApiError::internal(&format!("{err:#}"))),
        }
    }

    async fn get_function(&self, tenant: &Tenant, name: &str) -> Result<Resp, ApiError> {
        let functions = &self.platform.stores.functions;
        if let Some(record) = functions.get(&tenant.id, name).await.map_err(|err| store_error(&err))? {
            return Ok(json_response(StatusCode::OK, &function_json(&record)));
        }
        match self.platform.builtin(name) {
            Some(resolved) => Ok(json_response(
                StatusCode::OK,
                &json!({"name": name, "builtin": true, "active_version": resolved.version}),
            )),
            None => Err(no_function(name)),
        }
    }

    async fn delete_function(&self, tenant: &Tenant, name: &str) -> Result<Resp, ApiError> {
        match self.platform.stores.functions.delete(&tenant.id, name).await {
            Ok(_) => Ok(json_response(StatusCode::OK, &json!({"name": name, "deleted": true}))),
            Err(RegistryError::NotFound(_)) if self.platform.is_builtin(name) => Err(builtin_conflict(name)),
            Err(RegistryError::NotFound(_) | RegistryError::NoSuchVersion { .. }) => Err(no_function(name)),
            Err(RegistryError::Store(err)) => Err(store_error(&err)),
        }
    }

    async fn rollback(&self, tenant: &Tenant, name: &str, request: Request<Incoming>) -> Result<Resp, ApiError> {
        #[derive(Deserialize, Default)]
        struct Body {
            version: Option<String>,
        }
        let bytes = read_body(request, MAX_JSON_BODY).await?;
        let body: Body = if bytes.is_empty() { Body::default() } else { parse_json(&bytes)? };
        match self.platform.stores.functions.rollback(&tenant.id, name, body.version.as_deref()).await {
            Ok(record) => {
                // Make sure the version is compiled before calls arrive for it.
                if let Err(err) = self.platform.function(&record.active).await {
                    return Err(ApiError::internal(&format!("{err:#}")));
                }
                Ok(json_response(StatusCode::OK, &function_json(&record)))
            }
            Err(RegistryError::NotFound(_)) => Err(no_function(name)),
            Err(err @ RegistryError::NoSuchVersion { .. }) => Err(ApiError::not_found(err.to_string())),
            Err(RegistryError::Store(err)) => Err(store_error(&err)),
        }
    }

    /// Resolves the function and takes a rate token: the checks that come
    /// before a body is read.
    async fn precheck(&self, tenant: &Tenant, name: &str) -> Result<Resolved, ApiError> {
        let resolved = self.platform.resolve(&tenant.id, name).await.map_err(|err| store_error(&err))?;
        let resolved = resolved.ok_or_else(|| no_function(name))?;
        self.rate_limit(tenant)?;
        Ok(resolved)
    }

    /// Enqueues a call; the queue enforces its own and the tenant's bounds.
    async fn enqueue(&self, tenant: &Tenant, resolved: Resolved, call: Call, id: JobId) -> Result<Job, ApiError> {
        let job = Job {
            id,
            tenant: TenantId::from(tenant.id.as_str()),
            function: resolved.name,
            version: Version::from(resolved.version),
            request: CallRequest { body: call.body.to_vec(), content_type: call.content_type, params: call.params },
            submitted_at_ms: now_ms(),
        };
        if let Err(err) = self.platform.queue.enqueue(job.clone()).await {
            return Err(match err {
                QueueError::Full { .. } => {
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", err.to_string()).retry_after(1)
                }
                QueueError::TenantBusy { .. } => {
                    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "concurrency_limit", err.to_string()).retry_after(1)
                }
                other => unavailable(&other),
            });
        }
        Ok(job)
    }

    async fn invoke(&self, tenant: &Tenant, name: &str, request: Request<Incoming>) -> Result<Resp, ApiError> {
        let resolved = self.precheck(tenant, name).await?;
        let call = Call::read(request, self.platform.config.max_body).await?;
        let job = self.enqueue(tenant, resolved, call, JobId::random()).await?;
        let timeout = self.platform.runtime.config().timeout;
        let record = self.platform.queue.wait(&job.id, timeout + SYNC_GRACE).await.map_err(|err| unavailable(&err))?;
        let record = record.ok_or_else(|| ApiError::internal(&"the job vanished while a caller waited"))?;
        match record.status {
            JobStatus::Succeeded => self.output_response(&record).await,
            JobStatus::Failed => {
                let mut response = failure(&record).into_response();
                add_job_headers(&mut response, &record);
                Ok(response)
            }
            JobStatus::Queued | JobStatus::Running => Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "no result within {}ms; the job is still {}",
                    (timeout + SYNC_GRACE).as_millis(),
                    record.status.as_str()
                ),
            )),
        }
    }

    async fn submit(&self, tenant: &Tenant, name: &str, request: Request<Incoming>) -> Result<Resp, ApiError> {
        let key = request.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let resolved = self.precheck(tenant, name).await?;
        let call = Call::read(request, self.platform.config.max_body).await?;
        let Some(key) = key else {
            let job = self.enqueue(tenant, resolved, call, JobId::random()).await?;
            return Ok(accepted(&job.id, JobStatus::Queued));
        };
        let keys = &self.platform.stores.idempotency;
        let id = JobId::random();
        let claim = keys.claim(&tenant.id, &key, &call.fingerprint(name), &id, self.job_ttl).await;
        match claim.map_err(|err| store_error(&err))? {
            Claim::New => match self.enqueue(tenant, resolved, call, id.clone()).await {
                Ok(job) => Ok(accepted(&job.id, JobStatus::Queued)),
                Err(refused) => {
                    // Not accepted: the key must not point at a job that does not exist.
                    if let Err(err) = keys.release(&tenant.id, &key, &id).await {
                        tracing::warn!(cause = %err, "cannot release an idempotency key");
                    }
                    Err(refused)
                }
            },
            Claim::Conflict => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_conflict",
                "this Idempotency-Key was already used for a different request",
            )),
            Claim::Existing(existing) => match self.platform.queue.job(&existing).await {
                Ok(Some(record)) => Ok(accepted(&existing, record.status)),
                // The first submission with this key is still being accepted.
                Ok(None) => Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_in_progress",
                    "a request with this Idempotency-Key is still being processed; retry shortly",
                )
                .retry_after(1)),
                Err(err) => Err(unavailable(&err)),
            },
        }
    }

    /// A succeeded job's output with its job and usage headers.
    async fn output_response(&self, record: &JobRecord) -> Result<Resp, ApiError> {
        let output = self
            .platform
            .queue
            .output(&record.id)
            .await
            .map_err(|err| unavailable(&err))?
            .ok_or_else(|| ApiError::not_found(format!("the result of job {} has expired", record.id)))?;
        let mut response = bytes_response(StatusCode::OK, &output.content_type, Bytes::from(output.body));
        add_job_headers(&mut response, record);
        Ok(response)
    }

    async fn owned_job(&self, tenant: &Tenant, id: &str) -> Result<JobRecord, ApiError> {
        let record = self.platform.queue.job(&JobId(id.to_owned())).await.map_err(|err| unavailable(&err))?;
        // Another tenant's job looks exactly like a missing one.
        record.filter(|r| r.tenant.as_str() == tenant.id).ok_or_else(|| ApiError::not_found(format!("no job {id}")))
    }

    async fn job_status(&self, tenant: &Tenant, id: &str) -> Result<Resp, ApiError> {
        let record = self.owned_job(tenant, id).await?;
        Ok(json_response(StatusCode::OK, &job_json(&record)))
    }

    async fn job_result(&self, tenant: &Tenant, id: &str) -> Result<Resp, ApiError> {
        let record = self.owned_job(tenant, id).await?;
        match record.status {
            JobStatus::Succeeded => self.output_response(&record).await,
            JobStatus::Failed => Err(ApiError::new(
                StatusCode::CONFLICT,
                "job_failed",
                format!("job {id} failed and has no result; GET /v1/jobs/{id} says why"),
            )),
            status => Err(ApiError::new(
                StatusCode::CONFLICT,
                "job_not_finished",
                format!("job {id} is {}; try again later", status.as_str()),
            )
            .retry_after(1)),
        }
    }

    async fn usage(&self, tenant: &Tenant, query: Option<&str>) -> Result<Resp, ApiError> {
        let pairs = query_pairs(query);
        let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let from_ms = get("from").map(|v| parse_time(v, "from")).transpose()?.unwrap_or(0);
        let to_ms = get("to").map(|v| parse_time(v, "to")).transpose()?.unwrap_or_else(|| now_ms() + BUCKET_MS);
        if from_ms > to_ms {
            return Err(ApiError::bad_request("`from` is after `to`"));
        }
        if let Err(err) = self.platform.aggregate_usage().await {
            // Totals committed so far are still right; report what is there.
            tracing::warn!(cause = %format!("{err:#}"), "usage aggregation before a query failed");
        }
        // Totals are hourly: a bucket counts when its hour starts in [from, to).
        let from_bucket = from_ms / BUCKET_MS * BUCKET_MS;
        let functions: Vec<Value> = self
            .platform
            .stores
            .usage
            .totals(&tenant.id, from_bucket, to_ms)
            .await
            .map_err(|err| store_error(&err))?
            .into_iter()
            .map(|b| {
                json!({
                    "function": b.function,
                    "invocations": b.invocations,
                    "failures": b.failures,
                    "cpu_ms": b.cpu_us as f64 / 1000.0,
                    "wall_ms": b.wall_us as f64 / 1000.0,
                    "bytes_in": b.bytes_in,
                    "bytes_out": b.bytes_out,
                    "cost": b.cost_micros as f64 / 1e6,
                })
            })
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({"tenant": tenant.name, "from": format_time(from_ms), "to": format_time(to_ms), "functions": functions}),
        ))
    }
}

/// A call's input as read from the request.
struct Call {
    params: Vec<(String, String)>,
    content_type: String,
    body: Bytes,
}

impl Call {
    async fn read(request: Request<Incoming>, max_body: usize) -> Result<Self, ApiError> {
        let params = query_pairs(request.uri().query());
        let content_type =
            request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let body = read_body(request, max_body).await?;
        Ok(Self { params, content_type, body })
    }

    /// What makes two submissions "the same request" for an Idempotency-Key.
    fn fingerprint(&self, function: &str) -> String {
        let mut hasher = sha2::Sha256::new();
        use sha2::Digest;
        for part in [function.as_bytes(), self.content_type.as_bytes()] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        for (key, value) in &self.params {
            for part in [key.as_bytes(), value.as_bytes()] {
                hasher.update((part.len() as u64).to_le_bytes());
                hasher.update(part);
            }
        }
        hasher.update(&self.body);
        hex::encode(hasher.finalize())
    }
}

enum Match {
    Found(&'static str, Vec<String>),
    WrongMethod(&'static str),
    None,
}

fn match_route(method: &Method, path: &str) -> Match {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut path_matched = None;
    for &(route_method, template) in ROUTES {
        let parts: Vec<&str> = template.split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut params = Vec::new();
        let fits = parts.iter().zip(&segments).all(|(part, segment)| {
            if part.starts_with('{') {
                params.push((*segment).to_owned());
                !segment.is_empty()
            } else {
                part == segment
            }
        });
        if fits {
            if route_method == method.as_str() {
                return Match::Found(template, params);
            }
            path_matched = Some(template);
        }
    }
    path_matched.map_or(Match::None, Match::WrongMethod)
}

fn bytes_response(status: StatusCode, content_type: &str, body: Bytes) -> Resp {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let content_type =
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
}

fn accepted(id: &JobId, status: JobStatus) -> Resp {
    let mut response = json_response(StatusCode::ACCEPTED, &json!({"id": id.0, "status": status}));
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/jobs/{id}")) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

fn add_job_headers(response: &mut Resp, record: &JobRecord) {
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&record.id.0) {
        headers.insert("sluice-job-id", id);
    }
    if let Some(usage) = &record.usage {
        headers.insert("sluice-usage-wall-us", HeaderValue::from(usage.wall_us));
        headers.insert("sluice-usage-cpu-us", HeaderValue::from(usage.cpu_us));
        headers.insert("sluice-usage-bytes-in", HeaderValue::from(usage.bytes_in));
        headers.insert("sluice-usage-bytes-out", HeaderValue::from(usage.bytes_out));
        headers.insert("sluice-usage-peak-memory-bytes", HeaderValue::from(usage.peak_memory_bytes));
    }
}

/// The HTTP error for a failed job, by its code.
fn failure(record: &JobRecord) -> ApiError {
    let Some(error) = &record.error else {
        return ApiError::internal(&"a failed job has no error");
    };
    let code = error.code;
    let api = ApiError::new(code.status(), code.as_str(), &error.message);
    match code.retry_after() {
        Some(seconds) => api.retry_after(seconds),
        None => api,
    }
}

fn job_json(record: &JobRecord) -> Value {
    let mut value = json!({
        "id": record.id.0,
        "status": record.status,
        "function": record.function,
        "version": record.version,
        "deliveries": record.deliveries,
        "submitted_at": format_time(record.submitted_at_ms),
    });
    if let Some(finished) = record.finished_at_ms {
        value["finished_at"] = json!(format_time(finished));
    }
    if let Some(error) = &record.error {
        value["error"] = json!({"code": error.code, "message": error.message});
    }
    if let Some(usage) = &record.usage {
        value["usage"] = json!(usage);
    }
    value
}

fn function_json(record: &FunctionRecord) -> Value {
    let versions: Vec<Value> = record
        .versions
        .iter()
        .map(|v| json!({"version": v.version, "size": v.size, "deployed_at": format_time(v.deployed_at_ms)}))
        .collect();
    json!({"name": record.name, "active_version": record.active, "versions": versions})
}

fn no_function(name: &str) -> ApiError {
    ApiError::not_found(format!("no function named {name:?}"))
}

fn builtin_conflict(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!("`{name}` is a built-in function and cannot be replaced or deleted"),
    )
}

fn store_error(err: &StoreError) -> ApiError {
    match err {
        StoreError::Unavailable(_) => {
            tracing::warn!(cause = %err, "state store unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the state store is unavailable; try again shortly",
            )
            .retry_after(2)
        }
        other => ApiError::internal(other),
    }
}

fn unavailable(err: &QueueError) -> ApiError {
    tracing::warn!(cause = %err, "queue unavailable");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "queue_unavailable",
        "the job queue is unavailable; try again shortly",
    )
    .retry_after(2)
}

/// RFC 3339 (`2026-11-21T00:00:00Z`) or Unix seconds, as ms since the epoch.
fn parse_time(value: &str, name: &str) -> Result<u64, ApiError> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Ok(seconds.saturating_mul(1000));
    }
    humantime::parse_rfc3339_weak(value)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .ok_or_else(|| ApiError::bad_request(format!("`{name}` must be RFC 3339 or Unix seconds, got {value:?}")))
}

fn format_time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_with_parameters_and_methods() {
        match match_route(&Method::POST, "/v1/functions/blur/invoke") {
            Match::Found(route, params) => {
                assert_eq!(route, "/v1/functions/{name}/invoke");
                assert_eq!(params, vec!["blur".to_owned()]);
            }
            _ => panic!("should match"),
        }
        assert!(matches!(match_route(&Method::GET, "/v1/functions/blur/invoke"), Match::WrongMethod(_)));
        assert!(matches!(match_route(&Method::GET, "/v2/nothing"), Match::None));
        assert!(matches!(match_route(&Method::GET, "/v1/jobs//result"), Match::None));
    }

    #[test]
    fn times_parse_as_rfc3339_or_unix_seconds() {
        assert_eq!(parse_time("1700000000", "from"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z", "from"), Ok(1_700_000_000_000));
        assert_eq!(format_time(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(parse_time("yesterday", "to").expect_err("refused").code, "invalid_request");
    }
}
