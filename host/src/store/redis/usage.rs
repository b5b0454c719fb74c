//! The usage ledger in Redis: a stream as the log (its entry ids are the
//! cursor, and what was aggregated is trimmed), a marker per job so a job
//! is logged once (expiring with the job TTL), and a hash of hourly totals
//! per tenant and day (expiring after the retention), so a query reads only
//! the days it covers.

use std::collections::HashMap;

use redis::{AsyncCommands, Script};
use sluice_core::TenantId;
use sluice_scheduler::{JobId, Usage};

use super::{Shared, corrupt, unavailable};
use crate::store::StoreError;
use crate::store::usage::{
    Bucket, CommitError, PERIOD_MS, UsageBatch, UsageEntry, UsageLedger, UsageRetention, hours_of,
};

/// Logs a job's usage once.
const RECORD_USAGE: &str = r"
if not redis.call('SET', KEYS[1], 1, 'NX', 'PX', ARGV[1]) then return 0 end
redis.call('XADD', KEYS[2], '*', 'entry', ARGV[2])
return 1
";

/// Adds a batch to the totals and moves the cursor, if the cursor is still
/// where the batch started; trims what was aggregated from the log.
/// ARGV: from, through, trim-below, bucket count, then per bucket its field
/// prefix, when its day's hash expires (ms) and six counts; KEYS[3..] are
/// the buckets' totals hashes (one per tenant and day).
const COMMIT_USAGE: &str = r"
local cursor = redis.call('GET', KEYS[1]) or '0-0'
if cursor ~= ARGV[1] then return 0 end
local metrics = {'invocations', 'failures', 'cpu_us', 'wall_us', 'bytes_in', 'bytes_out'}
local at = 5
for b = 1, tonumber(ARGV[4]) do
  local prefix = ARGV[at]
  local expire_at = ARGV[at + 1]
  at = at + 2
  for _, metric in ipairs(metrics) do
    redis.call('HINCRBY', KEYS[2 + b], prefix .. '|' .. metric, ARGV[at])
    at = at + 1
  end
  redis.call('PEXPIREAT', KEYS[2 + b], expire_at)
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('XTRIM', KEYS[2], 'MINID', ARGV[3])
return 1
";

/// The usage log and totals in Redis.
#[derive(Debug)]
pub struct RedisUsage {
    shared: Shared,
    retention: UsageRetention,
    record: Script,
    commit: Script,
}

impl RedisUsage {
    /// Usage under `shared`'s prefix, kept as `retention` says.
    pub fn new(shared: Shared, retention: UsageRetention) -> Self {
        Self { shared, retention, record: Script::new(RECORD_USAGE), commit: Script::new(COMMIT_USAGE) }
    }

    /// The hash of the tenant's hourly totals in the day starting at `day_ms`.
    fn totals_key(&self, tenant: &TenantId, day_ms: u64) -> String {
        self.shared.key(&format!("usage:totals:{tenant}:{day_ms}"))
    }

    /// When the hash of the day starting at `day_ms` expires: once its last
    /// hour is older than the retention.
    fn expires_at_ms(&self, day_ms: u64) -> u64 {
        let retention = u64::try_from(self.retention.totals.as_millis()).unwrap_or(u64::MAX);
        day_ms.saturating_add(PERIOD_MS).saturating_add(retention)
    }
}

/// The stream id right after `id` (`ms-seq` → `ms-(seq+1)`).
fn next_stream_id(id: &str) -> Option<String> {
    let (ms, seq) = id.split_once('-')?;
    let seq: u64 = seq.parse().ok()?;
    Some(format!("{ms}-{}", seq.checked_add(1)?))
}

#[async_trait::async_trait]
impl UsageLedger for RedisUsage {
    async fn record(
        &self,
        job_id: &JobId,
        tenant: &TenantId,
        function: &str,
        usage: &Usage,
    ) -> Result<bool, StoreError> {
        let entry = UsageEntry {
            job_id: job_id.clone(),
            tenant: tenant.clone(),
            function: function.to_owned(),
            at_ms: sluice_scheduler::now_ms(),
            usage: usage.clone(),
        };
        let logged: i64 = self
            .record
            .key(self.shared.key(&format!("usage:seen:{job_id}")))
            .key(self.shared.key("usage:log"))
            .arg(self.retention.billed_ids_ms().max(1))
            .arg(serde_json::to_string(&entry).map_err(corrupt)?)
            .invoke_async(&mut self.shared.con())
            .await
            .map_err(unavailable)?;
        Ok(logged == 1)
    }

