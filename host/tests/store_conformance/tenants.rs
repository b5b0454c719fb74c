//! `TenantStore`: tenants, API keys (hashes only) and the admin token.

use sluice::store::sha256_hex;
use sluice::store::tenants::TenantError;
use sluice_core::ErrorCode;

use crate::common::stores::Backend;

conformance!(
    a_created_tenant_authenticates_with_its_key,
    an_unknown_key_authenticates_no_one,
    a_taken_name_is_refused,
    an_invalid_name_is_refused,
    tenants_get_distinct_ids_and_keys,
    tenants_survive_a_restart,
    only_the_hash_of_a_key_is_stored,
    without_an_admin_token_no_token_is_admin,
    a_generated_admin_token_is_returned_once,
    a_generated_admin_token_survives_a_restart,
    only_the_hash_of_the_admin_token_is_stored,
    an_operator_token_replaces_the_stored_one,
);

async fn a_created_tenant_authenticates_with_its_key(backend: Backend) {
    let stores = backend.open().await;
    let (acme, key) = stores.tenants.create("acme").await.expect("created");
    assert_eq!(acme.name, "acme");
    assert_eq!((acme.id.as_str().len(), &acme.id.as_str()[..2]), (18, "t_"));
    assert_eq!((key.len(), &key[..3]), (51, "sk_"));
    assert_eq!(acme.key_sha256, sha256_hex(key.as_bytes()));
    assert_eq!(stores.tenants.authenticate(&key).await.expect("asked"), Some(acme));
}

async fn an_unknown_key_authenticates_no_one(backend: Backend) {
    let stores = backend.open().await;
    stores.tenants.create("acme").await.expect("created");
    assert_eq!(stores.tenants.authenticate("sk_wrong").await.expect("asked"), None);
}

async fn a_taken_name_is_refused(backend: Backend) {
    let stores = backend.open().await;
    let (acme, key) = stores.tenants.create("acme").await.expect("created");
    let err = stores.tenants.create("acme").await.expect_err("the name is taken");
    assert!(matches!(&err, TenantError::NameTaken(name) if name == "acme"), "{err:?}");
    assert_eq!(err.code(), ErrorCode::Conflict);
    assert_eq!(stores.tenants.authenticate(&key).await.expect("asked"), Some(acme), "the first one stands");
}

async fn an_invalid_name_is_refused(backend: Backend) {
    let stores = backend.open().await;
    let err = stores.tenants.create("Bad Name").await.expect_err("invalid");
    assert!(matches!(&err, TenantError::InvalidName(name) if name == "Bad Name"), "{err:?}");
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
}

async fn tenants_get_distinct_ids_and_keys(backend: Backend) {
    let stores = backend.open().await;
    let (acme, acme_key) = stores.tenants.create("acme").await.expect("created");
    let (globex, globex_key) = stores.tenants.create("globex").await.expect("created");
    assert_ne!(acme.id, globex.id);
    assert_ne!(acme_key, globex_key);
    assert_eq!(stores.tenants.authenticate(&globex_key).await.expect("asked"), Some(globex));
    assert_eq!(stores.tenants.authenticate(&acme_key).await.expect("asked"), Some(acme));
}

async fn tenants_survive_a_restart(backend: Backend) {
    let stores = backend.open().await;
    let (acme, key) = stores.tenants.create("acme").await.expect("created");
    drop(stores);
    let restarted = backend.open().await;
    assert_eq!(restarted.tenants.authenticate(&key).await.expect("asked"), Some(acme));
    let err = restarted.tenants.create("acme").await.expect_err("still taken");
    assert!(matches!(&err, TenantError::NameTaken(name) if name == "acme"), "{err:?}");
}

async fn only_the_hash_of_a_key_is_stored(backend: Backend) {
    let stores = backend.open().await;
    let (_, key) = stores.tenants.create("acme").await.expect("created");
    let persisted = backend.persisted_text().await;
    assert!(persisted.contains(&sha256_hex(key.as_bytes())), "the hash is what authenticates");
    assert!(!persisted.contains(&key), "the key itself is never stored");
}

async fn without_an_admin_token_no_token_is_admin(backend: Backend) {
    let stores = backend.open().await;
    assert!(!stores.tenants.is_admin("guess").await.expect("asked"));
    assert!(!stores.tenants.is_admin("").await.expect("asked"));
}

async fn a_generated_admin_token_is_returned_once(backend: Backend) {
    let stores = backend.open().await;
    let token = stores.tenants.configure_admin(None).await.expect("configured").expect("generated");
    assert_eq!((token.len(), &token[..4]), (52, "adm_"));
    assert!(stores.tenants.is_admin(&token).await.expect("asked"));
    assert!(!stores.tenants.is_admin("guess").await.expect("asked"));
    assert_eq!(stores.tenants.configure_admin(None).await.expect("configured"), None, "not regenerated");
    assert!(stores.tenants.is_admin(&token).await.expect("asked"), "kept");
}

async fn a_generated_admin_token_survives_a_restart(backend: Backend) {
    let stores = backend.open().await;
    let token = stores.tenants.configure_admin(None).await.expect("configured").expect("generated");
    drop(stores);
    let restarted = backend.open().await;
    assert_eq!(restarted.tenants.configure_admin(None).await.expect("configured"), None, "not regenerated");
    assert!(restarted.tenants.is_admin(&token).await.expect("asked"));
}

async fn only_the_hash_of_the_admin_token_is_stored(backend: Backend) {
    let stores = backend.open().await;
    let token = stores.tenants.configure_admin(None).await.expect("configured").expect("generated");
    stores.tenants.create("acme").await.expect("created");
    let persisted = backend.persisted_text().await;
    assert!(persisted.contains(&sha256_hex(token.as_bytes())));
    assert!(!persisted.contains(&token), "the token itself is never stored");
}

async fn an_operator_token_replaces_the_stored_one(backend: Backend) {
    let stores = backend.open().await;
    let generated = stores.tenants.configure_admin(None).await.expect("configured").expect("generated");
    assert_eq!(stores.tenants.configure_admin(Some("operator-set")).await.expect("configured"), None);
    assert!(stores.tenants.is_admin("operator-set").await.expect("asked"));
    assert!(!stores.tenants.is_admin(&generated).await.expect("asked"), "the generated one no longer works");
    drop(stores);
    let restarted = backend.open().await;
    assert!(restarted.tenants.is_admin("operator-set").await.expect("asked"), "kept across a restart");
}
