//! The one mapping from any failure to what an HTTP caller sees: the
//! [`ErrorCode`]'s status, a JSON body `{"error": {"code", "message"}}`, and
//! `Retry-After` when the code means "try again later".
//!
//! Internal faults are logged here with their cause and reported without
//! it; a caller's bad input is not logged as an error.

use axum::http::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sluice_core::ErrorCode;
use sluice_scheduler::QueueError;
use utoipa::ToSchema;

use crate::platform::tenants::DeleteTenantError;
use crate::platform::{CallError, DeployError};
use crate::store::StoreError;
use crate::store::functions::RegistryError;
use crate::store::tenants::TenantError;

/// An error as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The stable code; it decides the status.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// Seconds for `Retry-After`, when a handler knows better than the code's default.
    pub retry_after: Option<u64>,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable; see the table of codes.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// An error with the code's own `Retry-After`, if it has one.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after: code.retry_after() }
    }

    /// 400 `invalid_request`: the API request itself is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// 404 `not_found`; also what another tenant's resources look like.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "missing or invalid API key (use `Authorization: Bearer <key>`)")
    }

    /// 500 `internal`: logged with its cause, reported without it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(cause = %cause, "internal error");
        Self::new(ErrorCode::Internal, "an internal error occurred; it has been logged")
    }

    /// Overrides `Retry-After` (at least one second).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody { error: ErrorDetail { code: self.code, message: self.message.clone() } }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.code.status(), axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.code == ErrorCode::Unauthorized {
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl ApiError {
    /// The answer for a domain failure with `code`: its own message, except
    /// that internal faults and outages are logged and reported in general terms.
    fn from_failure(code: ErrorCode, err: &dyn std::fmt::Display) -> Self {
        match code {
            ErrorCode::Internal => Self::internal(err),
            ErrorCode::QueueUnavailable => {
                tracing::warn!(cause = %err, "queue unavailable");
                Self::new(code, "the job queue is unavailable; try again shortly")
            }
            ErrorCode::StoreUnavailable => {
                tracing::warn!(cause = %err, "state store unavailable");
                Self::new(code, "the state store is unavailable; try again shortly")
            }
            _ => Self::new(code, err.to_string()),
        }
    }
}

/// Each domain error knows its code; this turns it into the caller's answer.
macro_rules! from_failures {
    ($($error:ty),+ $(,)?) => {$(
        impl From<$error> for ApiError {
            fn from(err: $error) -> Self {
                Self::from_failure(err.code(), &err)
            }
        }
    )+};
}

from_failures!(QueueError, StoreError, TenantError, RegistryError, DeployError, CallError, DeleteTenantError);
