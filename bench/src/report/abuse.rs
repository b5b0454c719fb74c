//! The report's abuse section: a well-behaved tenant's latency on a real
//! `sluice serve` process with default flags, alone and while one anonymous
//! client or one other tenant attacks the node through the public API.
//! Every attack is bounded in count and time, targets loopback only and
//! stops by itself; the victim's open loop runs for the same time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::node::{Address, Node};
use super::scenarios::{Effort, guest};
use crate::loadgen::{self, LoadResult, Target};

/// The victim's steady rate, requests per second.
pub const VICTIM_RATE: f64 = 10.0;

/// One attack and what it did.
pub struct AttackRun {
    /// What the attacker does.
    pub name: &'static str,
    /// The victim's calls alone, just before the attack: the baseline of
    /// the same minutes, so load elsewhere on a shared machine that comes
    /// and goes during the section weighs on both sides of the ratio.
    pub solo: LoadResult,
    /// The victim's calls during the attack.
    pub victim: LoadResult,
    /// What the attacker was answered: HTTP status (or `closed`) → count.
    pub attacker: BTreeMap<String, u64>,
    /// The node's resident memory after the attack, MiB.
    pub rss_after_mib: f64,
}

/// The victim alone, then under each attack.
pub struct AbuseRuns {
    /// The victim with nobody else on the node.
    pub solo: LoadResult,
    /// The node's resident memory after the solo run, MiB.
    pub rss_solo_mib: f64,
    /// The node's peak resident memory over every run, MiB.
    pub peak_rss_mib: f64,
    /// One entry per attack.
    pub attacks: Vec<AttackRun>,
}

impl AbuseRuns {
    /// The worst victim p99 during an attack over its p99 alone just
    /// before; infinite when any of the victim's calls failed during an attack.
    pub fn worst_p99_ratio(&self) -> f64 {
        self.attacks.iter().map(|run| self.p99_ratio(run)).fold(f64::NAN, f64::max)
    }

    /// The victim's p99 during `run` over its p99 alone just before (infinite if any call failed).
    pub fn p99_ratio(&self, run: &AttackRun) -> f64 {
        if run.victim.errors > 0 || run.victim.ok == 0 {
            return f64::INFINITY;
        }
        run.victim.latency_ms(0.99) / run.solo.latency_ms(0.99)
    }
}

/// Counts what the attacker was answered.
#[derive(Clone, Default)]
struct Tally(Arc<Mutex<BTreeMap<String, u64>>>);

impl Tally {
    async fn add(&self, outcome: impl Into<String>) {
        *self.0.lock().await.entry(outcome.into()).or_default() += 1;
    }

    async fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.0.lock().await)
    }
}

/// The status line's code of a raw HTTP answer, or `closed`.
async fn read_status(stream: &mut TcpStream) -> String {
    let mut head = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut head)).await {
        Ok(Ok(read)) if read > 12 => String::from_utf8_lossy(&head[9..12]).into_owned(),
        _ => "closed".to_owned(),
    }
}

/// What an attacker does for `duration`.
#[derive(Debug, Clone, Copy)]
enum Attack {
    /// Opens sockets and sends nothing.
    IdleSockets,
    /// Sends request heads a byte at a time.
    SlowHeaders,
    /// Declares a body and trickles it a byte at a time.
    TrickledBodies,
    /// Sends 40 MiB bodies in full before reading.
    OversizedBodies,
    /// Sync resizes with 30 MB outputs.
    BigOutputs,
    /// Async jobs with 30 MB outputs, never collected.
    StoredOutputs,
    /// Calls a component whose extra instances each touch a 250 MiB memory.
    ManyMemories,
    /// Deploys distinct components back to back.
    DeployFlood,
}

impl Attack {
    const ALL: [Self; 8] = [
        Self::IdleSockets,
        Self::SlowHeaders,
        Self::TrickledBodies,
        Self::OversizedBodies,
        Self::BigOutputs,
        Self::StoredOutputs,
        Self::ManyMemories,
        Self::DeployFlood,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::IdleSockets => "2000 idle sockets",
            Self::SlowHeaders => "200 slow request heads (1 byte/s)",
            Self::TrickledBodies => "200 bodies trickled at 1 byte/s",
            Self::OversizedBodies => "40 MiB bodies sent whole",
            Self::BigOutputs => "sync resizes with 30 MB outputs (4 at once)",
            Self::StoredOutputs => "async jobs with 30 MB outputs, never collected",
            Self::ManyMemories => "calls touching 4 memories of 250 MiB (4 at once)",
            Self::DeployFlood => "distinct components deployed back to back",
        }
    }

    async fn run(self, node: &Address, key: &str, duration: Duration, tally: &Tally) {
        let deadline = Instant::now() + duration;
        match self {
            Self::IdleSockets => hold_sockets(node, 2000, deadline, tally, b"", || Box::new(std::iter::empty())).await,
            Self::SlowHeaders => {
                let head = b"GET /healthz HTTP/1.1\r\n";
                hold_sockets(node, 200, deadline, tally, b"", || Box::new(head.iter().copied())).await;
            }
            Self::TrickledBodies => {
                let head = format!(
                    "POST /v1/functions/resize/invoke?width=10 HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\nContent-Length: 1000000\r\n\r\n",
                    node.addr
                );
                hold_sockets(node, 200, deadline, tally, head.as_bytes(), || Box::new(std::iter::repeat(b'x'))).await;
            }
            Self::OversizedBodies => oversized_bodies(node, key, deadline, tally).await,
            Self::BigOutputs => big_outputs(node, key, "invoke", 4, deadline, tally).await,
            Self::StoredOutputs => big_outputs(node, key, "jobs", 2, deadline, tally).await,
            Self::ManyMemories => many_memories(node, key, 4, deadline, tally).await,
            Self::DeployFlood => deploy_flood(node, key, deadline, tally).await,
        }
    }
}

