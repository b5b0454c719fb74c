//! `FunctionStore`: deploys, rollbacks, deletes and component bytes.

use sluice::store::functions::{FunctionRecord, RegistryError};
use sluice_core::{ErrorCode, TenantId, Version, World};

use crate::common::stores::Backend;

conformance!(
    a_first_deploy_creates_the_function_with_its_version_active,
    a_new_version_becomes_active_after_the_earlier_ones,
    redeploying_a_known_version_activates_it_without_a_new_entry,
    component_bytes_are_kept_per_version,
    bytes_never_deployed_are_an_error,
    rollback_without_a_version_activates_the_one_before_the_active,
    rollback_to_a_named_version_activates_it,
    rollback_to_an_unknown_version_is_refused,
    rollback_from_the_first_version_is_refused,
    rollback_of_an_unknown_function_is_not_found,
    functions_are_private_to_their_tenant,
    list_is_sorted_by_name,
    all_versions_lists_each_deployed_version_once,
    delete_removes_the_record_and_collects_its_bytes,
    delete_keeps_bytes_another_function_uses,
    a_deploy_past_the_version_quota_prunes_the_oldest_and_collects_its_bytes,
    pruning_keeps_bytes_another_function_uses,
    pruning_never_drops_the_active_version_or_its_rollback_target,
    a_collected_version_deployed_again_is_stored_again,
    active_versions_lists_each_active_version_once,
    delete_of_an_unknown_function_is_not_found,
    records_and_bytes_survive_a_restart,
    concurrent_deploys_all_land_in_the_history,
    each_version_keeps_the_world_its_component_implements,
);

fn acme() -> TenantId {
    TenantId::from("t_acme")
}

fn version(label: &str) -> Version {
    Version(format!("sha256:{label}"))
}

fn versions_of(record: &FunctionRecord) -> Vec<&str> {
    record.versions.iter().map(|v| v.version.as_str()).collect()
}

async fn a_first_deploy_creates_the_function_with_its_version_active(backend: Backend) {
    let stores = backend.open().await;
    let before = sluice_scheduler::now_ms();
    let (record, is_new) = stores.functions.deploy(&acme(), "blur", &version("aa"), b"one").await.expect("deployed");
    let after = sluice_scheduler::now_ms();
    assert!(is_new);
    assert_eq!((&record.tenant, record.name.as_str(), &record.active), (&acme(), "blur", &version("aa")));
    assert_eq!(versions_of(&record), ["sha256:aa"]);
    assert_eq!(record.versions[0].size, 3);
    assert!((before..=after).contains(&record.versions[0].deployed_at_ms));
    assert_eq!(stores.functions.get(&acme(), "blur").await.expect("read"), Some(record));
}

async fn each_version_keeps_the_world_its_component_implements(backend: Backend) {
    let stores = backend.open().await;
    stores.functions.deploy(&acme(), "blur", &version("aa"), b"one").await.expect("deployed");
    stores.functions.deploy_keeping(&acme(), "blur", (&version("bb"), World::Http), b"two", 5).await.expect("deployed");
    let record = stores.functions.get(&acme(), "blur").await.expect("read").expect("there");
    let worlds: Vec<World> = record.versions.iter().map(|v| v.world).collect();
    assert_eq!(worlds, [World::Transform, World::Http]);
}

async fn a_new_version_becomes_active_after_the_earlier_ones(backend: Backend) {
    let stores = backend.open().await;
    stores.functions.deploy(&acme(), "blur", &version("aa"), b"one").await.expect("deployed");
    let (record, is_new) = stores.functions.deploy(&acme(), "blur", &version("bb"), b"two!").await.expect("deployed");
    assert!(is_new);
    assert_eq!(record.active, version("bb"));
    assert_eq!(versions_of(&record), ["sha256:aa", "sha256:bb"]);
    assert_eq!(record.versions.iter().map(|v| v.size).collect::<Vec<_>>(), [3, 4]);
}

async fn redeploying_a_known_version_activates_it_without_a_new_entry(backend: Backend) {
    let stores = backend.open().await;
    stores.functions.deploy(&acme(), "blur", &version("aa"), b"one").await.expect("deployed");
    stores.functions.deploy(&acme(), "blur", &version("bb"), b"two").await.expect("deployed");
    let (record, is_new) = stores.functions.deploy(&acme(), "blur", &version("aa"), b"one").await.expect("deployed");
    assert!(!is_new);
    assert_eq!(record.active, version("aa"));
    assert_eq!(versions_of(&record), ["sha256:aa", "sha256:bb"]);
}

