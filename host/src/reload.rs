//! Reloading config and plugins without a restart.
//!
//! A reload reads the config file again (with the same environment overrides), loads the
//! plugin directory reusing every unchanged plugin, checks that every route's plugin is loaded,
//! and only then publishes the new snapshot. Anything that fails leaves the current snapshot
//! serving and is reported: in the log, in the answer of `POST /plugins/reload`, and, for plugin
//! files, in `GET /plugins`.

use std::sync::Arc;

use crate::config::Config;
use crate::gateway::{Gateway, Snapshot};

/// What a successful reload published.
#[derive(Debug, serde::Serialize)]
pub struct ReloadReport {
    pub routes: usize,
    pub plugins: Vec<String>,
    /// Plugin files refused (their previous version, if any, keeps serving).
    pub refused: Vec<String>,
}

/// Reloads; on error the running snapshot is untouched.
pub async fn reload(gw: &Gateway) -> anyhow::Result<ReloadReport> {
    let _one_at_a_time = gw.reload_lock.lock().await;
    let result = publish(gw).await;
    match &result {
        Ok(report) => gw.telemetry.reloaded(&report.refused),
        Err(e) => gw.telemetry.reload_failed(&format!("{e:#}")),
    }
    result
}

async fn publish(gw: &Gateway) -> anyhow::Result<ReloadReport> {
    let current = gw.snapshot();
    let path = current.config.path.clone();
    let env = current.config.env.clone();
    let config = tokio::task::spawn_blocking(move || Config::load(&path, &env)).await??;
    let snapshot =
        Snapshot::build(Arc::new(config), &gw.engine, Some(&current), &gw.telemetry).await?;
    snapshot.check()?;
    let report = ReloadReport {
        routes: snapshot.routes.routes().len(),
        plugins: snapshot
            .plugins
            .plugins()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect(),
        refused: snapshot
            .plugins
            .errors()
            .iter()
            .map(|(name, e)| format!("{name}: {e}"))
            .collect(),
    };
    gw.publish(snapshot);
    tracing::info!(plugins = ?report.plugins, refused = report.refused.len(), "reloaded");
    Ok(report)
}

/// Reloads on `SIGHUP` (for file systems without change events, and for habit). Holds the
/// gateway weakly: a stopped gateway is freed, not kept alive by its signal handler.
pub fn watch_signals(gw: Arc<Gateway>) {
    let gw = Arc::downgrade(&gw);
    // Installed here, not in the task: the caller announces the gateway as listening when this
    // returns, and a SIGHUP that arrives before its handler is installed kills the process.
    #[cfg(unix)]
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot install a SIGHUP handler; reload with POST /plugins/reload");
        return;
    };
    #[cfg(unix)]
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let Some(gw) = gw.upgrade() else { return };
            tracing::info!("SIGHUP: reloading");
            if let Err(e) = reload(&gw).await {
                tracing::error!("reload refused, still serving the previous configuration: {e:#}");
            }
        }
    });
}
