//! Jobs: an async call's status and, once it succeeded, its result. Only the
//! tenant that submitted a job sees it; for anyone else it does not exist.

// utoipa's `path` macro names `params(...)` types by their full path.
#![allow(unused_qualifications)]

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sluice_core::{CallOutput, ErrorCode, TenantId};
use sluice_scheduler::{Cancel, JobFilter, JobId, JobLog, JobRecord, JobStatus, Usage};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorDetail};
use super::extract::{AuthTenant, PathParam, QueryParams};
use super::functions::Binary;
use super::openapi::api_errors;
use super::{Api, format_time};

/// A job's id in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    /// The id `POST /v1/functions/{name}/jobs` returned.
    pub id: String,
}

/// A job as its tenant sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// The job's id.
    pub id: String,
    /// Where it is in its life.
    pub status: JobStatus,
    /// The function it calls.
    pub function: String,
    /// The exact version it runs.
    pub version: String,
    /// How many times it was handed to a worker.
    pub deliveries: u32,
    /// When it was accepted (RFC 3339).
    pub submitted_at: String,
    /// When it ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
    /// What its last attempt consumed, once it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// What each attempt that ran guest code consumed, in order: each one
    /// is billed. An attempt shed before the guest ran is not listed.
    pub attempts: Vec<Usage>,
    /// What the function printed, in a job's own status once it ended and
    /// when it is at most 4 KiB; `GET /v1/jobs/{id}/logs` always has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<JobLog>,
}

impl From<&JobRecord> for JobView {
    fn from(record: &JobRecord) -> Self {
        Self {
            id: record.id.to_string(),
            status: record.status,
            function: record.function.clone(),
            version: record.version.to_string(),
            deliveries: record.deliveries,
            submitted_at: format_time(record.submitted_at_ms),
            finished_at: record.finished_at_ms.map(format_time),
            error: record.error.as_ref().map(|e| ErrorDetail { code: e.code, message: e.message.clone() }),
            usage: record.usage.clone(),
            attempts: record.attempts.clone(),
            logs: None,
        }
    }
}

api_errors!(
    /// What a job's status can answer.
    StatusErrors: Unauthorized, NotFound, QueueUnavailable, StoreUnavailable, Internal
);
api_errors!(
    /// What a job's result can answer.
    ResultErrors: Unauthorized, NotFound, JobNotFinished, JobFailed, JobCancelled, QueueUnavailable, StoreUnavailable, Internal
);

api_errors!(
    /// What a job listing can answer.
    ListErrors: InvalidRequest, Unauthorized, QueueUnavailable, StoreUnavailable, Internal
);
api_errors!(
    /// What cancelling a job can answer.
    CancelErrors: Unauthorized, NotFound, JobNotQueued, QueueUnavailable, StoreUnavailable, Internal
);

/// Jobs a listing page holds unless the caller asks for fewer.
pub const DEFAULT_PAGE: usize = 50;

/// Most jobs one listing page may hold.
pub const MAX_PAGE: usize = 500;

/// Which of the caller's jobs to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobListing {
    /// Only jobs with this status: `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    #[param(value_type = Option<JobStatus>)]
    pub status: Option<String>,
    /// Only jobs of this function.
    pub function: Option<String>,
    /// Where to go on: the `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Jobs per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// The jobs on this page.
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// The caller's kept jobs, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    params(JobListing),
    responses((status = 200, body = JobList), ListErrors),
    security(("tenant" = []))
)]
pub async fn list_jobs(
    State(api): State<Arc<Api>>,
    AuthTenant(tenant): AuthTenant,
    QueryParams(listing): QueryParams<JobListing>,
) -> Result<Json<JobList>, ApiError> {
    let status = match listing.status.as_deref() {
        None => None,
        Some(raw) => Some(JobStatus::parse(raw).ok_or_else(|| {
            let known: Vec<&str> = JobStatus::ALL.iter().map(|status| status.as_str()).collect();
            ApiError::bad_request(format!("unknown status `{raw}`; use one of {}", known.join(", ")))
        })?),
    };
    let limit = listing.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_PAGE}, not {limit}")));
    }
    let filter = JobFilter { status, function: listing.function };
    let page = api.platform.queue.jobs(&tenant.id, &filter, listing.cursor.as_deref(), limit).await?;
    Ok(Json(JobList { jobs: page.jobs.iter().map(JobView::from).collect(), next_cursor: page.cursor }))
}

