//! A loaded plugin, and its three calls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use larder_bindings::types::{
    Invalidation, Param, Request, RequestDecision, Response, ResponseDecision,
};
use wasmtime::{Engine, Store, UpdateDeadline};

use super::PluginError;
use super::convert;
use super::sandbox::{self, CallState, Limits, LogBudget};
use super::world::{Instance, Pre, WitVersion};

/// A compiled, linked and checked plugin. Cheap to share; requests hold it through the
/// [`super::PluginSet`] snapshot they took at entry, so a reload never pulls it away mid-call.
pub struct Plugin {
    pub name: Arc<str>,
    /// Content hash of the `.wasm` file.
    pub version: String,
    pub size: usize,
    pub loaded_at: SystemTime,
    pre: Pre,
    engine: Engine,
    errors: AtomicU64,
    /// The log budget its instances share (see `sandbox`).
    log: Arc<LogBudget>,
    /// Instances that served a call successfully, ready for the next.
    idle: Mutex<Vec<Idle>>,
}

/// An instance between calls, with the store it lives in.
struct Idle {
    store: Store<CallState>,
    instance: Instance,
    calls: u32,
}

/// What the host saw of a successful call besides its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallFacts {
    /// The guest asked for the request body's digest and got one.
    pub body_digest_asked: bool,
    /// The answer follows from the call's arguments alone: the guest called no host function
    /// and drew no random numbers (see [`CallState::repeatable`]), so the same arguments
    /// would get the same answer.
    pub repeatable: bool,
}

/// Calls an instance serves before it is dropped, which bounds whatever a guest accumulates
/// in its memory across calls (the memory limit bounds it too: a guest that outgrows it fails
/// one call and its instance is dropped). A fresh instance is cheap for a Rust guest but costs
/// a Python one (CPython from its snapshot) milliseconds and hundreds of page faults on its
/// first call; at 1,000 calls per instance that was several microseconds of every call under
/// load, and a first call over the deadline made the next fresh one.
pub const REUSE_CALLS: u32 = 10_000;
/// Idle instances kept per plugin version: at most this many, and only as many as fit in
/// [`IDLE_MEMORY`] of linear memory, but always [`MIN_IDLE`]. A Rust guest's instance holds
/// about a megabyte; a Python one's about 12 MiB, most of it written by the interpreter, so
/// sixteen of them would hold some 150 MB for a burst that has passed.
pub const MAX_IDLE: usize = 16;
pub const MIN_IDLE: usize = 2;
pub const IDLE_MEMORY: usize = 32 * 1024 * 1024;

