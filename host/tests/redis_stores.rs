//! What only the Redis stores do: several nodes (independent connections)
//! sharing one state, the authentication cache, the usage markers' lifetime
//! and outages. What every backend does is in `store_conformance/`.

mod common;

use redis::AsyncCommands;
use sluice::store::functions::RegistryError;
use sluice::store::tenants::TenantError;
use sluice::store::usage::{BUCKET_MS, Bucket, CommitError};
use sluice::store::{StoreError, Stores};
use sluice_core::{ErrorCode, Outcome, TenantId, Version};
use sluice_scheduler::{JobId, Usage};
use sluice_testkit::spawn_redis;

use common::stores::PREFIX;

async fn node(url: &str) -> Stores {
    Stores::redis(url, PREFIX).await.expect("the node connects")
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).expect("a valid Redis URL");
    client.get_multiplexed_async_connection().await.expect("Redis answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_created_on_one_node_authenticates_on_another() {
    let redis = spawn_redis();
    let (a, b) = (node(&redis.url).await, node(&redis.url).await);
    let (acme, key) = a.tenants.create("acme").await.expect("created");
    assert_eq!(b.tenants.authenticate(&key).await.expect("asked"), Some(acme));
    let err = b.tenants.create("acme").await.expect_err("taken on the other node");
    assert!(matches!(&err, TenantError::NameTaken(name) if name == "acme"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_first_node_to_start_generates_the_admin_token() {
    let redis = spawn_redis();
    let (a, b) = (node(&redis.url).await, node(&redis.url).await);
    let token = a.tenants.configure_admin(None).await.expect("configured").expect("generated");
    assert_eq!(b.tenants.configure_admin(None).await.expect("configured"), None);
    assert!(b.tenants.is_admin(&token).await.expect("asked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_deployed_on_one_node_runs_and_rolls_back_on_another() {
    let redis = spawn_redis();
    let (a, b) = (node(&redis.url).await, node(&redis.url).await);
    let tenant = TenantId::from("t1");
    let (aa, bb) = (Version::from("sha256:aa"), Version::from("sha256:bb"));
    a.functions.deploy(&tenant, "blur", &aa, b"one").await.expect("deployed");
    a.functions.deploy(&tenant, "blur", &bb, b"two").await.expect("deployed");
    assert_eq!(b.functions.get(&tenant, "blur").await.expect("read").expect("there").active, bb);
    assert_eq!(b.functions.component(&aa).await.expect("bytes"), b"one");
    assert_eq!(b.functions.rollback(&tenant, "blur", None).await.expect("rolled back").active, aa);
    assert_eq!(a.functions.get(&tenant, "blur").await.expect("read").expect("there").active, aa);
    b.functions.delete(&tenant, "blur").await.expect("deleted");
    let err = a.functions.delete(&tenant, "blur").await.expect_err("deleted on the other node");
    assert!(matches!(&err, RegistryError::NotFound(name) if name == "blur"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_racing_from_two_nodes_all_land_in_the_history() {
    let redis = spawn_redis();
    let (a, b) = (node(&redis.url).await, node(&redis.url).await);
    let tenant = TenantId::from("t1");
    let versions: Vec<Version> = (0..8).map(|n| Version(format!("sha256:{n:02}"))).collect();
    let racing = versions.iter().enumerate().map(|(n, version)| {
        let node = if n % 2 == 0 { &a } else { &b };
        node.functions.deploy(&tenant, "race", version, b"x")
    });
    for result in futures_util::future::join_all(racing).await {
        result.expect("deployed");
    }
    let record = a.functions.get(&tenant, "race").await.expect("read").expect("there");
    let mut landed: Vec<Version> = record.versions.into_iter().map(|v| v.version).collect();
    landed.sort();
    assert_eq!(landed, versions, "no deploy lost to a concurrent one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_read_by_two_nodes_is_committed_once() {
    let redis = spawn_redis();
    let (a, b) = (node(&redis.url).await, node(&redis.url).await);
    let tenant = TenantId::from("t");
    let usage = Usage { outcome: Outcome::Ok, cpu_us: 5, ..Usage::default() };
    assert!(a.usage.record(&JobId("j1".into()), &tenant, "f", &usage).await.expect("logged"));
    assert!(!b.usage.record(&JobId("j1".into()), &tenant, "f", &usage).await.expect("asked"), "logged once");
    assert!(b.usage.record(&JobId("j2".into()), &tenant, "f", &usage).await.expect("logged"));

    let batch_a = a.usage.pending(100).await.expect("pending");
    let batch_b = b.usage.pending(100).await.expect("pending");
    assert_eq!(batch_a, batch_b);
    assert_eq!(batch_a.entries.len(), 2);
    let hour_ms = batch_a.entries[0].at_ms / BUCKET_MS * BUCKET_MS;
    let delta = Bucket {
        tenant: tenant.clone(),
        function: "f".into(),
        hour_ms,
        invocations: 2,
        cpu_us: 10,
        ..Bucket::default()
    };
    a.usage.commit(&batch_a, std::slice::from_ref(&delta)).await.expect("committed");
    let err = b.usage.commit(&batch_b, &[delta]).await.expect_err("committed by the other node");
    assert!(matches!(err, CommitError::AlreadyAggregated), "{err:?}");
    let totals = b.usage.totals(&tenant, 0, u64::MAX).await.expect("totals");
    assert_eq!((totals.len(), totals[0].invocations, totals[0].cpu_us), (1, 2, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_key_is_trusted_by_its_node_without_asking_redis_again() {
    let redis = spawn_redis();
    let stores = node(&redis.url).await;
    let (acme, key) = stores.tenants.create("acme").await.expect("created");
    assert_eq!(stores.tenants.authenticate(&key).await.expect("asked"), Some(acme.clone()));
    let () = raw(&redis.url).await.del(format!("{PREFIX}:tenant-keys")).await.expect("deleted");
    assert_eq!(stores.tenants.authenticate(&key).await.expect("asked"), Some(acme), "served from the cache");
    assert_eq!(node(&redis.url).await.tenants.authenticate(&key).await.expect("asked"), None, "not cached there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_job_stays_marked_for_the_job_ttl() {
    let redis = spawn_redis();
    let stores = node(&redis.url).await;
    let usage = Usage { outcome: Outcome::Ok, ..Usage::default() };
    stores.usage.record(&JobId("j1".into()), &TenantId::from("t"), "f", &usage).await.expect("logged");
    let ttl_ms: i64 = raw(&redis.url).await.pttl(format!("{PREFIX}:usage:seen:j1")).await.expect("pttl");
    let job_ttl_ms = i64::try_from(sluice_scheduler::QueueConfig::default().result_ttl.as_millis()).expect("fits");
    assert!((job_ttl_ms - 60_000..=job_ttl_ms).contains(&ttl_ms), "{ttl_ms} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_reported_as_unavailable() {
    let mut redis = spawn_redis();
    let stores = node(&redis.url).await;
    redis.kill();
    let err = stores.tenants.authenticate("sk_any").await.expect_err("Redis is down");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::StoreUnavailable);
}
