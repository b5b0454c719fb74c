//! The last line of defence: a handler that panics becomes a logged 500
//! `internal`, so the caller gets an answer on a connection that stays
//! usable instead of a dropped connection.

use std::panic::AssertUnwindSafe;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;

use super::error::ApiError;

/// Runs the rest of the stack, turning a panic into 500 `internal`.
pub async fn catch_panic(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // A panicking request shares no state with other requests that it could
    // leave half-updated: handlers keep state in stores behind their own locks.
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic".to_owned());
            ApiError::internal(&format!("a handler panicked on {method} {path}: {message}")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower_service::Service;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_internal() {
        async fn boom() -> &'static str {
            panic!("the handler's bug")
        }
        let mut router = axum::Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" }))
            .layer(axum::middleware::from_fn(catch_panic));
        let request = |path: &str| Request::builder().uri(path).body(Body::empty()).expect("a request");

        let response = router.call(request("/boom")).await.expect("infallible");
        assert_eq!(response.status(), 500);
        let body = response.into_body().collect().await.expect("the body").to_bytes();
        assert_eq!(
            &body[..],
            br#"{"error":{"code":"internal","message":"an internal error occurred; it has been logged"}}"#
        );

        let response = router.call(request("/fine")).await.expect("infallible");
        assert_eq!(response.status(), 200, "the router still serves");
    }
}