impl Plugin {
    pub(super) fn new(
        name: Arc<str>,
        version: String,
        size: usize,
        loaded_at: SystemTime,
        pre: Pre,
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
            log: Arc::default(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The version of the `larder:policy` WIT the plugin was built against (the one it
    /// exports).
    pub fn wit_version(&self) -> WitVersion {
        self.pre.version()
    }

    /// Counts a failed call (trap, deadline, memory, malformed answer).
    pub fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Log lines its calls wrote past the bounds (see `sandbox`), since it was loaded.
    pub fn log_lines_dropped(&self) -> u64 {
        self.log.dropped()
    }

    /// Instances waiting for their next call.
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().map(|i| i.len()).unwrap_or(0)
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

    /// `check-settings` for `route`: `Ok(Err(reason))` when the policy refuses the settings.
    /// A plugin built against 0.1.0 has no such export and accepts any settings.
    pub async fn check_settings(
        &self,
        limits: Limits,
        route: &str,
        settings: &[Param],
    ) -> Result<Result<(), String>, PluginError> {
        if self.wit_version() < WitVersion::V0_2 {
            return Ok(Ok(()));
        }
        self.run(0, limits, async |store, p| {
            p.check_settings(store, route, settings).await
        })
        .await
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

    /// `on-request`, with what the host saw of the call. For a request whose body the host has
    /// read, `request-body-digest` answers `body_digest` during the call; the facts say whether
    /// the policy asked for it, which is how it opts the request into body-keyed caching.
    pub async fn on_request_with_body(
        &self,
        request_id: u64,
        limits: Limits,
        req: &Request,
        body_digest: Option<&str>,
    ) -> Result<(RequestDecision, CallFacts), PluginError> {
        let (decision, facts) = self
            .run_with(request_id, limits, body_digest, async |store, p| {
                p.on_request(store, req).await
            })
            .await?;
        convert::check_request_decision(&decision).map_err(|r| self.malformed(r))?;
        Ok((decision, facts))
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
                p.on_response(store, req, resp).await
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
                p.on_invalidate(store, req, resp).await
            })
            .await?;
        convert::check_invalidations(&list).map_err(|r| self.malformed(r))?;
        Ok(list)
    }

    /// Runs `call` on an instance within `limits`.
    async fn run<R>(
        &self,
        request_id: u64,
        limits: Limits,
        call: impl AsyncFnOnce(&mut Store<CallState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        Ok(self.run_with(request_id, limits, None, call).await?.0)
    }

    /// [`Plugin::run`], with the request body's digest for `request-body-digest`; also says
    /// what the host saw of the call.
    ///
    /// Instances are reused: a call takes an idle instance of this plugin version (or makes
    /// one), and gives it back when the call succeeded, until it has served [`REUSE_CALLS`]
    /// calls. An instance whose call failed in any way (trap, deadline, memory, cancelled) is
    /// dropped: its state is not trusted. The WIT lets the host do this (policies are stateless
    /// per request); it turns a call from a fresh instantiation into a plain function call.
    async fn run_with<R>(
        &self,
        request_id: u64,
        limits: Limits,
        body_digest: Option<&str>,
        call: impl AsyncFnOnce(&mut Store<CallState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<(R, CallFacts), PluginError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        // The epoch budget counts time the guest runs; this wall-clock bound also covers time
        // spent waiting for a worker thread, generously, as a backstop.
        let backstop = limits.deadline * 4 + Duration::from_millis(50);
        let work = async {
            let (mut store, instance, calls) = match idle {
                Some(Idle {
                    store,
                    instance,
                    calls,
                }) => (store, Some(instance), calls),
                None => (self.new_store(request_id, limits), None, 0),
            };
            store.data_mut().reset(request_id, limits, body_digest);
            store.set_epoch_deadline(1);
            let instance = match instance {
                Some(instance) => instance,
                None => match self.pre.instantiate_async(&mut store).await {
                    Ok(instance) => instance,
                    Err(e) => return (Err((true, e)), store, None),
                },
            };
            let result = call(&mut store, &instance).await.map_err(|e| (false, e));
            store.data_mut().end_call();
            (result, store, Some((instance, calls + 1)))
        };
        match tokio::time::timeout(backstop, work).await {
            Ok((Ok(result), store, Some((instance, calls)))) => {
                let facts = CallFacts {
                    body_digest_asked: store.data().body_digest_asked,
                    repeatable: store.data().repeatable(),
                };
                if calls < REUSE_CALLS {
                    let fit = IDLE_MEMORY / store.data().memory.size.max(1);
                    let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                    if idle.len() < fit.clamp(MIN_IDLE, MAX_IDLE) {
                        idle.push(Idle {
                            store,
                            instance,
                            calls,
                        });
                    }
                }
                Ok((result, facts))
            }
            Ok((Ok(_), _, None)) => unreachable!("a call that ran has an instance"),
            Ok((Err((instantiating, e)), store, _)) => {
                Err(self.classify(&store, limits, instantiating, e))
            }
            // Dropping the future cancels the guest; the store is dropped with it.
            Err(_) => Err(PluginError::DeadlineExceeded {
                plugin: self.name.to_string(),
                version: self.version.clone(),
                deadline: limits.deadline,
            }),
        }
    }

    fn new_store(&self, request_id: u64, limits: Limits) -> Store<CallState> {
        let mut store = Store::new(
            &self.engine,
            CallState::new(self.name.clone(), request_id, limits, self.log.clone()),
        );
        store.set_hostcall_fuel(sandbox::HOSTCALL_FUEL);
        store.limiter(|s| &mut s.memory);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if state.ticks_left == 0 {
                state.deadline_hit = true;
                return Err(wasmtime::Error::msg("deadline exceeded"));
            }
            state.ticks_left -= 1;
            state.ticks_seen += 1;
            // The first tick a call sees is most often one it merely straddles: yielding there
            // would queue the call behind every task ready on its worker (dozens under load),
            // holding its instance meanwhile. A guest that keeps running yields from the second
            // tick on, so it holds its thread for at most two ticks at a time; the budget is
            // counted the same either way.
            Ok(if state.ticks_seen == 1 {
                UpdateDeadline::Continue(1)
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        store
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
                wanted: state.memory.wanted,
            }
        } else if sandbox::copied_too_much(&e) {
            PluginError::Malformed {
                plugin,
                version,
                reason: format!(
                    "handed the host more than {} bytes in one answer or host call",
                    sandbox::HOSTCALL_FUEL
                ),
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
                reason: format!("{} ({e:#})", trap_hint(&e)),
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

/// What a trap means for the policy's author, and what to do about it. The wasmtime error
/// that follows it in the message names the trap and the guest's backtrace.
pub fn trap_hint(e: &wasmtime::Error) -> &'static str {
    use wasmtime::Trap;
    match e.downcast_ref::<Trap>() {
        Some(Trap::UnreachableCodeReached) => {
            "the policy panicked (a Rust panic, or a Python exception the policy did not handle, is an `unreachable` trap in WebAssembly; policies built with the larder SDKs log its message and place just before this): in Rust avoid `unwrap`, `expect` and indexing on request data, in Python catch what parsing request data raises, and pass (`pass_`) or do not store (`no_store`) with a reason instead; reproduce it with a native `cargo test` or `pytest`, or `larder plugin run` on the same request"
        }
        Some(Trap::StackOverflow) => {
            "the policy overflowed its stack (unbounded recursion?): reproduce it with `larder plugin run` on the same request"
        }
        Some(Trap::MemoryOutOfBounds) | Some(Trap::TableOutOfBounds) => {
            "the policy accessed memory out of bounds (unsafe code, or a broken build?): rebuild it with `cargo build --release --target wasm32-wasip2` and reproduce it with `larder plugin run`"
        }
        Some(Trap::IntegerDivisionByZero) | Some(Trap::IntegerOverflow) => {
            "the policy divided by zero or overflowed an integer conversion: check divisions on settings and header values"
        }
        _ => "the policy trapped: reproduce it with `larder plugin run` on the same request",
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::Trap;

    use super::trap_hint;

    #[test]
    fn each_trap_gets_a_hint_naming_its_likely_cause() {
        for (trap, cause) in [
            (Trap::UnreachableCodeReached, "panicked"),
            (Trap::StackOverflow, "unbounded recursion"),
            (Trap::MemoryOutOfBounds, "out of bounds"),
            (Trap::TableOutOfBounds, "out of bounds"),
            (Trap::IntegerDivisionByZero, "divided by zero"),
            (Trap::IntegerOverflow, "overflowed an integer"),
            (Trap::BadSignature, "the policy trapped"),
        ] {
            let hint = trap_hint(&wasmtime::Error::from(trap));
            assert!(hint.contains(cause), "{trap:?}: {hint}");
        }
        // Not a trap at all (a host error, say): the general hint, which says how to reproduce.
        let hint = trap_hint(&wasmtime::Error::msg("host call failed"));
        assert!(hint.contains("larder plugin run"), "{hint}");
    }
}
