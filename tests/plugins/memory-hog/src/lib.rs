//! Hostile test plugin: `on_request` allocates without bound. The host must trap it at the
//! per-instance memory limit and fail open (or closed with 502, if the route says so).

use larder_sdk::{Policy, Request, RequestDecision};

struct MemoryHog;

const MIB: usize = 1024 * 1024;
/// One write per WebAssembly page (64 KiB): every page the guest grows by is touched.
const WASM_PAGE: usize = 64 * 1024;

impl Policy for MemoryHog {
    fn on_request(_req: &Request) -> RequestDecision {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        // Chunks double from 1 MiB, so any memory limit is reached in a handful of
        // `memory.grow`s: the memory limit, not the per-call deadline, must be what stops
        // this plugin.
        let mut size = MIB;
        loop {
            // Writing to every page makes the growth real memory, not just reserved address
            // space; `black_box` keeps the writes from being optimised away.
            let mut chunk = vec![0_u8; size];
            for byte in chunk.iter_mut().step_by(WASM_PAGE) {
                *byte = 0xA5;
            }
            hoard.push(std::hint::black_box(chunk));
            size = size.saturating_mul(2);
        }
    }
}

larder_sdk::export_policy!(MemoryHog);
