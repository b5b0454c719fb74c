//! On-disk cache of compiled components.
//!
//! Compiling a 2 MB component takes about a second; loading its artifact
//! takes milliseconds. Artifacts are keyed by the component's SHA-256 and the
//! engine's compatibility fingerprint (wasmtime version plus every setting
//! that affects code generation), so a config change never loads stale code.
//!
//! Deserializing an artifact runs its machine code, so only files this cache
//! wrote are ever loaded: each file starts with a magic line and an
//! HMAC-SHA256 tag over the component's digest, the engine fingerprint and
//! the artifact, under a secret key kept beside the artifacts (`hmac.key`,
//! 32 random bytes, mode 0600, made on first use). A bare checksum would
//! only catch accidents: whoever can write a file here could write a
//! matching checksum too. Without the key no valid tag can be made, and the
//! digest in the tag stops one component's artifact being passed off as
//! another's. A truncated, altered or foreign file (another node's key) is
//! deleted and the component recompiled; it is never deserialized.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::RuntimeError;

const MAGIC: &[u8] = b"sluice-artifact-v2\n";
const TAG_LEN: usize = 32;
const KEY_LEN: usize = 32;
const KEY_FILE: &str = "hmac.key";

type HmacSha256 = Hmac<Sha256>;

/// Compiled artifacts in one directory, for one engine configuration.
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    fingerprint: String,
    key: [u8; KEY_LEN],
}

impl std::fmt::Debug for ArtifactCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ArtifactCache").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl ArtifactCache {
    pub(crate) fn open(dir: &Path, engine: &Engine) -> Result<Self, RuntimeError> {
        let cache_error = |source| RuntimeError::Cache { path: dir.to_path_buf(), source };
        fs::create_dir_all(dir).map_err(cache_error)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Artifacts are executable code: nobody else may plant one here.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(cache_error)?;
        }
        let key = load_or_create_key(dir).map_err(cache_error)?;
        Ok(Self { dir: dir.to_path_buf(), fingerprint: engine_fingerprint(engine), key })
    }

    fn path_for(&self, digest_hex: &str) -> PathBuf {
        self.dir.join(format!("{digest_hex}-{}.cwasm", &self.fingerprint[..16]))
    }

    /// The cached component for `digest_hex`, if a valid artifact exists.
    pub(crate) fn load(&self, engine: &Engine, digest_hex: &str) -> Option<Component> {
        let path = self.path_for(digest_hex);
        let bytes = fs::read(&path).ok()?;
        let Some(artifact) = verified_artifact(&self.key, &self.fingerprint, digest_hex, &bytes) else {
            tracing::warn!(path = %path.display(), "discarding a compiled artifact whose tag does not verify");
            let _ = fs::remove_file(&path);
            return None;
        };
        // SAFETY: the tag, made with a key only this cache holds, proves
        // these bytes are exactly what `store` wrote from
        // `Component::serialize` for this component on an engine with the
        // same fingerprint, which is the contract `deserialize` requires.
        match unsafe { Component::deserialize(engine, artifact) } {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(path = %path.display(), cause = %err, "discarding an unloadable compiled artifact");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Deletes the artifact of `digest_hex` (its component was collected),
    /// so compiled code of deleted functions does not pile up.
    pub(crate) fn remove(&self, digest_hex: &str) {
        let path = self.path_for(digest_hex);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => tracing::warn!(path = %path.display(), cause = %err, "could not remove a compiled artifact"),
        }
    }

    /// The digests of this engine's artifacts last written more than `age`
    /// ago. Artifacts of another engine configuration are left alone: a
    /// node with other settings may share the directory.
    pub(crate) fn digests_older_than(&self, age: std::time::Duration) -> Vec<String> {
        let suffix = format!("-{}.cwasm", &self.fingerprint[..16]);
        let Ok(entries) = fs::read_dir(&self.dir) else { return Vec::new() };
        entries
            .filter_map(Result::ok)
            .filter(|entry| {
                let modified = entry.metadata().and_then(|meta| meta.modified());
                modified.is_ok_and(|at| at.elapsed().is_ok_and(|elapsed| elapsed > age))
            })
            .filter_map(|entry| entry.file_name().to_str()?.strip_suffix(&suffix).map(str::to_owned))
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect()
    }

    /// Stores `component`'s artifact. Failures only cost a recompile later,
    /// so they are logged, not returned.
    pub(crate) fn store(&self, digest_hex: &str, component: &Component) {
        let path = self.path_for(digest_hex);
        let result = component.serialize().map_err(|err| std::io::Error::other(err.to_string())).and_then(|artifact| {
            // Write beside the target and rename, so readers never see half a file.
            let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            tmp.write_all(MAGIC)?;
            tmp.write_all(&tag(&self.key, &self.fingerprint, digest_hex, &artifact))?;
            tmp.write_all(&artifact)?;
            tmp.persist(&path).map_err(|err| err.error)?;
            Ok(())
        });
        if let Err(err) = result {
            tracing::warn!(path = %path.display(), cause = %err, "could not cache a compiled artifact");
        }
    }
}