/// `count` connections that each send `head` at once, then the bytes of
/// `drip` one per second, until the node answers or closes them or the
/// attack's time is up; each records how it ended.
async fn hold_sockets(
    node: &Address,
    count: usize,
    deadline: Instant,
    tally: &Tally,
    head: &[u8],
    drip: impl Fn() -> Box<dyn Iterator<Item = u8> + Send>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (addr, tally, head, mut drip) = (node.addr.clone(), tally.clone(), head.to_vec(), drip());
        tasks.spawn(async move {
            let Ok(mut stream) = TcpStream::connect(&addr).await else {
                tally.add("refused").await;
                return;
            };
            if stream.write_all(&head).await.is_err() {
                tally.add("closed by the node").await;
                return;
            }
            let mut next = drip.next();
            let mut buf = [0u8; 1024];
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline.into()) => { tally.add("held to the end").await; return; }
                    read = stream.read(&mut buf) => {
                        let outcome = match read {
                            Ok(n) if n > 12 => format!("answered {}", String::from_utf8_lossy(&buf[9..12])),
                            _ => "closed by the node".to_owned(),
                        };
                        tally.add(outcome).await;
                        return;
                    }
                    () = tokio::time::sleep(Duration::from_secs(1)), if next.is_some() => {
                        let _ = stream.write_all(&[next.unwrap_or_default()]).await;
                        next = drip.next();
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn oversized_bodies(node: &Address, key: &str, deadline: Instant, tally: &Tally) {
    let body = vec![0u8; 40 * 1024 * 1024];
    while Instant::now() < deadline {
        let Ok(mut stream) = TcpStream::connect(&node.addr).await else {
            tally.add("refused").await;
            continue;
        };
        let head = format!(
            "POST /v1/functions/resize/invoke?width=10 HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            node.addr,
            body.len()
        );
        // Like a client that sends everything before reading.
        let sent = async {
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body).await
        };
        match tokio::time::timeout(Duration::from_secs(30), sent).await {
            Ok(Ok(())) => {
                let status = read_status(&mut stream).await;
                tally.add(format!("answered {status}")).await;
            }
            Ok(Err(_)) => tally.add("broken pipe").await,
            Err(_) => tally.add("stalled").await,
        }
    }
}

/// A 100×100 BMP: resized to 3200×3200 in BMP, about 30 MB out.
fn small_bmp() -> Vec<u8> {
    let image = image::RgbImage::from_fn(100, 100, |x, y| image::Rgb([x as u8, y as u8, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    let _ = image.write_to(&mut out, image::ImageFormat::Bmp);
    out.into_inner()
}

async fn big_outputs(node: &Address, key: &str, route: &str, clients: usize, deadline: Instant, tally: &Tally) {
    let url = format!("{}/v1/functions/resize/{route}?width=3200&height=3200&fit=fill&format=same", node.url);
    let body = Bytes::from(small_bmp());
    let client = loadgen::client(clients);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, url, body, key, tally) =
            (client.clone(), url.clone(), body.clone(), key.to_owned(), tally.clone());
        tasks.spawn(async move {
            while Instant::now() < deadline {
                match client.post(&url).bearer_auth(&key).body(body.clone()).send().await {
                    Ok(response) => {
                        let status = response.status();
                        // Read (and drop) the output, as a real client would.
                        let _ = response.bytes().await;
                        tally.add(format!("answered {}", status.as_str())).await;
                        if status.as_u16() == 429 || status.as_u16() == 503 {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                    Err(_) => tally.add("closed by the node").await,
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn many_memories(node: &Address, key: &str, clients: usize, deadline: Instant, tally: &Tally) {
    let Some(component) = guest("many-memories").ok() else {
        tally.add("no component to deploy").await;
        return;
    };
    let client = loadgen::client(clients);
    let url = format!("{}/v1/functions/many-memories", node.url);
    match client.put(&url).bearer_auth(key).body(component).send().await {
        Ok(response) => tally.add(format!("deploy {}", response.status().as_str())).await,
        Err(_) => tally.add("deploy failed").await,
    }
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, url, key, tally) = (client.clone(), format!("{url}/invoke"), key.to_owned(), tally.clone());
        tasks.spawn(async move {
            while Instant::now() < deadline {
                match client.post(&url).bearer_auth(&key).body("x").send().await {
                    Ok(response) => {
                        let status = response.status();
                        let _ = response.bytes().await;
                        tally.add(format!("answered {}", status.as_str())).await;
                    }
                    Err(_) => tally.add("closed by the node").await,
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn deploy_flood(node: &Address, key: &str, deadline: Instant, tally: &Tally) {
    let Some(component) = guest("sluice_example_grayscale").ok() else {
        tally.add("no component to deploy").await;
        return;
    };
    let client = reqwest::Client::new();
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        // A custom section at the end makes each component distinct.
        let mut distinct = component.clone();
        let payload = n.to_le_bytes();
        let name = b"flood";
        distinct.push(0);
        distinct.push(u8::try_from(1 + name.len() + payload.len()).unwrap_or(u8::MAX));
        distinct.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        distinct.extend_from_slice(name);
        distinct.extend_from_slice(&payload);
        let url = format!("{}/v1/functions/flood-{}", node.url, n % 1000);
        match client.put(&url).bearer_auth(key).body(distinct).send().await {
            Ok(response) => {
                let status = response.status();
                tally.add(format!("answered {}", status.as_str())).await;
                if status.as_u16() == 429 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Err(_) => tally.add("closed by the node").await,
        }
    }
}

/// Runs `attack` on threads of its own at a lower CPU priority than the
/// node and the victim. A real attacker is another machine; on a small
/// machine the attacking client's own work (writing 40 MiB bodies, reading
/// 30 MB answers) would otherwise take the cores from the node under test
/// and be counted as the node's fault.
async fn attack_from_behind(
    attack: Attack,
    node: Address,
    key: String,
    duration: Duration,
    tally: Tally,
) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .on_thread_start(lower_this_threads_priority)
            .enable_all()
            .build()?;
        runtime.block_on(attack.run(&node, &key, duration, &tally));
        Ok(())
    })
    .await
    .context("the attacker's thread")?
}

/// How much lower the attacker's threads run (a `nice` increment).
const ATTACKER_NICENESS: i32 = 10;

fn lower_this_threads_priority() {
    // SAFETY: gettid has no preconditions.
    let thread = unsafe { libc::gettid() };
    let Ok(thread) = libc::id_t::try_from(thread) else { return };
    // SAFETY: reads, then changes, the priority of this thread only; a
    // failure leaves it as it was.
    unsafe {
        let current = libc::getpriority(libc::PRIO_PROCESS, thread);
        libc::setpriority(libc::PRIO_PROCESS, thread, current + ATTACKER_NICENESS);
    }
}

/// The victim's open loop for `duration`, on a thread and runtime of its
/// own: a real victim is another client, so the attacker's work in this
/// process (thousands of sockets, megabytes to read) must not delay the
/// victim's requests or the reading of its clock.
async fn victim_calls(target: &Target, duration: Duration) -> anyhow::Result<LoadResult> {
    let target = target.clone();
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(runtime.block_on(loadgen::open_loop(&target, VICTIM_RATE, duration, 64, "victim", true)))
    })
    .await
    .context("the victim's thread")?
}

/// Runs the victim alone, then under each attack, on one node.
pub async fn abuse_runs(effort: Effort) -> anyhow::Result<AbuseRuns> {
    let node = tokio::task::spawn_blocking(|| Node::start(&[])).await.context("start the node")??;
    let victim_key = node.tenant("victim").await?;
    let attacker_key = node.tenant("attacker").await?;
    let photo = Bytes::from(crate::photo("peacock.progressive.jpeg"));
    let target = Target::new(&format!("{}/v1/functions/resize/invoke?width=50", node.url), &victim_key, photo)?;
    let duration = effort.run;
    // Warm the built-in on every worker slot (each has its own thread and
    // pooled instance slots) before timing anything.
    let slots = 2 * super::scenarios::cores();
    loadgen::closed_loop(&target, slots, Duration::from_secs(2), 200, "warm-up", true).await;
    let solo = victim_calls(&target, duration).await?;
    if solo.ok == 0 {
        bail!("the victim's calls all failed with nobody else on the node");
    }
    let rss_solo_mib = node.memory_mib("VmRSS");
    let mut attacks = Vec::new();
    let mut before = Some(solo.clone());
    for attack in Attack::ALL {
        // The first attack follows the solo run; each later one gets its own.
        let alone = match before.take() {
            Some(alone) => alone,
            None => victim_calls(&target, duration).await?,
        };
        eprintln!("abuse: {}", attack.name());
        let tally = Tally::default();
        let (victim, attacked) = tokio::join!(
            victim_calls(&target, duration),
            attack_from_behind(attack, node.address(), attacker_key.clone(), duration, tally.clone())
        );
        let victim = victim?;
        attacked?;
        // Let the node settle (closed sockets, released outputs) before the next attack.
        tokio::time::sleep(Duration::from_secs(2)).await;
        attacks.push(AttackRun {
            name: attack.name(),
            solo: alone,
            victim,
            attacker: tally.take().await,
            rss_after_mib: node.memory_mib("VmRSS"),
        });
    }
    let peak_rss_mib = node.memory_mib("VmHWM");
    Ok(AbuseRuns { solo, rss_solo_mib, peak_rss_mib, attacks })
}
