//! Every stable error code Sluice reports, and everything that follows from
//! a code: its HTTP status, whether the caller is told when to retry, and
//! whether a job that failed with it is tried again.
//!
//! Adding a code is one line in [`error_codes!`]; every `match` on
//! [`ErrorCode`] then points at the places that must handle it, and the API
//! document and the README's table (checked by a test) list it.

use http::StatusCode;
use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($(
        $(#[doc = $doc:literal])+
        $variant:ident = $code:literal, $status:ident, retry_after: $retry_after:expr, retried: $retried:literal;
    )+) => {
        /// A stable, machine-readable error code (`snake_case` on the wire).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl ErrorCode {
            /// Every code, in the order of the README's table.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The code as it appears on the wire.
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)+ }
            }

            /// The HTTP status an API caller gets with this code.
            pub const fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => StatusCode::$status,)+ }
            }

            /// Seconds to send in `Retry-After`, for codes that mean "try
            /// again later" (a handler may say more precisely, e.g. a rate limit).
            pub const fn retry_after(self) -> Option<u64> {
                match self { $(ErrorCode::$variant => $retry_after,)+ }
            }

            /// True when a job that failed with this code is handed to a
            /// worker again (up to the delivery limit): the failure may be
            /// the node's, not the function's.
            pub const fn is_retried(self) -> bool {
                match self { $(ErrorCode::$variant => $retried,)+ }
            }

            /// What the code means, for people (the README and the API document).
            pub fn description(self) -> &'static str {
                match self { $(ErrorCode::$variant => concat!($($doc),+).trim_ascii(),)+ }
            }
        }
    };
}

