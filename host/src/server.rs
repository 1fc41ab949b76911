//! Binding the listeners and running until shutdown.
//!
//! `start` validates everything (config, plugins) before it binds a socket, so a broken setup
//! fails at start with its reason rather than at the first request.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Request, State};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::gateway::Gateway;

/// A running gateway.
pub struct Running {
    /// Where clients connect (the real port when the config said `:0`).
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _watch: Option<crate::watch::WatchGuard>,
}

/// Builds the gateway for `config`, binds both listeners and serves in the background.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let (listen, admin_listen) = (config.server.listen, config.server.admin_listen);
    let gateway = Gateway::new(config).await?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let admin_listener = TcpListener::bind(admin_listen)
        .await
        .with_context(|| format!("cannot listen on {admin_listen} (admin)"))?;
    let (addr, admin_addr) = (listener.local_addr()?, admin_listener.local_addr()?);
    let (shutdown, watcher) = watch::channel(false);

    let proxy = axum::Router::new()
        .fallback(proxy_handler)
        .with_state(gateway.clone());
    let admin = crate::admin::router(gateway.clone());
    let nodelay = |tcp: &mut tokio::net::TcpStream| {
        // Headers and body go out in one write, but small responses still must not wait
        // for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
    };
    let mut tasks = Vec::new();
    for (listener, router, name) in [(listener, proxy, "proxy"), (admin_listener, admin, "admin")] {
        let mut stop = watcher.clone();
        tasks.push(tokio::spawn(async move {
            let serve =
                axum::serve(listener.tap_io(nodelay), router).with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                });
            if let Err(e) = serve.await {
                tracing::error!(listener = name, error = %e, "server stopped");
            }
        }));
    }
    let watch = if gateway.snapshot().config.plugins.watch {
        Some(crate::watch::start(gateway.clone())?)
    } else {
        None
    };
    // Before announcing: a SIGHUP that arrives before its handler would kill the process.
    crate::reload::watch_signals(gateway.clone());
    tracing::info!(%addr, %admin_addr, "larder listening");
    Ok(Running {
        addr,
        admin_addr,
        gateway,
        shutdown,
        tasks,
        _watch: watch,
    })
}

async fn proxy_handler(State(gw): State<Arc<Gateway>>, req: Request) -> axum::response::Response {
    crate::proxy::handle(gw, req).await
}

impl Running {
    /// Stops accepting, lets requests in flight finish, and returns when both listeners are
    /// closed.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// `http://<addr>` of the proxy listener.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://<addr>` of the admin listener.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }
}
