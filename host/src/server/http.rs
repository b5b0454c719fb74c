//! HTTP plumbing shared by the handlers: the one mapping from an error to a
//! status and JSON body, body reading under a size cap, JSON and query
//! helpers.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serde_json::json;

/// Every response the server sends.
pub type Resp = Response<Full<Bytes>>;

/// An error as callers see it: status, stable code, message, and how long
/// to wait before retrying when that is the point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// Seconds for `Retry-After` (429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error without `Retry-After`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    /// 400 `invalid_request`: the API request itself is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 404 `not_found`; also what another tenant's resources look like.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid API key (use `Authorization: Bearer <key>`)",
        )
    }

    /// 500 `internal`: logged with its cause, reported without it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(cause = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "an internal error occurred; it has been logged")
    }

    /// Adds `Retry-After`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// The JSON response.
    pub fn into_response(self) -> Resp {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = json_response(self.status, &body);
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A JSON response with `status`.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Resp {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// After a streamed body overflows, keep reading (and discarding) this much
/// more, for at most [`DRAIN_TIME`], so a client that writes its whole body
/// before reading gets the 413 instead of a reset connection.
const DRAIN_EXTRA: usize = 8 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads the whole body if it is at most `limit` bytes. A declared length
/// over the limit is refused before a byte is read; a body that grows past
/// it while streaming is refused there, and the rest is drained (bounded)
/// and discarded.
pub async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than the {limit}-byte limit"),
        )
    };
    let declared =
        request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let mut body = request.into_body();
    let mut collected = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| ApiError::bad_request(format!("could not read the request body: {err}")))?;
        let Ok(data) = frame.into_data() else { continue };
        if collected.len() + data.len() > limit {
            let mut drained = 0usize;
            let _ = tokio::time::timeout(DRAIN_TIME, async {
                while drained < DRAIN_EXTRA {
                    match body.frame().await {
                        Some(Ok(frame)) => drained += frame.data_ref().map_or(0, Bytes::len),
                        _ => break,
                    }
                }
            })
            .await;
            return Err(too_large());
        }
        collected.extend_from_slice(&data);
    }
    Ok(collected.freeze())
}

/// Parses a JSON body into `T`, naming what is wrong with it.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|err| ApiError::bad_request(format!("invalid JSON body: {err}")))
}

/// The query string's pairs, percent-decoded, in order.
pub fn query_pairs(request_query: Option<&str>) -> Vec<(String, String)> {
    request_query
        .map(|q| form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default()
}

/// The bearer token of a request, if any.
pub fn bearer(request: &Request<Incoming>) -> Option<&str> {
    request.headers().get(hyper::header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}
