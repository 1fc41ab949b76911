//! Host-side bindings for the `larder:policy` WIT world, generated in exactly one place.
//!
//! `bindgen!` expands to a lot of generic code that compiles slowly; keeping it in its own small
//! crate means editing the gateway never recompiles it. Everything else in the host uses the
//! types re-exported here, never its own copy of the WIT.
//!
//! Exports are generated `async` because the gateway calls policies with `call_async`: a guest
//! that runs long yields to the tokio executor on every epoch tick instead of holding a worker
//! thread (see `larder::policy::sandbox`). The one import, `host.log`, is a plain synchronous
//! function: it does no I/O beyond handing a line to `tracing`.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "policy-plugin",
    exports: { default: async },
});

pub use larder::policy::host::{Host, add_to_linker as add_host_to_linker};
pub use larder::policy::types;
