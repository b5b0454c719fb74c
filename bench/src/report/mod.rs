//! `sluice-bench report`: starts what it needs (in-process nodes, a
//! `redis-server` on a free port, `sluice worker` processes), runs every
//! scenario, stops everything, and writes `bench/results/REPORT.md` with
//! SVG plots beside it.

pub mod abuse;
pub mod neighbours;
pub mod node;
pub mod scenarios;
pub mod svg;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use abuse::AbuseRuns;
use anyhow::Context;
use neighbours::NeighbourRun;
use scenarios::{Effort, HttpRuns, PhotoTiming};

/// What to run and where to write.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Shorter runs (under five minutes on two cores).
    pub quick: bool,
    /// Where REPORT.md and the plots go.
    pub out_dir: PathBuf,
}

/// One row of the summary table.
#[derive(Debug, Clone)]
pub struct Goal {
    /// P1 … P6, A1.
    pub id: &'static str,
    /// What is measured.
    pub what: &'static str,
    /// The measured value, in the goal's unit.
    pub value: f64,
    /// The goal as written (e.g. `≤ 1.20`).
    pub goal: &'static str,
    /// Whether the value meets it.
    pub met: bool,
    /// Decimals shown: enough that a value just past its goal does not print as the goal.
    pub decimals: usize,
}