async fn component_bytes_are_kept_per_version(backend: Backend) {
    let stores = backend.open().await;
    stores.functions.deploy(&acme(), "blur", &version("aa"), b"one").await.expect("deployed");
    stores.functions.deploy(&acme(), "blur", &version("bb"), b"two").await.expect("deployed");
    assert_eq!(stores.functions.component(&version("aa")).await.expect("bytes"), b"one");
    assert_eq!(stores.functions.component(&version("bb")).await.expect("bytes"), b"two");
}

async fn bytes_never_deployed_are_an_error(backend: Backend) {
    let stores = backend.open().await;
    let err = stores.functions.component(&version("ff")).await.expect_err("never deployed");
    assert_eq!(err.code(), ErrorCode::Internal);
}

async fn rollback_without_a_version_activates_the_one_before_the_active(backend: Backend) {
    let stores = backend.open().await;
    stores.functions.deploy(&acme(), "blur", &version("aa"), b"one").await.expect("deployed");
    stores.functions.deploy(&acme(), "blur", &version("bb"), b"two").await.expect("deployed");
    let record = stores.functions.rollback(&acme(), "blur", None).await.expect("rolled back");
    assert_eq!(record.active, version("aa"));
    assert_eq!(versions_of(&record), ["sha256:aa", "sha256:bb"], "the history is kept");
    assert_eq!(stores.functions.get(&acme(), "blur").await.expect("read"), Some(record));
}

async fn rollback_to_a_named_version_activates_it(backend: Backend) {
    let stores = backend.open().await;
    for (label, bytes) in [("aa", b"one"), ("bb", b"two"), ("cc", b"six")] {
        stores.functions.deploy(&acme(), "blur", &version(label), bytes).await.expect("deployed");
    }
    let record = stores.functions.rollback(&acme(), "blur", Some(&version("aa"))).await.expect("rolled back");
    assert_eq!(record.active, version("aa"));
    let record = stores.functions.rollback(&acme(), "blur", Some(&version("cc"))).await.expect("rolled forward");
    assert_eq!(record.active, version("cc"));
}

async fn rollback_to_an_unknown_version_is_refused(backend: Backend) {
    let stores = backend.open().await;
    stores.functions.deploy(&acme(), "blur", &version("aa"), b"one").await.expect("deployed");
    let err = stores.functions.rollback(&acme(), "blur", Some(&version("cc"))).await.expect_err("unknown");
    assert!(
        matches!(&err, RegistryError::NoSuchVersion { name, version } if name == "blur" && version == "sha256:cc"),
        "{err:?}"
    );
    assert_eq!(err.code(), ErrorCode::NotFound);
    let record = stores.functions.get(&acme(), "blur").await.expect("read").expect("kept");
    assert_eq!(record.active, version("aa"), "unchanged");
}

async fn rollback_from_the_first_version_is_refused(backend: Backend) {
    let stores = backend.open().await;
    stores.functions.deploy(&acme(), "blur", &version("aa"), b"one").await.expect("deployed");
    let err = stores.functions.rollback(&acme(), "blur", None).await.expect_err("nothing before");
    assert!(
        matches!(&err, RegistryError::NoSuchVersion { name, version } if name == "blur" && version == "(previous)"),
        "{err:?}"
    );
}

async fn rollback_of_an_unknown_function_is_not_found(backend: Backend) {
    let stores = backend.open().await;
    let err = stores.functions.rollback(&acme(), "blur", None).await.expect_err("no such function");
    assert!(matches!(&err, RegistryError::NotFound(name) if name == "blur"), "{err:?}");
    assert_eq!(err.code(), ErrorCode::NotFound);
}

async fn functions_are_private_to_their_tenant(backend: Backend) {
    let stores = backend.open().await;
    let other = TenantId::from("t_other");
    stores.functions.deploy(&acme(), "blur", &version("aa"), b"one").await.expect("deployed");
    assert_eq!(stores.functions.get(&other, "blur").await.expect("read"), None);
    assert_eq!(stores.functions.list(&other).await.expect("listed"), Vec::<FunctionRecord>::new());
    let err = stores.functions.delete(&other, "blur").await.expect_err("not theirs");
    assert!(matches!(err, RegistryError::NotFound(_)), "{err:?}");
    let (theirs, is_new) = stores.functions.deploy(&other, "blur", &version("bb"), b"two").await.expect("deployed");
    assert!(is_new);
    assert_eq!(versions_of(&theirs), ["sha256:bb"]);
    let mine = stores.functions.get(&acme(), "blur").await.expect("read").expect("kept");
    assert_eq!((versions_of(&mine), &mine.active), (vec!["sha256:aa"], &version("aa")));
}

