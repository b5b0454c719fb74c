//! `sluice-bench report`: starts what it needs (in-process nodes, a
//! `redis-server` on a free port, `sluice worker` processes), runs every
//! scenario, stops everything, and writes `bench/results/REPORT.md` with
//! SVG plots beside it.

pub mod abuse;
pub mod libvips;
pub mod neighbours;
pub mod node;
pub mod peer;
pub mod scenarios;
pub mod soak;
pub mod svg;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use abuse::AbuseRuns;
use anyhow::Context;
use libvips::{LibvipsJob, LibvipsRun};
use neighbours::NeighbourRun;
use peer::PeerRuns;
use scenarios::{Effort, HttpRuns, PhotoTiming};
use soak::SoakRun;

/// What to run and where to write.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Shorter runs (about six minutes on two cores).
    pub quick: bool,
    /// Where REPORT.md and the plots go.
    pub out_dir: PathBuf,
}

/// One row of the summary table.
#[derive(Debug, Clone)]
pub struct Goal {
    /// P1 … P12.
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
    libvips: LibvipsRun,
    per_call: scenarios::PerCallOverhead,
    jpeg_bytes: usize,
    native_per_s: f64,
    wasm_call_ms: (f64, f64),
    http: HttpRuns,
    embedded_ms: f64,
    redis_ms: f64,
    scaling: Vec<(usize, f64)>,
    tiny_jobs: crate::queue_load::QueueThroughput,
    peer: PeerRuns,
    soak: SoakRun,
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
        let p7 = self.peer.p99_ratio();
        let p8 = self.soak.throughput_change();
        let p9 = wasm_over_libvips(&self.photos, &self.libvips);
        let p10 = self.tiny_jobs.per_second();
        let p11 = worst_quiet_p50(&self.neighbours);
        let p12 = self.abuse.worst_p99_ratio();
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
                value: self.per_call.echo_us,
                goal: "≤ 10",
                met: self.per_call.echo_us <= 10.0,
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
                id: "P7",
                decimals: 2,
                what: "p99 of Sluice's no-op sync call / p99 of `wasmtime serve` answering a `wasi:http` hello, 16 closed-loop clients",
                value: p7,
                goal: "≤ 1.0",
                met: p7 <= 1.0,
            },
            Goal {
                id: "P8",
                decimals: 1,
                what: "soak: throughput change in % from the second tenth of the run (minute 2 of 10) to the last, no-op calls at 70 % of the maximum rate",
                value: p8,
                goal: "within ±10",
                met: p8.abs() <= 10.0,
            },
            Goal {
                id: "P9",
                decimals: 2,
                what: "WASM time / libvips time (thumbnail 400 px wide + encode in the source format, one thread), median over the photos both resize",
                value: p9,
                goal: "≤ 1.2",
                met: p9 <= 1.2,
            },
            Goal {
                id: "P10",
                decimals: 0,
                what: "tiny jobs per second through one Redis (enqueue → reserve → complete, 4 producers, 8 workers)",
                value: p10,
                goal: "≥ 25000",
                met: p10 >= 25_000.0,
            },
            Goal {
                id: "P11",
                decimals: 2,
                what: "a quiet tenant's sync p50 while another tenant's backlog drains / its p50 alone, worse of embedded and Redis (noisy-neighbour section)",
                value: p11,
                goal: "≤ 5",
                met: p11 <= 5.0,
            },
            Goal {
                id: "P12",
                decimals: 2,
                what: "a victim tenant's p99 during the worst abuse scenario / its p99 alone just before (abuse section)",
                value: p12,
                goal: "≤ 2",
                met: p12 <= 2.0,
            },
        ]
    }
}

