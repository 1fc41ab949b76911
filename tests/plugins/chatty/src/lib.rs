//! Test plugin: every `on_request` writes a log line, then looks the request up under its path.
//! A call that logs does something its arguments do not determine, so the gateway must call the
//! policy for every request rather than reuse an earlier answer (the line would be lost).

use larder_sdk::{CacheKey, Policy, Request, RequestDecision};

struct Chatty;

impl Policy for Chatty {
    fn on_request(req: &Request) -> RequestDecision {
        larder_sdk::debug(&format!("chatty: on-request for {}", req.path));
        RequestDecision::lookup(CacheKey::new([req.path.as_str()]))
    }
}

larder_sdk::export_policy!(Chatty);
