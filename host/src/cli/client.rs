//! The HTTP client commands: `tenant`, `deploy`, `invoke`, `job`, `logs`, `usage`.
//! They talk to a running `sluice serve` at `SLUICE_URL` with
//! `SLUICE_API_KEY` (or `SLUICE_ADMIN_TOKEN` for the admin's `tenant …`).
//!
//! Exit status: 0 on success, 1 when the server answered with an error
//! (printed as `code: message`), 2 when the request could not be made.

use sluice_core::ErrorCode;
use sluice_scheduler::JobLog;

use crate::server::error::ErrorBody;
use crate::server::functions::{MAX_COMPONENT_HEADER, mib};
use crate::server::tenants::TenantView;
use crate::store::tenants::TenantLimits;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Where the server is and who is calling.
#[derive(Debug, Args)]
pub struct Connection {
    /// Base URL of the Sluice API.
    #[arg(long, env = "SLUICE_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// The tenant's API key.
    #[arg(long, env = "SLUICE_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
}

/// `sluice tenant …`: the admin's commands, with the server's admin token.
#[derive(Debug, Args)]
pub struct TenantArgs {
    /// The server's admin token.
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub admin_token: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: TenantCommand,
}

/// The admin's tenant commands; each prints the server's JSON answer.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its API key (shown only once).
    Create {
        /// The tenant's name (a-z, 0-9, '-', '_').
        name: String,
    },
    /// List tenants in name order, a page at a time.
    List {
        /// Where to go on: the previous page's `next_cursor`.
        #[arg(long)]
        cursor: Option<String>,
        /// Tenants per page (1 to 500; the server's default is 50).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show a tenant: its key ids, when they expire, and its limits.
    Get {
        /// The tenant's name.
        name: String,
    },
    /// Delete a tenant: its keys, functions, queued jobs and results go;
    /// its usage stays, readable by its id.
    Delete {
        /// The tenant's name.
        name: String,
        /// Confirms the deletion; nothing is deleted without it.
        #[arg(long)]
        yes: bool,
    },
    /// Give a tenant a new API key (printed once); its other keys keep
    /// working for the grace period.
    RotateKey {
        /// The tenant's name.
        name: String,
        /// Seconds the replaced keys keep working (0 ends them now; the
        /// server's default is a day, its maximum 30 days).
        #[arg(long)]
        grace_seconds: Option<u64>,
    },
    /// Revoke one of a tenant's keys at once, on every node.
    RevokeKey {
        /// The tenant's name.
        name: String,
        /// The key's id (`k_…`, from `tenant get`).
        key_id: String,
    },
    /// Show a tenant's limits, or change the ones given (the others stay).
    Limits(LimitsArgs),
    /// Show a tenant's usage totals (by name, or by id once deleted).
    Usage {
        /// The tenant's name, or its id (`t_…`).
        tenant: String,
        /// The period.
        #[command(flatten)]
        period: UsageArgs,
    },
}

/// Arguments of `sluice tenant limits`.
#[derive(Debug, Args)]
pub struct LimitsArgs {
    /// The tenant's name.
    pub name: String,
    /// Start from no limits of the tenant's own (each node's applies).
    #[arg(long)]
    pub reset: bool,
    /// Sustained requests a second.
    #[arg(long)]
    pub rate_per_second: Option<u32>,
    /// Requests allowed in a burst above the rate.
    #[arg(long)]
    pub burst: Option<u32>,
    /// Jobs that may run at once.
    #[arg(long)]
    pub running: Option<u32>,
    /// Jobs that may wait at once.
    #[arg(long)]
    pub queued: Option<u32>,
    /// Memory one call may use, MiB.
    #[arg(long)]
    pub memory_mb: Option<u32>,
    /// How long one call may run, ms.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
}

