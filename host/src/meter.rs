//! Host side of the usage aggregator: runs the `meter` component (built in,
//! or a replacement) in the same sandbox as tenant code, so billing logic
//! is as contained as any function.

use sluice_core::ErrorCode;
use wasmtime::Store;

use crate::runtime::bindings::meter::MeterPre;
use crate::runtime::{CallLimits, CallState, Failure, InvokeError, LoadError, Runtime, Usage};

pub use crate::runtime::bindings::meter::sluice::meter::usage::{
    MeterError as GuestMeterError, PriceTable, UsageRecord, UsageTotal,
};

/// Why a batch could not be aggregated.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    /// The meter refused the batch or the totals (a bad record, an overflow).
    #[error("the meter refused the batch: {0}")]
    Refused(String),
    /// The meter component itself failed in the sandbox.
    #[error("the meter component failed ({code}): {source}")]
    Sandbox {
        /// The invocation error code.
        code: ErrorCode,
        /// What happened.
        source: InvokeError,
    },
}

/// Default prices, in micro-units: 1 per call, 20 per CPU second, 5 per MiB
/// moved. Deployments set their own.
pub const DEFAULT_PRICES: PriceTable =
    PriceTable { per_invocation: 1, per_cpu_second: 20, per_wall_second: 0, per_mib_transferred: 5 };

/// A loaded meter component.
#[derive(Clone)]
pub struct Meter {
    pre: MeterPre<CallState>,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter").finish_non_exhaustive()
    }
}

impl Meter {
    /// Loads the built-in meter.
    pub fn builtin(runtime: &Runtime) -> Result<Self, LoadError> {
        Self::load(runtime, crate::builtins::METER)
    }

    /// Validates and compiles a meter component.
    pub fn load(runtime: &Runtime, bytes: &[u8]) -> Result<Self, LoadError> {
        let (component, _version) = runtime.compile(bytes)?;
        let pre = runtime.linker().instantiate_pre(&component).map_err(|err| LoadError::Imports(format!("{err:#}")))?;
        let pre =
            MeterPre::new(pre).map_err(|err| LoadError::WrongWorld { world: "meter", reason: format!("{err:#}") })?;
        Ok(Self { pre })
    }

    /// Aggregates `records` into raw per-(tenant, function) totals.
    pub async fn aggregate(&self, runtime: &Runtime, records: Vec<UsageRecord>) -> Result<Vec<UsageTotal>, MeterError> {
        let pre = self.pre.clone();
        let invocation = runtime
            .run_sandboxed(&CallLimits::from(runtime.config()), 0, async move |store: &mut Store<CallState>| {
                let instance = pre.instantiate_async(&mut *store).await.map_err(Failure::Instantiate)?;
                instance.call_aggregate(&mut *store, &records).await.map_err(Failure::Call)
            })
            .await;
        settle(invocation.result)
    }

    /// The cost of each of `totals` under `prices`, in micro-units, in order.
    pub async fn price(
        &self,
        runtime: &Runtime,
        totals: Vec<UsageTotal>,
        prices: PriceTable,
    ) -> Result<Vec<u64>, MeterError> {
        let count = totals.len();
        let pre = self.pre.clone();
        let invocation = runtime
            .run_sandboxed(&CallLimits::from(runtime.config()), 0, async move |store: &mut Store<CallState>| {
                let instance = pre.instantiate_async(&mut *store).await.map_err(Failure::Instantiate)?;
                instance.call_price(&mut *store, &totals, prices).await.map_err(Failure::Call)
            })
            .await;
        let costs = settle(invocation.result)?;
        if costs.len() != count {
            return Err(MeterError::Refused(format!("priced {} totals, asked for {count}", costs.len())));
        }
        Ok(costs)
    }
}

/// The meter's answer, or why there is none.
fn settle<T>(result: Result<Result<T, GuestMeterError>, InvokeError>) -> Result<T, MeterError> {
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(GuestMeterError::InvalidRecord(reason) | GuestMeterError::Overflow(reason))) => {
            Err(MeterError::Refused(reason))
        }
        Err(source) => Err(MeterError::Sandbox { code: source.code(), source }),
    }
}

/// The record the meter expects for one call's [`Usage`].
pub fn record(job_id: &str, tenant: &str, function: &str, usage: &Usage) -> UsageRecord {
    UsageRecord {
        job_id: job_id.to_owned(),
        tenant: tenant.to_owned(),
        function: function.to_owned(),
        outcome: usage.outcome.to_string(),
        wall_us: usage.wall_us,
        cpu_us: usage.cpu_us,
        fuel: usage.fuel,
        bytes_in: usage.bytes_in,
        bytes_out: usage.bytes_out,
        peak_memory_bytes: usage.peak_memory_bytes,
    }
}
