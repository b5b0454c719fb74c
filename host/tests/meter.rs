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

/// Raw totals and their costs, as a bill shows them.
async fn priced(
    meter: &Meter,
    runtime: &sluice::runtime::Runtime,
    records: Vec<UsageRecord>,
) -> Vec<(UsageTotal, u64)> {
    let totals = meter.aggregate(runtime, records).await.expect("aggregates");
    let costs = meter.price(runtime, totals.clone(), PRICES).await.expect("prices");
    totals.into_iter().zip(costs).collect()
}

fn total(tenant: &str, function: &str, invocations: u64, cpu_us: u64, wall_us: u64, bytes: (u64, u64)) -> UsageTotal {
    UsageTotal {
        tenant: tenant.into(),
        function: function.into(),
        invocations,
        failures: 0,
        cpu_us,
        wall_us,
        bytes_in: bytes.0,
        bytes_out: bytes.1,
    }
}

#[tokio::test]
async fn totals_and_costs_match_a_hand_computed_batch() {
    let runtime = common::runtime();
    let meter = Meter::builtin(&runtime).expect("meter loads");
    let records = vec![
        record("j1#1", "acme", "resize", "ok", 250_000, 300_000, (1_048_576, 524_288)),
        record("j2#1", "acme", "resize", "ok", 1_500_000, 2_000_000, (2_097_152, 0)),
        record("j3#1", "acme", "blur", "ok", 10_000, 20_000, (1000, 1000)),
        record("j4#1", "zeta", "resize", "ok", 5, 7, (10, 20)),
        // j2's first attempt written again (a worker repeating its record):
        // the last copy of a record id counts, once.
        record("j2#1", "acme", "resize", "ok", 500_000, 600_000, (2_097_152, 1_048_576)),
    ];
    // acme/blur: 100 + 10_000·1 + 20_000·0.01 + 2000·2000/1048576 = 100 + 10_000 + 200 + 3 (3.81 rounded down).
    // acme/resize: 2 calls, cpu 750_000 µs, wall 900_000 µs, bytes 1_572_864 + 3_145_728 = 4.5 MiB
    //   = 200 + 750_000 + 9_000 + 9_000 = 768_200.
    // zeta/resize: 100 + 5 + 0 (0.07) + 0 (0.06) = 105.
    let expected = vec![
        (total("acme", "blur", 1, 10_000, 20_000, (1000, 1000)), 10_303),
        (total("acme", "resize", 2, 750_000, 900_000, (3_145_728, 1_572_864)), 768_200),
        (total("zeta", "resize", 1, 5, 7, (10, 20)), 105),
    ];
    assert_eq!(priced(&meter, &runtime, records).await, expected);
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
    let priced = priced(&meter, &runtime, records).await;
    assert_eq!(priced.len(), 1);
    assert_eq!((priced[0].0.invocations, priced[0].0.failures, priced[0].1), (3, 2, 300));
}

#[tokio::test]
async fn calls_aggregated_one_at_a_time_cost_what_one_batch_costs() {
    let runtime = common::runtime();
    let meter = Meter::builtin(&runtime).expect("meter loads");
    // Each call's wall time (1.5) and transfer (762.94) are worth a
    // fraction of a micro-unit more than a whole number; rounding per batch
    // would drop those fractions once per call.
    let calls: Vec<UsageRecord> =
        (0..10).map(|n| record(&format!("j{n}#1"), "t", "f", "ok", 7, 150, (300_000, 100_000))).collect();
    let one_batch = priced(&meter, &runtime, calls.clone()).await;

    let mut summed = total("t", "f", 0, 0, 0, (0, 0));
    for call in calls {
        let totals = meter.aggregate(&runtime, vec![call]).await.expect("aggregates");
        let [one] = totals.as_slice() else { panic!("one total per call, got {totals:?}") };
        summed.invocations += one.invocations;
        summed.cpu_us += one.cpu_us;
        summed.wall_us += one.wall_us;
        summed.bytes_in += one.bytes_in;
        summed.bytes_out += one.bytes_out;
    }
    let costs = meter.price(&runtime, vec![summed.clone()], PRICES).await.expect("prices");

    // 10 calls: 10·100 + 70 µs·1 + 1500 µs·0.01 + 4 MB·2000/MiB
    //   = 1000 + 70 + 15 + 7629 (7629.39 rounded down once) = 8714;
    // priced per call it would be 10·(100 + 7 + 1 + 762) = 8700.
    assert_eq!(one_batch, vec![(summed, 8_714)]);
    assert_eq!(costs, vec![8_714]);
}

#[tokio::test]
async fn an_empty_batch_has_no_totals_and_a_bad_record_is_refused() {
    let runtime = common::runtime();
    let meter = Meter::builtin(&runtime).expect("meter loads");
    assert_eq!(meter.aggregate(&runtime, Vec::new()).await.expect("aggregates"), Vec::new());
    assert_eq!(meter.price(&runtime, Vec::new(), PRICES).await.expect("prices"), Vec::<u64>::new());
    let err = meter.aggregate(&runtime, vec![record("x", "", "f", "ok", 0, 0, (0, 0))]).await.expect_err("refused");
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
    let err = meter.price(&runtime, vec![total("t", "f", 2, 0, 0, (0, 0))], huge).await.expect_err("overflows");
    assert_eq!(err.to_string(), "the meter refused the batch: cost for t/f");
}
