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
//! - a record of whether the call did anything its arguments do not determine: a host call (a
//!   log line, the request body's digest) or a draw of random numbers. A call that did none of
//!   these answers the same arguments the same way (clocks are frozen, the `insecure-seed` is
//!   fixed for the process, and a policy may not rely on state between calls), which is what
//!   lets the gateway reuse an `on-request` answer for an identical request
//!   (`proxy::decisions`).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use larder_bindings::types::LogLevel;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, Rng, WasiCtx, WasiCtxView, WasiView, thread_rng,
};

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
    /// Whether the guest called a host function (`log`, `request-body-digest`) in this call.
    host_called: bool,
    /// Whether the guest drew random numbers in this call (shared with its random sources).
    drew_random: Arc<AtomicBool>,
}

impl CallState {
    pub fn new(plugin: Arc<str>, request_id: u64, limits: Limits) -> Self {
        let drew_random = Arc::new(AtomicBool::new(false));
        let wasi = WasiCtx::builder()
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(Watched::new(&drew_random))
            .insecure_random(Watched::new(&drew_random))
            .insecure_random_seed(process_seed())
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
            host_called: false,
            drew_random,
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
        self.host_called = false;
        self.drew_random.store(false, Ordering::Relaxed);
    }

    /// The call since the last [`CallState::reset`] called no host function and drew no random
    /// numbers: the same arguments would get the same answer.
    pub fn repeatable(&self) -> bool {
        !self.host_called && !self.drew_random.load(Ordering::Relaxed)
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
        self.host_called = true;
        self.body_digest_asked |= self.body_digest.is_some();
        self.body_digest.clone()
    }

    fn log(&mut self, level: LogLevel, message: String) {
        self.host_called = true;
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

/// A random source (the operating system's, through `wasmtime_wasi`'s default generator) that
/// records that the guest drew from it.
struct Watched {
    inner: Box<dyn Rng + Send>,
    drawn: Arc<AtomicBool>,
}

impl Watched {
    fn new(drawn: &Arc<AtomicBool>) -> Self {
        Self {
            inner: thread_rng(),
            drawn: drawn.clone(),
        }
    }
}

impl rand_core::TryRng for Watched {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.drawn.store(true, Ordering::Relaxed);
        Ok(self.inner.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.drawn.store(true, Ordering::Relaxed);
        Ok(self.inner.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.drawn.store(true, Ordering::Relaxed);
        self.inner.fill_bytes(dst);
        Ok(())
    }
}

/// What `wasi:random/insecure-seed` answers: random, once per process. (Rust's `HashMap`
/// seeds itself from it; a seed per store would make a policy's answer depend on which
/// instance served the call.)
fn process_seed() -> u128 {
    static SEED: OnceLock<u128> = OnceLock::new();
    *SEED.get_or_init(rand::random)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            deadline: Duration::from_millis(5),
            memory: 1 << 20,
        }
    }

    #[test]
    fn a_call_is_repeatable_until_it_draws_random_numbers_or_calls_the_host() {
        use larder_bindings::Host;
        let mut state = CallState::new("p".into(), 1, limits());
        assert!(state.repeatable());

        let mut source = Watched::new(&state.drew_random);
        let mut bytes = [0u8; 16];
        source.fill_bytes(&mut bytes);
        assert!(!state.repeatable(), "a draw is seen");
        state.reset(2, limits(), None);
        assert!(state.repeatable(), "each call starts afresh");
        source.next_u64();
        assert!(!state.repeatable());

        state.reset(3, limits(), None);
        state.log(LogLevel::Debug, "hello".into());
        assert!(!state.repeatable(), "a log line is seen");
        state.reset(4, limits(), Some("digest"));
        assert_eq!(state.request_body_digest().as_deref(), Some("digest"));
        assert!(!state.repeatable(), "asking for the body's digest is seen");
    }
}