impl LimitsArgs {
    /// True when the command changes nothing and only shows the limits.
    fn only_shows(&self) -> bool {
        let given = [self.rate_per_second, self.burst, self.running, self.queued, self.memory_mb];
        !self.reset && given.iter().all(Option::is_none) && self.timeout_ms.is_none()
    }

    /// `current` with the limits given here applied.
    fn apply_to(&self, current: TenantLimits) -> TenantLimits {
        let base = if self.reset { TenantLimits::default() } else { current };
        TenantLimits {
            rate_per_second: self.rate_per_second.or(base.rate_per_second),
            burst: self.burst.or(base.burst),
            running: self.running.or(base.running),
            queued: self.queued.or(base.queued),
            memory_mb: self.memory_mb.or(base.memory_mb),
            timeout_ms: self.timeout_ms.or(base.timeout_ms),
        }
    }
}

/// `sluice job …`
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit an async job; prints its id.
    Submit {
        /// Function name.
        function: String,
        /// File to send as the body.
        #[arg(long, short)]
        input: PathBuf,
        /// A parameter, `key=value`; repeat for more.
        #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = super::parse_param)]
        params: Vec<(String, String)>,
        /// Makes resubmitting the same request return the same job.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Print a job's status as JSON.
    Status {
        /// Job id.
        id: String,
    },
    /// List the tenant's jobs as JSON, newest first, a page at a time.
    List {
        /// Only jobs with this status (queued, running, succeeded, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
        /// Only jobs of this function.
        #[arg(long)]
        function: Option<String>,
        /// Where to go on: the previous page's `next_cursor`.
        #[arg(long)]
        cursor: Option<String>,
        /// Jobs per page (1 to 500; the server's default is 50).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Cancel a job no worker has taken yet; prints it, now `cancelled`.
    Cancel {
        /// Job id.
        id: String,
    },
    /// Save a succeeded job's output.
    Result {
        /// Job id.
        id: String,
        /// Where to write the output.
        #[arg(long, short)]
        output: PathBuf,
        /// Wait (polling) until the job has ended.
        #[arg(long)]
        wait: bool,
    },
}

/// Arguments of `sluice deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Function name.
    pub name: String,
    /// The component `.wasm` file.
    pub file: PathBuf,
}

/// Arguments of `sluice invoke`.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// Function name (yours or a built-in).
    pub function: String,
    /// File to send as the body.
    #[arg(long, short)]
    pub input: PathBuf,
    /// Where to write the output.
    #[arg(long, short)]
    pub output: PathBuf,
    /// A parameter, `key=value`; repeat for more.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = super::parse_param)]
    pub params: Vec<(String, String)>,
    /// Then print what the function wrote to stdout and stderr (also when
    /// the call failed).
    #[arg(long)]
    pub logs: bool,
}

/// Arguments of `sluice logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Job id (`sluice invoke` and `sluice job submit` print it).
    pub id: String,
    /// Print the logs as the API's JSON instead of as the two streams.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `sluice usage`: the period.
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Start (RFC 3339 or Unix seconds).
    #[arg(long)]
    pub from: Option<String>,
    /// End (RFC 3339 or Unix seconds).
    #[arg(long)]
    pub to: Option<String>,
}

/// A client command with its connection.
#[derive(Debug)]
pub enum ClientCommand {
    /// `tenant …`
    Tenant(TenantArgs),
    /// `deploy`
    Deploy(DeployArgs),
    /// `invoke`
    Invoke(InvokeArgs),
    /// `job …`
    Job(JobCommand),
    /// `logs`
    Logs(LogsArgs),
    /// `usage`
    Usage(UsageArgs),
    /// `queue`
    Queue,
}

