//! The OpenAPI document, generated from the handlers' annotations and the
//! response types: served at `/openapi.json` and kept in
//! `host/openapi.json` (a test regenerates it and fails when it is stale).
//!
//! Each handler lists the error codes it can answer with in an
//! [`api_errors!`] type beside it; the document turns each list into one
//! response per status, naming every code.

use std::collections::BTreeMap;

use sluice_core::ErrorCode;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};
use super::http_calls::__path_call_http;

/// The document's fixed parts; the routes add their paths.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice",
        description = "A serverless WebAssembly function platform for image transforms. Errors are \
                       `{\"error\": {\"code\", \"message\"}}` with a stable `code` (schema `ErrorCode`)."
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode)),
    // Routed with any method in `routes()`, which utoipa's router cannot document.
    paths(call_http),
    modifiers(&Security, &ErrorCodeTable),
    tags(
        (name = "tenants", description = "Tenants and their API keys (admin)"),
        (name = "functions", description = "Deploying and calling functions"),
        (name = "jobs", description = "Async jobs and their results"),
        (name = "usage", description = "What a tenant's calls cost"),
        (name = "ops", description = "Health, readiness, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// Declares a type listing the error codes one route can answer with, for
/// its `#[utoipa::path(responses(...))]`.
macro_rules! api_errors {
    ($(#[$meta:meta])* $name:ident: $($code:ident),+ $(,)?) => {
        $(#[$meta])*
        pub(crate) struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
                $crate::server::openapi::error_responses(&[$(sluice_core::ErrorCode::$code),+])
            }
        }
    };
}
pub(crate) use api_errors;

/// One response per status among `codes`, naming each code it may carry.
pub fn error_responses(codes: &[ErrorCode]) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for &code in codes {
        by_status.entry(code.status().as_u16()).or_default().push(code);
    }
    by_status
        .into_iter()
        .map(|(status, codes)| {
            let described: Vec<String> = codes.iter().map(|code| format!("`{code}`: {}", code.description())).collect();
            let mut response = ResponseBuilder::new().description(described.join("\n\n")).content(
                "application/json",
                ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
            );
            if codes.iter().any(|code| code.retry_after().is_some()) {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
                        .description(Some("Seconds to wait before trying again"))
                        .build(),
                );
            }
            (status.to_string(), RefOr::T(response.build()))
        })
        .collect()
}

/// Operations whose body may be left out entirely: calls (their input may
/// be empty), a rollback (to the previous version) and a key rotation (with
/// the default grace period).
const OPTIONAL_BODIES: &[&str] = &["invoke", "submit", "rollback", "rotate_key"];

/// What the annotations cannot say: the bodies of [`OPTIONAL_BODIES`] may
/// be left out (the macro marks every non-`Option` body required, and an
/// `Option` would make a binary body nullable JSON).
pub fn finish(mut document: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    for item in document.paths.paths.values_mut() {
        for operation in [&mut item.post, &mut item.put].into_iter().flatten() {
            let optional = operation.operation_id.as_deref().is_some_and(|id| OPTIONAL_BODIES.contains(&id));
            if let (true, Some(body)) = (optional, operation.request_body.as_mut()) {
                body.required = Some(utoipa::openapi::Required::False);
            }
        }
    }
    document
}

/// Bearer schemes: a tenant's API key, and the admin token.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description)).build(),
            )
        };
        components.add_security_scheme("tenant", bearer("A tenant's API key, shown once when the tenant is created"));
        components.add_security_scheme("admin", bearer("The admin token `sluice serve` printed or was given"));
    }
}

/// Every code with its status and meaning, in the `ErrorCode` schema.
struct ErrorCodeTable;

impl Modify for ErrorCodeTable {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else { return };
        if let Some(RefOr::T(Schema::Object(schema))) = components.schemas.get_mut("ErrorCode") {
            let rows: Vec<String> = ErrorCode::ALL
                .iter()
                .map(|code| format!("- `{code}` ({}): {}", code.status().as_u16(), code.description()))
                .collect();
            schema.description =
                Some(format!("A stable error code; the HTTP status follows from it.\n\n{}", rows.join("\n")));
        }
    }
}
