//! What a policy instance may touch: the per-call `Store` and its limits.
//!
//! An instance and its `Store` serve many calls (`Plugin::run_with`); [`CallState::reset`] gives
//! each call its own budget, limits and inputs, and an instance whose call failed (whose state
//! may be half-updated) is dropped, never reused. The store carries:
//! - a WASI context with nothing in it: no preopened directories, no environment, no sockets, no
//!   stdin, output discarded, and both clocks frozen at the epoch. Guests built for
//!   `wasm32-wasip2` import these interfaces even when they never use them, so they must be
//!   linked; linking them empty grants nothing.
//! - a memory limiter that refuses growth past the configured limit and remembers it did, so the
//!   error says "memory limit" instead of a generic trap;
//! - an epoch budget: the engine's ticker advances the epoch every millisecond; each tick that
//!   finds the guest running costs one unit of budget and yields to the tokio executor, so a
//!   loop neither holds a worker thread nor outlives its deadline.

use std::sync::Arc;
use std::time::Duration;

use larder_bindings::types::LogLevel;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

/// The engine's epoch tick. Deadlines are counted in these.
pub const TICK: Duration = Duration::from_millis(1);

/// The limits of one call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Guest run time allowed, counted in epoch ticks that find the guest running.
    pub deadline: Duration,
    /// Linear memory, in bytes, per instance.
    pub memory: usize,
}

/// The store's data: one per call.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) memory: MemoryLimiter,
    pub(super) ticks_left: u64,
    pub(super) deadline_hit: bool,
    plugin: Arc<str>,
    request_id: u64,
    /// What `request-body-digest` answers.
    pub(super) body_digest: Option<String>,
    /// Whether the guest called `request-body-digest` and got a digest.
    pub(super) body_digest_asked: bool,
}

impl CallState {
    pub fn new(plugin: Arc<str>, request_id: u64, limits: Limits) -> Self {
        let wasi = WasiCtx::builder()
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryLimiter {
                max: limits.memory,
                hit: false,
            },
            ticks_left: (limits.deadline.as_micros() / TICK.as_micros()).max(1) as u64,
            deadline_hit: false,
            plugin,
            request_id,
            body_digest: None,
            body_digest_asked: false,
        }
    }

    /// Readies a store that served earlier calls for the next one: a fresh budget, limits and
    /// request identity, nothing left over from the previous call's request.
    pub fn reset(&mut self, request_id: u64, limits: Limits, body_digest: Option<&str>) {
        self.memory.max = limits.memory;
        self.memory.hit = false;
        self.ticks_left = (limits.deadline.as_micros() / TICK.as_micros()).max(1) as u64;
        self.deadline_hit = false;
        self.request_id = request_id;
        self.body_digest = body_digest.map(str::to_owned);
        self.body_digest_asked = false;
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl larder_bindings::Host for CallState {
    fn request_body_digest(&mut self) -> Option<String> {
        self.body_digest_asked |= self.body_digest.is_some();
        self.body_digest.clone()
    }

    fn log(&mut self, level: LogLevel, message: String) {
        let mut message = message;
        if message.len() > 1024 {
            let mut cut = 1024;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let (plugin, request_id) = (&*self.plugin, self.request_id);
        match level {
            LogLevel::Debug => tracing::debug!(plugin, request_id, "{message}"),
            LogLevel::Info => tracing::info!(plugin, request_id, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, request_id, "{message}"),
            LogLevel::Error => tracing::error!(plugin, request_id, "{message}"),
        }
    }
}

/// Refuses memory growth past `max`, and remembers that it did.
pub struct MemoryLimiter {
    max: usize,
    pub(super) hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.hit = true;
            // An error (rather than `Ok(false)`) traps at once: a guest's allocator would
            // otherwise turn the failed growth into an abort with a less useful message.
            return Err(wasmtime::Error::msg("memory limit exceeded"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// A clock that always reads the Unix epoch: policies get no clock unless the WIT grants one.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}
