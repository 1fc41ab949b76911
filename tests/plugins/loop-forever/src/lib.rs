//! Hostile test plugin: `on_request` never returns. The host must stop it at the per-call
//! deadline (epoch interruption) and fail open (or closed with 502, if the route says so).

use larder_sdk::{Policy, Request, RequestDecision};

struct LoopForever;

impl Policy for LoopForever {
    fn on_request(_req: &Request) -> RequestDecision {
        // `black_box` keeps the optimiser from proving the loop side-effect free and removing
        // it (an infinite loop without side effects is otherwise fair game).
        loop {
            std::hint::black_box(());
        }
    }
}

larder_sdk::export_policy!(LoopForever);
