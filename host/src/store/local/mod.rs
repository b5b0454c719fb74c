//! The local backend: state in files of the data directory, for one node
//! (`sluice serve`).
//!
//! | file | what |
//! |---|---|
//! | `tenants.json` | tenants (key hashes only) and the admin token's hash |
//! | `functions.json` | every tenant's function records |
//! | `components/<hex>.wasm` | component bytes, written once per version, deleted once no function names them |
//! | `usage.log` | usage records not yet aggregated (compacted after commits), JSON lines |
//! | `usage-totals.json` | hourly totals within the retention and how far into the log they go |
//! | `usage-billed.json` | ids of jobs recorded within the job TTL whose log lines were compacted |
//!
//! Idempotency keys are kept in memory, like the jobs they name.
//!
//! JSON files are rewritten whole through a temporary file (fsynced), a
//! rename and an fsync of the directory, so a crash or power loss leaves
//! either the old or the new version, never half of one.
//! Each store holds its file's content in memory behind a lock, so changes
//! within the process are serialized; one data directory serves one process.

mod functions;
mod tenants;
mod usage;

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use functions::LocalFunctions;
pub use tenants::LocalTenants;
pub use usage::LocalUsage;

use super::StoreError;

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// Reads a JSON file, or `T::default()` when it does not exist yet.
fn read_json<T: DeserializeOwned + Default>(path: &Path) -> Result<T, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt { path: path.to_path_buf(), source })
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(err) => Err(io_error(path)(err)),
    }
}

/// Replaces `path` with `bytes` atomically and durably: a temporary file,
/// fsynced, renamed over `path`, then the directory fsynced, so after a
/// power loss the name points at the complete new file (or the old one),
/// never at an empty or missing one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_error(path))?;
    tmp.write_all(bytes).map_err(io_error(path))?;
    tmp.as_file().sync_all().map_err(io_error(path))?;
    tmp.persist(path).map_err(|err| io_error(path)(err.error))?;
    sync_dir(dir)
}

/// Fsyncs directory `dir`, making renames and removals in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir).and_then(|dir| dir.sync_all()).map_err(io_error(dir))
}

/// Writes `value` as pretty JSON to `path` atomically.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|source| StoreError::Corrupt { path: path.to_path_buf(), source })?;
    write_atomic(path, &bytes)
}