async fn list_is_sorted_by_name(backend: Backend) {
    let stores = backend.open().await;
    for name in ["zoom", "blur", "crop"] {
        stores.functions.deploy(&acme(), name, &version("aa"), b"one").await.expect("deployed");
    }
    let listed = stores.functions.list(&acme()).await.expect("listed");
    assert_eq!(listed.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["blur", "crop", "zoom"]);
}

async fn all_versions_lists_each_deployed_version_once(backend: Backend) {
    let stores = backend.open().await;
    stores.functions.deploy(&acme(), "blur", &version("aa"), b"one").await.expect("deployed");
    stores.functions.deploy(&acme(), "blur", &version("bb"), b"two").await.expect("deployed");
    stores.functions.deploy(&acme(), "crop", &version("aa"), b"one").await.expect("deployed");
    stores.functions.deploy(&TenantId::from("t_other"), "blur", &version("cc"), b"six").await.expect("deployed");
    let mut versions = stores.functions.all_versions().await.expect("listed");
    versions.sort();
    assert_eq!(versions, [version("aa"), version("bb"), version("cc")]);
}

async fn delete_removes_the_record_and_collects_its_bytes(backend: Backend) {
    let stores = backend.open().await;
    stores.functions.deploy(&acme(), "blur", &version("aa"), b"one").await.expect("deployed");
    let (deployed, _) = stores.functions.deploy(&acme(), "blur", &version("bb"), b"two").await.expect("deployed");
    let removal = stores.functions.remove(&acme(), "blur").await.expect("deleted");
    assert_eq!(removal.record, deployed);
    assert_eq!(removal.collected, [version("aa"), version("bb")]);
    assert_eq!(stores.functions.get(&acme(), "blur").await.expect("read"), None);
    assert_eq!(stores.functions.list(&acme()).await.expect("listed"), Vec::<FunctionRecord>::new());
    stores.functions.component(&version("aa")).await.expect_err("collected");
    assert_eq!(stores.functions.all_versions().await.expect("listed"), Vec::<Version>::new());
}

async fn delete_keeps_bytes_another_function_uses(backend: Backend) {
    let stores = backend.open().await;
    stores.functions.deploy(&acme(), "blur", &version("aa"), b"one").await.expect("deployed");
    stores.functions.deploy(&TenantId::from("t_other"), "copy", &version("aa"), b"one").await.expect("deployed");
    let removal = stores.functions.remove(&acme(), "blur").await.expect("deleted");
    assert_eq!(removal.collected, Vec::<Version>::new());
    assert_eq!(stores.functions.component(&version("aa")).await.expect("bytes"), b"one");
}

async fn a_deploy_past_the_version_quota_prunes_the_oldest_and_collects_its_bytes(backend: Backend) {
    let stores = backend.open().await;
    for (label, bytes) in [("aa", b"one"), ("bb", b"two"), ("cc", b"six")] {
        stores
            .functions
            .deploy_keeping(&acme(), "blur", (&version(label), World::Transform), bytes, 3)
            .await
            .expect("deployed");
    }
    let deployment = stores
        .functions
        .deploy_keeping(&acme(), "blur", (&version("dd"), World::Transform), b"ten", 3)
        .await
        .expect("deployed");
    assert!(deployment.is_new);
    assert_eq!(versions_of(&deployment.record), ["sha256:bb", "sha256:cc", "sha256:dd"]);
    assert_eq!(deployment.collected, [version("aa")]);
    stores.functions.component(&version("aa")).await.expect_err("collected");
    assert_eq!(stores.functions.component(&version("bb")).await.expect("kept"), b"two");
}

