//! `scat-origin`: the stand-in Source Code Analysis Tool as a process, for the demo and for poking
//! at the gateway by hand. Tests start the same server in-process through
//! `larder_tests::origin`; this binary only adds flags, logging and signal handling.
//!
//! ```text
//! scat-origin --listen 127.0.0.1:8000 --ai-delay-ms 1200 --delay-ms 150 --repositories 50
//! curl -s localhost:8000/api/v1/repositories/7/ai-features
//! curl -s -XPOST 'localhost:8000/api/v1/repositories/7/actions/analyze?feature_type=complexity'
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use larder_tests::origin::{self, OriginConfig};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// The stand-in Source Code Analysis Tool backend.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SCAT_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Delay of the AI features endpoint, in milliseconds [default: 1200].
    #[arg(long, env = "SCAT_AI_DELAY_MS")]
    ai_delay_ms: Option<u64>,
    /// Delay of every other analysis endpoint, in milliseconds [default: per endpoint,
    /// repository 150, tech stack 400, insights 600, embeddings 800].
    #[arg(long, env = "SCAT_DELAY_MS")]
    delay_ms: Option<u64>,
    /// How many repositories exist (ids 1..=N).
    #[arg(long, env = "SCAT_REPOSITORIES", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..))]
    repositories: u32,
}

impl Args {
    fn config(&self) -> OriginConfig {
        let mut config = OriginConfig {
            repositories: self.repositories,
            ..OriginConfig::default()
        };
        if let Some(ms) = self.delay_ms {
            config = config.with_non_ai_delays(Duration::from_millis(ms));
        }
        if let Some(ms) = self.ai_delay_ms {
            config.ai_features_delay = Duration::from_millis(ms);
        }
        config
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let config = args.config();
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let origin = origin::spawn(listener, config).await;
    tracing::info!(url = %origin.url(), config = ?origin.config(), "scat-origin ready");

    shutdown_signal().await?;
    tracing::info!("shutting down; waiting for in-flight requests");
    origin.shutdown().await;
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix (what `docker stop` and process supervisors send).
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate =
            signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("cannot listen for Ctrl-C")?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    Ok(())
}
