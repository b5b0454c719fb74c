//! `sluice run`: one call, locally, no server. The quickest way to try a
//! function, and what scripts use to batch-process files.
//!
//! Exit status: 0 when the call succeeded, 1 when the function failed or
//! was refused (the outcome says why), 2 when the command itself could not
//! run (unreadable input, bad flags).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::builtins;
use sluice_core::{CallRequest, Outcome};

use super::serve::runtime_defaults;
use crate::runtime::{CallLimits, Invocation, MIB, Runtime, RuntimeConfig};

/// Arguments of `sluice run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A built-in function (`resize`, `grayscale`) or a path to a component `.wasm`.
    pub function: String,
    /// File to send as the request body.
    #[arg(long, short)]
    pub input: PathBuf,
    /// Where to write the output body; without it the body goes to stdout
    /// (or nowhere with --json).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// A parameter for the function, `key=value`; repeat for more.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = super::parse_param)]
    pub params: Vec<(String, String)>,
    /// Media type of the input; guessed from the file extension when absent.
    #[arg(long)]
    pub content_type: Option<String>,
    /// Print exactly one JSON object on stdout: outcome, message, usage, log.
    #[arg(long)]
    pub json: bool,
    /// Wall-clock deadline for the call.
    #[arg(long, env = "SLUICE_TIMEOUT_MS", default_value_t = runtime_defaults().timeout_ms())]
    pub timeout_ms: u64,
    /// Linear memory the function may use.
    #[arg(long, env = "SLUICE_MEMORY_MB", default_value_t = runtime_defaults().memory_limit / MIB)]
    pub memory_mb: usize,
    /// Largest output the function may return.
    #[arg(long, env = "SLUICE_MAX_OUTPUT_MB", default_value_t = runtime_defaults().max_output / MIB)]
    pub max_output_mb: usize,
    /// Meter fuel (roughly, instructions) and report it in the usage.
    #[arg(long, env = "SLUICE_FUEL")]
    pub fuel: bool,
    /// Directory for compiled artifacts [default: $XDG_CACHE_HOME/sluice or ~/.cache/sluice].
    #[arg(long, env = "SLUICE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile every time instead of using the artifact cache.
    #[arg(long, env = "SLUICE_NO_CACHE")]
    pub no_cache: bool,
}

/// Runs `sluice run` and maps the result to an exit code.
pub fn execute(args: RunArgs) -> ExitCode {
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("sluice run: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Performs the call; `Ok(false)` means the function failed or was refused.
fn run(args: &RunArgs) -> anyhow::Result<bool> {
    let component = match builtins::transform(&args.function) {
        Some(builtin) => builtin.component.to_vec(),
        None if args.function.ends_with(".wasm") || Path::new(&args.function).exists() => {
            std::fs::read(&args.function).with_context(|| format!("cannot read the component {}", args.function))?
        }
        None => {
            let names: Vec<&str> = builtins::TRANSFORMS.iter().map(|b| b.name).collect();
            anyhow::bail!("`{}` is neither a built-in function ({}) nor a .wasm file", args.function, names.join(", "));
        }
    };
    let body = std::fs::read(&args.input).with_context(|| format!("cannot read the input {}", args.input.display()))?;

    let config = RuntimeConfig {
        memory_limit: args.memory_mb.saturating_mul(MIB),
        timeout: Duration::from_millis(args.timeout_ms),
        max_output: args.max_output_mb.saturating_mul(MIB),
        fuel: args.fuel,
        // One call: a pool would only reserve memory this process never reuses.
        pooling: false,
        cache_dir: if args.no_cache { None } else { args.cache_dir.clone().or_else(default_cache_dir) },
        ..RuntimeConfig::default()
    };
    let limits = CallLimits::from(&config);
    let runtime = Runtime::new(config).context("cannot start the runtime")?;

    let function = match runtime.load(&component) {
        Ok(function) => function,
        Err(err) => {
            report(args, Outcome::Failed(err.code()), &err.to_string(), None, None)?;
            return Ok(false);
        }
    };
    let request = CallRequest {
        body,
        content_type: args.content_type.clone().unwrap_or_else(|| guess_content_type(&args.input).to_owned()),
        params: args.params.clone(),
    };
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
    let invocation = tokio.block_on(runtime.invoke_with(&function, request, &limits));

    match &invocation.result {
        Ok(output) => {
            let message = match &args.output {
                Some(path) => {
                    std::fs::write(path, &output.body)
                        .with_context(|| format!("cannot write the output to {}", path.display()))?;
                    format!("wrote {} bytes of {} to {}", output.body.len(), output.content_type, path.display())
                }
                None if args.json => {
                    format!("{} bytes of {} (not written: no --output)", output.body.len(), output.content_type)
                }
                None => {
                    std::io::stdout().lock().write_all(&output.body).context("cannot write the output to stdout")?;
                    format!("wrote {} bytes of {} to stdout", output.body.len(), output.content_type)
                }
            };
            report(args, Outcome::Ok, &message, Some(&invocation), Some(&output.content_type))?;
            Ok(true)
        }
        Err(err) => {
            report(args, Outcome::Failed(err.code()), &err.to_string(), Some(&invocation), None)?;
            Ok(false)
        }
    }
}

/// Prints the outcome: one JSON object on stdout with --json, else a line on stderr.
fn report(
    args: &RunArgs,
    outcome: Outcome,
    message: &str,
    invocation: Option<&Invocation>,
    content_type: Option<&str>,
) -> anyhow::Result<()> {
    if args.json {
        let report = json!({
            "outcome": outcome,
            "message": message,
            "content_type": content_type,
            "usage": invocation.map(|i| &i.usage),
            "log": invocation.map(|i| &i.log),
        });
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer(&mut stdout, &report).context("cannot write the report")?;
        writeln!(stdout).context("cannot write the report")?;
    } else {
        if let Some(invocation) = invocation {
            for line in invocation.log.stderr.lines().chain(invocation.log.stdout.lines()) {
                eprintln!("[function] {line}");
            }
            let usage = &invocation.usage;
            eprintln!(
                "{outcome}: {message} (wall {:.1} ms, cpu {:.1} ms, peak memory {:.1} MiB)",
                usage.wall_us as f64 / 1000.0,
                usage.cpu_us as f64 / 1000.0,
                usage.peak_memory_bytes as f64 / MIB as f64
            );
        } else {
            eprintln!("{outcome}: {message}");
        }
    }
    Ok(())
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("sluice"))
}

/// The media type suggested by a file's extension; empty when unknown.
pub fn guess_content_type(path: &Path) -> &'static str {
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("bmp") => "image/bmp",
        Some("tif" | "tiff") => "image/tiff",
        _ => "",
    }
}
