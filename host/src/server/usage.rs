//! `GET /v1/usage`: what a tenant's calls consumed and cost, per function,
//! over hourly buckets. Totals are raw integer counters; the meter prices
//! their sum over the period when the report is read, so a bill is the
//! same however often it was looked at. Reading one aggregates the log
//! first, so reports are rate-limited per tenant ([`USAGE_RATE`]).

// utoipa's `path` macro names `params(...)` types by their full path.
#![allow(unused_qualifications)]

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sluice_core::TenantId;
use sluice_scheduler::now_ms;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{AuthTenant, QueryParams};
use super::openapi::api_errors;
use super::{Api, format_time};
use crate::store::usage::{BUCKET_MS, Bucket};

/// Usage reports a tenant may read: one a second, in bursts of ten.
/// Each one aggregates the log and runs the meter, work a tenant must not
/// be able to make the node do at its request rate.
pub const USAGE_RATE: (u32, u32) = (1, 10);

/// The last instant [`format_time`] can write (RFC 3339 has four-digit years).
const LATEST_MS: u64 = 253_402_300_799_000;

/// The period to report.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsagePeriod {
    /// Start, RFC 3339 (`2026-11-21T00:00:00Z`) or Unix seconds; default: the beginning.
    #[param(schema_with = instant_schema)]
    pub from: Option<String>,
    /// End, RFC 3339 or Unix seconds; default: the end of the current hour.
    #[param(schema_with = instant_schema)]
    pub to: Option<String>,
    /// `hour` adds each hour's totals per function (`hourly`), for a
    /// period of at most 744 hours (31 days).
    #[param(inline)]
    pub granularity: Option<Granularity>,
}

/// How finely a report breaks the period down beyond its totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// Each hour's totals per function.
    Hour,
}

/// The longest period a report breaks down by hour: 31 days. It bounds
/// the answer (hours × functions) and the pricing work behind it; longer
/// periods are read as totals, or a month at a time.
pub const MAX_HOURLY_PERIOD_HOURS: u64 = 31 * 24;

/// One function's totals over the period.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FunctionUsage {
    /// The function's name.
    pub function: String,
    /// Attempts that ran guest code; each is billed (a job retried after
    /// its worker was lost counts every attempt that ran).
    pub invocations: u64,
    /// Of those, calls that did not succeed.
    pub failures: u64,
    /// CPU time, ms.
    pub cpu_ms: f64,
    /// Wall-clock time, ms.
    pub wall_ms: f64,
    /// Input bytes.
    pub bytes_in: u64,
    /// Output bytes.
    pub bytes_out: u64,
    /// What it cost, in the price table's currency: the period's summed
    /// counters priced once, rounded down to a micro-unit.
    pub cost: f64,
}

/// One function's totals in one hour.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HourlyUsage {
    /// Start of the hour (RFC 3339).
    pub hour: String,
    /// The function's totals in that hour, priced on their own.
    #[serde(flatten)]
    pub usage: FunctionUsage,
}

/// A tenant's usage over a period.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageReport {
    /// The tenant's name.
    pub tenant: String,
    /// Start of the first hourly bucket counted (RFC 3339).
    pub from: String,
    /// End of the period (RFC 3339).
    pub to: String,
    /// Per-function totals.
    pub functions: Vec<FunctionUsage>,
    /// With `granularity=hour`: each hour's totals per function, by hour
    /// then function; hours without calls are left out. Each is priced on
    /// its own, so their costs may sum to a few micro-units more than the
    /// period's, which is priced once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly: Option<Vec<HourlyUsage>>,
}

api_errors!(
    /// What a usage report can answer.
    UsageErrors: InvalidRequest, Unauthorized, RateLimited, StoreUnavailable, Internal
);

/// Usage totals per function, and with `granularity=hour` each hour's;
/// hourly buckets count when their hour starts in `[from, to)`. At most
/// one report a second per tenant, in bursts of ten.
#[utoipa::path(
    get,
    path = "/v1/usage",
    tag = "usage",
    params(UsagePeriod),
    responses((status = 200, body = UsageReport), UsageErrors),
    security(("tenant" = []))
)]
pub async fn usage_report(
    State(api): State<Arc<Api>>,
    AuthTenant(tenant): AuthTenant,
    QueryParams(period): QueryParams<UsagePeriod>,
) -> Result<Json<UsageReport>, ApiError> {
    api.usage_rate_limit(&tenant.id)?;
    Ok(Json(report(&api, &tenant.id, tenant.name, &period).await?))
}

/// `tenant`'s usage over `period`, aggregated up to now and priced.
pub(super) async fn report(
    api: &Api,
    tenant: &TenantId,
    name: String,
    period: &UsagePeriod,
) -> Result<UsageReport, ApiError> {
    let from_ms = period.from.as_deref().map(|v| parse_time(v, "from")).transpose()?.unwrap_or(0);
    let to_ms = match period.to.as_deref() {
        Some(value) => parse_time(value, "to")?,
        None => (now_ms() + BUCKET_MS).min(LATEST_MS),
    };
    if from_ms > to_ms {
        return Err(ApiError::bad_request("`from` is after `to`"));
    }
    let from_bucket = from_ms / BUCKET_MS * BUCKET_MS;
    if period.granularity == Some(Granularity::Hour) && to_ms - from_bucket > MAX_HOURLY_PERIOD_HOURS * BUCKET_MS {
        return Err(ApiError::bad_request(format!(
            "`granularity=hour` covers at most {MAX_HOURLY_PERIOD_HOURS} hours ({} days); \
             give a `from` and `to` closer together",
            MAX_HOURLY_PERIOD_HOURS / 24
        )));
    }
    if let Err(err) = api.platform.aggregate_usage().await {
        // Totals committed so far are still right; report what is there.
        tracing::warn!(cause = %format!("{err:#}"), "usage aggregation before a query failed");
    }
    let usage = &api.platform.stores.usage;
    let functions = priced(api, usage.totals(tenant, from_bucket, to_ms).await?).await?;
    let hourly = match period.granularity {
        Some(Granularity::Hour) => {
            let hours = usage.hourly(tenant, from_bucket, to_ms).await?;
            let starts: Vec<u64> = hours.iter().map(|bucket| bucket.hour_ms).collect();
            let priced = priced(api, hours).await?;
            Some(
                starts
                    .into_iter()
                    .zip(priced)
                    .map(|(hour_ms, usage)| HourlyUsage { hour: format_time(hour_ms), usage })
                    .collect(),
            )
        }
        None => None,
    };
    Ok(UsageReport { tenant: name, from: format_time(from_bucket), to: format_time(to_ms), functions, hourly })
}

