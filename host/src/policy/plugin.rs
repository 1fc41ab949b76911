//! A loaded plugin, and its three calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use larder_bindings::types::{Invalidation, Request, RequestDecision, Response, ResponseDecision};
use larder_bindings::{PolicyPlugin, PolicyPluginPre};
use wasmtime::{Engine, Store, UpdateDeadline};

use super::PluginError;
use super::convert;
use super::sandbox::{CallState, Limits};

/// A compiled, linked and checked plugin. Cheap to share; requests hold it through the
/// [`super::PluginSet`] snapshot they took at entry, so a reload never pulls it away mid-call.
pub struct Plugin {
    pub name: Arc<str>,
    /// Content hash of the `.wasm` file.
    pub version: String,
    pub size: usize,
    pub loaded_at: SystemTime,
    pre: PolicyPluginPre<CallState>,
    engine: Engine,
    errors: AtomicU64,
}

impl Plugin {
    pub(super) fn new(
        name: Arc<str>,
        version: String,
        size: usize,
        loaded_at: SystemTime,
        pre: PolicyPluginPre<CallState>,
        engine: Engine,
    ) -> Self {
        Self {
            name,
            version,
            size,
            loaded_at,
            pre,
            engine,
            errors: AtomicU64::new(0),
        }
    }

    /// Counts a failed call (trap, deadline, memory, malformed answer).
    pub fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Failed calls of this version since it was loaded.
    pub fn error_count(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Instantiates once with default limits, to refuse at load time a plugin whose start-up
    /// code traps or whose memory does not fit.
    pub async fn trial(&self, limits: Limits) -> Result<(), PluginError> {
        self.run(0, limits, async |_, _| Ok(())).await
    }

    pub async fn on_request(
        &self,
        request_id: u64,
        limits: Limits,
        req: &Request,
    ) -> Result<RequestDecision, PluginError> {
        Ok(self
            .on_request_with_body(request_id, limits, req, None)
            .await?
            .0)
    }

    /// `on-request` for a request whose body the host has read: `request-body-digest` answers
    /// `body_digest` during the call. The flag says whether the policy asked for it, which is
    /// how it opts the request into body-keyed caching.
    pub async fn on_request_with_body(
        &self,
        request_id: u64,
        limits: Limits,
        req: &Request,
        body_digest: Option<&str>,
    ) -> Result<(RequestDecision, bool), PluginError> {
        let (decision, asked) = self
            .run_with(request_id, limits, body_digest, async |store, p| {
                p.larder_policy_policy().call_on_request(store, req).await
            })
            .await?;
        convert::check_request_decision(&decision).map_err(|r| self.malformed(r))?;
        Ok((decision, asked))
    }

    pub async fn on_response(
        &self,
        request_id: u64,
        limits: Limits,
        req: &Request,
        resp: &Response,
        body_digest: Option<&str>,
    ) -> Result<ResponseDecision, PluginError> {
        let (decision, _) = self
            .run_with(request_id, limits, body_digest, async |store, p| {
                p.larder_policy_policy()
                    .call_on_response(store, req, resp)
                    .await
            })
            .await?;
        convert::check_response_decision(&decision).map_err(|r| self.malformed(r))?;
        Ok(decision)
    }

    pub async fn on_invalidate(
        &self,
        request_id: u64,
        limits: Limits,
        req: &Request,
        resp: &Response,
    ) -> Result<Vec<Invalidation>, PluginError> {
        let list = self
            .run(request_id, limits, async |store, p| {
                p.larder_policy_policy()
                    .call_on_invalidate(store, req, resp)
                    .await
            })
            .await?;
        convert::check_invalidations(&list).map_err(|r| self.malformed(r))?;
        Ok(list)
    }

    /// Runs `call` on a fresh instance within `limits`.
    async fn run<R>(
        &self,
        request_id: u64,
        limits: Limits,
        call: impl AsyncFnOnce(&mut Store<CallState>, &PolicyPlugin) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        Ok(self.run_with(request_id, limits, None, call).await?.0)
    }

    /// [`Plugin::run`], with the request body's digest for `request-body-digest`; also says
    /// whether the guest asked for it.
    async fn run_with<R>(
        &self,
        request_id: u64,
        limits: Limits,
        body_digest: Option<&str>,
        call: impl AsyncFnOnce(&mut Store<CallState>, &PolicyPlugin) -> wasmtime::Result<R>,
    ) -> Result<(R, bool), PluginError> {
        let mut state = CallState::new(self.name.clone(), request_id, limits);
        state.body_digest = body_digest.map(str::to_owned);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if state.ticks_left == 0 {
                state.deadline_hit = true;
                return Err(wasmtime::Error::msg("deadline exceeded"));
            }
            state.ticks_left -= 1;
            Ok(UpdateDeadline::Yield(1))
        });

        // The epoch budget counts time the guest runs; this wall-clock bound also covers time
        // spent waiting for a worker thread, generously, as a backstop.
        let backstop = limits.deadline * 4 + Duration::from_millis(50);
        let work = async {
            let instance = self
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| (true, e))?;
            call(&mut store, &instance).await.map_err(|e| (false, e))
        };
        match tokio::time::timeout(backstop, work).await {
            Ok(Ok(result)) => Ok((result, store.data().body_digest_asked)),
            Ok(Err((instantiating, e))) => Err(self.classify(&store, limits, instantiating, e)),
            // Dropping the future cancels the guest; the store is dropped with it.
            Err(_) => Err(PluginError::DeadlineExceeded {
                plugin: self.name.to_string(),
                version: self.version.clone(),
                deadline: limits.deadline,
            }),
        }
    }

    fn classify(
        &self,
        store: &Store<CallState>,
        limits: Limits,
        instantiating: bool,
        e: wasmtime::Error,
    ) -> PluginError {
        let (plugin, version) = (self.name.to_string(), self.version.clone());
        let state = store.data();
        if state.deadline_hit {
            PluginError::DeadlineExceeded {
                plugin,
                version,
                deadline: limits.deadline,
            }
        } else if state.memory.hit {
            PluginError::MemoryExceeded {
                plugin,
                version,
                limit: limits.memory,
            }
        } else if instantiating {
            PluginError::Instantiate {
                plugin,
                version,
                reason: format!("{e:#}"),
            }
        } else {
            PluginError::Trap {
                plugin,
                version,
                reason: format!("{e:#}"),
            }
        }
    }

    fn malformed(&self, reason: String) -> PluginError {
        PluginError::Malformed {
            plugin: self.name.to_string(),
            version: self.version.clone(),
            reason,
        }
    }
}
