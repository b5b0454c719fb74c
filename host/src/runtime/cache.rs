//! On-disk cache of compiled components.
//!
//! Compiling a 2 MB component takes about a second; loading its artifact
//! takes milliseconds. Artifacts are keyed by the component's SHA-256 and the
//! engine's compatibility fingerprint (wasmtime version plus every setting
//! that affects code generation), so a config change never loads stale code.
//!
//! Deserializing an artifact runs its machine code, so only files this cache
//! wrote are ever loaded: each file starts with a magic line and the SHA-256
//! of the artifact, checked before wasmtime sees a byte. A truncated or
//! altered file is deleted and the component recompiled.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::RuntimeError;

const MAGIC: &[u8] = b"sluice-artifact-v1\n";
const CHECKSUM_LEN: usize = 32;

/// Compiled artifacts in one directory, for one engine configuration.
#[derive(Debug)]
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    fingerprint: String,
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
        Ok(Self { dir: dir.to_path_buf(), fingerprint: engine_fingerprint(engine) })
    }

    fn path_for(&self, digest_hex: &str) -> PathBuf {
        self.dir.join(format!("{digest_hex}-{}.cwasm", &self.fingerprint[..16]))
    }

    /// The cached component for `digest_hex`, if a valid artifact exists.
    pub(crate) fn load(&self, engine: &Engine, digest_hex: &str) -> Option<Component> {
        let path = self.path_for(digest_hex);
        let bytes = fs::read(&path).ok()?;
        let Some(artifact) = verified_artifact(&bytes) else {
            tracing::warn!(path = %path.display(), "discarding a corrupt compiled artifact");
            let _ = fs::remove_file(&path);
            return None;
        };
        // SAFETY: the checksum proves these bytes are exactly what `store`
        // wrote from `Component::serialize` on an engine with the same
        // fingerprint, which is the contract `deserialize` requires.
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

    /// Stores `component`'s artifact. Failures only cost a recompile later,
    /// so they are logged, not returned.
    pub(crate) fn store(&self, digest_hex: &str, component: &Component) {
        let path = self.path_for(digest_hex);
        let result = component.serialize().map_err(|err| std::io::Error::other(err.to_string())).and_then(|artifact| {
            // Write beside the target and rename, so readers never see half a file.
            let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            tmp.write_all(MAGIC)?;
            tmp.write_all(&Sha256::digest(&artifact))?;
            tmp.write_all(&artifact)?;
            tmp.persist(&path).map_err(|err| err.error)?;
            Ok(())
        });
        if let Err(err) = result {
            tracing::warn!(path = %path.display(), cause = %err, "could not cache a compiled artifact");
        }
    }
}

fn verified_artifact(bytes: &[u8]) -> Option<&[u8]> {
    let rest = bytes.strip_prefix(MAGIC)?;
    if rest.len() < CHECKSUM_LEN {
        return None;
    }
    let (checksum, artifact) = rest.split_at(CHECKSUM_LEN);
    (Sha256::digest(artifact).as_slice() == checksum).then_some(artifact)
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

    #[test]
    fn verification_rejects_truncated_and_altered_files() {
        let artifact = b"machine code";
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&Sha256::digest(artifact));
        file.extend_from_slice(artifact);
        assert_eq!(verified_artifact(&file), Some(artifact.as_slice()));
        assert_eq!(verified_artifact(&file[..file.len() - 1]), None);
        let last = file.len() - 1;
        file[last] ^= 1;
        assert_eq!(verified_artifact(&file), None);
        assert_eq!(verified_artifact(b"not an artifact"), None);
    }
}
