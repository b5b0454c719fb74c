//! `wasi:http` components, served at `/v1/functions/{name}/http/{path}`
//! with every method but `TRACE` and `CONNECT` (which echo a request back
//! or open a tunnel: a gateway does not pass them on): the request (method, the path after `/http`, query,
//! header fields, body) goes to the component as one sync call through the
//! queue, so it runs under the same limits, metering, usage records, tenant
//! isolation and logs as a transform; the component's response comes back
//! as it wrote it, with Sluice's job and usage headers added.
//!
//! The tenant's API key authenticates the call and is not passed on, nor
//! are the connection's own header fields ([`http_message::is_forwarded`]).

// utoipa's path macro spells out the parameters' type in full when the
// path is documented through `ApiDoc` rather than the router.
#![allow(unused_qualifications)]

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodFilter;
use serde::Deserialize;
use sluice_core::{CallRequest, World};
use utoipa::IntoParams;

use super::Api;
use super::error::ApiError;
use super::extract::{AuthTenant, PathParam, read_body};
use super::functions::{Binary, still_pending};
use super::jobs::{add_job_headers, failure_response};
use super::openapi::api_errors;
use crate::http_message::{self, HttpRequest, HttpResponse, MAX_HEAD_BYTES, MAX_HEADERS};
use crate::platform::SyncCall;

/// The path of a call to a `wasi:http` component.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct HttpCallPath {
    /// The function: 1 to 64 characters of `a-z`, `0-9`, `-` and `_`.
    #[param(example = "hello", pattern = "^[a-z0-9_-]{1,64}$")]
    pub name: String,
    /// The path the component sees, after `/http` (any number of segments).
    #[param(example = "greet/world")]
    #[serde(default)]
    pub path: String,
}

api_errors!(
    /// What a call to a `wasi:http` component can answer besides the
    /// component's own responses.
    HttpCallErrors: InvalidRequest, Unauthorized, NotFound, WrongWorld, BodyTooLarge, RateLimited,
    QueueQuota, FunctionTrapped, FunctionError, MemoryLimit, OutputTooLarge, WorkerLost,
    FunctionUnavailable, JobCancelled, Internal, Overloaded, QueueUnavailable, StoreUnavailable, Timeout
);

/// The handler on every method a component is called with (the ones
/// [`call_http`]'s document lists).
pub fn route() -> axum::routing::MethodRouter<Arc<Api>> {
    let methods = [MethodFilter::POST, MethodFilter::PUT, MethodFilter::DELETE, MethodFilter::PATCH]
        .into_iter()
        .chain([MethodFilter::HEAD, MethodFilter::OPTIONS])
        .fold(MethodFilter::GET, MethodFilter::or);
    axum::routing::on(methods, call_http)
}

/// Calls a `wasi:http` component with the request and answers its response.
#[utoipa::path(
    method(get, post, put, delete, patch, head, options),
    path = "/v1/functions/{name}/http/{path}",
    tag = "functions",
    params(HttpCallPath),
    request_body(content = Binary, content_type = "*/*", description = "Passed to the component as it came, within the body limit"),
    responses(
        (status = "default", description = "The component's own response: its status, header fields and body; \
          with the `Sluice-Job-Id` and `Sluice-Usage-*` headers of a sync call", content_type = "*/*", body = inline(Binary)),
        HttpCallErrors
    ),
    security(("tenant" = []))
)]
pub async fn call_http(
    State(api): State<Arc<Api>>,
    AuthTenant(tenant): AuthTenant,
    PathParam(HttpCallPath { name, .. }): PathParam<HttpCallPath>,
    request: Request,
) -> Result<Response, ApiError> {
    let function = api.precheck(&tenant, &name, World::Http).await?;
    let call = read_http_call(request, api.platform.config.max_body).await?;
    match api.platform.call_sync(&tenant, function, call).await? {
        SyncCall::Succeeded { record, output } => {
            let answered = HttpResponse::decode(&output.body).map_err(|err| {
                ApiError::internal(&format!("the function's response did not come back whole: {err}"))
            })?;
            let mut response = into_response(answered);
            add_job_headers(&mut response, &record);
            Ok(response)
        }
        SyncCall::Failed(record) => Ok(failure_response(&record)),
        SyncCall::Pending { record, waited } => Err(still_pending(&record, waited)),
    }
}

/// The request as the component's call: `message/http` of the method, the
/// path after `/v1/functions/{name}/http`, the query, the forwarded header
/// fields and the body (at most `max_body` bytes).
async fn read_http_call(request: Request, max_body: usize) -> Result<CallRequest, ApiError> {
    let method = request.method().as_str().to_owned();
    let uri = request.uri();
    // `/v1/functions/{name}/http` then the component's own path.
    let rest = uri.path().splitn(5, '/').nth(4).and_then(|tail| tail.strip_prefix("http")).unwrap_or_default();
    let path = if rest.is_empty() { "/" } else { rest };
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let headers: http_message::Fields = request
        .headers()
        .iter()
        .filter(|(name, _)| http_message::is_forwarded(name.as_str()))
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    if !http_message::head_fits(&headers) {
        return Err(ApiError::bad_request(format!(
            "the request has {} header fields of {} bytes; at most {MAX_HEADERS} fields and \
             {MAX_HEAD_BYTES} bytes are passed to a function",
            headers.len(),
            http_message::head_bytes(&headers)
        )));
    }
    let body = read_body(request, max_body).await?;
    let message = HttpRequest { method, target, headers, body: body.into() };
    Ok(CallRequest { body: message.encode(), content_type: http_message::REQUEST_TYPE.to_owned(), params: Vec::new() })
}

/// The component's response as the caller gets it. Field names and values
/// were valid when the component set them; any that are not now are
/// dropped rather than failing the whole response.
fn into_response(answered: HttpResponse) -> Response {
    let status = StatusCode::from_u16(answered.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, answered.body).into_response();
    let headers = response.headers_mut();
    // The component's own media type, or none: not axum's default for bytes.
    headers.remove(axum::http::header::CONTENT_TYPE);
    for (name, value) in answered.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(&value)) {
            headers.append(name, value);
        }
    }
    response
}
