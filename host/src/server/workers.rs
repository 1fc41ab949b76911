//! The proxy listener's workers: one thread per core, each with a single-threaded runtime of
//! its own.
//!
//! A hit costs a few microseconds of the gateway's own work. In one shared work-stealing
//! runtime a visible part of that went to waking idle threads and moving tasks between them.
//! Here the accept loop hands each new connection to the next worker in turn, and everything
//! the connection does afterwards stays on that worker's thread: its requests, their plugin
//! calls and memory-tier lookups, and the upstream connections they open. NGINX's worker
//! processes work the same way, but these are threads of one gateway: they share one memory
//! tier and one set of plugins, and on a single Redis each keeps a connection of its own (see
//! `store::redis`). Measured with `tests/load/run.sh` against the shared runtime, alternating:
//! about 20% more memory-tier hits per second at 64 connections (1 KB bodies).
//!
//! Work that outlives its request (a fill whose client left, a background revalidation) runs
//! on the worker that started it. The gateway's background services (Redis connections, the
//! plugin watcher, the admin API) stay on the main runtime. On shutdown the accept loop stops,
//! and each worker lets its connections finish the requests they are serving.
//!
//! Each connection is held to the limits of [`super::connection`]: hyper's header read timeout
//! and HTTP/2 keep-alive pings, a first request within the header read timeout, and a graceful
//! close after the idle timeout.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

use super::connection::{self, Activity, Limits, Slot};
use crate::gateway::Gateway;

/// The running workers, fed by the accept loop.
pub struct Workers {
    inboxes: Vec<mpsc::UnboundedSender<(std::net::TcpStream, Slot)>>,
    finished: Vec<oneshot::Receiver<()>>,
    next: usize,
}

impl Workers {
    /// Starts `count` workers serving `gateway`.
    pub fn start(count: usize, gateway: &Arc<Gateway>) -> std::io::Result<Self> {
        let mut workers = Self {
            inboxes: Vec::with_capacity(count),
            finished: Vec::with_capacity(count),
            next: 0,
        };
        for index in 0..count.max(1) {
            let (inbox, connections) = mpsc::unbounded_channel();
            let (done, finished) = oneshot::channel();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let gateway = gateway.clone();
            let limits = Limits::of(&gateway.snapshot().config.server);
            std::thread::Builder::new()
                .name(format!("larder-worker-{index}"))
                .spawn(move || {
                    runtime.block_on(serve(connections, gateway, limits));
                    let _ = done.send(());
                })?;
            workers.inboxes.push(inbox);
            workers.finished.push(finished);
        }
        Ok(workers)
    }

    /// Hands a new connection, and its place among the open ones, to the next worker.
    pub fn dispatch(&mut self, tcp: TcpStream, slot: Slot) {
        // Out of the accept loop's runtime, into the worker's (which registers it again).
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "could not hand a connection to a worker");
                return;
            }
        };
        let worker = self.next % self.inboxes.len();
        self.next = self.next.wrapping_add(1);
        if self.inboxes[worker].send((tcp, slot)).is_err() {
            tracing::error!(worker, "a proxy worker has stopped; connection dropped");
        }
    }

    /// Stops handing out connections and waits until every worker's connections are closed.
    pub async fn finish(self) {
        drop(self.inboxes);
        for finished in self.finished {
            let _ = finished.await;
        }
    }
}

/// One worker: serves the connections it is handed until the accept loop stops, then lets
/// them finish the requests they are serving.
async fn serve(
    mut connections: mpsc::UnboundedReceiver<(std::net::TcpStream, Slot)>,
    gateway: Arc<Gateway>,
    limits: Limits,
) {
    let http = connection::http(&limits);
    // Every connection's task holds a receiver: `closed` below returns when all have ended.
    let (stop, stopping) = watch::channel(false);
    while let Some((tcp, slot)) = connections.recv().await {
        let tcp = match TcpStream::from_std(tcp) {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "a worker could not take a connection");
                continue;
            }
        };
        let gw = gateway.clone();
        let activity = Activity::new();
        let busy = activity.clone();
        // The client's address, for `X-Forwarded-For` and `server.trusted_proxies`.
        let peer = tcp.peer_addr().ok();
        let service = service_fn(move |req: http::Request<Incoming>| {
            let gw = gw.clone();
            let in_flight = busy.begin();
            async move {
                let response = crate::proxy::handle_from(gw, peer, req.map(Body::new)).await;
                drop(in_flight);
                Ok::<_, Infallible>(response)
            }
        });
        connection::spawn(
            &http,
            tcp,
            slot,
            activity,
            limits,
            service,
            stopping.clone(),
        );
    }
    let _ = stop.send(true);
    drop(stopping);
    stop.closed().await;
}
