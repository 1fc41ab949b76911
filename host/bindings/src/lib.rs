//! Host-side bindings for the `larder:policy` WIT worlds, generated in exactly one place.
//!
//! `bindgen!` expands to a lot of generic code that compiles slowly; keeping it in its own small
//! crate means editing the gateway never recompiles it. Everything else in the host uses the
//! types re-exported here, never its own copy of the WIT.
//!
//! One module per published version of the interface, so that plugins built against an older
//! one keep loading:
//! - [`v0_2`]: `larder:policy@0.2.0` (`wit/policy.wit`), the current one;
//! - [`v0_1`]: `larder:policy@0.1.0` (`wit/deps/policy@0.1.0/`). Its types are the same as
//!   0.2.0's, so it is generated with 0.2.0's Rust types (`with`): a request converts once and
//!   is passed to either version. Its imports and exports are its own, as their instance names
//!   (`larder:policy/host@0.1.0`, `larder:policy/policy@0.1.0`) differ.
//!
//! Exports are generated `async` because the gateway calls policies with `call_async`: a guest
//! that runs long yields to the tokio executor on every epoch tick instead of holding a worker
//! thread (see `larder::policy::sandbox`). The imports are plain synchronous functions: they do
//! no I/O beyond handing a line to `tracing`.

/// `larder:policy@0.2.0`, the current interface.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../../wit/policy.wit",
        world: "larder:policy/policy-plugin@0.2.0",
        exports: { default: async },
    });

    pub use larder::policy::host::{Host, add_to_linker as add_host_to_linker};
}

/// `larder:policy@0.1.0`, with the types of 0.2.0.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/deps/policy@0.1.0",
        world: "larder:policy/policy-plugin@0.1.0",
        exports: { default: async },
        with: { "larder:policy/types@0.1.0": crate::v0_2::larder::policy::types },
    });

    pub use larder::policy::host::{Host, add_to_linker as add_host_to_linker};
}

/// The host's functions as the current version declares them; 0.1.0's trait delegates to it.
pub use v0_2::Host;
/// The types of every version (0.1.0's are generated as these).
pub use v0_2::larder::policy::types;
