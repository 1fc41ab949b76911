//! Property tests of every parser that reads bytes the gateway does not control: stored
//! entries and tag tokens (from Redis), invalidation announcements (from pub/sub), the
//! client's `Vary`-selecting and `Accept-*` fields, `Range`, conditional headers and request
//! paths, the config file, the admin JSON bodies, and `Cache-Control` (parsed by the SDK the
//! policies are built with).
//!
//! Each parser gets: no panic on arbitrary input; a round trip where there is an encoder
//! (encode then decode is the identity); idempotence where there is a normal form (normalising
//! twice is normalising once); and the semantic check that makes the output safe to use (a
//! satisfiable range lies within the body, a normal path has no dot segments).
//!
//! Every target runs a fixed number of cases ([`CASES`] unless its file says otherwise), so
//! the whole set takes seconds in release. A failure prints the shrunk input; a finding is
//! fixed and pinned by a plain regression test beside the property that found it.

mod admin_json;
mod announcement;
mod cache_control;
mod conditional;
mod config;
mod entry;
mod normalize;
mod range;
mod vary;

/// Cases per property, for the parsers that are cheap to call.
pub const CASES: u32 = 2_000;

/// Bytes as a header value, when they make one (no CR, LF or NUL).
pub fn header_value(bytes: &[u8]) -> Option<http::HeaderValue> {
    http::HeaderValue::from_bytes(bytes).ok()
}
