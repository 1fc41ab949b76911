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

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::gateway::Gateway;

/// The running workers, fed by the accept loop.
pub struct Workers {
    inboxes: Vec<mpsc::UnboundedSender<std::net::TcpStream>>,
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
            std::thread::Builder::new()
                .name(format!("larder-worker-{index}"))
                .spawn(move || {
                    runtime.block_on(serve(connections, gateway));
                    let _ = done.send(());
                })?;
            workers.inboxes.push(inbox);
            workers.finished.push(finished);
        }
        Ok(workers)
    }

    /// Hands a new connection to the next worker.
    pub fn dispatch(&mut self, tcp: TcpStream) {
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
        if self.inboxes[worker].send(tcp).is_err() {
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
    mut connections: mpsc::UnboundedReceiver<std::net::TcpStream>,
    gateway: Arc<Gateway>,
) {
    let http = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    while let Some(tcp) = connections.recv().await {
        let tcp = match TcpStream::from_std(tcp) {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "a worker could not take a connection");
                continue;
            }
        };
        let gw = gateway.clone();
        let service = service_fn(move |req: http::Request<Incoming>| {
            let gw = gw.clone();
            async move { Ok::<_, Infallible>(crate::proxy::handle(gw, req.map(Body::new)).await) }
        });
        let connection = http.serve_connection(TokioIo::new(tcp), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}
