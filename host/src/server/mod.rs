//! Binding the listeners and running until shutdown.
//!
//! `start` validates everything (config, plugins) before it binds a socket, so a broken setup
//! fails at start with its reason rather than at the first request. The proxy listener's
//! connections are served by [`workers`], a thread per core, within the limits of
//! [`connection`].

pub mod connection;
mod workers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::body::Incoming;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_service::Service;

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
    let connections =
        connection::Connections::new(gateway.snapshot().config.server.max_connections);
    warn_if_too_many(connections.stats().max);

    let admin = crate::admin::router(gateway.clone(), connections.clone());
    let mut tasks = vec![tokio::spawn(serve_proxy(
        listener,
        workers,
        connections,
        watcher.clone(),
    ))];
    let limits = connection::Limits::of(&gateway.snapshot().config.server);
    tasks.push(tokio::spawn(serve_admin(
        admin_listener,
        admin,
        limits,
        watcher.clone(),
    )));
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

/// Connections the admin listener serves at once: an operator, a dashboard, a scraper or two.
/// More are closed at once, so a client that opens many cannot take the process's file
/// descriptors through the admin port either.
const ADMIN_CONNECTIONS: usize = 64;

/// The admin listener: the same HTTP server and limits as the proxy listener (header read
/// timeout, idle timeout, HTTP/2 pings), at most [`ADMIN_CONNECTIONS`] open, served on the
/// main runtime. On shutdown it stops accepting and lets open connections finish their
/// requests.
async fn serve_admin(
    listener: TcpListener,
    router: axum::Router,
    limits: connection::Limits,
    mut stop: watch::Receiver<bool>,
) {
    let http = connection::http(&limits);
    let open = connection::Connections::new(ADMIN_CONNECTIONS);
    let mut backoff = connection::Backoff::default();
    // Every connection's task holds a receiver: `closed` below returns when all have ended.
    let (close, closing) = watch::channel(false);
    while let Some(mut tcp) = accept(&listener, &mut backoff, &mut stop, &open).await {
        let Some(slot) = open.admit() else {
            refuse(&tcp);
            continue;
        };
        nodelay(&mut tcp);
        let activity = connection::Activity::new();
        let busy = activity.clone();
        let router = router.clone();
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let in_flight = busy.begin();
            let mut router = router.clone();
            async move {
                let response = router.call(req.map(axum::body::Body::new)).await;
                drop(in_flight);
                response
            }
        });
        connection::spawn(&http, tcp, slot, activity, limits, service, closing.clone());
    }
    drop(listener);
    let _ = close.send(true);
    drop(closing);
    close.closed().await;
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
///
/// With `server.max_connections` open, a new connection is accepted and closed at once (after
/// a `503` it may or may not read) and counted, rather than left waiting in the kernel's
/// backlog: the client learns at once, and the operator sees it in `/stats` and `/metrics`.
async fn serve_proxy(
    listener: TcpListener,
    mut workers: workers::Workers,
    connections: Arc<connection::Connections>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = connection::Backoff::default();
    // When the connection limit was last reported: at most every ten seconds, since a flood at
    // the limit refuses and admits in turn, many times a second.
    let mut reported: Option<tokio::time::Instant> = None;
    while let Some(mut tcp) = accept(&listener, &mut backoff, &mut stop, &connections).await {
        let Some(slot) = connections.admit() else {
            if reported.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                reported = Some(tokio::time::Instant::now());
                let stats = connections.stats();
                tracing::warn!(
                    max_connections = stats.max,
                    refused_since_start = stats.refused,
                    "client connection limit reached; closing new connections until some end"
                );
            }
            refuse(&tcp);
            continue;
        };
        nodelay(&mut tcp);
        workers.dispatch(tcp, slot);
    }
    drop(listener);
    workers.finish().await;
}

/// The listener's next connection; `None` once `stop` turns true. A failed accept that
/// concerns one connection (reset before it was accepted) is skipped; any other (out of file
/// descriptors and the like) is counted in `connections` and waited out with `backoff`: the
/// listener stays readable, so retrying at once would spin.
async fn accept(
    listener: &TcpListener,
    backoff: &mut connection::Backoff,
    stop: &mut watch::Receiver<bool>,
    connections: &connection::Connections,
) -> Option<TcpStream> {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => return None,
        };
        match accepted {
            Ok((tcp, _)) => {
                backoff.succeeded();
                return Some(tcp);
            }
            Err(e) if connection::is_per_connection(&e) => continue,
            Err(e) => {
                connections.accept_failed();
                let wait = backoff.failed(&e);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = stop.wait_for(|s| *s) => return None,
                }
            }
        }
    }
}

/// Tells a client over the connection limit so, if its socket takes the answer at once, and
/// closes. Its request (if it sent one already) is unread, so the close may reach it as a
/// reset before the answer: either way it is not left waiting.
fn refuse(tcp: &TcpStream) {
    const ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\nretry-after: 1\r\n\r\n";
    let _ = tcp.try_write(ANSWER);
}

/// The process's soft limit of open files (`RLIMIT_NOFILE`), where it can be read: from
/// `/proc/self/limits` rather than `getrlimit`, which would need unsafe code (Linux is where the
/// gateway runs; elsewhere the default limit is taken as is).
pub fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A connection limit above half the open-file limit lets a flood of clients take the
/// descriptors that upstream and Redis connections need.
fn warn_if_too_many(max_connections: usize) {
    if let Some(files) = open_file_limit()
        && max_connections > files / 2
    {
        tracing::warn!(
            max_connections,
            open_file_limit = files,
            "server.max_connections is above half the open-file limit: raise the limit (ulimit -n) or lower max_connections, or a flood of clients can leave no descriptors for upstream and Redis connections"
        );
    }
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