/// The server said no: its status, code and message.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message} (HTTP {status})")]
struct ApiRefusal {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

/// Runs a client command and maps the outcome to an exit code.
pub fn execute(connection: Connection, command: ClientCommand) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start tokio")
        .and_then(|tokio| tokio.block_on(run(&connection, command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.downcast_ref::<ApiRefusal>().is_some() => {
            eprintln!("sluice: {err}");
            ExitCode::from(1)
        }
        Err(err) => {
            eprintln!("sluice: {err:#}");
            ExitCode::from(2)
        }
    }
}

struct Client<'a> {
    http: reqwest::Client,
    connection: &'a Connection,
}

impl Client<'_> {
    fn request(&self, method: Method, path: &str, token: Option<&str>) -> anyhow::Result<reqwest::RequestBuilder> {
        let token = match token {
            Some(token) => token,
            None => self.connection.api_key.as_deref().context("no API key: set SLUICE_API_KEY or pass --api-key")?,
        };
        let url = format!("{}{path}", self.connection.url.trim_end_matches('/'));
        Ok(self.http.request(method, url).bearer_auth(token))
    }
}

/// Sends the request; a non-2xx answer becomes an [`ApiRefusal`].
async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
    refusal_or(request.send().await.context("cannot reach the Sluice server")?).await
}

/// The response when it is a success, else its [`ApiRefusal`].
async fn refusal_or(response: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(ErrorBody { error }) => Err(ApiRefusal { status, code: error.code, message: error.message }.into()),
        // Not a Sluice error body (a proxy's page, a newer server's code): show what came back.
        Err(_) => anyhow::bail!("the server answered HTTP {status}: {}", text.chars().take(500).collect::<String>()),
    }
}

async fn print_json(response: reqwest::Response) -> anyhow::Result<()> {
    let value: Value = response.json().await.context("the server's answer is not JSON")?;
    println!("{}", serde_json::to_string_pretty(&value).context("printing JSON")?);
    Ok(())
}

