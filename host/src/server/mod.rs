//! Binding the listeners and running until shutdown.
//!
//! `start` validates everything (config, plugins) before it binds a socket, so a broken setup
//! fails at start with its reason rather than at the first request. The proxy listener's
//! connections are served by [`workers`], a thread per core.

mod workers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::{TcpListener, TcpStream};
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
    let workers = workers::Workers::start(gateway.snapshot().config.server.workers, &gateway)
        .context("cannot start the proxy's worker threads")?;

    let admin = crate::admin::router(gateway.clone());
    let mut tasks = vec![tokio::spawn(serve_proxy(
        listener,
        workers,
        watcher.clone(),
    ))];
    let mut stop = watcher.clone();
    tasks.push(tokio::spawn(async move {
        let serve =
            axum::serve(admin_listener.tap_io(nodelay), admin).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            });
        if let Err(e) = serve.await {
            tracing::error!(listener = "admin", error = %e, "server stopped");
        }
    }));
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

/// Headers and body go out in one write, but small responses still must not wait for Nagle's
/// algorithm.
fn nodelay(tcp: &mut TcpStream) {
    let _ = tcp.set_nodelay(true);
}

/// The proxy listener: accepts connections and hands each to a worker, which passes its
/// requests straight to [`crate::proxy::handle`], HTTP/1.1 or HTTP/2 (prior knowledge), with no
/// router or service stack in between (a hit's cost is counted in microseconds, and a router's
/// dispatch and boxing showed in its profile). On shutdown it stops accepting, the workers let
/// each connection finish the request it is serving, and it returns when all are closed.
async fn serve_proxy(
    listener: TcpListener,
    mut workers: workers::Workers,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let mut tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        nodelay(&mut tcp);
        workers.dispatch(tcp);
    }
    drop(listener);
    workers.finish().await;
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
