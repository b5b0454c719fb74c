//! Sluice's built-in `meter` function: turns a batch of per-call usage
//! records into raw per-(tenant, function) totals, and prices totals.
//!
//! It runs in the sandbox like any tenant function, so pricing logic can be
//! replaced by deploying a new component rather than a new host. The host
//! stores only the raw integer counters and prices their sum over the
//! period a bill covers, so rounding never depends on how calls were
//! batched. Money is integer micro-units throughout.

use std::collections::BTreeMap;

pub use bindings::{MeterError, PriceTable, UsageRecord, UsageTotal};

mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "../../wit/meter",
        world: "meter",
    });
}

const MICROS_PER_SECOND: u128 = 1_000_000;
const BYTES_PER_MIB: u128 = 1024 * 1024;

/// Aggregates `records` into raw totals. A record id that appears more than
/// once (a record written again) counts once, with its last copy.
pub fn aggregate(records: &[UsageRecord]) -> Result<Vec<UsageTotal>, MeterError> {
    let mut last_by_job: BTreeMap<&str, &UsageRecord> = BTreeMap::new();
    for record in records {
        if record.tenant.is_empty() || record.function.is_empty() || record.job_id.is_empty() {
            return Err(MeterError::InvalidRecord(format!(
                "record for job `{}` has an empty job id, tenant or function",
                record.job_id
            )));
        }
        last_by_job.insert(&record.job_id, record);
    }

    let mut totals: BTreeMap<(&str, &str), UsageTotal> = BTreeMap::new();
    for record in last_by_job.values() {
        let total = totals.entry((&record.tenant, &record.function)).or_insert_with(|| UsageTotal {
            tenant: record.tenant.clone(),
            function: record.function.clone(),
            invocations: 0,
            failures: 0,
            cpu_us: 0,
            wall_us: 0,
            bytes_in: 0,
            bytes_out: 0,
        });
        let overflow = || MeterError::Overflow(format!("totals for {}/{}", record.tenant, record.function));
        total.invocations = total.invocations.checked_add(1).ok_or_else(overflow)?;
        if record.outcome != "ok" {
            total.failures = total.failures.checked_add(1).ok_or_else(overflow)?;
        }
        total.cpu_us = total.cpu_us.checked_add(record.cpu_us).ok_or_else(overflow)?;
        total.wall_us = total.wall_us.checked_add(record.wall_us).ok_or_else(overflow)?;
        total.bytes_in = total.bytes_in.checked_add(record.bytes_in).ok_or_else(overflow)?;
        total.bytes_out = total.bytes_out.checked_add(record.bytes_out).ok_or_else(overflow)?;
    }

    Ok(totals.into_values().collect())
}

/// The cost of `total` in micro-units, rounded down once.
pub fn cost(total: &UsageTotal, prices: &PriceTable) -> Result<u64, MeterError> {
    let invocations = u128::from(total.invocations) * u128::from(prices.per_invocation);
    let cpu = u128::from(total.cpu_us) * u128::from(prices.per_cpu_second) / MICROS_PER_SECOND;
    let wall = u128::from(total.wall_us) * u128::from(prices.per_wall_second) / MICROS_PER_SECOND;
    let bytes = u128::from(total.bytes_in) + u128::from(total.bytes_out);
    let transfer = bytes * u128::from(prices.per_mib_transferred) / BYTES_PER_MIB;
    u64::try_from(invocations + cpu + wall + transfer)
        .map_err(|_| MeterError::Overflow(format!("cost for {}/{}", total.tenant, total.function)))
}

struct Meter;

impl bindings::Guest for Meter {
    fn aggregate(records: Vec<UsageRecord>) -> Result<Vec<UsageTotal>, MeterError> {
        aggregate(&records)
    }

    fn price(totals: Vec<UsageTotal>, prices: PriceTable) -> Result<Vec<u64>, MeterError> {
        totals.iter().map(|total| cost(total, &prices)).collect()
    }
}

bindings::export!(Meter with_types_in bindings);
