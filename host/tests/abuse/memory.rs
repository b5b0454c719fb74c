//! Many memories: a tenant deploys a component with several core instances,
//! each owning a memory it grows to 250 MiB and touches at start. Every
//! memory alone fits the 256 MiB per-call limit; before the limit covered
//! their sum, one call took 750 MiB of RSS (2 GB with eight of them).

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::Value;

use crate::{Node, Victim};

/// A component from `functions/fixtures/wat/`, as the build script converted it.
fn wat_fixture(name: &str) -> Vec<u8> {
    crate::common::guest(name.trim_end_matches(".wat"))
}

async fn deploy(node: &Node, key: &str, name: &str, component: Vec<u8>) -> (u16, Value) {
    let response = node
        .request(Method::PUT, &format!("/v1/functions/{name}"), key)
        .body(component)
        .send()
        .await
        .expect("the deploy is answered");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

const MIB: u64 = 1024 * 1024;
const CALLS: usize = 6;

#[tokio::test(flavor = "multi_thread")]
async fn many_memories_hit_the_memory_limit_and_the_node_stays_small() {
    let node = Node::start(&[]);
    let victim = Victim::new(&node).await;
    let attacker = node.tenant("attacker").await;
    let (status, body) = deploy(&node, &attacker, "hog", wat_fixture("many-memories.wat")).await;
    assert!(status == 200 || status == 201, "the fixture deploys: {status} {body}");

    // Warm the node up (the victim's function instantiated, buffers
    // allocated) so the growth measured is the attack's.
    victim.probe(&node).await;
    let before = node.rss();
    let attack = async {
        let calls = (0..CALLS).map(|_| {
            node.request(Method::POST, "/v1/functions/hog/invoke", &attacker)
                .timeout(Duration::from_secs(60))
                .body("x")
                .send()
        });
        let mut answers = Vec::new();
        for response in join_all(calls).await {
            let response = response.expect("the attacker's call is answered");
            let status = response.status().as_u16();
            answers.push((status, response.json::<Value>().await.expect("a JSON error")));
        }
        answers
    };
    let (answers, _latencies) = victim.served_during(&node, attack).await;
    let peak = node.peak_rss();
    let after = node.rss();
    eprintln!(
        "many memories: RSS before {} MiB, after {} MiB, peak {} MiB over {CALLS} concurrent calls",
        before / MIB,
        after / MIB,
        peak / MIB
    );

    for (status, body) in &answers {
        assert_eq!(*status, 500, "{body}");
        assert_eq!(body["error"]["code"], "memory_limit", "{body}");
        let message = body["error"]["message"].as_str().expect("a message");
        assert!(message.contains("all its memories and tables"), "{message}");
    }
    // Each call may hold at most the 256 MiB limit, summed over its
    // memories, and only the calls running at once count: far below the
    // 750 MiB per call the fixture would take without the sum.
    let budget = 256 * MIB * CALLS as u64;
    assert!(peak.saturating_sub(before) < budget, "peak RSS grew by {} MiB", (peak - before) / MIB);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_over_the_per_component_caps_is_refused_at_deploy() {
    let node = Node::start(&[]);
    let victim = Victim::new(&node).await;
    let attacker = node.tenant("attacker").await;
    let attack = deploy(&node, &attacker, "hogs", wat_fixture("too-many-memories.wat"));
    let ((status, body), _latencies) = victim.served_during(&node, attack).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "component_too_complex", "{body}");
    assert_eq!(
        body["error"]["message"],
        "the component creates 9 memories when instantiated; at most 4 are allowed \
         (a component built by a standard toolchain needs far fewer)"
    );
    let response =
        node.request(Method::GET, "/v1/functions/hogs", &attacker).send().await.expect("the lookup is answered");
    assert_eq!(response.status(), 404, "nothing was recorded");
}
