//! State that survives a restart: tenants (key hashes only), deployed
//! functions (component bytes by hash) and usage. (`Idempotency-Key`s live
//! in the job queue, recorded in the same step as the job they name.)
//!
//! Layout: one module per concept ([`tenants`], [`functions`],
//! [`usage`]) holds its trait, its records and errors, and
//! the record logic every backend must apply the same way (deploy and
//! rollback rules, summing totals). One folder per backend holds one file
//! per concept: [`local`] (files in the data directory, one node:
//! `sluice serve`) and [`redis`] (many nodes share one state, so any front
//! door serves any tenant and any worker runs any function). The contract
//! sits beside its concept rather than in one file of traits, so reading a
//! concept means reading one module, and a backend file reads against
//! exactly one trait.
//!
//! Adding a backend means: a folder with one file per concept, one
//! constructor here that builds [`Stores`] from it, and one line in the
//! conformance suite (`host/tests/store_conformance/`), which runs every
//! scenario of every trait against every backend.

pub mod functions;
pub mod local;
pub mod redis;
pub mod tenants;
pub mod usage;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_core::ErrorCode;

/// Why a store could not be read or written.
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
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}

impl Stores {
    /// State in the data directory `dir`, for one node, usage kept as by default.
    pub fn local(dir: &Path) -> Result<Self, StoreError> {
        Self::local_with(dir, usage::UsageRetention::default())
    }

    /// State in the data directory `dir`, usage kept as `retention` says.
    pub fn local_with(dir: &Path, retention: usage::UsageRetention) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(local::io_error(dir))?;
        Ok(Self {
            tenants: Arc::new(local::LocalTenants::open(dir)?),
            functions: Arc::new(local::LocalFunctions::open(dir)?),
            usage: Arc::new(local::LocalUsage::open_with(dir, retention)?),
        })
    }

    /// State shared through Redis at `url`, keys under `prefix`, usage kept as by default.
    pub async fn redis(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Self::redis_with(url, prefix, usage::UsageRetention::default()).await
    }

    /// State shared through Redis at `url`, keys under `prefix`, usage kept as `retention` says.
    pub async fn redis_with(url: &str, prefix: &str, retention: usage::UsageRetention) -> Result<Self, StoreError> {
        let shared = redis::Shared::connect(url, prefix).await?;
        Ok(Self {
            tenants: Arc::new(redis::RedisTenants::new(shared.clone())),
            functions: Arc::new(redis::RedisFunctions::new(shared.clone())),
            usage: Arc::new(redis::RedisUsage::new(shared, retention)),
        })
    }
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
