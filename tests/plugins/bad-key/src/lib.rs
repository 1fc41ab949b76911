//! Hostile test plugin: returns results the WIT contract forbids. `on_request` looks up under
//! a key with no parts, and `on_response` stores with a TTL of zero. The host must reject both
//! as malformed and fail open (or closed with 502, if the route says so).

use larder_sdk::{
    CacheKey, Policy, Request, RequestDecision, Response, ResponseDecision, StoreDirective,
};

struct BadKey;

impl Policy for BadKey {
    fn on_request(_req: &Request) -> RequestDecision {
        RequestDecision::lookup(CacheKey::new(std::iter::empty::<String>()))
    }

    fn on_response(_req: &Request, _resp: &Response) -> ResponseDecision {
        ResponseDecision::store(StoreDirective::ttl(0))
    }
}

larder_sdk::export_policy!(BadKey);
