//! Stored results: a tenant whose calls return 30 MB outputs must not fill
//! the node's memory, through sync calls (released once delivered) or
//! async jobs (kept within the tenant's result budget).

use std::time::Duration;

use reqwest::Method;

use crate::{Node, Victim};

const MB: u64 = 1024 * 1024;

/// The built-in resize blowing a 100×100 image up to 3200×3200 and keeping
/// the BMP format: a 30 MB output per call.
const BLOW_UP: &str = "/v1/functions/resize/invoke?width=3200&height=3200&fit=fill&format=same";
const BLOW_UP_JOB: &str = "/v1/functions/resize/jobs?width=3200&height=3200&fit=fill&format=same";

/// Bytes of one blown-up output (3200 × 3200 × 3 bytes of pixels).
const OUTPUT: u64 = 3200 * 3200 * 3;

/// A 100×100 BMP.
fn small_bmp() -> Vec<u8> {
    let image = image::RgbImage::from_fn(100, 100, |x, y| image::Rgb([x as u8, y as u8, 128]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Bmp).expect("encode a BMP");
    bytes.into_inner()
}

async fn blow_up_sync(node: &Node, key: &str, bmp: &[u8]) {
    let response = node
        .request(Method::POST, BLOW_UP, key)
        .timeout(Duration::from_secs(60))
        .body(bmp.to_vec())
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.expect("body");
    assert!(body.len() as u64 >= OUTPUT, "a {} byte output", body.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_sync_outputs_are_not_kept() {
    let node = Node::start(&[]);
    let victim = Victim::new(&node).await;
    let attacker = node.tenant("attacker").await;
    let bmp = small_bmp();
    // Warm up: the first call sizes the pools the node keeps anyway.
    blow_up_sync(&node, &attacker, &bmp).await;
    let before = node.rss();
    let ((), _) = victim
        .served_during(&node, async {
            for _ in 0..10 {
                let calls = (0..3).map(|_| blow_up_sync(&node, &attacker, &bmp));
                futures_util::future::join_all(calls).await;
            }
        })
        .await;
    let after = node.rss();
    eprintln!("30 sync 30 MB outputs: RSS before {} MiB, after {} MiB", before / MB, after / MB);
    assert!(
        after < before + 4 * OUTPUT,
        "RSS grew by {} MiB after the calls; delivered outputs should be released",
        after.saturating_sub(before) / MB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_result_budget_gets_429_and_keeps_its_results() {
    let budget_mb = 128;
    let node = Node::start(&["--tenant-result-mb", &budget_mb.to_string()]);
    let victim = Victim::new(&node).await;
    let attacker = node.tenant("attacker").await;
    let bmp = small_bmp();
    let before = node.rss();
    let (accepted, _) = victim
        .served_during(&node, async {
            let mut accepted = Vec::new();
            for attempt in 0..40 {
                let response = node
                    .request(Method::POST, BLOW_UP_JOB, &attacker)
                    .body(bmp.clone())
                    .send()
                    .await
                    .expect("answered");
                if response.status() == 429 {
                    let retry_after = response.headers().get("retry-after").cloned();
                    let body: serde_json::Value = response.json().await.expect("json");
                    assert_eq!(body["error"]["code"], "result_storage_full", "{body}");
                    assert!(retry_after.is_some(), "a Retry-After");
                    return accepted;
                }
                assert_eq!(response.status(), 202, "job {attempt}");
                let body: serde_json::Value = response.json().await.expect("json");
                let id = body["id"].as_str().expect("id").to_owned();
                wait_for_success(&node, &attacker, &id).await;
                accepted.push(id);
            }
            panic!("40 jobs of 30 MB were accepted under a {budget_mb} MiB budget");
        })
        .await;
    let after = node.rss();
    eprintln!(
        "{} async 30 MB results under a {budget_mb} MiB budget: RSS before {} MiB, after {} MiB",
        accepted.len(),
        before / MB,
        after / MB
    );
    assert!(accepted.len() as u64 >= budget_mb * MB / OUTPUT, "the budget admitted {} jobs", accepted.len());
    for id in &accepted {
        let response =
            node.request(Method::GET, &format!("/v1/jobs/{id}/result"), &attacker).send().await.expect("answered");
        assert_eq!(response.status(), 200, "job {id}'s result is kept");
        assert!(response.bytes().await.expect("body").len() as u64 >= OUTPUT);
    }
    assert!(
        after < before + budget_mb * MB + 4 * OUTPUT,
        "RSS grew by {} MiB under a {budget_mb} MiB budget",
        after.saturating_sub(before) / MB
    );
}

async fn wait_for_success(node: &Node, key: &str, id: &str) {
    for _ in 0..600 {
        let response = node.request(Method::GET, &format!("/v1/jobs/{id}"), key).send().await.expect("answered");
        let body: serde_json::Value = response.json().await.expect("json");
        match body["status"].as_str() {
            Some("succeeded") => return,
            Some("queued" | "running") => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => panic!("job {id}: {body}"),
        }
    }
    panic!("job {id} did not finish");
}
