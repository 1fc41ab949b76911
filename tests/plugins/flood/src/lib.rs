//! Hostile test plugin: every call writes [`LINES`] log lines, then answers with something far
//! larger than the host accepts. The request's query picks the answer:
//!
//! - `?key`: a cache key of one 1 MiB part;
//! - `?tags`: a normal key, then a store directive with 10,000 tags;
//! - `?vary`: a key that varies on a 60 KiB header name;
//! - `?reason`: a pass whose reason is 1 MiB;
//! - `?copy`: a pass whose reason is 8 MiB, more than the host copies out of a guest at all;
//! - anything else: a normal key, then a store directive whose 100,000 tags all alias one
//!   64 KiB string (a few hundred KiB of guest memory that would lift into 6 GiB of host
//!   strings).
//!
//! The host must drop the log lines past its per-call and per-plugin bounds, refuse every one
//! of these answers, and still serve the request (fail open).

use larder_sdk::{CacheKey, Policy, Request, RequestDecision, Response, ResponseDecision};

/// Log lines written by each call.
const LINES: usize = 2_000;

struct Flood;

fn flood(call: &str, req: &Request) {
    for i in 0..LINES {
        larder_sdk::error(&format!("flood: {call} line {i} for {}", req.path));
    }
}

fn big(bytes: usize) -> String {
    "x".repeat(bytes)
}

impl Policy for Flood {
    fn on_request(req: &Request) -> RequestDecision {
        flood("on-request", req);
        match req.query.as_deref() {
            Some("key") => RequestDecision::lookup(CacheKey::new([big(1 << 20)])),
            Some("vary") => {
                RequestDecision::lookup(CacheKey::new([req.path.as_str()]).vary([big(60 << 10)]))
            }
            Some("reason") => RequestDecision::pass(big(1 << 20)),
            Some("copy") => RequestDecision::pass(big(8 << 20)),
            _ => RequestDecision::lookup(CacheKey::new([req.path.as_str()])),
        }
    }

    fn on_response(req: &Request, _resp: &Response) -> ResponseDecision {
        flood("on-response", req);
        let directive = larder_sdk::StoreDirective::ttl(60);
        if req.query.as_deref() == Some("tags") {
            return ResponseDecision::store(directive.tags((0..10_000).map(|i| format!("t{i}"))));
        }
        let mut directive = directive;
        directive.tags = aliased(big(64 << 10), 100_000);
        ResponseDecision::store(directive)
    }
}

/// `n` strings that all share `one`'s buffer. A `list<string>` is lowered as (pointer, length)
/// pairs, and the canonical ABI lets every pair point at the same bytes: a few hundred KiB of
/// guest memory describe `n` times `one.len()` bytes for the host to copy.
#[allow(unsafe_code)]
fn aliased(one: String, n: usize) -> Vec<String> {
    let mut one = std::mem::ManuallyDrop::new(one);
    let (ptr, len, cap) = (one.as_mut_ptr(), one.len(), one.capacity());
    // SAFETY: none, on purpose: these strings alias one buffer, and freeing them after the
    // call would free it `n` times. The host refuses the answer before the guest's
    // post-return runs, and drops the instance; this plugin exists to show that.
    (0..n)
        .map(|_| unsafe { String::from_raw_parts(ptr, len, cap) })
        .collect()
}

larder_sdk::export_policy!(Flood);