/// The keyed MAC over what identifies an artifact and the artifact itself.
fn mac(key: &[u8; KEY_LEN], fingerprint: &str, digest_hex: &str, artifact: &[u8]) -> HmacSha256 {
    // `new_from_slice` fails only for key lengths HMAC cannot take; any
    // length works for HMAC, so this is unreachable with 32 bytes.
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    // Fixed-length fields (hex digests) first, so the inputs cannot be
    // shifted into one another.
    mac.update(fingerprint.as_bytes());
    mac.update(b"\n");
    mac.update(digest_hex.as_bytes());
    mac.update(b"\n");
    mac.update(artifact);
    mac
}

fn tag(key: &[u8; KEY_LEN], fingerprint: &str, digest_hex: &str, artifact: &[u8]) -> [u8; TAG_LEN] {
    mac(key, fingerprint, digest_hex, artifact).finalize().into_bytes().into()
}

/// The artifact inside `bytes` if its tag verifies (in constant time).
fn verified_artifact<'a>(
    key: &[u8; KEY_LEN],
    fingerprint: &str,
    digest_hex: &str,
    bytes: &'a [u8],
) -> Option<&'a [u8]> {
    let rest = bytes.strip_prefix(MAGIC)?;
    if rest.len() < TAG_LEN {
        return None;
    }
    let (tag, artifact) = rest.split_at(TAG_LEN);
    mac(key, fingerprint, digest_hex, artifact).verify_slice(tag).ok().map(|()| artifact)
}

/// The cache's secret key: read from `dir/hmac.key`, or made from 32 random
/// bytes and written there (mode 0600) if there is none. The file appears
/// whole or not at all, and if another process made it first, its key wins.
fn load_or_create_key(dir: &Path) -> std::io::Result<[u8; KEY_LEN]> {
    let path = dir.join(KEY_FILE);
    match fs::read(&path) {
        Ok(bytes) => {
            return <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
                std::io::Error::other(format!(
                    "{} is not a {KEY_LEN}-byte key; delete it (and the artifacts) to start afresh",
                    path.display()
                ))
            });
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(|err| std::io::Error::other(format!("the OS random generator failed: {err}")))?;
    // NamedTempFile is created with mode 0600.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(&key)?;
    tmp.as_file().sync_all()?;
    match tmp.persist_noclobber(&path) {
        Ok(_) => Ok(key),
        Err(err) if err.error.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_key(dir),
        Err(err) => Err(err.error),
    }
}