/// Runs every scenario and writes the report; returns the summary rows.
pub async fn run(options: &ReportOptions) -> anyhow::Result<Vec<Goal>> {
    let effort = Effort::of(options.quick);
    let started = Instant::now();
    std::fs::create_dir_all(&options.out_dir)
        .with_context(|| format!("cannot create {}", options.out_dir.display()))?;

    eprintln!("P1: native vs WASM over the test photos");
    let params = scenarios::report_params();
    let photo_paths = crate::photo_files(&crate::photos_dir()).context("the test photos")?;
    let (photos, skipped) = scenarios::native_vs_wasm(&photo_paths, &params, effort.photo_runs).await?;
    eprintln!("P9: libvips on the same photos");
    let job = LibvipsJob::matching(&params).map_err(anyhow::Error::msg)?;
    let libvips = libvips::libvips_run(photo_paths, job, effort.photo_runs, !options.quick).await?;
    eprintln!("P2: per-call sandbox overhead");
    let per_call = scenarios::per_call_overhead(effort).await?;
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
    eprintln!("P10: tiny jobs through one Redis");
    let tiny_jobs = scenarios::tiny_jobs_through_redis(&redis.url, effort).await?;
    drop(redis);
    eprintln!("P7: Sluice beside wasmtime serve");
    let peer = peer::peer_runs(effort, !options.quick).await?;
    eprintln!("P8: a node under steady load for {} s", effort.soak.as_secs());
    let soak = soak::soak_run(effort).await?;
    eprintln!("P12: a victim tenant alone and under attack");
    let abuse = abuse::abuse_runs(effort).await?;
    eprintln!("P11: a quiet tenant beside another's backlog");
    let neighbours = neighbours::neighbour_runs(effort).await?;

    let measured = Measured {
        photos,
        skipped,
        libvips,
        per_call,
        jpeg_bytes: jpeg.len(),
        native_per_s,
        wasm_call_ms,
        http,
        embedded_ms,
        redis_ms,
        scaling,
        tiny_jobs,
        peer,
        soak,
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

/// The per-photo plots the report and `compare` draw.
pub fn photo_plots(photos: &[PhotoTiming], libvips: &LibvipsRun) -> Vec<(&'static str, String)> {
    let bars: Vec<(String, f64)> = photos.iter().map(|p| (p.name.clone(), p.ratio())).collect();
    let ratio = svg::bar_chart("WASM/native time per photo (decode → resize → encode)", "ratio", &bars, Some(1.2));
    let stage_bars: Vec<(String, f64)> = photos
        .iter()
        .flat_map(|p| {
            STAGES
                .iter()
                .enumerate()
                .map(|(at, stage)| (format!("{} · {stage}", p.name), p.wasm_stages[at] / p.native_stages[at]))
        })
        .collect();
    let stages =
        svg::bar_chart("WASM/native time per stage (inside the sandbox vs native)", "ratio", &stage_bars, Some(1.2));
    let mut plots = vec![("ratio-per-photo.svg", ratio), ("ratio-per-stage.svg", stages)];
    if let LibvipsRun::Measured { photos: vips, .. } = libvips {
        let bars: Vec<(String, f64)> = photos
            .iter()
            .filter_map(|p| vips.get(&p.name)?.as_ref().ok().map(|vips| (p.name.clone(), p.wasm_ms / vips.ms)))
            .collect();
        plots.push((
            "wasm-vs-libvips.svg",
            svg::bar_chart("WASM time / libvips time per photo", "ratio", &bars, Some(1.2)),
        ));
    }
    plots
}

/// Writes `plots` into `dir`.
pub fn write_svgs(dir: &std::path::Path, plots: Vec<(&'static str, String)>) -> anyhow::Result<()> {
    for (name, svg) in plots {
        let path = dir.join(name);
        std::fs::write(&path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn write_plots(measured: &Measured, options: &ReportOptions) -> anyhow::Result<()> {
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
    let mut plots = photo_plots(&measured.photos, &measured.libvips);
    plots.extend([("latency-vs-load.svg", latency), ("throughput-vs-workers.svg", scaling)]);
    plots.extend(peer_plot(&measured.peer));
    plots.extend(soak_plots(&measured.soak));
    write_svgs(&options.out_dir, plots)
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
    let mut out = String::from("| id | what | value | goal |\n|---|---|---|---|\n");
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
    render_photos(&mut out, &m.photos, &m.skipped, &m.libvips);

    let _ = writeln!(out, "## P2 — per-call sandbox overhead\n");
    let _ = writeln!(
        out,
        "Instantiate, call and drop the hostile fixture's `echo` with an empty body (pooling allocator, fresh instance per call): **{:.1} µs** p50. The same call to a component that imports nothing (`functions/fixtures/wat/no-imports.wat`), timed call by call in turn with it: {:.1} µs, so what the Rust guest brings (its ~100 WASI imports, each linked per instance, and its larger memory) is {:.0} % of the echo's call.\n",
        m.per_call.echo_us,
        m.per_call.no_imports_us,
        (1.0 - m.per_call.no_imports_us / m.per_call.echo_us) * 100.0
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
    let cores = scenarios::cores();
    let wasm_ceiling = cores as f64 * 1e3 / m.wasm_call_ms.0;
    let _ = writeln!(
        out,
        "How the cores were split: none were. The load generator, the front door and the {cores} worker slots share the machine's {cores} cores; giving the clients and the front door a core of their own would leave the sandboxes fewer, which on a machine this small costs more than it saves. What bounds the two goals here: {cores} slots each busy {:.1} ms per resize (the sequential call's p50) answer about **{:.1} requests/s** (that / the native loop = {:.2}: about the most P3 can be while a call costs what it does), and HTTP reached {:.0} % of it, measured minutes apart; a p99 under load cannot be lower than the call's own p99 alone ({:.1} ms, beside P4's goal of 25 ms).\n",
        m.wasm_call_ms.0,
        wasm_ceiling,
        wasm_ceiling / m.native_per_s,
        m.http.max.throughput() / wasm_ceiling * 100.0,
        m.wasm_call_ms.1
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

    let _ = writeln!(out, "## P10 — tiny jobs through one Redis\n");
    let _ = writeln!(
        out,
        "The queue alone, on the same local `redis-server`: {} tasks enqueue {} sync jobs (256-byte body) while {} tasks reserve and complete them (256-byte output), all in this process, sharing one multiplexed command connection: **{:.0} jobs/s** ({:.2} s from the first enqueue to the last completion). Each job is admitted, taken with its lease and completed by Lua scripts; admissions, takes and ends that arrive while a script of their kind runs share the next run; workers that find nothing block on the doorbell list.\n",
        m.tiny_jobs.producers,
        m.tiny_jobs.jobs,
        m.tiny_jobs.workers,
        m.tiny_jobs.per_second(),
        m.tiny_jobs.elapsed.as_secs_f64()
    );

    render_peer(&mut out, &m.peer);
    render_soak(&mut out, &m.soak);
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
        "- P5 with criterion statistics: `cargo bench -p sluice-bench --bench modes`; queue level and P10: `--bench queue`."
    );
    out
}

/// The per-photo table (native, WASM, libvips), the P9 line and the
/// per-stage table, as the report and `compare` print them.
pub fn render_photos(out: &mut String, photos: &[PhotoTiming], skipped: &[(String, String)], libvips: &LibvipsRun) {
    render_libvips_setup(out, libvips);
    let _ = writeln!(
        out,
        "| photo | native ms | WASM ms | WASM/native | libvips ms | WASM/libvips | output bytes: Sluice / libvips |\n|---|---|---|---|---|---|---|"
    );
    for p in photos {
        let (vips_ms, over, vips_bytes) = match libvips {
            LibvipsRun::Measured { photos, .. } => match photos.get(&p.name) {
                Some(Ok(vips)) => {
                    (format!("{:.2}", vips.ms), format!("{:.2}", p.wasm_ms / vips.ms), vips.bytes.to_string())
                }
                Some(Err(reason)) => ("—".to_owned(), reason.clone(), "—".to_owned()),
                None => ("—".to_owned(), "not run".to_owned(), "—".to_owned()),
            },
            LibvipsRun::Skipped(_) => ("—".to_owned(), "—".to_owned(), "—".to_owned()),
        };
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.2} | {:.2} | {vips_ms} | {over} | {} / {vips_bytes} |",
            p.name,
            p.native_ms,
            p.wasm_ms,
            p.ratio(),
            p.output_bytes
        );
    }
    for (name, reason) in skipped {
        let _ = writeln!(out, "| {name} | — | — | not resized: {reason} | — | — | — |");
    }
    let _ = writeln!(out, "\n![WASM/native per photo](ratio-per-photo.svg)\n");
    if matches!(libvips, LibvipsRun::Measured { .. }) {
        let _ = writeln!(
            out,
            "WASM/libvips, median over the photos both resize: **{:.2}**.\n\n![WASM/libvips per photo](wasm-vs-libvips.svg)\n",
            wasm_over_libvips(photos, libvips)
        );
    }
    render_stages(out, photos);
}

/// P9: the median over the photos both measured of WASM ms / libvips ms.
pub fn wasm_over_libvips(photos: &[PhotoTiming], libvips: &LibvipsRun) -> f64 {
    let ratios: Vec<f64> =
        photos.iter().filter_map(|p| libvips.ms(&p.name).map(|libvips| p.wasm_ms / libvips)).collect();
    if ratios.is_empty() { f64::NAN } else { median(ratios) }
}

/// The stages of [`sluice_resize::transform`], in order.
const STAGES: [&str; 3] = ["decode", "resize", "encode"];

fn render_stages(out: &mut String, photos: &[PhotoTiming]) {
    let _ = writeln!(
        out,
        "Per stage (median ms of the same runs): natively the resize's own stage hook with a clock around each stage; in WASM the `resize-stages` probe, the same code with the same hook reading the sandbox's monotonic clock (so instantiation and copying the image in and out are outside the three stages).\n"
    );
    let _ = writeln!(
        out,
        "| photo | decode native | decode WASM | ratio | resize native | resize WASM | ratio | encode native | encode WASM | ratio |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for p in photos {
        let mut row = format!("| {} |", p.name);
        for stage in 0..STAGES.len() {
            let (native, wasm) = (p.native_stages[stage], p.wasm_stages[stage]);
            let _ = write!(row, " {native:.2} | {wasm:.2} | {:.2} |", wasm / native);
        }
        let _ = writeln!(out, "{row}");
    }
    let medians: Vec<String> = (0..STAGES.len())
        .map(|stage| {
            let ratio = median(photos.iter().map(|p| p.wasm_stages[stage] / p.native_stages[stage]).collect());
            format!("{} {ratio:.2}", STAGES[stage])
        })
        .collect();
    let _ = writeln!(
        out,
        "\nMedian WASM/native by stage: {}.\n\n![WASM/native by stage](ratio-per-stage.svg)\n",
        medians.join(", ")
    );
}

fn render_libvips_setup(out: &mut String, libvips: &LibvipsRun) {
    match libvips {
        LibvipsRun::Measured { version, job, .. } => {
            let _ = writeln!(
                out,
                "libvips column: {version} from PyPI through `bench/libvips.py`, `VIPS_CONCURRENCY=1`, operation cache off, `thumbnail_buffer` to {} px wide (shrink-on-load, as Sluice's decoder also scales JPEG down while decoding), then the source format's saver with Sluice's settings: JPEG Q {} baseline without optimised tables, PNG deflate level 1 with adaptive filters, WebP lossless, GIF defaults, TIFF uncompressed. libvips writes no BMP. Its WebP and PNG encoders work harder for smaller files at these settings (compare the output sizes). Same number of runs, median, in the same minutes as the other two columns.\n",
                job.width, job.quality
            );
        }
        LibvipsRun::Skipped(reason) => {
            let _ = writeln!(out, "libvips column skipped: {reason}.\n");
        }
    }
}

/// What `sluice-bench compare` measures and where its plots go.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// A folder of images (every file in it is tried).
    pub photos: PathBuf,
    /// Resize parameters, as a caller passes them.
    pub params: Vec<(String, String)>,
    /// Timed runs per photo and side.
    pub runs: usize,
    /// Answer JSON instead of Markdown.
    pub json: bool,
    /// Where the SVG plots go.
    pub out_dir: PathBuf,
}

/// `sluice-bench compare`: the report's per-photo comparison (native vs
/// WASM, libvips when pyvips is installed and the parameters allow it, and
/// the per-stage breakdown) on any folder of images with any resize
/// parameters; answers the table as Markdown or JSON and writes the plots.
pub async fn compare(options: &CompareOptions) -> anyhow::Result<String> {
    sluice_resize::ResizeParams::parse(&options.params).context("resize parameters")?;
    let paths = crate::photo_files(&options.photos).with_context(|| format!("read {}", options.photos.display()))?;
    anyhow::ensure!(!paths.is_empty(), "{} holds no files", options.photos.display());
    let (photos, skipped) = scenarios::native_vs_wasm(&paths, &options.params, options.runs).await?;
    let libvips = match LibvipsJob::matching(&options.params) {
        Ok(job) => libvips::libvips_run(paths, job, options.runs, false).await?,
        Err(reason) => LibvipsRun::Skipped(reason),
    };
    std::fs::create_dir_all(&options.out_dir)
        .with_context(|| format!("cannot create {}", options.out_dir.display()))?;
    write_svgs(&options.out_dir, photo_plots(&photos, &libvips))?;
    if options.json {
        return Ok(compare_json(options, &photos, &skipped, &libvips).to_string());
    }
    let mut out = String::new();
    let params: Vec<String> = options.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(
        out,
        "# Native vs WASM{}\n\nDecode → resize ({}) → encode with `sluice_resize::transform` natively and as the built-in component (a fresh sandbox per call), median of {} runs per photo. Plots in {}.\n",
        if matches!(libvips, LibvipsRun::Measured { .. }) { " vs libvips" } else { "" },
        params.join(", "),
        options.runs,
        options.out_dir.display()
    );
    render_photos(&mut out, &photos, &skipped, &libvips);
    let _ = writeln!(out, "Median WASM/native: **{:.2}**.", median(photos.iter().map(PhotoTiming::ratio).collect()));
    Ok(out)
}

fn compare_json(
    options: &CompareOptions,
    photos: &[PhotoTiming],
    skipped: &[(String, String)],
    libvips: &LibvipsRun,
) -> serde_json::Value {
    let finite = |value: f64| value.is_finite().then_some(value);
    let rows: Vec<serde_json::Value> = photos
        .iter()
        .map(|p| {
            let stages: serde_json::Map<String, serde_json::Value> = STAGES
                .iter()
                .enumerate()
                .map(|(at, stage)| {
                    let times = serde_json::json!({"native_ms": p.native_stages[at], "wasm_ms": p.wasm_stages[at]});
                    ((*stage).to_owned(), times)
                })
                .collect();
            let (libvips_ms, libvips_error) = match libvips {
                LibvipsRun::Measured { photos: vips, .. } => match vips.get(&p.name) {
                    Some(Ok(vips)) => (Some(*vips), None),
                    Some(Err(reason)) => (None, Some(reason.clone())),
                    None => (None, Some("not run".to_owned())),
                },
                LibvipsRun::Skipped(_) => (None, None),
            };
            serde_json::json!({
                "photo": p.name,
                "native_ms": p.native_ms,
                "wasm_ms": p.wasm_ms,
                "wasm_over_native": finite(p.ratio()),
                "output_bytes": p.output_bytes,
                "libvips_ms": libvips_ms.map(|vips| vips.ms),
                "libvips_output_bytes": libvips_ms.map(|vips| vips.bytes),
                "libvips_error": libvips_error,
                "stages": stages,
            })
        })
        .collect();
    let (libvips_version, libvips_skipped) = match libvips {
        LibvipsRun::Measured { version, .. } => (Some(version.clone()), None),
        LibvipsRun::Skipped(reason) => (None, Some(reason.clone())),
    };
    serde_json::json!({
        "params": options.params.iter().map(|(k, v)| serde_json::json!({"name": k, "value": v})).collect::<Vec<_>>(),
        "runs": options.runs,
        "photos": rows,
        "skipped": skipped.iter().map(|(photo, reason)| serde_json::json!({"photo": photo, "reason": reason})).collect::<Vec<_>>(),
        "median_wasm_over_native": finite(median(photos.iter().map(PhotoTiming::ratio).collect())),
        "median_wasm_over_libvips": finite(wasm_over_libvips(photos, libvips)),
        "libvips": libvips_version,
        "libvips_skipped": libvips_skipped,
    })
}

/// Runs only the soak and renders its section.
pub async fn soak_section(quick: bool) -> anyhow::Result<String> {
    let effort = Effort::of(quick);
    let soak = soak::soak_run(effort).await?;
    let mut out = String::new();
    render_soak(&mut out, &soak);
    let _ = writeln!(out, "P8 (throughput change, %): {:.1}", soak.throughput_change());
    Ok(out)
}

fn peer_plot(peer: &PeerRuns) -> Option<(&'static str, String)> {
    let PeerRuns::Measured(pairs) = peer else { return None };
    let mut bars = Vec::new();
    for pair in pairs {
        bars.push((format!("Sluice, {} clients", pair.clients), pair.sluice.latency_ms(0.99)));
        bars.push((format!("wasmtime serve, {} clients", pair.clients), pair.wasmtime.latency_ms(0.99)));
    }
    Some((
        "p99-vs-wasmtime-serve.svg",
        svg::bar_chart("p99 latency, no-op call vs wasmtime serve hello", "ms", &bars, None),
    ))
}

fn render_peer(out: &mut String, peer: &PeerRuns) {
    let _ = writeln!(out, "## P7 — beside `wasmtime serve`\n");
    let pairs = match peer {
        PeerRuns::Skipped(why) => {
            let _ = writeln!(out, "Skipped: {why}.\n");
            return;
        }
        PeerRuns::Measured(pairs) => pairs,
    };
    let _ = writeln!(
        out,
        "`wasmtime serve -S cli -O pooling-allocator=y` (wasmtime-cli {}) answering every request with a `wasi:http` hello component (`functions/bench/hello-http`), against a `sluice serve` process with its request-rate limits raised calling the hostile fixture's `echo` on a 1-byte body as a sync call. Both run a fresh instance per request on the same runtime version; the same closed-loop clients drive each in turn for the same time, Sluice first at each concurrency.\n",
        peer::WASMTIME_VERSION
    );
    let _ = writeln!(
        out,
        "| clients | server | requests/s | errors | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|"
    );
    for pair in pairs {
        for (server, r) in [("Sluice", &pair.sluice), ("wasmtime serve", &pair.wasmtime)] {
            let _ = writeln!(
                out,
                "| {} | {server} | {:.0} | {} | {:.2} | {:.2} | {:.1} |",
                pair.clients,
                r.throughput(),
                r.errors,
                r.latency_ms(0.5),
                r.latency_ms(0.99),
                r.latency.max() as f64 / 1000.0
            );
        }
    }
    let _ = writeln!(out, "\n![p99 vs wasmtime serve](p99-vs-wasmtime-serve.svg)\n");
}

/// Runs only the `wasmtime serve` comparison and renders its section.
pub async fn peer_section(quick: bool) -> anyhow::Result<String> {
    let effort = Effort::of(quick);
    let peer = peer::peer_runs(effort, !quick).await?;
    let mut out = String::new();
    render_peer(&mut out, &peer);
    let _ = writeln!(out, "P7 (Sluice p99 / wasmtime serve p99, 16 clients): {:.2}", peer.p99_ratio());
    Ok(out)
}

fn soak_plots(soak: &SoakRun) -> Vec<(&'static str, String)> {
    let series = |name: &str, value: &dyn Fn(&soak::SoakWindow) -> f64| svg::Series {
        name: name.to_owned(),
        points: soak.windows.iter().map(|w| (w.at_s, value(w))).collect(),
        dashed: false,
    };
    vec![
        (
            "soak-throughput.svg",
            svg::line_chart(
                "Soak: no-op calls answered per second",
                "seconds",
                "calls/s",
                &[
                    series("answered", &|w| w.result.throughput()),
                    svg::Series {
                        name: "offered".to_owned(),
                        points: soak.windows.iter().map(|w| (w.at_s, soak.offered)).collect(),
                        dashed: true,
                    },
                ],
            ),
        ),
        (
            "soak-latency.svg",
            svg::line_chart(
                "Soak: latency per window",
                "seconds",
                "ms",
                &[series("p50", &|w| w.result.latency_ms(0.5)), series("p99", &|w| w.result.latency_ms(0.99))],
            ),
        ),
        (
            "soak-rss.svg",
            svg::line_chart("Soak: node resident memory", "seconds", "MiB", &[series("RSS", &|w| w.rss_mib)]),
        ),
    ]
}

fn render_soak(out: &mut String, soak: &SoakRun) {
    let _ = writeln!(out, "## P8 — soak\n");
    let _ = writeln!(
        out,
        "A `sluice serve` process with the request-rate limits raised out of the way, one tenant calling a no-op function (the hostile fixture's `echo` of a 1-byte body) as sync calls. {} closed-loop clients found the maximum: **{:.0} calls/s**. The soak then offers {:.0} % of it (**{:.0} calls/s**), open loop, in back-to-back windows, sampling the node's RSS after each. Change from the second tenth of the run to the last: throughput **{:+.1} %**, p99 **{:+.1} %**, RSS **{:+.1} %** (goals: within ±10 %, within ±10 %, under 5 %). {} calls answered in all, {} failed during the soak; usage was aggregated every {} s and the usage log held {} bytes at the end.\n",
        soak::CLIENTS,
        soak.max_rate,
        soak::LOAD_FRACTION * 100.0,
        soak.offered,
        soak.throughput_change(),
        soak.p99_change(),
        soak.rss_growth(),
        soak.calls,
        soak.errors(),
        soak.meter_interval.as_secs(),
        soak.usage_log_bytes
    );
    let _ = writeln!(
        out,
        "| at s | answered/s | errors | p50 ms | p99 ms | max ms | RSS MiB |\n|---|---|---|---|---|---|---|"
    );
    for window in &soak.windows {
        let r = &window.result;
        let _ = writeln!(
            out,
            "| {:.0} | {:.0} | {} | {:.2} | {:.2} | {:.1} | {:.0} |",
            window.at_s,
            r.throughput(),
            r.errors,
            r.latency_ms(0.5),
            r.latency_ms(0.99),
            r.latency.max() as f64 / 1000.0,
            window.rss_mib
        );
    }
    let _ = writeln!(
        out,
        "\n![soak throughput](soak-throughput.svg) ![soak latency](soak-latency.svg) ![soak RSS](soak-rss.svg)\n"
    );
}

/// Runs only the abuse scenarios and renders their section.
pub async fn abuse_section(quick: bool) -> anyhow::Result<String> {
    let effort = Effort::of(quick);
    let abuse = abuse::abuse_runs(effort).await?;
    let mut out = String::new();
    render_abuse(&mut out, &abuse);
    let _ = writeln!(out, "P12 (worst p99 / solo p99): {:.2}", abuse.worst_p99_ratio());
    Ok(out)
}

/// Runs only the noisy-neighbour scenarios and renders their section.
pub async fn neighbours_section(quick: bool) -> anyhow::Result<String> {
    let effort = Effort::of(quick);
    let runs = neighbours::neighbour_runs(effort).await?;
    let mut out = String::new();
    render_neighbours(&mut out, &runs);
    let _ = writeln!(out, "P11 (worst quiet p50 during / alone): {:.2}", worst_quiet_p50(&runs));
    Ok(out)
}

/// The quiet tenant's p50 during the drain over its p50 alone, in the
/// worse mode; infinite when any of its calls failed.
fn worst_quiet_p50(runs: &[NeighbourRun]) -> f64 {
    runs.iter()
        .map(|run| {
            if run.during.errors > 0 || run.during.ok == 0 {
                return f64::INFINITY;
            }
            run.during.latency_ms(0.5) / run.solo.latency_ms(0.5)
        })
        .fold(f64::NAN, f64::max)
}

fn render_neighbours(out: &mut String, runs: &[NeighbourRun]) {
    let _ = writeln!(
        out,
        "## P11 — noisy neighbour
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
    let _ = writeln!(out, "## P12 — isolation under abuse\n");
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
