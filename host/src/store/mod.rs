//! State that survives a restart: tenants (key hashes only), deployed
//! functions (component bytes by hash), idempotency keys and usage.
//!
//! Each concept is a trait with two backends: local files in the data
//! directory (one node: `sluice serve`) and Redis (many nodes share one
//! state, so any front door serves any tenant and any worker runs any
//! function). [`Stores`] bundles one backend of each.
//!
//! Local files are rewritten whole through a temporary file and a rename,
//! so a crash leaves either the old or the new version, never half of one.
//! The local usage log is append-only JSON lines.

pub mod functions;
pub mod idempotency;
pub mod redis;
pub mod tenants;
pub mod usage;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_core::ErrorCode;

/// Why the data directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// A file exists but does not parse.
    #[error("{path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse failure.
        source: serde_json::Error,
    },
    /// The shared store (Redis) cannot be reached; the caller may retry.
    #[error("the state store is unavailable: {0}")]
    Unavailable(String),
    /// A record in the shared store does not parse.
    #[error("a stored record is corrupt: {0}")]
    CorruptRecord(String),
}

impl StoreError {
    /// The stable code callers see for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unavailable(_) => ErrorCode::StoreUnavailable,
            Self::Io { .. } | Self::Corrupt { .. } | Self::CorruptRecord(_) => ErrorCode::Internal,
        }
    }
}

/// One backend of each store, as the platform uses them.
#[derive(Clone)]
pub struct Stores {
    /// Tenants and keys.
    pub tenants: Arc<dyn tenants::TenantStore>,
    /// Deployed functions and component bytes.
    pub functions: Arc<dyn functions::FunctionStore>,
    /// Usage log and totals.
    pub usage: Arc<dyn usage::UsageLedger>,
    /// `Idempotency-Key`s of async submissions.
    pub idempotency: Arc<dyn idempotency::IdempotencyKeys>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}

impl Stores {
    /// State in the data directory `dir`, for one node.
    pub fn local(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        Ok(Self {
            tenants: Arc::new(tenants::LocalTenants::open(dir)?),
            functions: Arc::new(functions::LocalFunctions::open(dir)?),
            usage: Arc::new(usage::LocalUsage::open(dir)?),
            idempotency: Arc::new(idempotency::LocalIdempotencyKeys::default()),
        })
    }

    /// State shared through Redis at `url`, keys under `prefix`.
    pub async fn redis(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let shared = redis::Shared::connect(url, prefix).await?;
        Ok(Self {
            tenants: Arc::new(redis::RedisTenants::new(shared.clone())),
            functions: Arc::new(redis::RedisFunctions::new(shared.clone())),
            usage: Arc::new(redis::RedisUsage::new(shared.clone())),
            idempotency: Arc::new(redis::RedisIdempotencyKeys::new(shared)),
        })
    }
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// Reads a JSON file, or `T::default()` when it does not exist yet.
pub(crate) fn read_json<T: DeserializeOwned + Default>(path: &Path) -> Result<T, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt { path: path.to_path_buf(), source })
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(err) => Err(io_error(path)(err)),
    }
}

/// Replaces `path` with `bytes` atomically (temporary file, fsync, rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_error(path))?;
    tmp.write_all(bytes).map_err(io_error(path))?;
    tmp.as_file().sync_all().map_err(io_error(path))?;
    tmp.persist(path).map_err(|err| io_error(path)(err.error))?;
    Ok(())
}

/// Writes `value` as pretty JSON to `path` atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|source| StoreError::Corrupt { path: path.to_path_buf(), source })?;
    write_atomic(path, &bytes)
}

/// A hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `n` random bytes as hex, from the operating system's generator.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    // The OS generator failing is unrecoverable for a server handing out keys.
    getrandom::fill(&mut bytes).unwrap_or_else(|err| panic!("the OS random generator failed: {err}"));
    hex::encode(bytes)
}
