//! The `larder` command: `serve`, and the plugin author's tools `plugin new` / `check` / `run`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use larder::config::{Config, EnvOverrides};
use larder::policy::{devtool, scaffold};

/// mimalloc instead of glibc's malloc: a hit allocates a few dozen small objects on one thread
/// and frees them on another, and glibc's arenas showed as a tenth of the gateway's CPU under
/// load (malloc, free and their consolidation); with mimalloc the same load runs faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "larder",
    version,
    about = "A caching gateway whose cache policies are WebAssembly components"
)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "human",
        env = "LARDER_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
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
enum PluginCommand {
    /// Create a policy crate (Cargo.toml, src/lib.rs with tests, README.md) that builds with
    /// `cargo build --release --target wasm32-wasip2`.
    New(scaffold::NewArgs),
    /// Check that a .wasm file is a policy component for this gateway and list its exports.
    Check { file: PathBuf },
    /// Call a policy with a request (and optionally a response) and print its decisions as JSON.
    Run(devtool::RunArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("larder: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config } => serve(config).await,
        Command::CheckConfig { config } => {
            let loaded = Config::load(&config, &EnvOverrides::from_env())?;
            for note in loaded.notes() {
                println!("{}: note: {note}", config.display());
            }
            println!("{}: ok", config.display());
            Ok(())
        }
        Command::Plugin { command } => match command {
            PluginCommand::New(args) => {
                let cwd = std::env::current_dir().context("no current directory")?;
                let created = scaffold::new_plugin(&args, &cwd)?;
                println!("{created}");
                Ok(())
            }
            PluginCommand::Check { file } => {
                let report = devtool::check(&file).await?;
                println!("{report}");
                Ok(())
            }
            PluginCommand::Run(args) => {
                let out = devtool::run(args).await?;
                println!("{}", serde_json::to_string_pretty(&out)?);
                Ok(())
            }
        },
    }
}

async fn serve(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path, &EnvOverrides::from_env())?;
    let running = larder::start(config)
        .await
        .with_context(|| format!("cannot start with {}", path.display()))?;
    shutdown_signal().await;
    tracing::info!("shutting down: finishing requests in flight");
    running.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LARDER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
