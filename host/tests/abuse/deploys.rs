//! Deploy abuse: one tenant deploying distinct components as fast as it
//! may, an oversized component, and a node restarting with many deployed
//! functions. Compiles, functions, versions and stored bytes stay bounded,
//! each refusal has its exact code, and the victim is served throughout.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::guest;
use crate::{Node, Victim};

/// A real component made distinct by a custom section: same code, new
/// bytes, so a new version to compile and store.
fn variant(n: usize, padding: usize) -> Vec<u8> {
    let mut component = guest("sluice_fixture_hostile");
    let name = b"sluice-abuse";
    let mut payload = format!("variant {n}").into_bytes();
    payload.resize(payload.len() + padding, b'x');
    let mut section = leb128(name.len());
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    component.push(0); // custom section id
    component.extend(leb128(section.len()));
    component.extend(section);
    component
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A deploy's status, error code (if any) and `Retry-After` (if any).
async fn deploy(node: &Node, key: &str, name: &str, bytes: Vec<u8>) -> (StatusCode, Option<String>, Option<String>) {
    let response = node
        .request(Method::PUT, &format!("/v1/functions/{name}"), key)
        .timeout(Duration::from_secs(120))
        .body(bytes)
        .send()
        .await
        .expect("the deploy is answered");
    let status = response.status();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body: Value = response.json().await.expect("a JSON answer");
    let code = body["error"]["code"].as_str().map(str::to_owned);
    (status, code, retry_after)
}

/// `text` without ANSI colour sequences (the node's log is coloured).
fn without_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.filter_map(Result::ok).count())
}