/// `buckets` as the report shows them, each priced.
async fn priced(api: &Api, buckets: Vec<Bucket>) -> Result<Vec<FunctionUsage>, ApiError> {
    let costs = api.platform.price(&buckets).await.map_err(|err| ApiError::internal(&format!("{err:#}")))?;
    Ok(buckets
        .into_iter()
        .zip(costs)
        .map(|(b, cost_micros)| FunctionUsage {
            function: b.function,
            invocations: b.invocations,
            failures: b.failures,
            cpu_ms: b.cpu_us as f64 / 1000.0,
            wall_ms: b.wall_us as f64 / 1000.0,
            bytes_in: b.bytes_in,
            bytes_out: b.bytes_out,
            cost: cost_micros as f64 / 1e6,
        })
        .collect())
}

/// What `from` and `to` accept: Unix seconds or an RFC 3339 date-time.
fn instant_schema() -> Schema {
    let seconds = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(LATEST_MS / 1000))
        .description(Some("Unix seconds"));
    let date_time =
        ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)));
    Schema::OneOf(OneOfBuilder::new().item(seconds).item(date_time).build())
}

/// RFC 3339 (`2026-11-21T00:00:00Z`, any offset) or Unix seconds, as ms
/// since the epoch; instants before the epoch count from it, and instants
/// after the end of year 9999 are refused.
fn parse_time(value: &str, name: &str) -> Result<u64, ApiError> {
    let parsed = match value.parse::<u64>() {
        Ok(seconds) => Some(seconds.saturating_mul(1000)),
        Err(_) => parse_rfc3339(value),
    };
    match parsed {
        Some(ms) if ms <= LATEST_MS => Ok(ms),
        Some(_) => Err(ApiError::bad_request(format!("`{name}` must be no later than 9999-12-31T23:59:59Z"))),
        None => Err(ApiError::bad_request(format!("`{name}` must be RFC 3339 or Unix seconds, got {value:?}"))),
    }
}

/// Milliseconds since the epoch of an RFC 3339 date-time with `Z` or a
/// `±hh:mm` offset (humantime reads only UTC), clamped at the epoch.
fn parse_rfc3339(value: &str) -> Option<u64> {
    let (local, offset_ms) = match value.len().checked_sub(6).and_then(|at| value.get(at..).map(|tail| (at, tail))) {
        Some((at, tail)) if (tail.starts_with('+') || tail.starts_with('-')) && tail.as_bytes()[3] == b':' => {
            let hours: i64 = tail.get(1..3)?.parse().ok()?;
            let minutes: i64 = tail.get(4..6)?.parse().ok()?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let sign = if tail.starts_with('-') { -1 } else { 1 };
            (value.get(..at)?, sign * (hours * 3600 + minutes * 60) * 1000)
        }
        _ => (value, 0),
    };
    // humantime reads years from 1970 on; an earlier date (checked with a
    // leap year in its place) is before the epoch, where periods start anyway.
    if local.get(..4).and_then(|year| year.parse::<u32>().ok()).is_some_and(|year| year < 1970) {
        humantime::parse_rfc3339_weak(&format!("1972{}", local.get(4..)?)).ok()?;
        return Some(0);
    }
    let local = humantime::parse_rfc3339_weak(local).ok()?;
    let local_ms = match local.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).ok()?,
        Err(before) => -i64::try_from(before.duration().as_millis()).ok()?,
    };
    Some(u64::try_from(local_ms - offset_ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::ErrorCode;

    #[test]
    fn times_parse_as_rfc3339_or_unix_seconds() {
        assert_eq!(parse_time("1700000000", "from"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z", "from"), Ok(1_700_000_000_000));
        assert_eq!(format_time(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(parse_time("yesterday", "to").map_err(|e| e.code), Err(ErrorCode::InvalidRequest));
    }

    #[test]
    fn offsets_shift_the_instant_and_times_before_the_epoch_count_from_it() {
        assert_eq!(parse_time("2023-11-14T23:13:20+01:00", "from"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T21:13:20.000-01:00", "from"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("0001-01-01T00:00:00Z", "from"), Ok(0));
        assert_eq!(parse_time("2023-11-14T22:13:20+25:00", "from").map_err(|e| e.code), Err(ErrorCode::InvalidRequest));
        assert_eq!(parse_time("2023-13-14T22:13:20Z", "from").map_err(|e| e.code), Err(ErrorCode::InvalidRequest));
    }

    #[test]
    fn times_past_year_9999_are_refused_not_formatted() {
        assert_eq!(format_time(LATEST_MS), "9999-12-31T23:59:59Z");
        assert_eq!(parse_time("253402300799", "to"), Ok(LATEST_MS));
        let refused = parse_time("253402300800", "to").expect_err("year 10000");
        assert_eq!(refused.message, "`to` must be no later than 9999-12-31T23:59:59Z");
    }
}
