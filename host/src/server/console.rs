//! `/console`: the tenant and admin console, a static page that drives the
//! same API a client does. Its files (`host/console/`) are embedded in the
//! binary, so every front door serves the console of its own version with
//! no build step and nothing fetched from elsewhere.
//!
//! The page keeps the key in the browser's session storage and sends it as
//! the bearer token; the console itself needs no key to load. Its strict
//! Content-Security-Policy lets it load only its own files and talk only
//! to this origin, so text a tenant controls (names, logs) cannot become
//! script.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// The page the console opens on.
const INDEX: &str = "index.html";

/// What the console's pages may load and reach: their own files, images
/// they make from responses (`blob:`), and this origin's API; nothing
/// inline, nothing framed.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
                      connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's files by name, as `build.rs` found them in `host/console/`.
const FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/console_files.rs"));

/// One embedded file with what its response needs.
struct Asset {
    name: &'static str,
    body: &'static [u8],
    content_type: &'static str,
    /// A strong validator, so a browser revalidates cheaply (`no-cache`)
    /// and never runs a stale script against a newer API.
    etag: HeaderValue,
}

fn assets() -> &'static [Asset] {
    static ASSETS: OnceLock<Vec<Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        FILES
            .iter()
            .map(|&(name, body)| {
                let digest = hex::encode(&Sha256::digest(body)[..16]);
                Asset {
                    name,
                    body,
                    content_type: content_type(name),
                    etag: HeaderValue::from_str(&format!("\"{digest}\"")).unwrap_or(HeaderValue::from_static("\"\"")),
                }
            })
            .collect()
    })
}

/// The media type of a console file, by its extension.
fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

/// `/console`: sends the browser on to `/console/`, so the page's
/// relative links resolve inside the console's folder.
pub fn redirect_route<S: Clone + Send + Sync + 'static>() -> MethodRouter<S> {
    get(|| async { axum::response::Redirect::permanent(concat!("/console", "/")) })
}

/// `/console/`: the page itself.
pub fn index_route<S: Clone + Send + Sync + 'static>() -> MethodRouter<S> {
    get(|headers: HeaderMap| async move { serve(INDEX, &headers) })
}

/// `/console/{file}`: the page's scripts, styles and icon.
pub fn file_route<S: Clone + Send + Sync + 'static>() -> MethodRouter<S> {
    get(|Path(file): Path<String>, headers: HeaderMap| async move { serve(&file, &headers) })
}

fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some(asset) = assets().iter().find(|asset| asset.name == name) else {
        return ApiError::not_found(format!("the console has no file `{name}`")).into_response();
    };
    let unchanged = request.get(IF_NONE_MATCH).is_some_and(|tags| {
        tags.to_str().is_ok_and(|tags| tags.split(',').any(|tag| tag.trim().as_bytes() == asset.etag.as_bytes()))
    });
    let mut response = if unchanged { StatusCode::NOT_MODIFIED.into_response() } else { asset.body.into_response() };
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(ETAG, asset.etag.clone());
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_has_its_page_and_every_file_has_a_known_type() {
        assert!(FILES.iter().any(|(name, _)| *name == INDEX), "host/console/ has no {INDEX}");
        for (name, _) in FILES {
            assert_ne!(content_type(name), "application/octet-stream", "{name} would be served untyped");
        }
    }

    #[test]
    fn a_matching_etag_answers_304_and_an_unknown_file_404() {
        let page = serve(INDEX, &HeaderMap::new());
        assert_eq!(page.status(), StatusCode::OK);
        let etag = page.headers()[ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(IF_NONE_MATCH, etag);
        assert_eq!(serve(INDEX, &again).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(serve("secrets.txt", &HeaderMap::new()).status(), StatusCode::NOT_FOUND);
    }
}
