//! The `larder` command line: `serve` and `check-config` for operators, and `plugin new`,
//! `check`, `run`, `test` and `install` for policy authors.
//!
//! The clap definitions and what each command does live here, in the library, so that
//! `main.rs` only sets up the process (allocator, logging, runtime, exit code):
//!
//! - this file: the commands and their flags, `serve` (start, wait for a signal, drain) and
//!   `check-config`.
//! - [`plugin_new`]: `larder plugin new`, a policy crate (or Python folder) that builds on the
//!   first try.
//! - [`plugin_check`]: `larder plugin check`, is this `.wasm` a policy for this gateway.
//! - [`plugin_run`]: `larder plugin run`, one call of a policy with a request from the command
//!   line, its decisions printed as JSON.
//! - [`plugin_test`]: `larder plugin test`, a policy's decisions checked against a cases file.
//! - [`plugin_install`]: `larder plugin install`, a checked component into a plugin directory,
//!   under the name routes use.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, EnvOverrides};

pub mod plugin_check;
pub mod plugin_install;
pub mod plugin_new;
pub mod plugin_run;
pub mod plugin_test;

#[derive(Parser)]
#[command(
    name = "larder",
    version,
    about = "A caching gateway whose cache policies are WebAssembly components"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "human",
        env = "LARDER_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
// Parsed once per process: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// The config file.
        #[arg(long, short, default_value = "larder.toml", env = "LARDER_CONFIG")]
        config: PathBuf,
    },
    /// Check a config file and exit (0 when it is valid).
    CheckConfig {
        #[arg(long, short, default_value = "larder.toml")]
        config: PathBuf,
    },
    /// Tools for policy authors.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Create a policy that builds on the first try: a Rust crate, or (--lang python) a Python
    /// folder.
    ///
    /// Rust: Cargo.toml, src/lib.rs with tests, README.md; it builds with `cargo build --release
    /// --target wasm32-wasip2`. Python: app.py, tests/test_app.py, cases.toml, pyproject.toml,
    /// README.md; the Larder checkout's plugins/python/build.py tests it (`--test`) and builds
    /// it. Each README lists the commands that test, build and check the policy.
    New(plugin_new::NewArgs),
    /// Check that a .wasm file is a policy component for this gateway and list its exports.
    Check {
        file: PathBuf,
        #[command(flatten)]
        memory_limit: plugin_check::MemoryLimit,
    },
    /// Call a policy with a request (and optionally a response) and print its decisions as JSON.
    Run(plugin_run::RunArgs),
    /// Check a policy's decisions against a cases file (TOML): each case a request, and the
    /// decisions expected of check-settings, on-request, on-response and on-invalidate. Prints
    /// each failing case's differences; exits non-zero when any case fails.
    Test(plugin_test::TestArgs),
    /// Check a built component and install it into a gateway's plugin directory, atomically,
    /// under the plugin's name (default: the file stem with `_` read as `-`).
    Install(plugin_install::InstallArgs),
}

/// Runs `command` to its end; what it prints goes to stdout, logs to stderr.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config } => serve(config).await,
        Command::CheckConfig { config } => {
            let loaded = Config::load(&config, &EnvOverrides::from_env())?;
            // What `serve` refuses before loading anything: a route naming a plugin whose file
            // is not there. (Whether a file loads and decides is `larder plugin check`'s
            // question.)
            for route in &loaded.routes {
                let dir = &loaded.plugins.dir;
                for (plugin, line) in route.plugin_refs() {
                    if !dir.join(format!("{plugin}.wasm")).is_file() {
                        return Err(crate::gateway::MissingPlugin {
                            file: config.display().to_string(),
                            line,
                            route: route.name.clone(),
                            plugin: plugin.to_owned(),
                            reason: format!("no {plugin}.wasm in {}", dir.display()),
                        }
                        .into());
                    }
                }
            }
            for note in loaded.notes() {
                println!("{}: note: {note}", config.display());
            }
            println!("{}: ok", config.display());
            Ok(())
        }
        Command::Plugin { command } => match command {
            PluginCommand::New(args) => {
                let cwd = std::env::current_dir().context("no current directory")?;
                let created = plugin_new::new_plugin(&args, &cwd)?;
                println!("{created}");
                Ok(())
            }
            PluginCommand::Check { file, memory_limit } => {
                let report = plugin_check::check(&file, memory_limit).await?;
                println!("{report}");
                Ok(())
            }
            PluginCommand::Run(args) => {
                let out = plugin_run::run(args).await?;
                println!("{}", serde_json::to_string_pretty(&out)?);
                Ok(())
            }
            PluginCommand::Install(args) => {
                println!("{}", plugin_install::install(&args).await?);
                Ok(())
            }
            PluginCommand::Test(args) => {
                let outcome = plugin_test::test(args).await?;
                println!("{}", outcome.report);
                if outcome.failed > 0 {
                    anyhow::bail!("{} of {} cases failed", outcome.failed, outcome.total);
                }
                Ok(())
            }
        },
    }
}

/// `larder serve`: start, then on Ctrl-C or SIGTERM finish the requests in flight and return.
async fn serve(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path, &EnvOverrides::from_env())?;
    // Listening for SIGTERM before the gateway says it is listening: a supervisor that stops
    // it right after that line must see a graceful stop, not the signal's default action.
    let stop = shutdown_signal()?;
    let running = crate::start(config)
        .await
        .with_context(|| format!("cannot start with {}", path.display()))?;
    stop.await;
    tracing::info!("shutting down: finishing requests in flight");
    running.stop().await;
    Ok(())
}

/// Installs the Ctrl-C (SIGINT) and SIGTERM handlers now; the future resolves on either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term =
            signal(SignalKind::terminate()).context("cannot install a SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot install a SIGINT handler")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Logs go to stderr, filtered by `LARDER_LOG` (default `info`), as text or JSON lines.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LARDER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: a log file or a container's log collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
