//! `TenantStore`: tenants, API keys (hashes only) and the admin token.

use std::time::Duration;

use sluice::store::sha256_hex;
use sluice::store::tenants::{MAX_KEYS, TenantChange, TenantError, TenantLimits};
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
    a_rotated_out_key_works_for_its_grace_period_then_stops,
    a_rotation_without_grace_ends_the_old_key_at_once,
    a_revoked_key_stops_at_once_and_the_others_keep_working,
    an_unknown_tenant_or_key_is_not_found,
    rotations_past_the_key_limit_are_refused,
    limits_are_kept_with_the_tenant_across_a_restart,
    a_limit_out_of_range_is_refused_and_nothing_changes,
    a_deleted_tenant_authenticates_no_one_and_its_name_is_free,
    tenants_are_listed_in_name_order_a_page_at_a_time,
);

async fn a_created_tenant_authenticates_with_its_key(backend: Backend) {
    let stores = backend.open().await;
    let (acme, key) = stores.tenants.create("acme").await.expect("created");
    assert_eq!(acme.name, "acme");
    assert_eq!((acme.id.as_str().len(), &acme.id.as_str()[..2]), (18, "t_"));
    assert_eq!((key.len(), &key[..3]), (51, "sk_"));
    assert_eq!(acme.keys.len(), 1);
    assert_eq!(acme.keys[0].sha256, sha256_hex(key.as_bytes()));
    assert_eq!(acme.keys[0].id, format!("k_{}", &acme.keys[0].sha256[..12]));
    assert_eq!(acme.keys[0].expires_at_ms, None);
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

async fn a_rotated_out_key_works_for_its_grace_period_then_stops(backend: Backend) {
    let stores = backend.open().await;
    let (_, old) = stores.tenants.create("acme").await.expect("created");
    let rotation = TenantChange::RotateKey { grace: Duration::from_millis(600) };
    let changed = stores.tenants.change("acme", &rotation).await.expect("rotated");
    let new = changed.new_key.expect("a new key");
    assert_eq!(changed.tenant.keys.len(), 2);
    assert!(changed.tenant.keys[0].expires_at_ms.is_some(), "the old key has an end");
    assert_eq!(changed.tenant.keys[1].expires_at_ms, None, "the new key is current");
    assert!(stores.tenants.authenticate(&old).await.expect("asked").is_some(), "within its grace");
    assert!(stores.tenants.authenticate(&new).await.expect("asked").is_some());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(stores.tenants.authenticate(&old).await.expect("asked"), None, "past its grace");
    assert!(stores.tenants.authenticate(&new).await.expect("asked").is_some());
}

async fn a_rotation_without_grace_ends_the_old_key_at_once(backend: Backend) {
    let stores = backend.open().await;
    let (_, old) = stores.tenants.create("acme").await.expect("created");
    let changed =
        stores.tenants.change("acme", &TenantChange::RotateKey { grace: Duration::ZERO }).await.expect("rotated");
    assert_eq!(changed.tenant.keys.len(), 1, "the old key is gone from the record");
    assert_eq!(stores.tenants.authenticate(&old).await.expect("asked"), None);
    let new = changed.new_key.expect("a new key");
    assert_eq!(stores.tenants.authenticate(&new).await.expect("asked"), Some(changed.tenant));
}

async fn a_revoked_key_stops_at_once_and_the_others_keep_working(backend: Backend) {
    let stores = backend.open().await;
    let (acme, old) = stores.tenants.create("acme").await.expect("created");
    // Cached by the authentication before the revocation.
    assert!(stores.tenants.authenticate(&old).await.expect("asked").is_some());
    let rotation = TenantChange::RotateKey { grace: Duration::from_secs(3600) };
    let new = stores.tenants.change("acme", &rotation).await.expect("rotated").new_key.expect("key");
    let revoked = stores.tenants.change("acme", &TenantChange::RevokeKey(acme.keys[0].id.clone())).await;
    let revoked = revoked.expect("revoked");
    assert_eq!(revoked.tenant.keys.len(), 1);
    assert_eq!(stores.tenants.authenticate(&old).await.expect("asked"), None);
    assert!(stores.tenants.authenticate(&new).await.expect("asked").is_some());
}

async fn an_unknown_tenant_or_key_is_not_found(backend: Backend) {
    let stores = backend.open().await;
    stores.tenants.create("acme").await.expect("created");
    let err = stores.tenants.change("nobody", &TenantChange::RevokeKey("k_1".into())).await.expect_err("no tenant");
    assert!(matches!(&err, TenantError::NotFound(name) if name == "nobody"), "{err:?}");
    let err = stores.tenants.change("acme", &TenantChange::RevokeKey("k_1".into())).await.expect_err("no key");
    assert_eq!(err.to_string(), "tenant \"acme\" has no key \"k_1\"");
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert_eq!(stores.tenants.get("nobody").await.expect("asked"), None);
}

async fn rotations_past_the_key_limit_are_refused(backend: Backend) {
    let stores = backend.open().await;
    stores.tenants.create("acme").await.expect("created");
    let rotation = TenantChange::RotateKey { grace: Duration::from_secs(3600) };
    for _ in 1..MAX_KEYS {
        stores.tenants.change("acme", &rotation).await.expect("rotated");
    }
    let err = stores.tenants.change("acme", &rotation).await.expect_err("too many keys");
    assert!(matches!(&err, TenantError::TooManyKeys(name) if name == "acme"), "{err:?}");
    assert_eq!(err.code(), ErrorCode::Conflict);
    let acme = stores.tenants.get("acme").await.expect("asked").expect("kept");
    assert_eq!(acme.keys.len(), MAX_KEYS);
    let revoke = TenantChange::RevokeKey(acme.keys[0].id.clone());
    stores.tenants.change("acme", &revoke).await.expect("revoked");
    stores.tenants.change("acme", &rotation).await.expect("room for one more");
}

async fn limits_are_kept_with_the_tenant_across_a_restart(backend: Backend) {
    let stores = backend.open().await;
    let (_, key) = stores.tenants.create("acme").await.expect("created");
    let limits =
        TenantLimits { running: Some(3), memory_mb: Some(64), timeout_ms: Some(500), ..TenantLimits::default() };
    let changed = stores.tenants.change("acme", &TenantChange::SetLimits(limits)).await.expect("set");
    assert_eq!(changed.tenant.limits, limits);
    drop(stores);
    let restarted = backend.open().await;
    let acme = restarted.tenants.authenticate(&key).await.expect("asked").expect("still authenticates");
    assert_eq!(acme.limits, limits);
    let jobs = acme.limits.for_jobs();
    assert_eq!((jobs.running, jobs.memory_bytes, jobs.timeout_ms), (Some(3), Some(64 << 20), Some(500)));
}

async fn a_limit_out_of_range_is_refused_and_nothing_changes(backend: Backend) {
    let stores = backend.open().await;
    stores.tenants.create("acme").await.expect("created");
    let limits = TenantLimits { running: Some(0), ..TenantLimits::default() };
    let err = stores.tenants.change("acme", &TenantChange::SetLimits(limits)).await.expect_err("out of range");
    assert_eq!(err.to_string(), "`running` must be between 1 and 10000");
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
    let acme = stores.tenants.get("acme").await.expect("asked").expect("kept");
    assert_eq!(acme.limits, TenantLimits::default());
}

async fn a_deleted_tenant_authenticates_no_one_and_its_name_is_free(backend: Backend) {
    let stores = backend.open().await;
    let (acme, key) = stores.tenants.create("acme").await.expect("created");
    assert!(stores.tenants.authenticate(&key).await.expect("asked").is_some());
    assert_eq!(stores.tenants.delete("acme").await.expect("deleted"), Some(acme.clone()));
    assert_eq!(stores.tenants.authenticate(&key).await.expect("asked"), None);
    assert_eq!(stores.tenants.get("acme").await.expect("asked"), None);
    assert_eq!(stores.tenants.delete("acme").await.expect("asked"), None, "already gone");
    let (again, _) = stores.tenants.create("acme").await.expect("the name is free");
    assert_ne!(again.id, acme.id, "a new tenant, not the old one back");
}

async fn tenants_are_listed_in_name_order_a_page_at_a_time(backend: Backend) {
    let stores = backend.open().await;
    for name in ["delta", "alpha", "charlie", "bravo"] {
        stores.tenants.create(name).await.expect("created");
    }
    let names = |page: Vec<sluice::store::tenants::Tenant>| page.into_iter().map(|t| t.name).collect::<Vec<_>>();
    assert_eq!(names(stores.tenants.list(None, 3).await.expect("listed")), ["alpha", "bravo", "charlie"]);
    assert_eq!(names(stores.tenants.list(Some("charlie"), 3).await.expect("listed")), ["delta"]);
    assert_eq!(names(stores.tenants.list(Some("delta"), 3).await.expect("listed")), Vec::<String>::new());
}
