//! `wasi:http` components deployed by a tenant and served at
//! `/v1/functions/{name}/http/{path}`: a Rust hello (built with the guests)
//! and a JavaScript fetch-event handler (`functions/examples/echo-http-js`,
//! built in place by `sluice build` with componentize-js from npm), over
//! real HTTP on 127.0.0.1.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::http::{deploy, error_of, invoke};
use common::{TestServer, guest, start_server, start_server_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The JavaScript component, built once per test binary.
async fn echo_js() -> Vec<u8> {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let path = tokio::task::spawn_blocking(|| {
        BUILT
            .get_or_init(|| {
                let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions/examples/echo-http-js");
                let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
                    .arg("build")
                    .current_dir(dir)
                    .output()
                    .expect("sluice build starts");
                let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
                assert!(output.status.success(), "{}{}", text(&output.stdout), text(&output.stderr));
                PathBuf::from(text(&output.stdout).trim())
            })
            .clone()
    })
    .await
    .expect("joined");
    std::fs::read(path).expect("the built component")
}

/// Deploys `component` as `name` for a new tenant `tenant`; returns its key.
async fn deployed(server: &TestServer, tenant: &str, name: &str, component: Vec<u8>) -> String {
    let key = server.tenant(tenant).await;
    let response = deploy(server, &key, name, component).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["world"], "http", "{body}");
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_hello_is_deployed_as_http_answers_any_path_and_is_metered() {
    let server = start_server().await;
    let key = deployed(&server, "acme", "hello", guest("sluice_bench_hello_http")).await;
    let function = server.get_json("/v1/functions/hello", &key).await;
    assert_eq!((&function["world"], &function["versions"][0]["world"]), (&json!("http"), &json!("http")));

    for path in ["/v1/functions/hello/http", "/v1/functions/hello/http/", "/v1/functions/hello/http/a/b?c=d"] {
        let response = server.request(Method::GET, path, &key).send().await.expect("sent");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(response.headers().contains_key("sluice-job-id"), "{path}");
        assert_eq!(response.headers()["sluice-usage-bytes-out"], "14", "{path}");
        assert_eq!(response.text().await.expect("body"), "Hello, world!\n", "{path}");
    }
    let usage = server.get_json("/v1/usage", &key).await;
    let hello = usage["functions"].as_array().expect("functions").iter().find(|f| f["function"] == "hello").cloned();
    let hello = hello.unwrap_or_else(|| panic!("hello in {usage}"));
    assert_eq!((hello["invocations"].as_u64(), hello["failures"].as_u64()), (Some(3), Some(0)), "{hello}");
    assert_eq!(hello["bytes_out"].as_u64(), Some(3 * 14), "{hello}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_cannot_call_a_tenants_http_component() {
    let server = start_server().await;
    deployed(&server, "acme", "hello", guest("sluice_bench_hello_http")).await;
    let other = server.tenant("globex").await;
    let response = server.request(Method::GET, "/v1/functions/hello/http/", &other).send().await.expect("sent");
    let (status, code, message) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::NOT_FOUND, "not_found"));
    assert!(message.contains("hello"), "{message}");
    let response =
        reqwest::Client::new().get(format!("{}/v1/functions/hello/http/", server.url)).send().await.expect("sent");
    assert_eq!(error_of(response).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_world_is_called_at_its_own_url_and_the_other_says_where() {
    let server = start_server().await;
    let key = deployed(&server, "acme", "hello", guest("sluice_bench_hello_http")).await;
    for path in ["/v1/functions/hello/invoke", "/v1/functions/hello/jobs"] {
        let (status, code, message) = error_of(invoke(&server, &key, path, Vec::new()).await).await;
        assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "wrong_world"), "{path}");
        assert_eq!(message, "function `hello` is a wasi:http component: call it at /v1/functions/hello/http/");
    }
    let response = server.request(Method::POST, "/v1/functions/resize/http/", &key).send().await.expect("sent");
    let (status, code, message) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "wrong_world"));
    assert_eq!(message, "function `resize` is a transform: call it at /v1/functions/resize/invoke");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_fetch_handler_sees_the_method_path_query_fields_and_body_but_not_the_key() {
    let server = start_server().await;
    let key = deployed(&server, "acme", "echo", echo_js().await).await;
    let response = server
        .request(Method::PUT, "/v1/functions/echo/http/some/path?x=1&y=two", &key)
        .header("x-greeting", "hi there")
        .body("the body")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["x-echoed-by"], "echo-http-js");
    assert_eq!(response.headers()["content-type"], "application/json");
    let id = response.headers()["sluice-job-id"].to_str().expect("ascii").to_owned();
    let echoed: Value = response.json().await.expect("json");
    let expected = json!({
        "method": "PUT", "path": "/some/path", "query": "?x=1&y=two", "greeting": "hi there",
        "authorization": null, "bytes": 8, "body": "the body",
    });
    assert_eq!(echoed, expected);

    let logs = server.get_json(&format!("/v1/jobs/{id}/logs"), &key).await;
    assert_eq!(logs, json!({ "stdout": "", "stderr": "echo-http-js: PUT /some/path\n", "truncated": false }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_body_reaches_the_component_byte_for_byte() {
    let server = start_server().await;
    let key = deployed(&server, "acme", "echo", echo_js().await).await;
    let photo = common::photo("kodim23.png");
    let response = server.request(Method::POST, "/v1/functions/echo/http/", &key).body(photo.clone()).send().await;
    let response = response.expect("sent");
    assert_eq!(response.status(), StatusCode::CREATED);
    let echoed: Value = response.json().await.expect("json");
    assert_eq!(echoed["bytes"].as_u64(), Some(photo.len() as u64));
    assert_eq!(echoed["body"], String::from_utf8_lossy(&photo).as_ref());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_components_own_error_status_reaches_the_caller_as_it_set_it() {
    let server = start_server().await;
    let key = deployed(&server, "acme", "echo", echo_js().await).await;
    let response = server.request(Method::GET, "/v1/functions/echo/http/fail", &key).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(response.text().await.expect("body"), "no teapot here\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outgoing_request_from_the_sandbox_is_refused() {
    let server = start_server().await;
    let key = deployed(&server, "acme", "echo", echo_js().await).await;
    let response = server.request(Method::GET, "/v1/functions/echo/http/fetch", &key).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let text = response.text().await.expect("body");
    assert!(text.starts_with("refused: "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_past_the_output_cap_is_output_too_large() {
    let server = start_server_with(|c| c.platform.runtime.max_output = 64 * 1024).await;
    let key = deployed(&server, "acme", "echo", echo_js().await).await;
    let within = server.request(Method::GET, "/v1/functions/echo/http/big?bytes=65536", &key).send().await;
    let within = within.expect("sent");
    assert_eq!(within.status(), StatusCode::OK);
    assert_eq!(within.bytes().await.expect("body").len(), 65536);

    let over = server.request(Method::GET, "/v1/functions/echo/http/big?bytes=65537", &key).send().await;
    let (status, code, message) = error_of(over.expect("sent")).await;
    assert_eq!((status, code.as_str()), (StatusCode::INTERNAL_SERVER_ERROR, "output_too_large"));
    assert!(message.ends_with("the output limit is 65536 bytes"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_past_the_body_limit_is_refused_before_the_component_runs() {
    let server = start_server_with(|c| c.platform.max_body = 1024).await;
    let key = deployed(&server, "acme", "hello", guest("sluice_bench_hello_http")).await;
    let response = server.request(Method::POST, "/v1/functions/hello/http/", &key).body(vec![0u8; 1025]).send().await;
    let (status, code, message) = error_of(response.expect("sent")).await;
    assert_eq!((status, code.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"));
    assert_eq!(message, "the request body is larger than the 1024-byte limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_fields_past_the_head_cap_are_refused_before_the_component_runs() {
    let server = start_server().await;
    let key = deployed(&server, "acme", "hello", guest("sluice_bench_hello_http")).await;
    let response =
        server.request(Method::GET, "/v1/functions/hello/http/", &key).header("x-big", "a".repeat(70_000)).send().await;
    let (status, code, message) = error_of(response.expect("sent")).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
    assert!(message.contains("at most 100 fields and 65536 bytes are passed to a function"), "{message}");
}
