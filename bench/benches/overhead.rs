//! What the sandbox costs per call.
//!
//! - `per_call`: instantiate + call + drop of a trivial function (the hostile
//!   fixture's `echo`, empty body) with the pooling allocator on and off and
//!   fuel metering on and off; prints p50 µs per call. Also the same call
//!   to a component that imports nothing (`no-imports.wat`), the floor that
//!   shows how much of the call is linking the ~100 WASI imports.
//! - `fresh_vs_warm`: a real resize (kodim23.png → 400 px) in a fresh
//!   instance per call against one instance reused for every call; prints
//!   how much more a fresh instance costs.
//!
//! Run: `cargo bench -p sluice-bench --bench overhead`

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion};
use sluice::runtime::{Runtime, RuntimeConfig};
use sluice_bench::{Recorder, photo};
use sluice_core::CallRequest;

/// A component the host's build script puts beside the built-ins.
fn guest(file: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests/wasm32-wasip2/release");
    std::fs::read(dir.join(file)).unwrap_or_else(|err| panic!("{file} is built with the host: {err}"))
}

fn echo_request() -> CallRequest {
    CallRequest { body: Vec::new(), content_type: String::new(), params: vec![("act".to_owned(), "echo".to_owned())] }
}

const VARIANTS: &[(&str, bool, bool)] = &[
    ("pooling", true, false),
    ("on-demand", false, false),
    ("pooling+fuel", true, true),
    ("on-demand+fuel", false, true),
];

fn per_call(c: &mut Criterion, recorder: &Recorder, tokio: &tokio::runtime::Runtime) {
    let component = guest("sluice_fixture_hostile.wasm");
    let mut group = c.benchmark_group("per_call");
    for &(name, pooling, fuel) in VARIANTS {
        let runtime = Runtime::new(RuntimeConfig { pooling, fuel, ..RuntimeConfig::default() }).expect("runtime");
        let echo = runtime.load(&component).expect("loads");
        group.bench_function(BenchmarkId::new("echo", name), |b| {
            b.iter_custom(|iters| {
                recorder.time(name, iters, || {
                    let invocation = tokio.block_on(runtime.invoke(&echo, echo_request()));
                    black_box(invocation.result.expect("echoes"));
                })
            });
        });
    }
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let no_imports = runtime.load(&guest("no-imports.wasm")).expect("loads");
    group.bench_function(BenchmarkId::new("no-imports", "pooling"), |b| {
        b.iter_custom(|iters| {
            recorder.time("no-imports", iters, || {
                let invocation = tokio.block_on(runtime.invoke(&no_imports, echo_request()));
                black_box(invocation.result.expect("echoes"));
            })
        });
    });
    group.finish();
}

fn fresh_vs_warm(c: &mut Criterion, recorder: &Recorder, tokio: &tokio::runtime::Runtime) {
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let resize = runtime.load(sluice::builtins::transform("resize").expect("built-in").component).expect("loads");
    let input = photo("kodim23.png");
    let request = || CallRequest {
        body: input.clone(),
        content_type: String::new(),
        params: vec![("width".to_owned(), "400".to_owned())],
    };
    let mut warm = tokio.block_on(runtime.warm_instance(&resize)).expect("instantiates");

    let mut group = c.benchmark_group("fresh_vs_warm");
    group.sample_size(20);
    group.bench_function("resize-kodim23/fresh", |b| {
        b.iter_custom(|iters| {
            recorder.time("fresh", iters, || {
                black_box(tokio.block_on(runtime.invoke(&resize, request())).result.expect("resizes"));
            })
        });
    });
    group.bench_function("resize-kodim23/warm", |b| {
        b.iter_custom(|iters| {
            recorder.time("warm", iters, || {
                black_box(tokio.block_on(warm.call(request())).expect("resizes"));
            })
        });
    });
    group.finish();
}

fn report(recorder: &Recorder) {
    // A filtered run (`cargo bench -- per_call`) leaves some labels empty.
    if recorder.median_ns("pooling").is_finite() {
        println!("\nPer-call sandbox overhead, trivial function (p50 of sample means; goal ≤ 10 µs):");
        for &(name, _, _) in VARIANTS {
            println!("  {name:<16} {:>8.2} µs", recorder.median_ns(name) / 1e3);
        }
        let pooling = recorder.median_ns("pooling");
        println!(
            "  fuel metering: {:+.1} % per trivial call with pooling",
            (recorder.median_ns("pooling+fuel") / pooling - 1.0) * 100.0
        );
        let floor = recorder.median_ns("no-imports");
        if floor.is_finite() {
            println!(
                "  no imports       {:>8.2} µs (pooling): what the Rust echo brings (its WASI imports, its memory) is {:.0} % of its call",
                floor / 1e3,
                (1.0 - floor / pooling) * 100.0
            );
        }
    }
    let (fresh, warm) = (recorder.median_ns("fresh"), recorder.median_ns("warm"));
    if fresh.is_finite() && warm.is_finite() {
        println!(
            "\nResize kodim23.png → 400w: fresh instance {:.3} ms, warm instance {:.3} ms, fresh costs {:+.2} % (goal ≤ 3 %)",
            fresh / 1e6,
            warm / 1e6,
            (fresh / warm - 1.0) * 100.0
        );
    }
}

fn main() {
    let recorder = Recorder::default();
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    let mut criterion = Criterion::default().configure_from_args();
    per_call(&mut criterion, &recorder, &tokio);
    fresh_vs_warm(&mut criterion, &recorder, &tokio);
    criterion.final_summary();
    report(&recorder);
}
