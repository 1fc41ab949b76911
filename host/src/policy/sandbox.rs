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
//!
//! # What a guest can make the host write or copy
//!
//! A guest is untrusted, and what it hands the host costs the host memory and, for log lines,
//! synchronous writes on the thread that serves the request. Both are bounded:
//!
//! - **Log lines.** A call writes at most [`LOG_LINES_PER_CALL`] lines, and each plugin (one
//!   [`LogBudget`] per loaded plugin version, shared by all its instances and calls) at most
//!   [`LOG_LINES_PER_SECOND`] a second after a burst of [`LOG_BURST`]. Lines past either bound
//!   are dropped and counted (`larder_plugin_log_dropped_total{plugin,version}` and
//!   `log_lines_dropped` in `/stats`), and the call ends with one line saying how many it lost
//!   (itself subject to the per-plugin rate, so a flood of calls cannot flood the log either).
//!   A line is cut to [`LOG_LINE_BYTES`]. The numbers: a policy that logs once or twice per
//!   request is unaffected at low rates; a deployment's log cannot grow by more than about
//!   100 lines (100 KiB) a second per plugin, whatever the request rate.
//! - **Copies out of the guest.** wasmtime lifts a guest's strings and lists (a log message, a
//!   policy's whole answer) into host `String`s and `Vec`s before any of our code sees them,
//!   so the size checks in [`super::convert`] run after the copy. What bounds the copy itself
//!   is wasmtime's *hostcall fuel* ([`wasmtime::Store::set_hostcall_fuel`]): every lift starts
//!   with [`HOSTCALL_FUEL`] units and spends one per byte the host allocates (list elements
//!   counted at their host size) *before* allocating it; a lift that runs out fails, the call
//!   is reported as a malformed answer, and its instance is dropped. Without it the bound
//!   would be wasmtime's default of 128 MiB per lift, and not the guest's memory: a
//!   `list<string>` is (pointer, length) pairs that may all point at the same bytes, so a
//!   few hundred KiB of guest memory can describe gigabytes of strings
//!   (`tests/plugins/flood` does exactly that).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use larder_bindings::types::LogLevel;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, Rng, WasiCtx, WasiCtxView, WasiView, thread_rng,
};

/// The engine's epoch tick. Deadlines are counted in these.
pub const TICK: Duration = Duration::from_millis(1);

/// Log lines one call may write; the rest are dropped and counted.
pub const LOG_LINES_PER_CALL: u32 = 16;
/// Log lines a plugin may write per second, over all its instances, once its burst is spent.
pub const LOG_LINES_PER_SECOND: u32 = 100;
/// Log lines a quiet plugin may write at once, over all its instances.
pub const LOG_BURST: u32 = 200;
/// The longest log line, in bytes; a longer message is cut (at a character boundary).
pub const LOG_LINE_BYTES: usize = 1024;
/// What the host may allocate for one lift out of a guest (one host call's arguments, or one
/// call's answer), in bytes. The largest answer the checks in [`super::convert`] accept is
/// about 1.3 MiB (256 invalidations of 32-part keys of 4 KiB); 4 MiB leaves room and is a
/// thirty-second of wasmtime's default.
pub const HOSTCALL_FUEL: usize = 4 << 20;

/// Whether `e` is a lift that ran out of [`HOSTCALL_FUEL`]: the guest handed the host more
/// than it copies. (wasmtime's error type for it is private; its message is stable.)
pub fn copied_too_much(e: &wasmtime::Error) -> bool {
    e.chain()
        .any(|cause| cause.to_string().contains("fuel allocated for hostcalls"))
}

/// The log budget of one loaded plugin: a token bucket shared by every instance and call, and
/// the count of lines dropped. See the module docs for the numbers.
#[derive(Debug)]
pub struct LogBudget {
    /// Why a std `Mutex`: it is held for a few arithmetic instructions and across no await,
    /// and contention is between calls of one plugin that are logging anyway.
    bucket: Mutex<Bucket>,
    dropped: AtomicU64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self {
            bucket: Mutex::new(Bucket {
                tokens: f64::from(LOG_BURST),
                refilled: Instant::now(),
            }),
            dropped: AtomicU64::new(0),
        }
    }
}

impl LogBudget {
    /// Takes one line's token at `now`; false when the bucket is empty.
    fn take(&self, now: Instant) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let earned = now.saturating_duration_since(b.refilled).as_secs_f64()
            * f64::from(LOG_LINES_PER_SECOND);
        b.tokens = (b.tokens + earned).min(f64::from(LOG_BURST));
        b.refilled = now.max(b.refilled);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Lines this plugin's calls wrote past the bounds, since it was loaded.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

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
    /// Epoch ticks this call has seen (see `Plugin::new_store`).
    pub(super) ticks_seen: u64,
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
    /// The plugin's log budget, shared with its other instances.
    log: Arc<LogBudget>,
    /// Lines this call wrote, and dropped.
    lines_written: u32,
    lines_dropped: u64,
}