async fn versions_listed(node: &Node, key: &str) -> usize {
    let response = node.request(Method::GET, "/v1/functions", key).send().await.expect("listed");
    let list: Value = response.json().await.expect("json");
    list["functions"].as_array().expect("functions").iter().map(|f| f["versions"].as_array().map_or(0, Vec::len)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_flood_is_bounded_in_compiles_functions_versions_and_bytes() {
    let node = Node::start(&["--max-functions", "4", "--max-versions", "3", "--tenant-compiles", "1"]);
    let victim = Victim::new(&node).await;
    let attacker = node.tenant("attacker").await;
    let components = node.data.path().join("components");
    let artifacts = node.data.path().join("artifacts");
    let builtin_artifacts = files_in(&artifacts);

    let attack = async {
        // Six distinct components at once: one compiles, the rest are told to come back.
        let burst = (0..6).map(|n| deploy(&node, &attacker, "f0", variant(n, 0)));
        let burst = futures_util::future::join_all(burst).await;
        // Then 24 more one after another, over 6 names against a quota of 4.
        let mut sequential = Vec::new();
        for n in 6..30 {
            let name = format!("f{}", n % 6);
            sequential.push((name.clone(), deploy(&node, &attacker, &name, variant(n, 0)).await));
        }
        (burst, sequential)
    };
    let started = Instant::now();
    let ((burst, sequential), latencies) = victim.served_during(&node, attack).await;
    let attack_time = started.elapsed();

    let busy: Vec<_> = burst.iter().filter(|(status, ..)| *status == StatusCode::TOO_MANY_REQUESTS).collect();
    assert!(burst.iter().any(|(status, ..)| *status == StatusCode::CREATED), "one of the burst compiles: {burst:?}");
    assert!(!busy.is_empty(), "a tenant over its compile share is refused: {burst:?}");
    for (status, code, retry_after) in &burst {
        if *status != StatusCode::CREATED {
            assert_eq!((*status, code.as_deref()), (StatusCode::TOO_MANY_REQUESTS, Some("compile_busy")));
            assert_eq!(retry_after.as_deref(), Some("5"));
        }
    }
    for (name, (status, code, _)) in &sequential {
        match name.as_str() {
            "f4" | "f5" => {
                assert_eq!((*status, code.as_deref()), (StatusCode::FORBIDDEN, Some("function_quota")), "{name}");
            }
            _ => assert_eq!(*status, StatusCode::CREATED, "{name}: {code:?}"),
        }
    }
    // 4 functions × 3 kept versions; pruned bytes and their compiled code are gone.
    let listed = versions_listed(&node, &attacker).await;
    assert_eq!(listed, 12);
    assert_eq!(files_in(&components), 12);
    assert_eq!(files_in(&artifacts), builtin_artifacts + 12);

    for n in 0..4 {
        let response =
            node.request(Method::DELETE, &format!("/v1/functions/f{n}"), &attacker).send().await.expect("deleted");
        assert_eq!(response.status(), 200);
    }
    assert_eq!(files_in(&components), 0, "a delete collects the bytes");
    assert_eq!(files_in(&artifacts), builtin_artifacts, "and the compiled code");
    victim.probe(&node).await;
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    eprintln!(
        "deploy flood: 30 deploys in {attack_time:?}; {} compile_busy, {} function_quota; {} victim probes, slowest {slowest:?}; RSS after {} MiB (peak {} MiB)",
        busy.len(),
        sequential.iter().filter(|(_, (status, ..))| *status == StatusCode::FORBIDDEN).count(),
        latencies.len(),
        node.rss() >> 20,
        node.peak_rss() >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_component_gets_a_413_that_says_the_limit() {
    let node = Node::start(&["--max-component-mb", "1"]);
    let victim = Victim::new(&node).await;
    let attacker = node.tenant("attacker").await;
    let oversized = variant(0, 1024 * 1024 + 300 * 1024);
    let size_mib = format!("{:.1}", oversized.len() as f64 / (1024.0 * 1024.0));

    let attack = async {
        let response = node
            .request(Method::PUT, "/v1/functions/big", &attacker)
            .body(oversized.clone())
            .send()
            .await
            .expect("the refusal is readable");
        let status = response.status();
        let limit = response.headers().get("sluice-max-component-bytes").cloned();
        let body: Value = response.json().await.expect("a JSON error");
        (status, limit, body)
    };
    let ((status, limit, body), _) = victim.served_during(&node, attack).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "component_too_large");
    assert_eq!(
        body["error"]["message"],
        format!("the component is {size_mib} MiB; this server accepts at most 1 MiB (--max-component-mb)")
    );
    assert_eq!(limit.as_ref().and_then(|v| v.to_str().ok()), Some("1048576"));

    // The CLI checks first and says the same.
    let file = node.data.path().join("big.wasm");
    std::fs::write(&file, &oversized).expect("component file");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["deploy", "big"])
        .arg(&file)
        .env("SLUICE_URL", node.url())
        .env("SLUICE_API_KEY", &attacker)
        .output()
        .expect("sluice deploy runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the component is {size_mib} MiB; this server accepts at most 1 MiB (--max-component-mb)"
        )),
        "{stderr}"
    );
    victim.probe(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_many_functions_serves_before_warming_ends() {
    const FUNCTIONS: usize = 20;
    let mut node = Node::start(&[]);
    let tenant = node.tenant("many").await;
    let mut versions = Vec::new();
    for n in 0..FUNCTIONS {
        let response = node
            .request(Method::PUT, &format!("/v1/functions/f{n}"), &tenant)
            .body(variant(n, 0))
            .send()
            .await
            .expect("deployed");
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.expect("json");
        versions.push(body["version"].as_str().expect("version").trim_start_matches("sha256:").to_owned());
    }
    // Without their compiled artifacts, warming has to compile all of them again.
    let artifacts = node.data.path().join("artifacts");
    for entry in std::fs::read_dir(&artifacts).expect("artifacts").filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if versions.iter().any(|version| name.starts_with(version.as_str())) {
            std::fs::remove_file(entry.path()).expect("artifact removed");
        }
    }

    let restarted = Instant::now();
    node.restart(&["--compile-concurrency", "1"]);
    let ready = restarted.elapsed();
    let victim = Victim::new(&node).await;
    victim.probe(&node).await;
    let served = restarted.elapsed();
    assert!(!node.process.logs().contains("warmed"), "the node served before warming ended");
    // A function not warmed yet compiles on demand.
    let response = node
        .request(Method::POST, &format!("/v1/functions/f{}/invoke", FUNCTIONS - 1), &tenant)
        .body("hello")
        .send()
        .await
        .expect("called");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!((status, text.as_str()), (StatusCode::OK, "hello"), "the hostile fixture echoes by default");

    let deadline = Instant::now() + Duration::from_secs(300);
    while !node.process.logs().contains("warmed") {
        assert!(Instant::now() < deadline, "warming never ended:\n{}", node.process.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warmed = restarted.elapsed();
    let logs = without_colours(&node.process.logs());
    assert!(logs.contains(&format!("warmed versions={FUNCTIONS}")), "{logs}");
    victim.probe(&node).await;
    eprintln!(
        "restart with {FUNCTIONS} functions: ready after {ready:?}, victim served after {served:?}, warming ended after {warmed:?}"
    );
}
