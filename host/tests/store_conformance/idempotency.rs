//! `IdempotencyKeys`: a key names one job per tenant until released or expired.

use std::time::Duration;

use sluice::store::idempotency::Claim;
use sluice_core::TenantId;
use sluice_scheduler::JobId;

use crate::common::stores::Backend;

conformance!(
    a_free_key_is_claimed,
    a_claimed_key_names_its_job_for_the_same_request,
    a_claimed_key_conflicts_for_another_request,
    the_same_key_of_another_tenant_is_free,
    a_release_by_another_job_keeps_the_claim,
    a_release_by_its_job_frees_the_key,
    releasing_a_free_key_does_nothing,
    an_expired_claim_frees_the_key,
    any_text_is_a_key,
);

const TTL: Duration = Duration::from_secs(60);

fn acme() -> TenantId {
    TenantId::from("t_acme")
}

fn job(id: &str) -> JobId {
    JobId(id.to_owned())
}

async fn a_free_key_is_claimed(backend: Backend) {
    let stores = backend.open().await;
    assert_eq!(stores.idempotency.claim(&acme(), "k", "fp", &job("j1"), TTL).await.expect("claimed"), Claim::New);
}

async fn a_claimed_key_names_its_job_for_the_same_request(backend: Backend) {
    let stores = backend.open().await;
    stores.idempotency.claim(&acme(), "k", "fp", &job("j1"), TTL).await.expect("claimed");
    let again = stores.idempotency.claim(&acme(), "k", "fp", &job("j2"), TTL).await.expect("claimed");
    assert_eq!(again, Claim::Existing(job("j1")));
}

async fn a_claimed_key_conflicts_for_another_request(backend: Backend) {
    let stores = backend.open().await;
    stores.idempotency.claim(&acme(), "k", "fp", &job("j1"), TTL).await.expect("claimed");
    let other = stores.idempotency.claim(&acme(), "k", "other-fp", &job("j2"), TTL).await.expect("claimed");
    assert_eq!(other, Claim::Conflict);
}

async fn the_same_key_of_another_tenant_is_free(backend: Backend) {
    let stores = backend.open().await;
    let other = TenantId::from("t_other");
    stores.idempotency.claim(&acme(), "k", "fp", &job("j1"), TTL).await.expect("claimed");
    assert_eq!(stores.idempotency.claim(&other, "k", "fp", &job("j2"), TTL).await.expect("claimed"), Claim::New);
    let mine = stores.idempotency.claim(&acme(), "k", "fp", &job("j3"), TTL).await.expect("claimed");
    assert_eq!(mine, Claim::Existing(job("j1")));
}

async fn a_release_by_another_job_keeps_the_claim(backend: Backend) {
    let stores = backend.open().await;
    stores.idempotency.claim(&acme(), "k", "fp", &job("j1"), TTL).await.expect("claimed");
    stores.idempotency.release(&acme(), "k", &job("j2")).await.expect("released");
    let again = stores.idempotency.claim(&acme(), "k", "fp", &job("j3"), TTL).await.expect("claimed");
    assert_eq!(again, Claim::Existing(job("j1")));
}

async fn a_release_by_its_job_frees_the_key(backend: Backend) {
    let stores = backend.open().await;
    stores.idempotency.claim(&acme(), "k", "fp", &job("j1"), TTL).await.expect("claimed");
    stores.idempotency.release(&acme(), "k", &job("j1")).await.expect("released");
    let again = stores.idempotency.claim(&acme(), "k", "other-fp", &job("j2"), TTL).await.expect("claimed");
    assert_eq!(again, Claim::New);
}

async fn releasing_a_free_key_does_nothing(backend: Backend) {
    let stores = backend.open().await;
    stores.idempotency.release(&acme(), "k", &job("j1")).await.expect("released");
    assert_eq!(stores.idempotency.claim(&acme(), "k", "fp", &job("j1"), TTL).await.expect("claimed"), Claim::New);
}

async fn an_expired_claim_frees_the_key(backend: Backend) {
    let stores = backend.open().await;
    let short = Duration::from_millis(20);
    stores.idempotency.claim(&acme(), "k", "fp", &job("j1"), short).await.expect("claimed");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(stores.idempotency.claim(&acme(), "k", "fp", &job("j2"), TTL).await.expect("claimed"), Claim::New);
}

async fn any_text_is_a_key(backend: Backend) {
    let stores = backend.open().await;
    let long = "k".repeat(4096);
    for key in ["with spaces: and colons", "ключ", long.as_str()] {
        assert_eq!(stores.idempotency.claim(&acme(), key, "fp", &job("j1"), TTL).await.expect("claimed"), Claim::New);
        let again = stores.idempotency.claim(&acme(), key, "fp", &job("j2"), TTL).await.expect("claimed");
        assert_eq!(again, Claim::Existing(job("j1")), "{key:?}");
    }
}
