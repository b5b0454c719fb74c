//! The v1 API over real HTTP on 127.0.0.1, one scenario per test.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::http::{deploy, error_of, invoke, wait_for_job, wait_for_status};
use common::{TestServer, guest, photo, start_server, start_server_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_tenant_needs_the_admin_token() {
    let server = start_server().await;
    let create = |token: &str, name: &str| {
        server.request(Method::POST, "/v1/tenants", token).json(&json!({ "name": name })).send()
    };
    assert_eq!(error_of(create("wrong", "acme").await.expect("sent")).await.1, "unauthorized");
    let created = create(&server.admin, "acme").await.expect("sent");
    assert_eq!(created.status(), StatusCode::CREATED);
    let body: Value = created.json().await.expect("json");
    assert_eq!(body["name"], "acme");
    assert!(body["api_key"].as_str().is_some_and(|k| k.starts_with("sk_")));
    assert_eq!(error_of(create(&server.admin, "acme").await.expect("sent")).await.1, "conflict");
    let (status, code, _) = error_of(create(&server.admin, "Not OK").await.expect("sent")).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
    let (status, code, _) =
        error_of(server.request(Method::POST, "/v1/tenants", &server.admin).body("{").send().await.expect("sent"))
            .await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_key_is_401_with_a_bearer_challenge() {
    let server = start_server().await;
    let response = reqwest::get(format!("{}/v1/functions", server.url)).await.expect("sent");
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let response =
        server.request(Method::POST, "/v1/functions/resize/invoke?width=10", "sk_nope").send().await.expect("sent");
    assert_eq!(error_of(response).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_resize_returns_the_image_with_job_id_and_usage_headers() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let input = photo("harvesters.jpeg");
    let response = invoke(&server, &key, "/v1/functions/resize/invoke?width=300&format=png", input.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "image/png");
    assert!(headers.contains_key("sluice-job-id"));
    assert_eq!(headers["sluice-usage-bytes-in"].to_str().expect("ascii"), input.len().to_string());
    for header in ["sluice-usage-wall-us", "sluice-usage-cpu-us", "sluice-usage-peak-memory-bytes"] {
        assert!(headers[header].to_str().expect("ascii").parse::<u64>().expect("number") > 0, "{header}");
    }
    let body = response.bytes().await.expect("body");
    assert_eq!(headers["sluice-usage-bytes-out"].to_str().expect("ascii"), body.len().to_string());
    let image = image::load_from_memory(&body).expect("a PNG");
    assert_eq!((image.width(), image.height()), (300, 221));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_job_is_accepted_then_polled_to_its_result() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let response = invoke(&server, &key, "/v1/functions/resize/jobs?width=64&format=webp", photo("kodim23.png")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().expect("ascii").to_owned();
    let body: Value = response.json().await.expect("json");
    let id = body["id"].as_str().expect("id").to_owned();
    assert_eq!(body["status"], "queued");
    assert_eq!(location, format!("/v1/jobs/{id}"));

    let job = wait_for_job(&server, &key, &id).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["function"], "resize");
    assert_eq!(job["usage"]["outcome"], "ok");
    assert!(job.get("error").is_none());
    let result = server.request(Method::GET, &format!("{location}/result"), &key).send().await.expect("sent");
    assert_eq!(result.status(), StatusCode::OK);
    assert_eq!(result.headers()["content-type"], "image/webp");
    let image = image::load_from_memory(&result.bytes().await.expect("body")).expect("webp");
    assert_eq!(image.width(), 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_or_failed_job_has_no_result_yet() {
    // No workers: jobs stay queued.
    let server = start_server_with(|c| c.workers = 0).await;
    let key = server.tenant("acme").await;
    let body: Value = invoke(&server, &key, "/v1/functions/resize/jobs?width=10", photo("kodim23.png"))
        .await
        .json()
        .await
        .expect("json");
    let id = body["id"].as_str().expect("id");
    let response = server.request(Method::GET, &format!("/v1/jobs/{id}/result"), &key).send().await.expect("sent");
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "job_not_finished"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_same_job_and_refuses_a_different_request() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let submit = |query: &'static str, body: Vec<u8>| {
        server
            .request(Method::POST, &format!("/v1/functions/resize/jobs?{query}"), &key)
            .header("idempotency-key", "order-42")
            .body(body)
            .send()
    };
    let first: Value = submit("width=20", photo("kodim23.png")).await.expect("sent").json().await.expect("json");
    let again = submit("width=20", photo("kodim23.png")).await.expect("sent");
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["id"], first["id"]);
    let (status, code, _) = error_of(submit("width=21", photo("kodim23.png")).await.expect("sent")).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_conflict"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_longer_than_255_bytes_is_refused() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let submit = |idempotency_key: String| {
        server
            .request(Method::POST, "/v1/functions/resize/jobs?width=20", &key)
            .header("idempotency-key", idempotency_key)
            .body(photo("kodim23.png"))
            .send()
    };
    let (status, code, message) = error_of(submit("k".repeat(256)).await.expect("sent")).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "idempotency_key_too_long"));
    assert_eq!(message, "the Idempotency-Key header is 256 bytes; at most 255 are accepted");
    assert_eq!(submit("k".repeat(255)).await.expect("sent").status(), StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_result_budget_gets_429_for_async_work_but_sync_calls_run() {
    let server = start_server_with(|c| c.queue.tenant_result_bytes = 1).await;
    let key = server.tenant("acme").await;
    let path = "/v1/functions/resize/jobs?width=20";
    let first: Value = invoke(&server, &key, path, photo("kodim23.png")).await.json().await.expect("json");
    let id = first["id"].as_str().expect("id");
    assert_eq!(wait_for_job(&server, &key, id).await["status"], "succeeded");
    let refused = invoke(&server, &key, path, photo("kodim23.png")).await;
    assert_eq!(refused.headers()["retry-after"], "60");
    let (status, code, _) = error_of(refused).await;
    assert_eq!((status, code.as_str()), (StatusCode::TOO_MANY_REQUESTS, "result_storage_full"));
    let result = server.request(Method::GET, &format!("/v1/jobs/{id}/result"), &key).send().await.expect("sent");
    assert_eq!(result.status(), StatusCode::OK, "the accepted job's result is kept");
    let sync = invoke(&server, &key, "/v1/functions/resize/invoke?width=20", photo("kodim23.png")).await;
    assert_eq!(sync.status(), StatusCode::OK, "a sync call's output is not stored, so it is not budgeted");
    let other = server.tenant("other").await;
    assert_eq!(invoke(&server, &other, path, photo("kodim23.png")).await.status(), StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_versions_rollback_and_delete_a_tenant_function() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let grayscale = guest("sluice_example_grayscale");
    let hostile = guest("sluice_fixture_hostile");

    let response = deploy(&server, &key, "mine", grayscale.clone()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let first: Value = response.json().await.expect("json");
    use sha2::Digest;
    let expected = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&grayscale)));
    assert_eq!(first, json!({"name": "mine", "version": expected, "size": grayscale.len(), "world": "transform"}));
    assert_eq!(deploy(&server, &key, "mine", grayscale.clone()).await.status(), StatusCode::OK, "same bytes again");

    let grey = invoke(&server, &key, "/v1/functions/mine/invoke", photo("kodim23.png")).await;
    assert_eq!(grey.status(), StatusCode::OK);
    assert_eq!(grey.headers()["content-type"], "image/png");

    let second: Value = deploy(&server, &key, "mine", hostile).await.json().await.expect("json");
    let echo = invoke(&server, &key, "/v1/functions/mine/invoke?act=echo", b"hello".to_vec()).await;
    assert_eq!(echo.bytes().await.expect("body").as_ref(), b"hello");

    let listed: Value = server.get_json("/v1/functions/mine", &key).await;
    assert_eq!(listed["active_version"], second["version"]);
    assert_eq!(listed["versions"].as_array().expect("versions").len(), 2);

    let rolled: Value = server
        .request(Method::POST, "/v1/functions/mine/rollback", &key)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(rolled["active_version"], first["version"]);
    let grey = invoke(&server, &key, "/v1/functions/mine/invoke", photo("kodim23.png")).await;
    assert_eq!(grey.headers()["content-type"], "image/png", "the rolled-back version runs");

    let all: Value = server.get_json("/v1/functions", &key).await;
    assert_eq!(all["functions"][0]["name"], "mine");
    assert!(all["builtins"].as_array().expect("builtins").iter().any(|b| b["name"] == "resize"));

    let deleted = server.request(Method::DELETE, "/v1/functions/mine", &key).send().await.expect("sent");
    assert_eq!(deleted.status(), StatusCode::OK);
    let (status, code, _) = error_of(invoke(&server, &key, "/v1/functions/mine/invoke", Vec::new()).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_bad_component_is_refused_with_its_code() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let hostile = guest("sluice_fixture_hostile");
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (b"\0asm\x01\0\0\0".to_vec(), StatusCode::BAD_REQUEST, "core_module"),
        (b"definitely not wasm".to_vec(), StatusCode::BAD_REQUEST, "not_wasm"),
        (hostile[..hostile.len() / 2].to_vec(), StatusCode::BAD_REQUEST, "compile_failed"),
        (guest("sluice_fixture_wrong_world"), StatusCode::BAD_REQUEST, "wrong_world"),
        (guest("sluice_fixture_unknown_import"), StatusCode::BAD_REQUEST, "unsupported_imports"),
    ];
    for (component, expected_status, expected_code) in cases {
        let (status, code, message) = error_of(deploy(&server, &key, "thing", component).await).await;
        assert_eq!((status, code.as_str()), (expected_status, expected_code), "{message}");
        assert!(!message.is_empty());
    }
    let (status, code, _) = error_of(deploy(&server, &key, "resize", hostile.clone()).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "conflict"));
    let deleted = server.request(Method::DELETE, "/v1/functions/resize", &key).send().await.expect("sent");
    assert_eq!(error_of(deleted).await.1, "conflict", "a built-in cannot be deleted");
    let (status, code, _) = error_of(deploy(&server, &key, "Bad.Name", hostile).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
    let listed: Value = server.get_json("/v1/functions", &key).await;
    assert_eq!(listed["functions"], json!([]), "nothing was recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_over_the_time_limit_is_refused_and_nothing_recorded() {
    let server = start_server_with(|c| c.platform.compile_timeout = Duration::ZERO).await;
    let key = server.tenant("acme").await;
    // Fresh bytes (a unique custom section) so no cached artifact makes the compile instant.
    let mut component = guest("sluice_fixture_hostile");
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    let payload = [&[1u8, b'n'][..], &nonce.to_le_bytes()].concat();
    component.extend_from_slice(&[0x00, u8::try_from(payload.len()).expect("small")]);
    component.extend_from_slice(&payload);
    let (status, code, message) = error_of(deploy(&server, &key, "slow", component).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "compile_timeout"));
    assert_eq!(message, "compiling the component took longer than 0s");
    let (status, _, _) =
        error_of(server.request(Method::GET, "/v1/functions/slow", &key).send().await.expect("sent")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_has_no_result_and_says_why() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let job: Value =
        invoke(&server, &key, "/v1/functions/resize/jobs?width=10", b"junk".to_vec()).await.json().await.expect("json");
    let id = job["id"].as_str().expect("id");
    let job = wait_for_job(&server, &key, id).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(
        job["error"],
        json!({"code": "invalid_input", "message": "unrecognised image format; send JPEG, PNG, GIF, WebP, BMP or TIFF"})
    );
    assert_eq!(job["deliveries"], 1, "refused input is not retried");
    let (status, code, _) =
        error_of(server.request(Method::GET, &format!("/v1/jobs/{id}/result"), &key).send().await.expect("sent")).await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "job_failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_function_job_result_and_usage_are_404_or_invisible() {
    let server = start_server().await;
    let alice = server.tenant("alice").await;
    let bob = server.tenant("bob").await;
    assert_eq!(deploy(&server, &alice, "secret", guest("sluice_fixture_hostile")).await.status(), StatusCode::CREATED);
    let job: Value =
        invoke(&server, &alice, "/v1/functions/secret/jobs?act=echo", b"x".to_vec()).await.json().await.expect("json");
    let id = job["id"].as_str().expect("id").to_owned();
    wait_for_job(&server, &alice, &id).await;

    for (method, path) in [
        (Method::POST, "/v1/functions/secret/invoke".to_owned()),
        (Method::POST, "/v1/functions/secret/jobs".to_owned()),
        (Method::GET, "/v1/functions/secret".to_owned()),
        (Method::DELETE, "/v1/functions/secret".to_owned()),
        (Method::POST, "/v1/functions/secret/rollback".to_owned()),
        (Method::GET, format!("/v1/jobs/{id}")),
        (Method::GET, format!("/v1/jobs/{id}/result")),
    ] {
        let (status, code, _) = error_of(server.request(method.clone(), &path, &bob).send().await.expect("sent")).await;
        assert_eq!((status, code.as_str()), (StatusCode::NOT_FOUND, "not_found"), "{method} {path}");
    }
    let usage: Value = server.get_json("/v1/usage", &bob).await;
    assert_eq!(usage["functions"], json!([]));
    assert_eq!(usage["tenant"], "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_the_function_refuses_is_422_invalid_input() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let (status, code, message) =
        error_of(invoke(&server, &key, "/v1/functions/resize/invoke?width=10", b"not an image".to_vec()).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"));
    assert_eq!(message, "unrecognised image format; send JPEG, PNG, GIF, WebP, BMP or TIFF");
    let (status, _, message) =
        error_of(invoke(&server, &key, "/v1/functions/resize/invoke?width=0", photo("kodim23.png")).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(message, "`width` must be a whole number from 1 to 16384, got `0`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_functions_get_their_status_and_the_host_stays_healthy() {
    let server = start_server_with(|c| {
        c.platform.runtime.timeout = Duration::from_millis(500);
        c.platform.runtime.memory_limit = 64 * 1024 * 1024;
        c.platform.runtime.max_output = 1024 * 1024;
    })
    .await;
    let key = server.tenant("mallory").await;
    deploy(&server, &key, "hostile", guest("sluice_fixture_hostile")).await;
    let cases = [
        ("loop", StatusCode::GATEWAY_TIMEOUT, "timeout"),
        ("sleep", StatusCode::GATEWAY_TIMEOUT, "timeout"),
        ("memory-bomb", StatusCode::INTERNAL_SERVER_ERROR, "memory_limit"),
        ("huge-output", StatusCode::INTERNAL_SERVER_ERROR, "output_too_large"),
        ("panic", StatusCode::INTERNAL_SERVER_ERROR, "function_trapped"),
        ("exit", StatusCode::INTERNAL_SERVER_ERROR, "function_trapped"),
        ("fail", StatusCode::INTERNAL_SERVER_ERROR, "function_error"),
    ];
    for (act, expected_status, expected_code) in cases {
        let response =
            invoke(&server, &key, &format!("/v1/functions/hostile/invoke?act={act}&bytes=2000000&mib=1"), Vec::new())
                .await;
        assert!(response.headers().contains_key("sluice-job-id"), "{act}");
        let (status, code, message) = error_of(response).await;
        assert_eq!((status, code.as_str()), (expected_status, expected_code), "{act}: {message}");
    }
    let healthy = reqwest::get(format!("{}/healthz", server.url)).await.expect("sent");
    assert_eq!(healthy.status(), StatusCode::OK);
    let other = server.tenant("innocent").await;
    let response = invoke(&server, &other, "/v1/functions/resize/invoke?width=32", photo("kodim23.png")).await;
    assert_eq!(response.status(), StatusCode::OK, "another tenant is unaffected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_job_fails_on_its_first_attempt_and_is_billed_for_it() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    deploy(&server, &key, "hostile", guest("sluice_fixture_hostile")).await;
    let job: Value =
        invoke(&server, &key, "/v1/functions/hostile/jobs?act=panic", Vec::new()).await.json().await.expect("json");
    let job = wait_for_job(&server, &key, job["id"].as_str().expect("id")).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["deliveries"], 1, "a trap is the guest's doing: not retried");
    assert_eq!(job["error"]["code"], "function_trapped");
    assert_eq!(job["error"]["message"], "the function trapped: wasm `unreachable` executed (a panic or abort)");
    assert!(job["usage"]["wall_us"].as_u64().is_some_and(|us| us > 0), "{job}");
    let usage: Value = server.get_json("/v1/usage", &key).await;
    assert_eq!(usage["functions"][0]["invocations"], 1, "the attempt that ran is billed");
    assert_eq!(usage["functions"][0]["failures"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_413_and_nothing_is_enqueued_or_billed() {
    // Small enough to sit in the socket buffers, so the client reads the
    // early answer instead of failing its write.
    let server = start_server_with(|c| c.platform.max_body = 16 * 1024).await;
    let key = server.tenant("acme").await;
    let (status, code, message) =
        error_of(invoke(&server, &key, "/v1/functions/resize/invoke?width=10", vec![0u8; 16 * 1024 + 1]).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"));
    assert_eq!(message, "the request body is larger than the 16384-byte limit");
    let usage: Value = server.get_json("/v1/usage", &key).await;
    assert_eq!(usage["functions"], json!([]));
    let metrics = server.request(Method::GET, "/metrics", &server.admin).send().await.expect("sent");
    let metrics = metrics.text().await.expect("text");
    assert!(metrics.contains("sluice_queue_depth 0"), "{metrics}");
    assert!(!metrics.contains("sluice_invocations_total{"), "nothing ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_over_the_limit_is_refused_before_any_body_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let addr = server.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /v1/functions/resize/invoke?width=10 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Content-Length: 10000000000\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("headers sent");
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut response))
        .await
        .expect("answered without waiting for the 10 GB body")
        .expect("read");
    assert!(response.starts_with("HTTP/1.1 413 Payload Too Large\r\n"), "{response}");
    assert!(
        response.ends_with(
            r#"{"error":{"code":"body_too_large","message":"the request body is larger than the 16777216-byte limit"}}"#
        ),
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_over_the_limit_is_cut_off_with_413() {
    let server = start_server_with(|c| c.platform.max_body = 64 * 1024).await;
    let key = server.tenant("acme").await;
    // No Content-Length: the limit is enforced while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..32).map(|_| Ok(vec![7u8; 4096])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = server
        .request(Method::POST, "/v1/functions/resize/invoke?width=10", &key)
        .body(body)
        .send()
        .await
        .expect("sent");
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_rate_gets_429_with_retry_after() {
    let server = start_server_with(|c| {
        c.platform.rate_per_second = 1;
        c.platform.rate_burst = 2;
    })
    .await;
    let key = server.tenant("acme").await;
    let other = server.tenant("other").await;
    for _ in 0..2 {
        assert_eq!(
            invoke(&server, &key, "/v1/functions/resize/invoke?width=8", photo("jpg-size-1x1.jpg")).await.status(),
            StatusCode::OK
        );
    }
    let response = invoke(&server, &key, "/v1/functions/resize/invoke?width=8", photo("jpg-size-1x1.jpg")).await;
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    let response = invoke(&server, &other, "/v1/functions/resize/invoke?width=8", photo("jpg-size-1x1.jpg")).await;
    assert_eq!(response.status(), StatusCode::OK, "another tenant has its own bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_running_limit_waits_its_turn_while_others_run() {
    let server = start_server_with(|c| {
        c.queue.tenant_concurrency = 1;
        c.platform.runtime.timeout = Duration::from_millis(1500);
    })
    .await;
    let key = server.tenant("acme").await;
    deploy(&server, &key, "hostile", guest("sluice_fixture_hostile")).await;
    let sleeping: Value =
        invoke(&server, &key, "/v1/functions/hostile/jobs?act=sleep", Vec::new()).await.json().await.expect("json");
    let sleeping = sleeping["id"].as_str().expect("id").to_owned();
    wait_for_status(&server, &key, &sleeping, "running").await;
    let other = server.tenant("other").await;
    let response = invoke(&server, &other, "/v1/functions/resize/invoke?width=8", photo("jpg-size-1x1.jpg")).await;
    assert_eq!(response.status(), StatusCode::OK, "another tenant runs at once");

    let response = invoke(&server, &key, "/v1/functions/hostile/invoke?act=echo", b"again".to_vec()).await;
    assert_eq!(response.status(), StatusCode::OK, "the call waited for its turn instead of being refused");
    let ended = wait_for_job(&server, &key, &sleeping).await;
    assert_eq!(
        (ended["status"].as_str(), ended["error"]["code"].as_str()),
        (Some("failed"), Some("timeout")),
        "the tenant's one slot was held until the sleeper timed out: {ended}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_queue_quota_gets_429_and_others_are_still_accepted() {
    let server = start_server_with(|c| {
        c.workers = 0;
        c.queue.tenant_queue_quota = 2;
    })
    .await;
    let key = server.tenant("acme").await;
    for _ in 0..2 {
        let response = invoke(&server, &key, "/v1/functions/resize/jobs?width=8", Vec::new()).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let response = invoke(&server, &key, "/v1/functions/resize/jobs?width=8", Vec::new()).await;
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, code, message) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::TOO_MANY_REQUESTS, "queue_quota"));
    assert_eq!(message, "this tenant already has 2 jobs waiting; wait for some to finish");
    let other = server.tenant("other").await;
    let response = invoke(&server, &other, "/v1/functions/resize/jobs?width=8", Vec::new()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED, "another tenant has its own quota");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_400_async_jobs_is_accepted_whole_and_drains_while_another_tenant_is_served() {
    let server = start_server().await;
    let (noisy, quiet) = (server.tenant("noisy").await, server.tenant("quiet").await);
    common::burst::drains_while_another_tenant_is_served(std::slice::from_ref(&server.url), &noisy, &quiet).await;
}

/// Submits an async resize of `body` for `key`; returns the job's id.
async fn submit_job(server: &TestServer, key: &str, function: &str, body: Vec<u8>) -> String {
    let response = invoke(server, key, &format!("/v1/functions/{function}/jobs?width=8"), body).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.expect("json");
    accepted["id"].as_str().expect("id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_view_counts_a_tenants_waiting_jobs_their_bytes_and_its_quota() {
    let server = start_server_with(|c| c.workers = 0).await;
    let (key, other) = (server.tenant("acme").await, server.tenant("other").await);
    for body in [b"12345".to_vec(), b"678".to_vec()] {
        submit_job(&server, &key, "resize", body).await;
    }
    let view = server.get_json("/v1/queue", &key).await;
    let defaults = sluice_scheduler::QueueConfig::default();
    assert_eq!(
        (&view["queued"], &view["queued_bytes"], &view["running"], &view["quota"]),
        (
            &json!(2),
            &json!(8),
            &json!(0),
            &json!({
                "queued_jobs": defaults.tenant_queue_quota,
                "queued_bytes": defaults.tenant_queue_bytes,
                "running": defaults.tenant_concurrency,
            })
        )
    );
    assert!(view["oldest_queued_age_ms"].as_u64().is_some(), "{view}");
    let theirs = server.get_json("/v1/queue", &other).await;
    assert_eq!((&theirs["queued"], &theirs["oldest_queued_age_ms"]), (&json!(0), &Value::Null));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_reads_any_tenants_queue_view_and_a_tenant_key_cannot() {
    let server = start_server_with(|c| c.workers = 0).await;
    let key = server.tenant("acme").await;
    submit_job(&server, &key, "resize", b"12345".to_vec()).await;
    let view = server.get_json("/v1/tenants/acme/queue", &server.admin).await;
    assert_eq!((&view["queued"], &view["queued_bytes"], &view["running"]), (&json!(1), &json!(5), &json!(0)));
    assert_eq!(view["quota"], server.get_json("/v1/queue", &key).await["quota"]);

    let response = server.request(Method::GET, "/v1/tenants/acme/queue", &key).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = server.request(Method::GET, "/v1/tenants/nobody/queue", &server.admin).send().await.expect("sent");
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_listed_a_page_at_a_time_and_filtered_by_function_and_status() {
    let server = start_server_with(|c| c.workers = 0).await;
    let (key, other) = (server.tenant("acme").await, server.tenant("other").await);
    let mut resizes = Vec::new();
    for _ in 0..3 {
        resizes.push(submit_job(&server, &key, "resize", Vec::new()).await);
    }
    let grey = submit_job(&server, &key, "grayscale", Vec::new()).await;
    submit_job(&server, &other, "resize", Vec::new()).await;

    let first = server.get_json("/v1/jobs?limit=3", &key).await;
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second = server.get_json(&format!("/v1/jobs?limit=3&cursor={cursor}"), &key).await;
    assert_eq!(second["next_cursor"], Value::Null);
    let mut listed: Vec<String> = [&first, &second]
        .iter()
        .flat_map(|page| page["jobs"].as_array().expect("jobs").iter())
        .map(|job| job["id"].as_str().expect("id").to_owned())
        .collect();
    let mut mine = [resizes.clone(), vec![grey.clone()]].concat();
    listed.sort();
    mine.sort();
    assert_eq!(listed, mine, "every job of the caller once, none of another tenant's");

    let greys = server.get_json("/v1/jobs?function=grayscale", &key).await;
    assert_eq!(greys["jobs"].as_array().map(|jobs| jobs.len()), Some(1));
    assert_eq!(greys["jobs"][0]["id"], json!(grey));
    let queued = server.get_json("/v1/jobs?status=queued", &key).await;
    assert_eq!(queued["jobs"].as_array().map(|jobs| jobs.len()), Some(4));
    let done = server.get_json("/v1/jobs?status=succeeded", &key).await;
    assert_eq!(done, json!({"jobs": [], "next_cursor": null}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_with_an_unknown_status_or_a_bad_limit_is_400() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let response = server.request(Method::GET, "/v1/jobs?status=done", &key).send().await.expect("sent");
    let (status, code, message) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
    assert_eq!(message, "unknown status `done`; use one of queued, running, succeeded, failed, cancelled");
    let response = server.request(Method::GET, "/v1/jobs?limit=501", &key).send().await.expect("sent");
    let (status, code, message) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
    assert_eq!(message, "limit must be between 1 and 500, not 501");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_is_cancelled_once_and_has_no_result() {
    let server = start_server_with(|c| c.workers = 0).await;
    let (key, other) = (server.tenant("acme").await, server.tenant("other").await);
    let id = submit_job(&server, &key, "resize", Vec::new()).await;

    let response = server.request(Method::DELETE, &format!("/v1/jobs/{id}"), &other).send().await.expect("sent");
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::NOT_FOUND, "not_found"), "another tenant's job does not exist");

    let response = server.request(Method::DELETE, &format!("/v1/jobs/{id}"), &key).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let cancelled: Value = response.json().await.expect("json");
    assert_eq!((&cancelled["id"], &cancelled["status"]), (&json!(id), &json!("cancelled")));
    assert_eq!(server.get_json(&format!("/v1/jobs/{id}"), &key).await["status"], "cancelled");
    assert_eq!(server.get_json("/v1/queue", &key).await["queued"], 0);

    let response = server.request(Method::GET, &format!("/v1/jobs/{id}/result"), &key).send().await.expect("sent");
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "job_cancelled"));
    let response = server.request(Method::DELETE, &format!("/v1/jobs/{id}"), &key).send().await.expect("sent");
    let (status, code, message) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "job_not_queued"));
    assert_eq!(message, format!("job {id} is cancelled; only a queued job can be cancelled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_shows_the_queue_lists_jobs_and_cancels_one() {
    let server = start_server_with(|c| c.workers = 0).await;
    let key = server.tenant("acme").await;
    let id = submit_job(&server, &key, "resize", Vec::new()).await;

    let queue = server.cli(&key, &["queue"]).await;
    assert!(queue.status.success(), "{}", String::from_utf8_lossy(&queue.stderr));
    let view: Value = serde_json::from_slice(&queue.stdout).expect("json");
    assert_eq!(view["queued"], 1);

    let listed = server.cli(&key, &["job", "list", "--status", "queued", "--limit", "10"]).await;
    let page: Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(page["jobs"][0]["id"], json!(id));

    let cancelled = server.cli(&key, &["job", "cancel", &id]).await;
    let job: Value = serde_json::from_slice(&cancelled.stdout).expect("json");
    assert_eq!(job["status"], "cancelled");
    let again = server.cli(&key, &["job", "cancel", &id]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("job_not_queued"), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_503_with_retry_after() {
    let server = start_server_with(|c| {
        c.workers = 0;
        c.queue.capacity = 1;
    })
    .await;
    let key = server.tenant("acme").await;
    assert_eq!(
        invoke(&server, &key, "/v1/functions/resize/jobs?width=8", Vec::new()).await.status(),
        StatusCode::ACCEPTED
    );
    let response = invoke(&server, &key, "/v1/functions/resize/jobs?width=8", Vec::new()).await;
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, code, message) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "overloaded"));
    assert_eq!(message, "the queue is full (1 jobs waiting)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_calls_gets_only_200_429_or_503_and_never_hangs() {
    let server = start_server_with(|c| {
        c.queue.capacity = 4;
        c.queue.tenant_concurrency = 6;
        c.platform.rate_per_second = 20;
        c.platform.rate_burst = 20;
    })
    .await;
    let keys = [server.tenant("a").await, server.tenant("b").await];
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let input = photo("kodim23.png");
    let calls = (0..48).map(|i| {
        let request = client
            .post(format!("{}/v1/functions/resize/invoke?width=64", server.url))
            .bearer_auth(&keys[i % 2])
            .body(input.clone());
        async move { request.send().await.map(|r| r.status()) }
    });
    let statuses = futures_util::future::join_all(calls).await;
    let mut counts = BTreeMap::new();
    for status in statuses {
        let status = status.expect("every call is answered within 30 s");
        assert!([200, 429, 503].contains(&status.as_u16()), "unexpected {status}");
        *counts.entry(status.as_u16()).or_insert(0) += 1;
    }
    assert!(counts.get(&200).is_some_and(|&n| n > 0), "{counts:?}");
    assert!(
        counts.get(&429).copied().unwrap_or(0) + counts.get(&503).copied().unwrap_or(0) > 0,
        "the bounds were hit: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_totals_match_the_calls_made() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let input = photo("kodim23.png");
    let mut bytes_out = 0;
    for _ in 0..3 {
        let response = invoke(&server, &key, "/v1/functions/resize/invoke?width=50", input.clone()).await;
        bytes_out += response.bytes().await.expect("body").len();
    }
    invoke(&server, &key, "/v1/functions/resize/invoke?width=50", b"junk".to_vec()).await;
    let usage: Value = server.get_json("/v1/usage", &key).await;
    assert_eq!(usage["tenant"], "acme");
    let resize = &usage["functions"][0];
    assert_eq!(resize["function"], "resize");
    assert_eq!(resize["invocations"], 4);
    assert_eq!(resize["failures"], 1);
    assert_eq!(resize["bytes_in"], 3 * input.len() + 4);
    assert_eq!(resize["bytes_out"], bytes_out);
    assert!(resize["cpu_ms"].as_f64().is_some_and(|ms| ms > 0.0));
    assert!(resize["cost"].as_f64().is_some_and(|cost| cost > 0.0));

    let past: Value = server.get_json("/v1/usage?from=0&to=3600", &key).await;
    assert_eq!(past["functions"], json!([]));
    assert_eq!(past["from"], "1970-01-01T00:00:00Z");
    assert_eq!(past["to"], "1970-01-01T01:00:00Z");
    let (status, code, _) =
        error_of(server.request(Method::GET, "/v1/usage?from=soon", &key).send().await.expect("sent")).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_tenants_functions_and_usage() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::start_server_in(dir.path(), |_| {}).await;
    let key = server.tenant("acme").await;
    deploy(&server, &key, "grey", guest("sluice_example_grayscale")).await;
    assert_eq!(
        invoke(&server, &key, "/v1/functions/grey/invoke", photo("bricks-gray.png")).await.status(),
        StatusCode::OK
    );
    server.stop().await.expect("clean shutdown");

    let server = common::start_server_in(dir.path(), |_| {}).await;
    let response = invoke(&server, &key, "/v1/functions/grey/invoke", photo("bricks-gray.png")).await;
    assert_eq!(response.status(), StatusCode::OK, "the key and the function survived");
    let usage: Value = server.get_json("/v1/usage", &key).await;
    assert_eq!(usage["functions"][0]["function"], "grey");
    assert_eq!(usage["functions"][0]["invocations"], 2, "usage from before the restart is kept");
    let tenants = std::fs::read_to_string(dir.path().join("tenants.json")).expect("tenants file");
    assert!(!tenants.contains(&key), "only the key's hash is stored");
    server.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_expire_after_the_ttl() {
    let server = start_server_with(|c| c.queue.result_ttl = Duration::from_millis(300)).await;
    let key = server.tenant("acme").await;
    let job: Value = invoke(&server, &key, "/v1/functions/resize/jobs?width=8", photo("jpg-size-1x1.jpg"))
        .await
        .json()
        .await
        .expect("json");
    let id = job["id"].as_str().expect("id");
    wait_for_job(&server, &key, id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, code, _) =
        error_of(server.request(Method::GET, &format!("/v1/jobs/{id}/result"), &key).send().await.expect("sent")).await;
    assert_eq!((status, code.as_str()), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_unknown_routes() {
    let server = start_server().await;
    let get = |path: &str| reqwest::get(format!("{}{path}", server.url));
    assert_eq!(get("/healthz").await.expect("sent").json::<Value>().await.expect("json"), json!({"status": "ok"}));
    assert_eq!(
        get("/readyz").await.expect("sent").json::<Value>().await.expect("json"),
        json!({"status": "ready", "worker_nodes": 1})
    );
    let (status, code, _) = error_of(get("/v2/anything").await.expect("sent")).await;
    assert_eq!((status, code.as_str()), (StatusCode::NOT_FOUND, "not_found"));
    let patched = reqwest::Client::new().patch(format!("{}/v1/tenants", server.url)).send().await.expect("sent");
    let (status, code, _) = error_of(patched).await;
    assert_eq!((status, code.as_str()), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));

    let key = server.tenant("acme").await;
    invoke(&server, &key, "/v1/functions/resize/invoke?width=8", photo("jpg-size-1x1.jpg")).await;
    let metrics = server.request(Method::GET, "/metrics", &server.admin).send().await.expect("sent");
    let metrics = metrics.text().await.expect("text");
    for line in [
        "sluice_http_requests_total{route=\"/v1/tenants\",status=\"201\"} 1",
        "sluice_http_requests_total{route=\"/v1/functions/{name}/invoke\",status=\"200\"} 1",
        "sluice_invocations_total{function=\"resize\",outcome=\"ok\"} 1",
        "sluice_queue_depth 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    assert!(metrics.contains("sluice_invocation_duration_seconds_bucket{function=\"resize\""));
    assert!(metrics.contains("sluice_http_request_duration_seconds_bucket{route=\"/healthz\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_admin_token_and_never_name_a_tenants_function() {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let (status, code, _) = error_of(reqwest::get(format!("{}/metrics", server.url)).await.expect("sent")).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (status, code, _) = error_of(server.request(Method::GET, "/metrics", &key).send().await.expect("sent")).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "unauthorized"), "a tenant key is not enough");

    assert_eq!(deploy(&server, &key, "acme-private-thumbs", guest("sluice_example_grayscale")).await.status(), 201);
    let called = invoke(&server, &key, "/v1/functions/acme-private-thumbs/invoke", photo("jpg-size-1x1.jpg")).await;
    assert_eq!(called.status(), 200);
    let metrics = server.request(Method::GET, "/metrics", &server.admin).send().await.expect("sent");
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.expect("text");
    assert!(
        metrics.lines().any(|l| l == "sluice_invocations_total{function=\"tenant\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("acme"), "a tenant's function name leaked:\n{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_serves_metrics_without_a_token_and_nothing_else() {
    let server = start_server_with(|c| c.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"))).await;
    let metrics_url = server.metrics_url.clone().expect("a metrics listener");
    let response = reqwest::get(&metrics_url).await.expect("sent");
    assert_eq!(response.status(), 200);
    assert!(response.text().await.expect("text").contains("sluice_queue_depth"));
    let elsewhere = metrics_url.replace("/metrics", "/v1/functions");
    let (status, code, _) = error_of(reqwest::get(&elsewhere).await.expect("sent")).await;
    assert_eq!((status, code.as_str()), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_document_is_the_generated_one() {
    let server = start_server().await;
    let served: Value =
        reqwest::get(format!("{}/openapi.json", server.url)).await.expect("sent").json().await.expect("json");
    let generated = serde_json::to_value(sluice::server::document()).expect("the document serializes");
    assert_eq!(served, generated);
    assert_eq!(served["openapi"], "3.1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_calls_work_an_outage_is_a_quick_503_and_service_recovers() {
    use sluice_testkit::{AppendFsync, spawn_redis_with};
    // Every acknowledged write (the tenant) survives the crash below.
    let mut redis = spawn_redis_with(AppendFsync::Always);
    let url = redis.url.clone();
    let server = start_server_with(move |c| c.backend.redis_url = Some(url)).await;
    let key = server.tenant("acme").await;
    let call = || invoke(&server, &key, "/v1/functions/resize/invoke?width=16", photo("kodim23.png"));
    assert_eq!(call().await.status(), StatusCode::OK);

    redis.kill();
    let started = std::time::Instant::now();
    let response = call().await;
    assert!(started.elapsed() < Duration::from_secs(3), "answered in {:?}", started.elapsed());
    assert_eq!(response.headers()["retry-after"], "2");
    let (status, code, _) = error_of(response).await;
    // Cut off from Redis the node cannot hear of revoked keys, so it trusts
    // no cached key: the tenant store is what reports the outage.
    assert_eq!((status, code.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"));
    let ready = reqwest::get(format!("{}/readyz", server.url)).await.expect("sent");
    assert_eq!(error_of(ready).await.0, StatusCode::SERVICE_UNAVAILABLE);

    redis.restart();
    let mut recovered = false;
    for _ in 0..50 {
        if call().await.status() == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "calls succeed again once Redis is back");
    assert_eq!(reqwest::get(format!("{}/readyz", server.url)).await.expect("sent").status(), StatusCode::OK);
}

/// The README's table of error codes, as `sluice_core::ErrorCode` defines them.
fn error_code_table() -> String {
    let mut table = String::from("| code | HTTP | meaning |\n|---|---|---|\n");
    for &code in sluice_core::ErrorCode::ALL {
        let mut notes = Vec::new();
        if code.retry_after().is_some() {
            notes.push("with `Retry-After`");
        }
        if code.is_retried() {
            notes.push("a job is retried");
        }
        let notes = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join("; ")) };
        table.push_str(&format!("| `{code}` | {} | {}{notes} |\n", code.status().as_u16(), code.description()));
    }
    table
}

/// Replaces `path`'s contents with `fresh` and fails when they differed,
/// so a stale generated file is fixed by running the test once more.
fn regenerate(path: &std::path::Path, current: &str, fresh: &str) {
    if current != fresh {
        std::fs::write(path, fresh).unwrap_or_else(|err| panic!("cannot update {}: {err}", path.display()));
        panic!("{} was stale and has been regenerated; review and commit it", path.display());
    }
}

#[test]
fn the_committed_openapi_document_is_the_generated_one() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    let fresh = sluice::server::document().to_pretty_json().expect("the document renders") + "\n";
    regenerate(&path, &current, &fresh);
}

#[test]
fn the_openapi_document_names_every_error_code() {
    let document = serde_json::to_value(sluice::server::document()).expect("the document serializes");
    let codes = &document["components"]["schemas"]["ErrorCode"]["enum"];
    let listed: Vec<&str> = codes.as_array().expect("an enum").iter().filter_map(Value::as_str).collect();
    let all: Vec<&str> = sluice_core::ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(listed, all);
}

#[test]
fn the_readme_error_table_is_rendered_from_the_error_codes() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).expect("README");
    let start = readme.find("<!-- error-codes:").expect("the README has an error-codes marker");
    let body_start = start + readme[start..].find("-->\n").expect("the marker closes") + 4;
    let end = readme.find("<!-- /error-codes -->").expect("the README has an end marker");
    let fresh = format!("{}{}{}", &readme[..body_start], error_code_table(), &readme[end..]);
    regenerate(&path, &readme, &fresh);
}
