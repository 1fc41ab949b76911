//! Test plugin: `on_request` works as long and holds as much memory as the request asks, then
//! passes. `x-spin: N` loops N million times (clocks are frozen in the sandbox, so work is
//! counted, not timed); `x-hold-mib: M` first grows and touches M MiB. Lets a test overlap
//! calls (a long call yields to the executor on each epoch tick) and give instances a size.

use larder_sdk::{Policy, Request, RequestDecision};

struct Slow;

const MIB: usize = 1024 * 1024;

fn number(req: &Request, name: &str) -> u64 {
    req.header(name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl Policy for Slow {
    fn on_request(req: &Request) -> RequestDecision {
        let held = vec![0xA5_u8; number(req, "x-hold-mib") as usize * MIB];
        let mut x = 0_u64;
        for i in 0..number(req, "x-spin") * 1_000_000 {
            // `black_box` keeps the loop from being computed at compile time.
            x = std::hint::black_box(x.wrapping_add(i));
        }
        std::hint::black_box((x, held));
        RequestDecision::pass("slow")
    }
}

larder_sdk::export_policy!(Slow);
