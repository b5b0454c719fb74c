//! The Redis backend: many front doors and workers share one state.
//!
//! | key | what |
//! |---|---|
//! | `{p}:tenants` | hash: tenant name → tenant (JSON, with its keys' hashes and limits) |
//! | `{p}:tenant-keys` | hash: SHA-256 of an API key → tenant name (a tenant's JSON in records written before rotation) |
//! | `{p}:tenant-changes` | pub/sub channel: a tenant name, published after each change, so every node drops what it cached |
//! | `{p}:admin` | SHA-256 of the admin token |
//! | `{p}:functions:{tenant}` | hash: function name → record (JSON) |
//! | `{p}:component:{sha256}` | component bytes, written once, deleted when no function uses them |
//! | `{p}:component-refs:{sha256}` | set of `tenant/name` whose records name the component |
//! | `{p}:versions` | set of every version whose bytes are stored |
//! | `{p}:idem:{tenant}:{sha256(key)}` | `fingerprint job-id`, expires with the job TTL |
//! | `{p}:usage:log` | stream of usage records (JSON) not yet aggregated |
//! | `{p}:usage:seen:{job}` | marks a job's usage as logged (expires with the job TTL) |
//! | `{p}:usage:cursor` | id of the last aggregated log entry |
//! | `{p}:usage:totals:{tenant}:{day}` | hash: `hour|function|metric` → count, for the day starting at `day` (ms); expires after the usage retention |
//!
//! Changes that must not interleave (a record's compare-and-set, logging a
//! job's usage once, committing totals with the cursor) are Lua scripts,
//! each beside the store that runs it. Every command has a short response
//! timeout, so an outage surfaces as [`StoreError::Unavailable`] (a 503 at
//! the front door) instead of a hang.

mod functions;
mod tenants;
mod usage;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use sluice_scheduler::{KeepAlive, connection_manager};

pub use functions::RedisFunctions;
pub use tenants::RedisTenants;
pub use usage::RedisUsage;

use super::StoreError;

/// A failed command: Redis is down or did not answer in time.
fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

/// A value in Redis that does not parse.
fn corrupt(err: impl std::fmt::Display) -> StoreError {
    StoreError::CorruptRecord(err.to_string())
}

/// One connection (reconnecting by itself) and the key prefix, shared by
/// the Redis stores of a process.
#[derive(Clone)]
pub struct Shared {
    client: redis::Client,
    con: ConnectionManager,
    prefix: String,
    _keep_alive: Arc<KeepAlive>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl Shared {
    /// Connects to `url`; keys are named under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let con = connection_manager(&client, Duration::from_secs(1)).await.map_err(unavailable)?;
        let keep_alive = Arc::new(KeepAlive::start(con.clone()));
        Ok(Self { client, con, prefix: prefix.to_owned(), _keep_alive: keep_alive })
    }

    /// The full name of key `suffix` under the prefix.
    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
    }

    /// A handle on the shared connection (cheap: commands are multiplexed).
    fn con(&self) -> ConnectionManager {
        self.con.clone()
    }
}
