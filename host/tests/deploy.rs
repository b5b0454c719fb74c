//! The deployment files start `sluice` with command lines the binary
//! accepts: every `sluice serve` / `sluice worker` invocation in
//! `deploy/` parses with the real argument definitions.

use clap::Parser;
use sluice::cli::{Cli, Command};

/// Every JSON-array command line (`command: [...]` / `args: [...]`) in the
/// file that runs `serve` or `worker`.
fn sluice_command_lines(path: &str) -> Vec<Vec<String>> {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|err| panic!("cannot read {path}: {err}"));
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let array = line.strip_prefix("command:").or_else(|| line.strip_prefix("args:"))?.trim();
            let args: Vec<String> = serde_json::from_str(array).ok()?;
            matches!(args.first().map(String::as_str), Some("serve" | "worker")).then_some(args)
        })
        .collect()
}

fn parse(args: &[String]) -> Command {
    let argv = std::iter::once("sluice".to_owned()).chain(args.iter().cloned());
    match Cli::try_parse_from(argv) {
        Ok(cli) => cli.command,
        Err(err) => panic!("`sluice {}` does not parse: {err}", args.join(" ")),
    }
}

#[test]
fn compose_runs_a_redis_front_door_and_workers() {
    let lines = sluice_command_lines("deploy/docker-compose.yml");
    assert_eq!(lines.len(), 2, "{lines:?}");
    for args in &lines {
        match parse(args) {
            Command::Serve(serve) => {
                assert_eq!(serve.backend.redis.as_deref(), Some("redis://redis:6379"));
                assert_eq!(serve.workers, Some(0));
            }
            Command::Worker(worker) => assert_eq!(worker.backend.redis.as_deref(), Some("redis://redis:6379")),
            other => panic!("unexpected command {other:?}"),
        }
    }
}

#[test]
fn kubernetes_front_doors_and_workers_parse() {
    let doors = sluice_command_lines("deploy/k8s/frontdoor.yaml");
    let workers = sluice_command_lines("deploy/k8s/worker.yaml");
    assert_eq!((doors.len(), workers.len()), (1, 1));
    assert!(
        matches!(parse(&doors[0]), Command::Serve(serve) if serve.workers == Some(0) && serve.backend.redis.is_some())
    );
    match parse(&workers[0]) {
        Command::Worker(worker) => {
            assert_eq!(worker.concurrency, Some(2));
            assert!(worker.drain_timeout.as_secs() < 45, "the pod's grace period outlasts the drain");
        }
        other => panic!("unexpected command {other:?}"),
    }
}

#[test]
fn the_readme_three_commands_start_a_front_door_and_workers_on_one_redis() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).expect("README");
    let block = readme.split("<!-- distributed-quickstart -->").nth(1).expect("the quick-start block");
    let block = block.split("```sh").nth(1).and_then(|b| b.split("```").next()).expect("a sh block");
    let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 3, "three commands: {lines:?}");
    assert!(lines[0].starts_with("redis-server ") && lines[0].contains("--appendonly yes"));
    let sluice_args = |line: &str| -> Vec<String> {
        let args = line.split(" -- ").nth(1).expect("cargo run -- <args>");
        let args = args.split(" &").next().expect("args");
        args.replace("$n", "1").split_whitespace().map(str::to_owned).collect()
    };
    let redis = lines[0].split("--port ").nth(1).and_then(|rest| rest.split_whitespace().next()).expect("port");
    match parse(&sluice_args(lines[1])) {
        Command::Serve(serve) => {
            assert_eq!(serve.backend.redis, Some(format!("redis://127.0.0.1:{redis}")));
            assert_eq!(serve.workers, Some(0));
        }
        other => panic!("expected serve, got {other:?}"),
    }
    assert!(lines[2].starts_with("for n in 1 2;"), "two workers");
    match parse(&sluice_args(lines[2])) {
        Command::Worker(worker) => assert_eq!(worker.backend.redis, Some(format!("redis://127.0.0.1:{redis}"))),
        other => panic!("expected worker, got {other:?}"),
    }
}