/// A hex SHA-256 over wasmtime's version and the engine's compatibility hash.
fn engine_fingerprint(engine: &Engine) -> String {
    struct Sha256Hasher(Sha256);
    impl Hasher for Sha256Hasher {
        fn finish(&self) -> u64 {
            0 // Unused: the digest is read from the inner state.
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Sha256Hasher(Sha256::new());
    hasher.write(env!("CARGO_PKG_VERSION").as_bytes());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(hasher.0.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; KEY_LEN] = [7; KEY_LEN];
    const FINGERPRINT: &str = "f00d";
    const DIGEST: &str = "abcd";

    fn file(key: &[u8; KEY_LEN], digest_hex: &str, artifact: &[u8]) -> Vec<u8> {
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&tag(key, FINGERPRINT, digest_hex, artifact));
        file.extend_from_slice(artifact);
        file
    }

    #[test]
    fn verification_rejects_truncated_and_altered_files() {
        let artifact = b"machine code";
        let mut file = file(&KEY, DIGEST, artifact);
        assert_eq!(verified_artifact(&KEY, FINGERPRINT, DIGEST, &file), Some(artifact.as_slice()));
        assert_eq!(verified_artifact(&KEY, FINGERPRINT, DIGEST, &file[..file.len() - 1]), None);
        let last = file.len() - 1;
        file[last] ^= 1;
        assert_eq!(verified_artifact(&KEY, FINGERPRINT, DIGEST, &file), None);
        assert_eq!(verified_artifact(&KEY, FINGERPRINT, DIGEST, b"not an artifact"), None);
    }

    #[test]
    fn a_bare_checksum_does_not_verify() {
        // What the previous format stored, and what anyone can compute.
        let artifact = b"machine code";
        let mut forged = MAGIC.to_vec();
        forged.extend_from_slice(&Sha256::digest(artifact));
        forged.extend_from_slice(artifact);
        assert_eq!(verified_artifact(&KEY, FINGERPRINT, DIGEST, &forged), None);
    }

    #[test]
    fn another_key_or_another_component_does_not_verify() {
        let artifact = b"machine code";
        let foreign = file(&[8; KEY_LEN], DIGEST, artifact);
        assert_eq!(verified_artifact(&KEY, FINGERPRINT, DIGEST, &foreign), None);
        let swapped = file(&KEY, "ef01", artifact);
        assert_eq!(verified_artifact(&KEY, FINGERPRINT, DIGEST, &swapped), None);
        assert_eq!(verified_artifact(&KEY, "beef", DIGEST, &file(&KEY, DIGEST, artifact)), None);
    }

    #[test]
    fn the_key_is_made_once_private_and_then_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = load_or_create_key(dir.path()).expect("key made");
        let again = load_or_create_key(dir.path()).expect("key read");
        assert_eq!(first, again);
        assert_ne!(first, [0; KEY_LEN]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE)).expect("key file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = tempfile::tempdir().expect("temp dir");
        assert_ne!(load_or_create_key(other.path()).expect("key made"), first);
    }

    #[test]
    fn a_tampered_or_foreign_artifact_is_recompiled_never_loaded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Engine::default();
        let cache = ArtifactCache::open(dir.path(), &engine).expect("cache opens");
        // The smallest component: the header alone.
        let bytes = b"\0asm\x0d\0\x01\0".to_vec();
        let component = Component::new(&engine, &bytes).expect("compiles");
        let digest = hex::encode(Sha256::digest(&bytes));
        cache.store(&digest, &component);
        assert!(cache.load(&engine, &digest).is_some(), "a file this cache wrote loads");

        // One flipped bit in the artifact: discarded, and the file is gone.
        let path = cache.path_for(&digest);
        let mut file = fs::read(&path).expect("artifact written");
        let last = file.len() - 1;
        file[last] ^= 1;
        fs::write(&path, &file).expect("tampered");
        assert!(cache.load(&engine, &digest).is_none());
        assert!(!path.exists(), "a tampered artifact is deleted");

        // A valid file from a cache with another key: discarded too.
        cache.store(&digest, &component);
        let other_dir = tempfile::tempdir().expect("temp dir");
        let other = ArtifactCache::open(other_dir.path(), &engine).expect("cache opens");
        other.store(&digest, &component);
        fs::copy(other.path_for(&digest), &path).expect("foreign artifact planted");
        assert!(cache.load(&engine, &digest).is_none());
        assert!(!path.exists(), "a foreign artifact is deleted");
    }
}
