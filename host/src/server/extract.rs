//! What handlers take from a request, with every refusal an [`ApiError`]:
//! who is calling ([`AuthTenant`], [`Admin`]), path parameters, small JSON
//! bodies, query strings, and bodies read under a size cap.
//!
//! A route is authenticated exactly when its handler takes [`AuthTenant`]
//! or [`Admin`]; public handlers take neither.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use sluice_core::{CallRequest, ErrorCode};

use super::Api;
use super::body_rate::BodyError;
use super::error::ApiError;
use crate::store::tenants::Tenant;

/// Small JSON bodies (tenant creation, rollback) never need more.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// The tenant whose API key the request carries.
#[derive(Debug, Clone)]
pub struct AuthTenant(pub Tenant);

impl FromRequestParts<Arc<Api>> for AuthTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, ApiError> {
        let key = bearer(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        let tenant = api.platform.stores.tenants.authenticate(key).await?;
        tenant.map(Self).ok_or_else(ApiError::unauthorized)
    }
}

/// Proof that the request carries the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<Arc<Api>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        match api.platform.stores.tenants.is_admin(token).await? {
            true => Ok(Self),
            false => Err(ApiError::unauthorized()),
        }
    }
}

/// A path parameter, refused as `invalid_request` when it does not decode.
#[derive(Debug, Clone)]
pub struct PathParam<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

/// A query string, refused as `invalid_request` when it does not parse.
#[derive(Debug, Clone)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

/// A small JSON body (at most [`MAX_JSON_BODY`]). An empty body is `None`
/// for a handler that takes `JsonBody<Option<T>>` (its body is optional)
/// and 400 for any other. The media type is not checked: curl's default
/// form type is a common honest mistake.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(request, MAX_JSON_BODY).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            // No body reads as `null`: an `Option<T>` body is then `None`,
            // and any other is refused as missing.
            return serde_json::from_slice(b"null")
                .map(Self)
                .map_err(|_| ApiError::bad_request("this request needs a JSON body"));
        }
        // Every body of this API is an object; serde would also read a
        // struct from an array of its fields in order.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::bad_request("a JSON body must be an object"));
        }
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|err| ApiError::bad_request(format!("invalid JSON body: {err}")))
    }
}

/// Reads a call's input: its query parameters in order, its content type,
/// and its body under `max_body`.
pub async fn read_call(request: Request, max_body: usize) -> Result<CallRequest, ApiError> {
    let params = query_pairs(request.uri().query());
    let content_type = request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let content_type = content_type.to_owned();
    let body = read_body(request, max_body).await?;
    Ok(CallRequest { body: body.into(), content_type, params })
}

/// Reads the whole body if it is at most `limit` bytes. A declared length
/// over the limit is refused before a byte is read; a body that grows past
/// it while streaming is refused there. Either way the connection then
/// lingers (see [`super::connections`]), reading and discarding the rest of
/// the body, so the client reads the 413. A body that arrives too slowly is
/// 408 `request_timeout`.
pub async fn read_body(request: Request, limit: usize) -> Result<Bytes, ApiError> {
    let too_large =
        || ApiError::new(ErrorCode::BodyTooLarge, format!("the request body is larger than the {limit}-byte limit"));
    if declared_length(request.headers()).is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let mut body: Body = request.into_body();
    let mut collected = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(body_error)?;
        let Ok(data) = frame.into_data() else { continue };
        if collected.len() + data.len() > limit {
            return Err(too_large());
        }
        collected.extend_from_slice(&data);
    }
    Ok(collected.freeze())
}

/// The refusal for a body that could not be read: 408 when it was too
/// slow, 400 when the client broke it off or framed it wrongly.
fn body_error(err: axum::Error) -> ApiError {
    let err = err.into_inner();
    match err.downcast_ref::<BodyError>() {
        Some(slow @ BodyError::TooSlow { .. }) => ApiError::new(ErrorCode::RequestTimeout, slow.to_string()),
        _ => ApiError::bad_request(format!("could not read the request body: {err}")),
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The query string's pairs, percent-decoded, in order.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default()
}

/// The bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}
