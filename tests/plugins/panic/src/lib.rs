//! Hostile test plugin: `on_request` panics. In a component a panic is a trap (`unreachable`);
//! the host must log it with the plugin's name and fail open (or closed with 502, if the route
//! says so).

use larder_sdk::{Policy, Request, RequestDecision};

struct Panic;

impl Policy for Panic {
    fn on_request(req: &Request) -> RequestDecision {
        panic!(
            "panic plugin: deliberate panic in on_request for {}",
            req.path
        );
    }
}

larder_sdk::export_policy!(Panic);