error_codes! {
    /// The API request itself is malformed: JSON body, query, header or name.
    InvalidRequest = "invalid_request", BAD_REQUEST, retry_after: None, retried: false;
    /// The deployed bytes are not WebAssembly.
    NotWasm = "not_wasm", BAD_REQUEST, retry_after: None, retried: false;
    /// A core module was deployed where a component is needed.
    CoreModule = "core_module", BAD_REQUEST, retry_after: None, retried: false;
    /// The component does not validate or compile.
    CompileFailed = "compile_failed", BAD_REQUEST, retry_after: None, retried: false;
    /// The component imports something other than WASI 0.2.
    UnsupportedImports = "unsupported_imports", BAD_REQUEST, retry_after: None, retried: false;
    /// The component does not implement the `transform` world.
    WrongWorld = "wrong_world", BAD_REQUEST, retry_after: None, retried: false;
    /// The component creates more core instances, memories or tables than a component may.
    ComponentTooComplex = "component_too_complex", BAD_REQUEST, retry_after: None, retried: false;
    /// Compiling the component took longer than the compile timeout.
    CompileTimeout = "compile_timeout", BAD_REQUEST, retry_after: None, retried: false;
    /// The API key or admin token is missing or wrong.
    Unauthorized = "unauthorized", UNAUTHORIZED, retry_after: None, retried: false;
    /// The tenant has as many functions as its quota allows (`--max-functions`); delete one first.
    FunctionQuota = "function_quota", FORBIDDEN, retry_after: None, retried: false;
    /// No such route, function, job or result (another tenant's look the same).
    NotFound = "not_found", NOT_FOUND, retry_after: None, retried: false;
    /// The path exists but does not take this method.
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED, retry_after: None, retried: false;
    /// The request body arrived too slowly (below the minimum body rate).
    RequestTimeout = "request_timeout", REQUEST_TIMEOUT, retry_after: None, retried: false;
    /// The name is taken, or belongs to a built-in function.
    Conflict = "conflict", CONFLICT, retry_after: None, retried: false;
    /// The job has not finished yet; ask again later.
    JobNotFinished = "job_not_finished", CONFLICT, retry_after: Some(1), retried: false;
    /// The job failed and has no result; its status says why.
    JobFailed = "job_failed", CONFLICT, retry_after: None, retried: false;
    /// The job was cancelled before it ran and has no result.
    JobCancelled = "job_cancelled", CONFLICT, retry_after: None, retried: false;
    /// The job cannot be cancelled: a worker already took it, or it ended.
    JobNotQueued = "job_not_queued", CONFLICT, retry_after: None, retried: false;
    /// The request body is over the size limit.
    BodyTooLarge = "body_too_large", PAYLOAD_TOO_LARGE, retry_after: None, retried: false;
    /// The deployed component is over the node's component size limit (`--max-component-mb`).
    ComponentTooLarge = "component_too_large", PAYLOAD_TOO_LARGE, retry_after: None, retried: false;
    /// The function refused the input or its parameters.
    InvalidInput = "invalid_input", UNPROCESSABLE_ENTITY, retry_after: None, retried: false;
    /// This `Idempotency-Key` was used for a different request.
    IdempotencyConflict = "idempotency_conflict", UNPROCESSABLE_ENTITY, retry_after: None, retried: false;
    /// The `Idempotency-Key` header is longer than 255 bytes.
    IdempotencyKeyTooLong = "idempotency_key_too_long", BAD_REQUEST, retry_after: None, retried: false;
    /// The tenant's stored async results use its byte budget; results are freed as their TTL runs out.
    ResultStorageFull = "result_storage_full", TOO_MANY_REQUESTS, retry_after: Some(60), retried: false;
    /// Stored async results of all tenants use the node's (or Redis') byte budget.
    ResultStorageExhausted = "result_storage_exhausted", SERVICE_UNAVAILABLE, retry_after: Some(60), retried: false;
    /// Too many requests from this tenant.
    RateLimited = "rate_limited", TOO_MANY_REQUESTS, retry_after: Some(1), retried: false;
    /// The tenant already has as many jobs (or bytes of requests) waiting as its queue quota allows.
    QueueQuota = "queue_quota", TOO_MANY_REQUESTS, retry_after: Some(1), retried: false;
    /// The tenant already has as many deploys compiling as it may (`--tenant-compiles`); retry when one ends.
    CompileBusy = "compile_busy", TOO_MANY_REQUESTS, retry_after: Some(5), retried: false;
    /// The guest trapped: a panic, a stack overflow, `exit`, an out-of-bounds access.
    FunctionTrapped = "function_trapped", INTERNAL_SERVER_ERROR, retry_after: None, retried: false;
    /// The function reported an internal failure.
    FunctionError = "function_error", INTERNAL_SERVER_ERROR, retry_after: None, retried: false;
    /// The function tried to use more memory than its limit.
    MemoryLimit = "memory_limit", INTERNAL_SERVER_ERROR, retry_after: None, retried: false;
    /// The function's output is over the output limit.
    OutputTooLarge = "output_too_large", INTERNAL_SERVER_ERROR, retry_after: None, retried: false;
    /// The job's worker stopped answering on every delivery.
    WorkerLost = "worker_lost", INTERNAL_SERVER_ERROR, retry_after: None, retried: false;
    /// No worker could load the job's function version.
    FunctionUnavailable = "function_unavailable", INTERNAL_SERVER_ERROR, retry_after: None, retried: true;
    /// An internal fault; it has been logged.
    Internal = "internal", INTERNAL_SERVER_ERROR, retry_after: None, retried: false;
    /// Too much at once: the queue is full, too many connections, or every sandbox slot is busy.
    Overloaded = "overloaded", SERVICE_UNAVAILABLE, retry_after: Some(1), retried: true;
    /// The job queue cannot be reached.
    QueueUnavailable = "queue_unavailable", SERVICE_UNAVAILABLE, retry_after: Some(2), retried: false;
    /// The state store cannot be reached.
    StoreUnavailable = "store_unavailable", SERVICE_UNAVAILABLE, retry_after: Some(2), retried: false;
    /// The function ran past its deadline and was stopped, or a sync call had no result in time.
    Timeout = "timeout", GATEWAY_TIMEOUT, retry_after: None, retried: false;
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorCode {
    type Err = UnknownCode;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Self::ALL.iter().copied().find(|c| c.as_str() == code).ok_or_else(|| UnknownCode(code.to_owned()))
    }
}

/// A string that names no [`ErrorCode`] (from an older or newer node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCode(pub String);

impl std::fmt::Display for UnknownCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown error code {:?}", self.0)
    }
}

impl std::error::Error for UnknownCode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for &code in ErrorCode::ALL {
            assert_eq!(serde_json::to_string(&code).ok(), Some(format!("\"{}\"", code.as_str())));
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
        }
    }

    #[test]
    fn every_retry_after_is_on_a_status_that_means_later() {
        for &code in ErrorCode::ALL {
            if code.retry_after().is_some() {
                assert!(
                    matches!(code.status().as_u16(), 409 | 429 | 503),
                    "{code} has Retry-After on {}",
                    code.status()
                );
            }
        }
        assert_eq!("no_such_code".parse::<ErrorCode>(), Err(UnknownCode("no_such_code".to_owned())));
    }

    #[test]
    fn descriptions_are_single_sentences() {
        for &code in ErrorCode::ALL {
            let description = code.description();
            assert!(!description.is_empty() && !description.contains('\n'), "{code}: {description:?}");
        }
    }
}