fn query(params: &[(String, String)]) -> String {
    if params.is_empty() {
        return String::new();
    }
    let encoded: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    format!("?{encoded}")
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

async fn save(response: reqwest::Response, path: &Path) -> anyhow::Result<()> {
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let job = response.headers().get("sluice-job-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.bytes().await.context("reading the output")?;
    std::fs::write(path, &body).with_context(|| format!("cannot write {}", path.display()))?;
    match job {
        Some(job) => eprintln!("wrote {} bytes of {content_type} to {} (job {job})", body.len(), path.display()),
        None => eprintln!("wrote {} bytes of {content_type} to {}", body.len(), path.display()),
    }
    Ok(())
}

/// Prints job `id`'s logs as the streams they were: the function's stdout
/// on ours, its stderr on ours, and a note when some of it was not kept.
async fn print_logs(client: &Client<'_>, id: &str) -> anyhow::Result<()> {
    let response = send(client.request(Method::GET, &format!("/v1/jobs/{id}/logs"), None)?).await?;
    let log: JobLog = response.json().await.context("the server's logs are not the expected JSON")?;
    print!("{}", log.stdout);
    eprint!("{}", log.stderr);
    if log.truncated {
        eprintln!("(job {id}: the function printed more than was kept)");
    }
    Ok(())
}

async fn run(connection: &Connection, command: ClientCommand) -> anyhow::Result<()> {
    let client = Client { http: reqwest::Client::new(), connection };
    match command {
        ClientCommand::Tenant(args) => tenant(&client, args).await,
        ClientCommand::Deploy(args) => deploy(&client, &args).await,
        ClientCommand::Invoke(args) => {
            let body = read(&args.input)?;
            let path = format!("/v1/functions/{}/invoke{}", args.function, query(&args.params));
            let request = client.request(Method::POST, &path, None)?.body(body);
            let response = request.send().await.context("cannot reach the Sluice server")?;
            // A failed call names its job too, and its logs say why.
            let job = response.headers().get("sluice-job-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let saved = match refusal_or(response).await {
                Ok(response) => save(response, &args.output).await,
                Err(err) => Err(err),
            };
            if args.logs {
                match &job {
                    Some(job) => print_logs(&client, job).await?,
                    None => eprintln!("the answer names no job, so there are no logs to show"),
                }
            }
            saved
        }
        ClientCommand::Logs(args) => {
            if args.json {
                print_json(send(client.request(Method::GET, &format!("/v1/jobs/{}/logs", args.id), None)?).await?).await
            } else {
                print_logs(&client, &args.id).await
            }
        }
        ClientCommand::Job(JobCommand::Submit { function, input, params, idempotency_key }) => {
            let mut request = client
                .request(Method::POST, &format!("/v1/functions/{function}/jobs{}", query(&params)), None)?
                .body(read(&input)?);
            if let Some(key) = idempotency_key {
                request = request.header("idempotency-key", key);
            }
            print_json(send(request).await?).await
        }
        ClientCommand::Job(JobCommand::Status { id }) => {
            print_json(send(client.request(Method::GET, &format!("/v1/jobs/{id}"), None)?).await?).await
        }
        ClientCommand::Job(JobCommand::List { status, function, cursor, limit }) => {
            let filters = [
                ("status", status),
                ("function", function),
                ("cursor", cursor),
                ("limit", limit.map(|n| n.to_string())),
            ];
            let params: Vec<(String, String)> =
                filters.into_iter().filter_map(|(name, value)| Some((name.to_owned(), value?))).collect();
            print_json(send(client.request(Method::GET, &format!("/v1/jobs{}", query(&params)), None)?).await?).await
        }
        ClientCommand::Job(JobCommand::Cancel { id }) => {
            print_json(send(client.request(Method::DELETE, &format!("/v1/jobs/{id}"), None)?).await?).await
        }
        ClientCommand::Queue => print_json(send(client.request(Method::GET, "/v1/queue", None)?).await?).await,
        ClientCommand::Job(JobCommand::Result { id, output, wait }) => loop {
            let response = send(client.request(Method::GET, &format!("/v1/jobs/{id}/result"), None)?).await;
            match response {
                Ok(response) => return save(response, &output).await,
                Err(err)
                    if wait
                        && err.downcast_ref::<ApiRefusal>().is_some_and(|r| r.code == ErrorCode::JobNotFinished) =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => return Err(err),
            }
        },
        ClientCommand::Usage(args) => {
            print_json(send(client.request(Method::GET, &format!("/v1/usage{}", args.query()), None)?).await?).await
        }
    }
}

impl UsageArgs {
    /// The period as a query string (empty when neither end is given).
    fn query(&self) -> String {
        let ends = [("from", &self.from), ("to", &self.to)];
        let params: Vec<(String, String)> =
            ends.into_iter().filter_map(|(name, value)| Some((name.to_owned(), value.clone()?))).collect();
        query(&params)
    }
}

/// Runs an admin `tenant` command.
async fn tenant(client: &Client<'_>, args: TenantArgs) -> anyhow::Result<()> {
    let token = args.admin_token.as_deref().context("no admin token: set SLUICE_ADMIN_TOKEN or pass --admin-token")?;
    let admin = |method: Method, path: &str| client.request(method, path, Some(token));
    let tenant_path = |name: &str| format!("/v1/tenants/{}", segment(name));
    let response = match args.command {
        TenantCommand::Create { name } => {
            send(admin(Method::POST, "/v1/tenants")?.json(&serde_json::json!({ "name": name }))).await?
        }
        TenantCommand::List { cursor, limit } => {
            let page = [("cursor", cursor), ("limit", limit.map(|n| n.to_string()))];
            let params: Vec<(String, String)> =
                page.into_iter().filter_map(|(name, value)| Some((name.to_owned(), value?))).collect();
            send(admin(Method::GET, &format!("/v1/tenants{}", query(&params)))?).await?
        }
        TenantCommand::Get { name } => send(admin(Method::GET, &tenant_path(&name))?).await?,
        TenantCommand::Delete { name, yes } => {
            if !yes {
                anyhow::bail!(
                    "deleting tenant {name:?} removes its keys, functions, queued jobs and results; \
                     pass --yes to confirm"
                );
            }
            send(admin(Method::DELETE, &tenant_path(&name))?).await?
        }
        TenantCommand::RotateKey { name, grace_seconds } => {
            let body = match grace_seconds {
                Some(grace) => serde_json::json!({ "grace_seconds": grace }),
                None => serde_json::json!({}),
            };
            send(admin(Method::POST, &format!("{}/keys", tenant_path(&name)))?.json(&body)).await?
        }
        TenantCommand::RevokeKey { name, key_id } => {
            send(admin(Method::DELETE, &format!("{}/keys/{}", tenant_path(&name), segment(&key_id)))?).await?
        }
        TenantCommand::Limits(limits) => {
            let current = send(admin(Method::GET, &tenant_path(&limits.name))?).await?;
            if limits.only_shows() {
                current
            } else {
                let view: TenantView =
                    current.json().await.context("the server's tenant is not what this CLI reads")?;
                let body = limits.apply_to(view.limits);
                send(admin(Method::PUT, &format!("{}/limits", tenant_path(&limits.name)))?.json(&body)).await?
            }
        }
        TenantCommand::Usage { tenant, period } => {
            send(admin(Method::GET, &format!("{}/usage{}", tenant_path(&tenant), period.query()))?).await?
        }
    };
    print_json(response).await
}

/// `value` percent-encoded as one URL path segment.
fn segment(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The refusal of a component over the server's limit, worded the same
/// whether the size was checked before uploading or the server refused it.
fn too_large(size: u64, limit: u64) -> ApiRefusal {
    ApiRefusal {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: ErrorCode::ComponentTooLarge,
        message: format!(
            "the component is {} MiB; this server accepts at most {} MiB (--max-component-mb)",
            mib(size),
            mib(limit)
        ),
    }
}

/// The server's component size limit, from its function list; `None` when
/// it does not say (an older server), and the upload decides.
async fn component_limit(client: &Client<'_>) -> Option<u64> {
    let response = send(client.request(Method::GET, "/v1/functions", None).ok()?).await.ok()?;
    let list: Value = response.json().await.ok()?;
    list.get("limits")?.get("max_component_bytes")?.as_u64()
}

/// Checks the size against the server's limit, uploads with a progress
/// bar, then shows a spinner while the server compiles.
async fn deploy(client: &Client<'_>, args: &DeployArgs) -> anyhow::Result<()> {
    let bytes = read(&args.file)?;
    let total = bytes.len() as u64;
    if let Some(limit) = component_limit(client).await.filter(|limit| total > *limit) {
        return Err(too_large(total, limit).into());
    }
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("uploading {}", args.file.display()));
    let uploaded = bar.clone();
    let chunks: Vec<Vec<u8>> = bytes.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
    let stream = futures_util::stream::iter(chunks.into_iter().map(move |chunk| {
        uploaded.inc(chunk.len() as u64);
        if uploaded.position() >= total {
            uploaded.set_style(
                ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            uploaded.set_message("compiling on the server…");
            uploaded.enable_steady_tick(Duration::from_millis(100));
        }
        Ok::<_, std::io::Error>(chunk)
    }));
    let request = client
        .request(Method::PUT, &format!("/v1/functions/{}", args.name), None)?
        .header(reqwest::header::CONTENT_LENGTH, total)
        .header(reqwest::header::CONTENT_TYPE, "application/wasm")
        .body(reqwest::Body::wrap_stream(stream));
    let response = request.send().await.context("cannot reach the Sluice server");
    bar.finish_and_clear();
    let response = response?;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        let limit = response.headers().get(MAX_COMPONENT_HEADER).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(limit) = limit {
            return Err(too_large(total, limit).into());
        }
    }
    print_json(refusal_or(response).await?).await
}