/// Cancels a job no worker has taken yet: it ends `cancelled` and never runs.
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(JobPath),
    responses((status = 200, description = "The job, now cancelled", body = JobView), CancelErrors),
    security(("tenant" = []))
)]
pub async fn cancel_job(
    State(api): State<Arc<Api>>,
    AuthTenant(tenant): AuthTenant,
    PathParam(JobPath { id }): PathParam<JobPath>,
) -> Result<Json<JobView>, ApiError> {
    let id = JobId(id);
    match api.platform.queue.cancel(&tenant.id, &id).await? {
        Cancel::Cancelled(record) => Ok(Json(JobView::from(&record))),
        Cancel::TooLate(record) => Err(ApiError::new(
            ErrorCode::JobNotQueued,
            format!("job {id} is {}; only a queued job can be cancelled", record.status.as_str()),
        )),
        Cancel::NotFound => Err(ApiError::not_found(format!("no job {id}"))),
    }
}

/// A job's status, error and usage.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(JobPath),
    responses((status = 200, body = JobView), StatusErrors),
    security(("tenant" = []))
)]
pub async fn job_status(
    State(api): State<Arc<Api>>,
    AuthTenant(tenant): AuthTenant,
    PathParam(JobPath { id }): PathParam<JobPath>,
) -> Result<Json<JobView>, ApiError> {
    let record = owned_job(&api, &tenant.id, id).await?;
    let mut view = JobView::from(&record);
    if record.status.is_final() {
        view.logs = api.platform.queue.logs(&record.id).await?.filter(|log| log.bytes() <= INLINE_LOG_BYTES);
    }
    Ok(Json(view))
}

/// Largest log (both streams) a job's status shows inline.
pub const INLINE_LOG_BYTES: u64 = 4096;

/// What the function printed on the attempt that ended the job (standard
/// output and error, each capped per call), kept as long as the job's
/// record; empty while the job has not ended.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/logs",
    tag = "jobs",
    params(JobPath),
    responses((status = 200, body = JobLog), StatusErrors),
    security(("tenant" = []))
)]
pub async fn job_logs(
    State(api): State<Arc<Api>>,
    AuthTenant(tenant): AuthTenant,
    PathParam(JobPath { id }): PathParam<JobPath>,
) -> Result<Json<JobLog>, ApiError> {
    let record = owned_job(&api, &tenant.id, id).await?;
    let log = api.platform.queue.logs(&record.id).await?;
    // Gone between the two lookups: it expired, like a job never seen.
    log.map(Json).ok_or_else(|| ApiError::not_found(format!("no job {}", record.id)))
}

/// A succeeded job's output, kept for the job TTL.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/result",
    tag = "jobs",
    params(JobPath),
    responses(
        (status = 200, description = "The output, with its own media type", content_type = "*/*", body = inline(Binary)),
        ResultErrors
    ),
    security(("tenant" = []))
)]
pub async fn job_result(
    State(api): State<Arc<Api>>,
    AuthTenant(tenant): AuthTenant,
    PathParam(JobPath { id }): PathParam<JobPath>,
) -> Result<Response, ApiError> {
    let record = owned_job(&api, &tenant.id, id).await?;
    match record.status {
        JobStatus::Succeeded => {
            let output = api.platform.queue.output(&record.id).await?;
            let output =
                output.ok_or_else(|| ApiError::not_found(format!("the result of job {} has expired", record.id)))?;
            Ok(output_response(&record, output))
        }
        JobStatus::Cancelled => Err(ApiError::new(
            ErrorCode::JobCancelled,
            format!("job {} was cancelled before it ran and has no result", record.id),
        )),
        JobStatus::Failed => Err(ApiError::new(
            ErrorCode::JobFailed,
            format!("job {} failed and has no result; GET /v1/jobs/{} says why", record.id, record.id),
        )),
        status @ (JobStatus::Queued | JobStatus::Running) => Err(ApiError::new(
            ErrorCode::JobNotFinished,
            format!("job {} is {}; try again later", record.id, status.as_str()),
        )),
    }
}

async fn owned_job(api: &Api, tenant: &TenantId, id: String) -> Result<JobRecord, ApiError> {
    let id = JobId(id);
    let record = api.platform.owned_job(tenant, &id).await?;
    record.ok_or_else(|| ApiError::not_found(format!("no job {id}")))
}

/// A succeeded job's output with its job and usage headers.
pub fn output_response(record: &JobRecord, output: CallOutput) -> Response {
    let content_type =
        HeaderValue::from_str(&output.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut response = ([(CONTENT_TYPE, content_type)], output.body).into_response();
    add_job_headers(&mut response, record);
    response
}

/// A failed job's error, as a sync caller gets it, with its job headers.
pub fn failure_response(record: &JobRecord) -> Response {
    let error = match &record.error {
        Some(error) => ApiError::new(error.code, &error.message),
        None if record.status == JobStatus::Cancelled => {
            ApiError::new(ErrorCode::JobCancelled, format!("job {} was cancelled before it ran", record.id))
        }
        None => ApiError::internal(&"a failed job has no error"),
    };
    let mut response = error.into_response();
    add_job_headers(&mut response, record);
    response
}

pub(super) fn add_job_headers(response: &mut Response, record: &JobRecord) {
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
