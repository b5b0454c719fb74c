//! The same resize code natively and as a WASM component.
//!
//! Measures decode → resize (400 px wide, Lanczos3) → encode (same format)
//! with `sluice_resize::transform` compiled for the host, against the
//! built-in `resize` component called through the Sluice runtime (a fresh
//! sandboxed instance per call, as in production), and prints the
//! WASM/native ratio per image.
//!
//! Run: `cargo bench -p sluice-bench --bench native_vs_wasm`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion};
use sluice::runtime::{Runtime, RuntimeConfig};
use sluice_bench::{Recorder, photo};
use sluice_core::CallRequest;
use sluice_resize::ResizeParams;

const IMAGES: &[&str] =
    &["kodim23.png", "nasa-852x567-rgba.png", "harvesters.jpeg", "rachel-hisko-rEM3cK8F1pk-unsplash.jpg"];

fn native_vs_wasm(c: &mut Criterion, recorder: &Recorder) {
    let runtime = Arc::new(Runtime::new(RuntimeConfig::default()).expect("runtime"));
    let resize = runtime.load(sluice::builtins::transform("resize").expect("built-in").component).expect("loads");
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    let params = vec![("width".to_owned(), "400".to_owned())];
    let native_params = ResizeParams::parse(&params).expect("params");

    let mut group = c.benchmark_group("native_vs_wasm");
    group.sample_size(10);
    for &image in IMAGES {
        let input = photo(image);
        group.bench_with_input(BenchmarkId::new("native", image), &input, |b, input| {
            b.iter_custom(|iters| {
                recorder.time(&format!("native/{image}"), iters, || {
                    black_box(sluice_resize::transform(input, &native_params).expect("resizes"));
                })
            });
        });
        group.bench_with_input(BenchmarkId::new("wasm", image), &input, |b, input| {
            b.iter_custom(|iters| {
                recorder.time(&format!("wasm/{image}"), iters, || {
                    let request =
                        CallRequest { body: input.clone(), content_type: String::new(), params: params.clone() };
                    let invocation = tokio.block_on(runtime.invoke(&resize, request));
                    black_box(invocation.result.expect("resizes"));
                })
            });
        });
    }
    group.finish();
}

fn report(recorder: &Recorder) {
    println!("\nWASM/native time ratio (median per call, decode → resize 400w → encode):");
    println!("{:<40} {:>12} {:>12} {:>8}", "image", "native ms", "wasm ms", "ratio");
    let mut ratios = Vec::new();
    for &image in IMAGES {
        let native = recorder.median_ns(&format!("native/{image}")) / 1e6;
        let wasm = recorder.median_ns(&format!("wasm/{image}")) / 1e6;
        if !(native.is_finite() && wasm.is_finite()) {
            continue; // Filtered out of this run.
        }
        ratios.push(wasm / native);
        println!("{image:<40} {native:>12.2} {wasm:>12.2} {:>8.3}", wasm / native);
    }
    ratios.sort_by(f64::total_cmp);
    if let Some(median) = ratios.get(ratios.len() / 2) {
        println!("median ratio: {median:.3} (goal ≤ 1.20)");
    }
}

fn main() {
    let recorder = Recorder::default();
    let mut criterion = Criterion::default().configure_from_args();
    native_vs_wasm(&mut criterion, &recorder);
    criterion.final_summary();
    report(&recorder);
}