async fn pruning_keeps_bytes_another_function_uses(backend: Backend) {
    let stores = backend.open().await;
    stores.functions.deploy(&acme(), "crop", &version("aa"), b"one").await.expect("deployed");
    for (label, bytes) in [("aa", b"one"), ("bb", b"two"), ("cc", b"six")] {
        stores
            .functions
            .deploy_keeping(&acme(), "blur", (&version(label), World::Transform), bytes, 2)
            .await
            .expect("deployed");
    }
    let record = stores.functions.get(&acme(), "blur").await.expect("read").expect("there");
    assert_eq!(versions_of(&record), ["sha256:bb", "sha256:cc"]);
    assert_eq!(stores.functions.component(&version("aa")).await.expect("crop still uses it"), b"one");
}

async fn pruning_never_drops_the_active_version_or_its_rollback_target(backend: Backend) {
    let stores = backend.open().await;
    for (label, bytes) in [("aa", b"one"), ("bb", b"two"), ("cc", b"six")] {
        stores.functions.deploy(&acme(), "blur", &version(label), bytes).await.expect("deployed");
    }
    // Redeploying bb makes it active; aa, just before it, is its rollback target.
    let deployment = stores
        .functions
        .deploy_keeping(&acme(), "blur", (&version("bb"), World::Transform), b"two", 2)
        .await
        .expect("deployed");
    assert_eq!(versions_of(&deployment.record), ["sha256:aa", "sha256:bb"]);
    assert_eq!(deployment.collected, [version("cc")]);
    let record = stores.functions.rollback(&acme(), "blur", None).await.expect("rolled back");
    assert_eq!(record.active, version("aa"));
}

async fn a_collected_version_deployed_again_is_stored_again(backend: Backend) {
    let stores = backend.open().await;
    stores.functions.deploy(&acme(), "blur", &version("aa"), b"one").await.expect("deployed");
    stores.functions.delete(&acme(), "blur").await.expect("deleted");
    stores.functions.deploy(&acme(), "blur", &version("aa"), b"one").await.expect("deployed again");
    assert_eq!(stores.functions.component(&version("aa")).await.expect("bytes"), b"one");
}

async fn active_versions_lists_each_active_version_once(backend: Backend) {
    let stores = backend.open().await;
    stores.functions.deploy(&acme(), "blur", &version("aa"), b"one").await.expect("deployed");
    stores.functions.deploy(&acme(), "blur", &version("bb"), b"two").await.expect("deployed");
    stores.functions.deploy(&acme(), "crop", &version("bb"), b"two").await.expect("deployed");
    stores.functions.deploy(&TenantId::from("t_other"), "blur", &version("cc"), b"six").await.expect("deployed");
    let mut versions = stores.functions.active_versions().await.expect("listed");
    versions.sort();
    assert_eq!(versions, [version("bb"), version("cc")]);
}

async fn delete_of_an_unknown_function_is_not_found(backend: Backend) {
    let stores = backend.open().await;
    stores.functions.deploy(&acme(), "blur", &version("aa"), b"one").await.expect("deployed");
    stores.functions.delete(&acme(), "blur").await.expect("deleted");
    let err = stores.functions.delete(&acme(), "blur").await.expect_err("already gone");
    assert!(matches!(&err, RegistryError::NotFound(name) if name == "blur"), "{err:?}");
}

async fn records_and_bytes_survive_a_restart(backend: Backend) {
    let stores = backend.open().await;
    stores.functions.deploy(&acme(), "blur", &version("aa"), b"one").await.expect("deployed");
    stores.functions.deploy(&acme(), "blur", &version("bb"), b"two").await.expect("deployed");
    let record = stores.functions.rollback(&acme(), "blur", None).await.expect("rolled back");
    drop(stores);
    let restarted = backend.open().await;
    assert_eq!(restarted.functions.get(&acme(), "blur").await.expect("read"), Some(record));
    assert_eq!(restarted.functions.component(&version("bb")).await.expect("bytes"), b"two");
}

async fn concurrent_deploys_all_land_in_the_history(backend: Backend) {
    let stores = backend.open().await;
    let tenant = acme();
    let versions: Vec<Version> = (0..8).map(|n| version(&format!("{n:02}"))).collect();
    let deploys = versions.iter().map(|v| stores.functions.deploy(&tenant, "race", v, b"x"));
    for result in futures_util::future::join_all(deploys).await {
        result.expect("deployed");
    }
    let record = stores.functions.get(&acme(), "race").await.expect("read").expect("there");
    let mut landed: Vec<&str> = versions_of(&record);
    landed.sort_unstable();
    assert_eq!(landed, versions.iter().map(Version::as_str).collect::<Vec<_>>(), "no deploy lost to another");
}