/// Everything one run measured.
struct Measured {
    photos: Vec<PhotoTiming>,
    skipped: Vec<(String, String)>,
    per_call_us: f64,
    jpeg_bytes: usize,
    native_per_s: f64,
    wasm_call_ms: (f64, f64),
    http: HttpRuns,
    embedded_ms: f64,
    redis_ms: f64,
    scaling: Vec<(usize, f64)>,
    abuse: AbuseRuns,
    neighbours: Vec<NeighbourRun>,
    seconds: f64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

impl Measured {
    fn goals(&self) -> Vec<Goal> {
        let p1 = median(self.photos.iter().map(PhotoTiming::ratio).collect());
        let p3 = self.http.max.throughput() / self.native_per_s;
        let p4 = self
            .http
            .open
            .iter()
            .find(|(fraction, _, _)| (*fraction - 0.7).abs() < 1e-9)
            .map_or(f64::NAN, |(_, _, result)| result.latency_ms(0.99));
        let p5 = self.redis_ms - self.embedded_ms;
        let a1 = self.abuse.worst_p99_ratio();
        let n1 = worst_quiet_p50(&self.neighbours);
        let p6 = match (self.scaling.first(), self.scaling.last()) {
            (Some(&(_, one)), Some(&(count, many))) if count > 1 => many / (one * count as f64),
            _ => f64::NAN,
        };
        vec![
            Goal {
                id: "P1",
                decimals: 2,
                what: "WASM/native time ratio, identical resize code, decode→resize→encode, median over the test photos",
                value: p1,
                goal: "≤ 1.20",
                met: p1 <= 1.20,
            },
            Goal {
                id: "P2",
                decimals: 1,
                what: "per-call sandbox overhead, µs p50, trivial function",
                value: self.per_call_us,
                goal: "≤ 10",
                met: self.per_call_us <= 10.0,
            },
            Goal {
                id: "P3",
                decimals: 2,
                what: "HTTP sync resize throughput (256 KB JPEG → 400 px) / in-process native loop, same cores",
                value: p3,
                goal: "≥ 0.80",
                met: p3 >= 0.80,
            },
            Goal {
                id: "P4",
                decimals: 1,
                what: "p99 latency in ms of that resize at 70 % of the maximum sustainable rate",
                value: p4,
                goal: "≤ 25",
                met: p4 <= 25.0,
            },
            Goal {
                id: "P5",
                decimals: 3,
                what: "added ms p50 per job in Redis mode vs embedded",
                value: p5,
                goal: "≤ 0.5",
                met: p5 <= 0.5,
            },
            Goal {
                id: "P6",
                decimals: 3,
                what: "throughput with the most worker processes, relative to linear from 1",
                value: p6,
                goal: "≥ 0.9",
                met: p6 >= 0.9,
            },
            Goal {
                id: "A1",
                decimals: 2,
                what: "a well-behaved tenant's p99 during the worst attack / its p99 alone (abuse section)",
                value: a1,
                goal: "≤ 2.0",
                met: a1 <= 2.0,
            },
            Goal {
                id: "N1",
                decimals: 2,
                what: "a quiet tenant's sync p50 while another's burst drains / max(100 ms, 5× its p50 alone), worst mode (noisy-neighbour section)",
                value: n1,
                goal: "≤ 1.00",
                met: n1 <= 1.0,
            },
        ]
    }
}

/// Runs every scenario and writes the report; returns the summary rows.
pub async fn run(options: &ReportOptions) -> anyhow::Result<Vec<Goal>> {
    let effort = if options.quick { Effort::QUICK } else { Effort::FULL };
    let started = Instant::now();
    std::fs::create_dir_all(&options.out_dir)
        .with_context(|| format!("cannot create {}", options.out_dir.display()))?;

    eprintln!("P1: native vs WASM over the test photos");
    let (photos, skipped) = scenarios::native_vs_wasm(effort).await?;
    eprintln!("P2: per-call sandbox overhead");
    let per_call_us = scenarios::per_call_overhead(effort).await?;
    let jpeg = scenarios::jpeg_near(256 * 1024)?;
    eprintln!("P3: native loop ({} threads)", scenarios::cores());
    let input = jpeg.clone();
    let native_per_s =
        tokio::task::spawn_blocking(move || scenarios::native_throughput(&input, scenarios::cores(), effort.run))
            .await
            .context("native loop")??;
    eprintln!("P4: the in-process WASM call alone");
    let wasm_call_ms = scenarios::wasm_call_latency(&jpeg, effort.sequential_calls).await?;
    eprintln!("P3/P4: HTTP on an embedded node");
    let http = scenarios::http_runs(&jpeg, effort).await?;
    let redis = tokio::task::spawn_blocking(sluice_testkit::spawn_redis)
        .await
        .context("start redis-server (scripts/test.sh installs it)")?;
    eprintln!("P5: Redis mode vs embedded");
    let (embedded_ms, redis_ms) = scenarios::redis_added_latency(&redis.url, effort).await?;
    eprintln!("P6: worker processes");
    let scaling = scenarios::worker_scaling(&redis.url, &jpeg, effort).await?;
    drop(redis);
    eprintln!("A1: a victim tenant alone and under attack");
    let abuse = abuse::abuse_runs(effort).await?;
    eprintln!("N1: a quiet tenant beside another's backlog");
    let neighbours = neighbours::neighbour_runs(effort).await?;

    let measured = Measured {
        photos,
        skipped,
        per_call_us,
        jpeg_bytes: jpeg.len(),
        native_per_s,
        wasm_call_ms,
        http,
        embedded_ms,
        redis_ms,
        scaling,
        abuse,
        neighbours,
        seconds: started.elapsed().as_secs_f64(),
    };
    write_plots(&measured, options)?;
    let goals = measured.goals();
    let report = render(&measured, &goals, options);
    let path = options.out_dir.join("REPORT.md");
    std::fs::write(&path, report).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {} in {:.0} s", path.display(), measured.seconds);
    Ok(goals)
}

fn write_plots(measured: &Measured, options: &ReportOptions) -> anyhow::Result<()> {
    let bars: Vec<(String, f64)> = measured.photos.iter().map(|p| (p.name.clone(), p.ratio())).collect();
    let ratio = svg::bar_chart("WASM/native time per photo (decode → resize 400w → encode)", "ratio", &bars, Some(1.2));
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    for (_, rate, result) in &measured.http.open {
        p50.push((*rate, result.latency_ms(0.5)));
        p99.push((*rate, result.latency_ms(0.99)));
    }
    let latency = svg::line_chart(
        "Sync resize latency vs offered load (open loop)",
        "offered requests/s",
        "ms",
        &[
            svg::Series { name: "p50".to_owned(), points: p50, dashed: false },
            svg::Series { name: "p99".to_owned(), points: p99, dashed: false },
        ],
    );
    let one = measured.scaling.first().map_or(0.0, |&(_, t)| t);
    let scaling = svg::line_chart(
        "Resize throughput vs worker processes",
        "worker processes",
        "requests/s",
        &[
            svg::Series {
                name: "measured".to_owned(),
                points: measured.scaling.iter().map(|&(n, t)| (n as f64, t)).collect(),
                dashed: false,
            },
            svg::Series {
                name: "linear".to_owned(),
                points: measured.scaling.iter().map(|&(n, _)| (n as f64, one * n as f64)).collect(),
                dashed: true,
            },
        ],
    );
    for (name, svg) in
        [("ratio-per-photo.svg", ratio), ("latency-vs-load.svg", latency), ("throughput-vs-workers.svg", scaling)]
    {
        let path = options.out_dir.join(name);
        std::fs::write(&path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn machine() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
        .map_or_else(|| "unknown".to_owned(), |m| m.trim().to_owned());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|m| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|n| n.trim_matches('"').to_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    let lock = std::fs::read_to_string(scenarios::repo_root().join("Cargo.lock")).unwrap_or_default();
    let version_of = |krate: &str| {
        let marker = format!("name = \"{krate}\"\nversion = \"");
        lock.split(&marker).nth(1).and_then(|rest| rest.split('"').next()).unwrap_or("unknown").to_owned()
    };
    vec![
        ("CPU".to_owned(), format!("{model}, {} cores available", scenarios::cores())),
        ("memory".to_owned(), memory),
        ("OS".to_owned(), os),
        ("rustc".to_owned(), command_output("rustc", &["--version"])),
        ("wasmtime".to_owned(), version_of("wasmtime")),
        ("redis-server".to_owned(), command_output("redis-server", &["--version"])),
        ("sluice".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
        ("git commit".to_owned(), command_output("git", &["rev-parse", "--short", "HEAD"])),
    ]
}

/// The summary table exactly as the report opens with it.
pub fn summary_table(goals: &[Goal]) -> String {
    let mut out = String::from("| goal | what | measured | target |\n|---|---|---|---|\n");
    for goal in goals {
        let _ = writeln!(out, "| {} | {} | {:.*} | {} |", goal.id, goal.what, goal.decimals, goal.value, goal.goal);
    }
    out
}

fn render(m: &Measured, goals: &[Goal], options: &ReportOptions) -> String {
    let mut out = String::new();
    let mode = if options.quick { "quick" } else { "full" };
    let _ = writeln!(out, "# Sluice benchmark report\n");
    out.push_str(&summary_table(goals));
    let met: Vec<&str> = goals.iter().filter(|g| g.met).map(|g| g.id).collect();
    let _ = writeln!(
        out,
        "\nGoals met: {}. One {mode} run of {:.0} s on a shared machine: read ratios, not absolute times.\n",
        if met.is_empty() { "none".to_owned() } else { met.join(", ") },
        m.seconds
    );

    let _ = writeln!(out, "## P1 — native vs WASM, per photo\n");
    let _ = writeln!(
        out,
        "Decode → resize to 400 px wide (Lanczos3) → encode in the same format, with `sluice_resize::transform` compiled natively and as the built-in component (a fresh sandbox per call). Median of the timed runs.\n"
    );
    let _ = writeln!(out, "| photo | native ms | WASM ms | WASM/native |\n|---|---|---|---|");
    for p in &m.photos {
        let _ = writeln!(out, "| {} | {:.2} | {:.2} | {:.2} |", p.name, p.native_ms, p.wasm_ms, p.ratio());
    }
    for (name, reason) in &m.skipped {
        let _ = writeln!(out, "| {name} | — | — | not resized: {reason} |");
    }
    let _ = writeln!(out, "\n![WASM/native per photo](ratio-per-photo.svg)\n");

    let _ = writeln!(out, "## P2 — per-call sandbox overhead\n");
    let _ = writeln!(
        out,
        "Instantiate, call and drop the hostile fixture's `echo` with an empty body (pooling allocator, fresh instance per call): **{:.1} µs** p50.\n",
        m.per_call_us
    );

    let _ = writeln!(out, "## P3 and P4 — HTTP resize throughput and latency\n");
    let _ = writeln!(
        out,
        "Input: a {} byte JPEG (harvesters.jpeg re-encoded to about 256 KB) → 400 px wide. Native: {} threads calling the resize in a loop: **{:.1} resizes/s**. HTTP: an embedded `sluice serve` in the same process ({} worker slots) driven over loopback by {} closed-loop clients: **{:.1} requests/s** ({} ok, {} errors), p50 {:.1} ms, p99 {:.1} ms.\n",
        m.jpeg_bytes,
        scenarios::cores(),
        m.native_per_s,
        scenarios::cores(),
        2 * scenarios::cores(),
        m.http.max.throughput(),
        m.http.max.ok,
        m.http.max.errors,
        m.http.max.latency_ms(0.5),
        m.http.max.latency_ms(0.99)
    );
    let _ = writeln!(
        out,
        "The same resize as a sequential in-process WASM call (fresh sandbox, no HTTP, no queue), the floor under the HTTP latencies: p50 **{:.1} ms**, p99 **{:.1} ms**.\n",
        m.wasm_call_ms.0, m.wasm_call_ms.1
    );
    let _ = writeln!(out, "Open-loop runs (constant rate, latency from the intended send time):\n");
    let _ = writeln!(
        out,
        "| offered | rate/s | achieved/s | ok | errors | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|---|---|"
    );
    for (fraction, rate, r) in &m.http.open {
        let _ = writeln!(
            out,
            "| {:.0} % | {:.1} | {:.1} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            fraction * 100.0,
            rate,
            r.throughput(),
            r.ok,
            r.errors,
            r.latency_ms(0.5),
            r.latency_ms(0.9),
            r.latency_ms(0.99),
            r.latency.max() as f64 / 1000.0
        );
    }
    let _ = writeln!(out, "\n![latency vs offered load](latency-vs-load.svg)\n");

    let _ = writeln!(out, "## P5 — Redis mode vs embedded\n");
    let _ = writeln!(
        out,
        "The same sequential sync call (built-in resize, a 2 KB JPEG → 50 px) on two in-process nodes with two worker slots each, one on the in-memory queue and data dir, one on a local `redis-server` (AOF, everysec) for queue and state, in interleaved blocks: embedded **{:.3} ms** p50, Redis **{:.3} ms** p50, added **{:.3} ms**.\n",
        m.embedded_ms,
        m.redis_ms,
        m.redis_ms - m.embedded_ms
    );

    let _ = writeln!(out, "## P6 — worker processes\n");
    let _ = writeln!(
        out,
        "One in-process front door (no local slots), `sluice worker --concurrency 1` processes added one at a time, closed-loop clients (two per worker) resizing the 256 KB JPEG. The load generator, front door and Redis share the same cores, so linear scaling is not available on a small machine.\n"
    );
    let _ = writeln!(out, "| workers | requests/s | relative to 1 | linear |\n|---|---|---|---|");
    let one = m.scaling.first().map_or(f64::NAN, |&(_, t)| t);
    for &(count, throughput) in &m.scaling {
        let _ = writeln!(out, "| {count} | {throughput:.1} | {:.2} | {count} |", throughput / one);
    }
    let _ = writeln!(out, "\n![throughput vs workers](throughput-vs-workers.svg)\n");

    render_abuse(&mut out, &m.abuse);
    render_neighbours(&mut out, &m.neighbours);

    let _ = writeln!(out, "## Machine and versions\n\n| | |\n|---|---|");
    for (key, value) in machine() {
        let _ = writeln!(out, "| {key} | {value} |");
    }
    let _ = writeln!(out, "\n## Reproduce\n");
    let _ = writeln!(
        out,
        "- Everything: `cargo run --release -p sluice-bench -- report{}` (needs `redis-server`; `./scripts/test.sh` installs it).",
        if options.quick { " --quick" } else { "" }
    );
    let _ = writeln!(out, "- P1 with criterion statistics: `cargo bench -p sluice-bench --bench native_vs_wasm`.");
    let _ = writeln!(out, "- P2 (pooling, on-demand, fuel): `cargo bench -p sluice-bench --bench overhead`.");
    let _ = writeln!(
        out,
        "- P3/P4 against any node: `cargo run --release -p sluice-bench -- load --url http://127.0.0.1:8080/v1/functions/resize/invoke?width=400 --key $KEY --body photo.jpg --rate 20 --duration 20s`."
    );
    let _ = writeln!(
        out,
        "- P5 with criterion statistics: `cargo bench -p sluice-bench --bench modes`; queue level: `--bench queue`."
    );
    out
}

/// Runs only the abuse scenarios and renders their section.
pub async fn abuse_section(quick: bool) -> anyhow::Result<String> {
    let effort = if quick { Effort::QUICK } else { Effort::FULL };
    let abuse = abuse::abuse_runs(effort).await?;
    let mut out = String::new();
    render_abuse(&mut out, &abuse);
    let _ = writeln!(out, "A1 (worst p99 / solo p99): {:.2}", abuse.worst_p99_ratio());
    Ok(out)
}

/// Runs only the noisy-neighbour scenarios and renders their section.
pub async fn neighbours_section(quick: bool) -> anyhow::Result<String> {
    let effort = if quick { Effort::QUICK } else { Effort::FULL };
    let runs = neighbours::neighbour_runs(effort).await?;
    let mut out = String::new();
    render_neighbours(&mut out, &runs);
    let _ = writeln!(out, "N1 (worst quiet p50 / max(100 ms, 5× solo p50)): {:.2}", worst_quiet_p50(&runs));
    Ok(out)
}

/// The quiet tenant's p50 during the drain over what it may be, in the
/// worse mode; infinite when any of its calls failed.
fn worst_quiet_p50(runs: &[NeighbourRun]) -> f64 {
    runs.iter()
        .map(|run| {
            if run.during.errors > 0 || run.during.ok == 0 {
                return f64::INFINITY;
            }
            run.during.latency_ms(0.5) / (5.0 * run.solo.latency_ms(0.5)).max(100.0)
        })
        .fold(f64::NAN, f64::max)
}

fn render_neighbours(out: &mut String, runs: &[NeighbourRun]) {
    let _ = writeln!(
        out,
        "## N1 — noisy neighbour
"
    );
    let _ = writeln!(
        out,
        "A `sluice serve` process with default flags, in embedded mode and with `--redis`. A quiet tenant sends small sync resizes (a 2 KB JPEG → 50 px) at {:.0} requests/s, open loop, alone and then while a noisy tenant submits a burst of the same resize as async jobs from 8 parallel clients (the node's `--burst` is raised to let the burst through the request-rate bucket: the queue is what is measured); the drain is timed from the first submission until every accepted job ended.
",
        neighbours::QUIET_RATE
    );
    let _ = writeln!(
        out,
        "| mode | burst | answered | quiet p50 / p99 alone, ms | quiet p50 / p99 during, ms | p50 ratio | quiet errors | drained in, s | jobs/s |\n|---|---|---|---|---|---|---|---|---|"
    );
    for run in runs {
        let answers: Vec<String> = run.answers.iter().map(|(status, count)| format!("{status}: {count}")).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} / {:.1} | {:.1} / {:.1} | {:.2} | {} | {:.1}{} | {:.0} |",
            run.mode,
            run.submitted,
            answers.join(", "),
            run.solo.latency_ms(0.5),
            run.solo.latency_ms(0.99),
            run.during.latency_ms(0.5),
            run.during.latency_ms(0.99),
            run.p50_ratio(),
            run.during.errors,
            run.drain_seconds,
            if run.unfinished > 0 { format!(" ({} unfinished)", run.unfinished) } else { String::new() },
            run.drain_rate()
        );
    }
    let _ = writeln!(out);
}

fn render_abuse(out: &mut String, abuse: &AbuseRuns) {
    let _ = writeln!(out, "## A1 — isolation under abuse\n");
    let _ = writeln!(
        out,
        "A `sluice serve` process with default flags. A victim tenant sends small sync resizes (a 2 KB JPEG → 50 px) at {:.0} requests/s, open loop, alone and then while one anonymous client or one other tenant attacks the node; each attack runs as long as the victim's run and stops by itself, and is compared with the victim alone in the minute just before it (the first with the solo run), so load that comes and goes on a shared machine weighs on both sides of each ratio. The victim's client runs on a thread of its own and the attacker's client on threads at a lower CPU priority (nice +10), as separate machines would be; the node under test keeps its default priorities. Node RSS after the solo run: {:.0} MiB; peak over every run: {:.0} MiB.\n",
        abuse::VICTIM_RATE,
        abuse.rss_solo_mib,
        abuse.peak_rss_mib
    );
    let _ = writeln!(
        out,
        "| attack | victim ok | victim errors | p50 ms | p99 ms | p99 alone just before, ms | p99 / alone | node RSS after, MiB | the attacker was answered |\n|---|---|---|---|---|---|---|---|---|"
    );
    let _ = writeln!(
        out,
        "| none (solo) | {} | {} | {:.1} | {:.1} | | 1.00 | {:.0} | |",
        abuse.solo.ok,
        abuse.solo.errors,
        abuse.solo.latency_ms(0.5),
        abuse.solo.latency_ms(0.99),
        abuse.rss_solo_mib
    );
    for run in &abuse.attacks {
        let answered: Vec<String> = run.attacker.iter().map(|(outcome, count)| format!("{outcome}: {count}")).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.0} | {} |",
            run.name,
            run.victim.ok,
            run.victim.errors,
            run.victim.latency_ms(0.5),
            run.victim.latency_ms(0.99),
            run.solo.latency_ms(0.99),
            abuse.p99_ratio(run),
            run.rss_after_mib,
            answered.join(", ")
        );
    }
    let _ = writeln!(out);
}
