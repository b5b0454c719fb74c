//! The built-in meter component against a batch computed by hand.

mod common;

use sluice::meter::{Meter, PriceTable, UsageRecord, UsageTotal};

fn record(
    job: &str,
    tenant: &str,
    function: &str,
    outcome: &str,
    cpu_us: u64,
    wall_us: u64,
    bytes: (u64, u64),
) -> UsageRecord {
    UsageRecord {
        job_id: job.to_owned(),
        tenant: tenant.to_owned(),
        function: function.to_owned(),
        outcome: outcome.to_owned(),
        wall_us,
        cpu_us,
        fuel: None,
        bytes_in: bytes.0,
        bytes_out: bytes.1,
        peak_memory_bytes: 1 << 20,
    }
}

const PRICES: PriceTable =
    PriceTable { per_invocation: 100, per_cpu_second: 1_000_000, per_wall_second: 10_000, per_mib_transferred: 2_000 };

#[tokio::test]
async fn totals_and_costs_match_a_hand_computed_batch() {
    let runtime = common::runtime();
    let meter = Meter::builtin(&runtime).expect("meter loads");
    let records = vec![
        record("j1", "acme", "resize", "ok", 250_000, 300_000, (1_048_576, 524_288)),
        record("j2", "acme", "resize", "timeout", 1_500_000, 2_000_000, (2_097_152, 0)),
        record("j3", "acme", "blur", "ok", 10_000, 20_000, (1000, 1000)),
        record("j4", "zeta", "resize", "ok", 5, 7, (10, 20)),
        // j2 retried after a crash: the last record for a job id is billed, once.
        record("j2", "acme", "resize", "ok", 500_000, 600_000, (2_097_152, 1_048_576)),
    ];
    let totals = meter.aggregate(&runtime, records, PRICES).await.expect("aggregates");

    // acme/blur: 100 + 10_000·1 + 20_000·0.01 + 2000·2000/1048576 = 100 + 10_000 + 200 + 3 (3.81 rounded down).
    // acme/resize: 2 calls, cpu 750_000 µs, wall 900_000 µs, bytes 1_572_864 + 3_145_728 = 4.5 MiB
    //   = 200 + 750_000 + 9_000 + 9_000 = 768_200.
    // zeta/resize: 100 + 5 + 0 (0.07) + 0 (0.06) = 105.
    let expected = vec![
        UsageTotal {
            tenant: "acme".into(),
            function: "blur".into(),
            invocations: 1,
            failures: 0,
            cpu_us: 10_000,
            wall_us: 20_000,
            bytes_in: 1000,
            bytes_out: 1000,
            cost_micros: 10_303,
        },
        UsageTotal {
            tenant: "acme".into(),
            function: "resize".into(),
            invocations: 2,
            failures: 0,
            cpu_us: 750_000,
            wall_us: 900_000,
            bytes_in: 3_145_728,
            bytes_out: 1_572_864,
            cost_micros: 768_200,
        },
        UsageTotal {
            tenant: "zeta".into(),
            function: "resize".into(),
            invocations: 1,
            failures: 0,
            cpu_us: 5,
            wall_us: 7,
            bytes_in: 10,
            bytes_out: 20,
            cost_micros: 105,
        },
    ];
    assert_eq!(totals, expected);
}

#[tokio::test]
async fn failures_are_counted_and_still_billed() {
    let runtime = common::runtime();
    let meter = Meter::builtin(&runtime).expect("meter loads");
    let records = vec![
        record("a", "t", "f", "ok", 0, 0, (0, 0)),
        record("b", "t", "f", "memory_limit", 0, 0, (0, 0)),
        record("c", "t", "f", "function_trapped", 0, 0, (0, 0)),
    ];
    let totals = meter.aggregate(&runtime, records, PRICES).await.expect("aggregates");
    assert_eq!(totals.len(), 1);
    assert_eq!((totals[0].invocations, totals[0].failures, totals[0].cost_micros), (3, 2, 300));
}

#[tokio::test]
async fn an_empty_batch_has_no_totals_and_a_bad_record_is_refused() {
    let runtime = common::runtime();
    let meter = Meter::builtin(&runtime).expect("meter loads");
    assert_eq!(meter.aggregate(&runtime, Vec::new(), PRICES).await.expect("aggregates"), Vec::new());
    let err =
        meter.aggregate(&runtime, vec![record("x", "", "f", "ok", 0, 0, (0, 0))], PRICES).await.expect_err("refused");
    assert_eq!(
        err.to_string(),
        "the meter refused the batch: record for job `x` has an empty job id, tenant or function"
    );
}

#[tokio::test]
async fn a_cost_that_overflows_is_refused() {
    let runtime = common::runtime();
    let meter = Meter::builtin(&runtime).expect("meter loads");
    let huge = PriceTable { per_invocation: u64::MAX, ..PRICES };
    let records = vec![record("a", "t", "f", "ok", 0, 0, (0, 0)), record("b", "t", "f", "ok", 0, 0, (0, 0))];
    let err = meter.aggregate(&runtime, records, huge).await.expect_err("overflows");
    assert_eq!(err.to_string(), "the meter refused the batch: cost for t/f");
}