    async fn pending(&self, limit: usize) -> Result<UsageBatch, StoreError> {
        let mut con = self.shared.con();
        let from: Option<String> = con.get(self.shared.key("usage:cursor")).await.map_err(unavailable)?;
        let from = from.unwrap_or_else(|| "0-0".to_owned());
        let reply: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(self.shared.key("usage:log"))
            .arg(format!("({from}"))
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let through = reply.last().map_or_else(|| from.clone(), |(id, _)| id.clone());
        let mut entries = Vec::with_capacity(reply.len());
        for (_, fields) in &reply {
            let json = fields.get("entry").ok_or_else(|| corrupt("a usage entry has no `entry` field"))?;
            entries.push(serde_json::from_str(json).map_err(corrupt)?);
        }
        Ok(UsageBatch { entries, from, through })
    }

    async fn commit(&self, batch: &UsageBatch, deltas: &[Bucket]) -> Result<(), CommitError> {
        let trim_below = next_stream_id(&batch.through).ok_or_else(|| corrupt(&batch.through))?;
        let mut invocation = self.commit.prepare_invoke();
        invocation
            .key(self.shared.key("usage:cursor"))
            .key(self.shared.key("usage:log"))
            .arg(&batch.from)
            .arg(&batch.through)
            .arg(trim_below)
            .arg(deltas.len());
        for delta in deltas {
            let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            let day_ms = delta.hour_ms / PERIOD_MS * PERIOD_MS;
            invocation
                .key(self.totals_key(&delta.tenant, day_ms))
                .arg(format!("{}|{}", delta.hour_ms, delta.function))
                .arg(self.expires_at_ms(day_ms))
                .arg(count(delta.invocations))
                .arg(count(delta.failures))
                .arg(count(delta.cpu_us))
                .arg(count(delta.wall_us))
                .arg(count(delta.bytes_in))
                .arg(count(delta.bytes_out));
        }
        let committed: i64 = invocation.invoke_async(&mut self.shared.con()).await.map_err(unavailable)?;
        if committed == 1 { Ok(()) } else { Err(CommitError::AlreadyAggregated) }
    }

    async fn hourly(&self, tenant: &TenantId, from_ms: u64, to_ms: u64) -> Result<Vec<Bucket>, StoreError> {
        // Only days that can hold totals: within the retention, and not
        // after today (usage is recorded when it happens).
        let now_ms = sluice_scheduler::now_ms();
        let first_day = from_ms.max(self.retention.oldest_hour_ms(now_ms)) / PERIOD_MS * PERIOD_MS;
        let end = to_ms.min(now_ms.saturating_add(PERIOD_MS));
        let mut pipe = redis::pipe();
        let mut day_ms = first_day;
        while day_ms < end {
            pipe.hgetall(self.totals_key(tenant, day_ms));
            day_ms = day_ms.saturating_add(PERIOD_MS);
        }
        let days: Vec<HashMap<String, i64>> = if day_ms == first_day {
            Vec::new()
        } else {
            pipe.query_async(&mut self.shared.con()).await.map_err(unavailable)?
        };
        let mut buckets: HashMap<(u64, String), Bucket> = HashMap::new();
        for (field, value) in days.into_iter().flatten() {
            let mut parts = field.splitn(3, '|');
            let (Some(hour), Some(function), Some(metric)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let Ok(hour_ms) = hour.parse::<u64>() else { continue };
            let bucket = buckets.entry((hour_ms, function.to_owned())).or_insert_with(|| Bucket {
                tenant: tenant.clone(),
                function: function.to_owned(),
                hour_ms,
                ..Bucket::default()
            });
            let value = u64::try_from(value).unwrap_or(0);
            match metric {
                "invocations" => bucket.invocations = value,
                "failures" => bucket.failures = value,
                "cpu_us" => bucket.cpu_us = value,
                "wall_us" => bucket.wall_us = value,
                "bytes_in" => bucket.bytes_in = value,
                "bytes_out" => bucket.bytes_out = value,
                // Totals stored before costs were priced at read carry a
                // `cost_micros` field, ignored like any unknown one.
                _ => {}
            }
        }
        Ok(hours_of(buckets.values(), tenant, from_ms.max(self.retention.oldest_hour_ms(now_ms)), to_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_stream_id_follows_within_the_millisecond() {
        assert_eq!(next_stream_id("1700000000000-0").as_deref(), Some("1700000000000-1"));
        assert_eq!(next_stream_id("0-0").as_deref(), Some("0-1"));
        assert_eq!(next_stream_id("garbage"), None);
    }
}
