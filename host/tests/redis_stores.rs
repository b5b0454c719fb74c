//! The Redis state stores against a real `redis-server`, with two
//! independent connections standing in for two nodes.

use std::time::Duration;

use sluice::store::Stores;
use sluice::store::functions::RegistryError;
use sluice::store::idempotency::Claim;
use sluice::store::tenants::TenantError;
use sluice::store::usage::{BUCKET_MS, Bucket, CommitError};
use sluice_scheduler::{JobId, Usage};
use sluice_testkit::spawn_redis;

async fn two_nodes(url: &str) -> (Stores, Stores) {
    (Stores::redis(url, "t").await.expect("node a"), Stores::redis(url, "t").await.expect("node b"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_made_on_one_node_authenticates_on_another() {
    let redis = spawn_redis();
    let (a, b) = two_nodes(&redis.url).await;
    let (acme, key) = a.tenants.create("acme").await.expect("created");
    assert_eq!(b.tenants.authenticate(&key).await.expect("asked"), Some(acme));
    assert_eq!(b.tenants.authenticate("sk_wrong").await.expect("asked"), None);
    assert!(matches!(b.tenants.create("acme").await, Err(TenantError::NameTaken(_))));

    // The first node to start generates the admin token; the next keeps it.
    let token = a.tenants.configure_admin(None).await.expect("configured").expect("generated");
    assert_eq!(b.tenants.configure_admin(None).await.expect("configured"), None);
    assert!(b.tenants.is_admin(&token).await.expect("asked"));
    assert!(!b.tenants.is_admin("guess").await.expect("asked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_deployed_on_one_node_run_and_roll_back_on_another() {
    let redis = spawn_redis();
    let (a, b) = two_nodes(&redis.url).await;
    let (first, new) = a.functions.deploy("t1", "blur", "sha256:aa", b"one").await.expect("deployed");
    assert!(new && first.active == "sha256:aa");
    a.functions.deploy("t1", "blur", "sha256:bb", b"two").await.expect("deployed");
    assert_eq!(b.functions.get("t1", "blur").await.expect("read").expect("there").active, "sha256:bb");
    assert_eq!(b.functions.component("sha256:aa").await.expect("bytes"), b"one");
    assert_eq!(b.functions.rollback("t1", "blur", None).await.expect("rolled back").active, "sha256:aa");
    assert_eq!(a.functions.get("t1", "blur").await.expect("read").expect("there").active, "sha256:aa");
    let mut versions = b.functions.all_versions().await.expect("versions");
    versions.sort();
    assert_eq!(versions, ["sha256:aa", "sha256:bb"]);
    assert!(b.functions.list("t2").await.expect("list").is_empty(), "another tenant sees nothing");
    b.functions.delete("t1", "blur").await.expect("deleted");
    assert!(matches!(a.functions.delete("t1", "blur").await, Err(RegistryError::NotFound(_))));

    // Deploys racing from both nodes all land in the history.
    let versions: Vec<String> = (0..8).map(|n| format!("sha256:{n:02}")).collect();
    let racing = versions.iter().enumerate().map(|(n, version)| {
        let store = if n % 2 == 0 { &a } else { &b };
        store.functions.deploy("t1", "race", version, b"x")
    });
    for result in futures_util::future::join_all(racing).await {
        result.expect("deployed");
    }
    let record = a.functions.get("t1", "race").await.expect("read").expect("there");
    assert_eq!(record.versions.len(), 8, "no deploy lost to a concurrent one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_names_one_job_across_nodes() {
    let redis = spawn_redis();
    let (a, b) = two_nodes(&redis.url).await;
    let (first, second) = (JobId("j1".into()), JobId("j2".into()));
    let ttl = Duration::from_secs(60);
    assert_eq!(a.idempotency.claim("t", "k", "fp", &first, ttl).await.expect("claim"), Claim::New);
    assert_eq!(b.idempotency.claim("t", "k", "fp", &second, ttl).await.expect("claim"), Claim::Existing(first.clone()));
    assert_eq!(b.idempotency.claim("t", "k", "other", &second, ttl).await.expect("claim"), Claim::Conflict);
    b.idempotency.release("t", "k", &second).await.expect("not its claim: kept");
    assert_eq!(b.idempotency.claim("t", "k", "fp", &second, ttl).await.expect("claim"), Claim::Existing(first.clone()));
    a.idempotency.release("t", "k", &first).await.expect("released");
    assert_eq!(b.idempotency.claim("t", "k", "fp", &second, ttl).await.expect("claim"), Claim::New);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_logged_once_per_job_and_a_batch_is_committed_once() {
    let redis = spawn_redis();
    let (a, b) = two_nodes(&redis.url).await;
    let usage = Usage { outcome: sluice_core::Outcome::Ok, cpu_us: 5, ..Usage::default() };
    assert!(a.usage.record("j1", "t", "f", &usage).await.expect("logged"));
    assert!(!b.usage.record("j1", "t", "f", &usage).await.expect("logged"), "a rerun is not billed twice");
    assert!(b.usage.record("j2", "t", "f", &usage).await.expect("logged"));

    // Both nodes read the same batch; only the first commit counts.
    let batch_a = a.usage.pending(100).await.expect("pending");
    let batch_b = b.usage.pending(100).await.expect("pending");
    assert_eq!(batch_a, batch_b);
    assert_eq!(batch_a.entries.len(), 2);
    let hour_ms = batch_a.entries[0].at_ms / BUCKET_MS * BUCKET_MS;
    let delta =
        Bucket { tenant: "t".into(), function: "f".into(), hour_ms, invocations: 2, cpu_us: 10, ..Bucket::default() };
    a.usage.commit(&batch_a, std::slice::from_ref(&delta)).await.expect("committed");
    assert!(matches!(b.usage.commit(&batch_b, &[delta]).await, Err(CommitError::AlreadyAggregated)));
    assert!(b.usage.pending(100).await.expect("pending").entries.is_empty(), "the log is trimmed");

    let totals = b.usage.totals("t", 0, u64::MAX).await.expect("totals");
    assert_eq!((totals.len(), totals[0].invocations, totals[0].cpu_us), (1, 2, 10));
    assert!(b.usage.totals("t", hour_ms + BUCKET_MS, u64::MAX).await.expect("totals").is_empty());
    assert!(a.usage.totals("other", 0, u64::MAX).await.expect("totals").is_empty());
}