impl CallState {
    pub fn new(plugin: Arc<str>, request_id: u64, limits: Limits, log: Arc<LogBudget>) -> Self {
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
                wanted: 0,
                size: 0,
            },
            ticks_left: (limits.deadline.as_micros() / TICK.as_micros()).max(1) as u64,
            ticks_seen: 0,
            deadline_hit: false,
            plugin,
            request_id,
            body_digest: None,
            body_digest_asked: false,
            host_called: false,
            drew_random,
            log,
            lines_written: 0,
            lines_dropped: 0,
        }
    }

    /// Readies a store that served earlier calls for the next one: a fresh budget, limits and
    /// request identity, nothing left over from the previous call's request.
    pub fn reset(&mut self, request_id: u64, limits: Limits, body_digest: Option<&str>) {
        self.end_call();
        self.memory.max = limits.memory;
        self.memory.hit = false;
        self.ticks_seen = 0;
        self.ticks_left = (limits.deadline.as_micros() / TICK.as_micros()).max(1) as u64;
        self.deadline_hit = false;
        self.request_id = request_id;
        self.body_digest = body_digest.map(str::to_owned);
        self.body_digest_asked = false;
        self.host_called = false;
        self.drew_random.store(false, Ordering::Relaxed);
    }

    /// Ends the call's logging: says, in one line, how many lines it dropped (when the
    /// plugin's rate allows one more line; the count is in the metric either way). Called when
    /// a call returns; [`CallState::reset`] and dropping the state call it too, for a call
    /// that was cut short.
    pub fn end_call(&mut self) {
        let dropped = std::mem::take(&mut self.lines_dropped);
        self.lines_written = 0;
        if dropped > 0 && self.log.take(Instant::now()) {
            let (plugin, request_id) = (&*self.plugin, self.request_id);
            tracing::warn!(
                plugin,
                request_id,
                dropped,
                "{dropped} log lines dropped (at most {LOG_LINES_PER_CALL} a call and {LOG_LINES_PER_SECOND} a second per plugin)"
            );
        }
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
        if self.lines_written >= LOG_LINES_PER_CALL || !self.log.take(Instant::now()) {
            self.lines_dropped += 1;
            self.log.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.lines_written += 1;
        let mut message = message;
        if message.len() > LOG_LINE_BYTES {
            let mut cut = LOG_LINE_BYTES;
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

impl Drop for CallState {
    fn drop(&mut self) {
        self.end_call();
    }
}

/// Refuses memory growth past `max`, and remembers that it did.
pub struct MemoryLimiter {
    max: usize,
    pub(super) hit: bool,
    /// The size the guest asked for when it was refused, for the error.
    pub(super) wanted: usize,
    /// Bytes of linear memory the instance holds (all its memories), for the idle pool.
    pub(super) size: usize,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.hit = true;
            self.wanted = desired;
            // An error (rather than `Ok(false)`) traps at once: a guest's allocator would
            // otherwise turn the failed growth into an abort with a less useful message.
            return Err(wasmtime::Error::msg("memory limit exceeded"));
        }
        self.size += desired.saturating_sub(current);
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
        let mut state = CallState::new("p".into(), 1, limits(), Arc::default());
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

    #[test]
    fn a_call_writes_at_most_its_share_of_lines_and_counts_the_rest() {
        use larder_bindings::Host;
        let budget = Arc::new(LogBudget::default());
        let mut state = CallState::new("p".into(), 1, limits(), budget.clone());
        for i in 0..100 {
            state.log(LogLevel::Error, format!("line {i}"));
        }
        assert_eq!(state.lines_written, LOG_LINES_PER_CALL);
        assert_eq!(budget.dropped(), 100 - u64::from(LOG_LINES_PER_CALL));
        state.end_call();
        assert_eq!(state.lines_written, 0, "the next call has its own share");
        state.log(LogLevel::Error, "again".into());
        assert_eq!(state.lines_written, 1);
        assert_eq!(budget.dropped(), 100 - u64::from(LOG_LINES_PER_CALL));
    }

    #[test]
    fn a_plugin_writes_at_most_its_burst_then_its_rate() {
        let budget = LogBudget::default();
        let start = Instant::now();
        let taken = (0..1000).filter(|_| budget.take(start)).count();
        assert_eq!(
            taken, LOG_BURST as usize,
            "a quiet plugin may write its burst at once"
        );
        assert!(!budget.take(start));
        let later = start + Duration::from_millis(100);
        let taken = (0..1000).filter(|_| budget.take(later)).count();
        assert_eq!(taken, (LOG_LINES_PER_SECOND / 10) as usize, "then its rate");
        let much_later = later + Duration::from_secs(3600);
        let taken = (0..1000).filter(|_| budget.take(much_later)).count();
        assert_eq!(
            taken, LOG_BURST as usize,
            "the bucket holds no more than a burst"
        );
    }

    #[test]
    fn the_per_plugin_budget_is_shared_by_its_instances() {
        use larder_bindings::Host;
        let budget = Arc::new(LogBudget::default());
        let mut instances: Vec<CallState> = (0..LOG_BURST / LOG_LINES_PER_CALL + 5)
            .map(|i| CallState::new("p".into(), u64::from(i), limits(), budget.clone()))
            .collect();
        let mut written = 0;
        for state in &mut instances {
            for _ in 0..LOG_LINES_PER_CALL {
                state.log(LogLevel::Error, "x".into());
            }
            written += state.lines_written;
        }
        // A few tokens may have been earned while the loop ran.
        assert!(
            (LOG_BURST..LOG_BURST + 5).contains(&written),
            "{written} lines written"
        );
        assert!(budget.dropped() > 0);
    }
}
