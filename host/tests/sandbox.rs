//! Hostile components: every misbehaviour gets its exact error, the host
//! stays healthy, and the next normal call succeeds.

mod common;

use std::time::Duration;

use common::{call, hostile, photo, resize};
use sluice::runtime::{CallLimits, InvokeError, MIB};

/// After any hostile call the runtime must still serve a normal one.
async fn assert_healthy() {
    let invocation = call(&resize(), photo("peacock.progressive.jpeg"), &[("width", "20")]).await;
    assert!(invocation.result.is_ok(), "a normal call failed after a hostile one: {:?}", invocation.result);
}

async fn act(name: &str) -> sluice::runtime::Invocation {
    call(&hostile(), Vec::new(), &[("act", name)]).await
}

async fn act_with(name: &str, limits: CallLimits) -> sluice::runtime::Invocation {
    common::runtime().invoke_with(&hostile(), common::request(Vec::new(), &[("act", name)]), &limits).await
}

fn short_deadline() -> CallLimits {
    CallLimits { timeout: Duration::from_millis(300), ..CallLimits::from(common::runtime().config()) }
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_at_the_deadline() {
    let invocation = act_with("loop", short_deadline()).await;
    assert_eq!(invocation.result.expect_err("stopped"), InvokeError::Timeout { limit: Duration::from_millis(300) });
    assert_eq!(invocation.usage.outcome.as_str(), "timeout");
    assert!(invocation.usage.cpu_us > 0, "a spinning guest burns CPU");
    assert_healthy().await;
}

#[tokio::test]
async fn a_guest_sleeping_in_a_host_call_is_stopped_at_the_deadline() {
    let invocation = act_with("sleep", short_deadline()).await;
    assert_eq!(invocation.result.expect_err("stopped"), InvokeError::Timeout { limit: Duration::from_millis(300) });
    // Blocked, not spinning: far less CPU than wall time.
    assert!(invocation.usage.cpu_us < invocation.usage.wall_us / 2, "{:?}", invocation.usage);
    assert_healthy().await;
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_limit() {
    let limits = CallLimits { memory: 64 * MIB, ..CallLimits::from(common::runtime().config()) };
    let invocation = act_with("memory-bomb", limits).await;
    match invocation.result {
        Err(InvokeError::MemoryLimit { limit, requested }) => {
            assert_eq!(limit, 64 * MIB);
            assert!(requested > 64 * MIB, "requested {requested}");
        }
        other => panic!("expected memory_limit, got {other:?}"),
    }
    assert_eq!(invocation.usage.outcome.as_str(), "memory_limit");
    assert!(invocation.usage.peak_memory_bytes <= 64 * MIB as u64);
    assert!(invocation.log.stderr.contains("memory allocation of 16777216 bytes failed"), "{:?}", invocation.log);
    assert_healthy().await;
}

#[tokio::test]
async fn deep_recursion_traps() {
    let invocation = act("recursion").await;
    assert_eq!(
        invocation.result.expect_err("trapped"),
        InvokeError::Trapped(
            "the function trapped: out-of-bounds memory access (in Rust guests usually a stack overflow)".to_owned()
        )
    );
    assert_eq!(invocation.usage.outcome.as_str(), "function_trapped");
    assert_healthy().await;
}

#[tokio::test]
async fn a_huge_output_is_refused() {
    let invocation = act("huge-output").await;
    assert_eq!(
        invocation.result.expect_err("refused"),
        InvokeError::OutputTooLarge { size: 40 * MIB, limit: 32 * MIB }
    );
    assert_eq!(invocation.usage.bytes_out, 0);
    assert_healthy().await;
}

#[tokio::test]
async fn a_stdout_flood_is_capped_and_the_call_still_succeeds() {
    let invocation = call(&hostile(), Vec::new(), &[("act", "stdout-flood"), ("mib", "16")]).await;
    let output = invocation.result.expect("a flood is not a failure");
    assert_eq!(output.body, b"wrote 16 MiB");
    let cap = common::runtime().config().max_log;
    assert_eq!(invocation.log.stdout.len(), cap);
    assert_eq!(invocation.log.dropped_bytes, (16 * MIB - cap) as u64);
    assert_eq!(invocation.log.stderr, "flood done\n");
    assert_healthy().await;
}

#[tokio::test]
async fn a_panic_traps_and_its_message_is_in_the_log() {
    let invocation = act("panic").await;
    assert_eq!(
        invocation.result.expect_err("trapped"),
        InvokeError::Trapped("the function trapped: wasm `unreachable` executed (a panic or abort)".to_owned())
    );
    assert!(invocation.log.stderr.contains("hostile fixture panics on purpose"), "{:?}", invocation.log);
    assert_healthy().await;
}

#[tokio::test]
async fn calling_exit_is_a_trap_not_a_host_exit() {
    let invocation = act("exit").await;
    assert_eq!(
        invocation.result.expect_err("trapped"),
        InvokeError::Trapped("the function exited (status 1) instead of returning a result".to_owned())
    );
    assert_healthy().await;
}

#[tokio::test]
async fn function_errors_keep_their_kind_and_message() {
    assert_eq!(
        act("fail").await.result.expect_err("fails"),
        InvokeError::FunctionError("hostile fixture fails on purpose".to_owned())
    );
    assert_eq!(
        act("reject").await.result.expect_err("rejects"),
        InvokeError::InvalidInput("hostile fixture rejects its input".to_owned())
    );
}

async fn probe(params: &[(&str, &str)]) -> String {
    let output = call(&hostile(), Vec::new(), params).await.result.expect("probes report, never fail");
    String::from_utf8(output.body).expect("utf-8 report")
}

#[tokio::test]
async fn a_guest_reads_no_host_file_and_lists_no_directory() {
    for path in ["/etc/passwd", "/proc/self/environ", env!("CARGO_MANIFEST_DIR"), "."] {
        let report = probe(&[("act", "read-file"), ("path", path)]).await;
        assert!(report.starts_with("denied:"), "read {path}: {report}");
        let report = probe(&[("act", "list-dir"), ("path", path)]).await;
        assert!(report.starts_with("denied:"), "list {path}: {report}");
    }
}

#[tokio::test]
async fn a_guest_sees_no_environment_arguments_or_stdin() {
    // SAFETY: set before any thread reads the environment in this test.
    unsafe { std::env::set_var("SLUICE_TEST_SECRET", "hunter2") };
    assert_eq!(probe(&[("act", "env")]).await, "denied: no environment variables and no arguments");
    assert_eq!(probe(&[("act", "stdin")]).await, "denied: stdin is empty");
}

#[tokio::test]
async fn a_guest_opens_no_socket_and_resolves_no_name() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("local addr").to_string();
    let report = probe(&[("act", "connect"), ("addr", &addr)]).await;
    assert!(report.starts_with("denied:"), "connect: {report}");
    assert!(listener.accept().is_err(), "the guest's connection reached the host");
    let report = probe(&[("act", "resolve")]).await;
    assert!(report.starts_with("denied:"), "resolve: {report}");
}

#[tokio::test]
async fn hostile_calls_in_parallel_do_not_disturb_a_normal_call() {
    let limits = short_deadline();
    let runtime = common::runtime();
    let hostile_calls: Vec<_> = ["loop", "sleep", "memory-bomb", "panic"]
        .into_iter()
        .map(|name| {
            let runtime = runtime.clone();
            tokio::spawn(async move {
                runtime.invoke_with(&hostile(), common::request(Vec::new(), &[("act", name)]), &limits).await
            })
        })
        .collect();
    let normal = call(&resize(), photo("kodim23.png"), &[("width", "100")]).await;
    assert!(normal.result.is_ok(), "{:?}", normal.result);
    for handle in hostile_calls {
        let invocation = handle.await.expect("task completes");
        assert!(invocation.result.is_err());
    }
    assert_healthy().await;
}
