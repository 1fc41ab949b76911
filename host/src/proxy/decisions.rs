//! Reusing a policy's `on-request` answer for an identical request.
//!
//! Why: on a cache hit, the plugin call was the largest part of the gateway's own work (the
//! call, lowering the request into the guest, and deriving the storage key from its answer:
//! about a sixth of the CPU a memory-tier hit cost, by `perf record` under `wrk`). The answer
//! depends on nothing but what the policy is shown, when the call touched nothing else: the
//! sandbox freezes the clocks and fixes the hash seed, a policy may not rely on state between
//! calls (the WIT says so), and the host notices a call that logged, asked for the request
//! body's digest or drew random numbers ([`crate::policy::plugin::CallFacts`]).
//!
//! So a GET or HEAD whose method, authority, path, query and headers (every name and value, in order) are
//! byte for byte those of an earlier request on the same route of the same snapshot (the same
//! config and plugin versions: the route's name, pattern, settings and plugin are fixed by
//! it) gets that request's decision, and the storage key derived from it, without a call.
//! Header fields the policy is not shown (`plugins.hidden_headers`: by default the tracing
//! fields, such as `x-request-id` and `traceparent`, that a client sends new with every
//! request) are left out: they cannot change the answer. Unless the answer varies on one: the
//! storage key holds the values of the fields it varies on, so such an answer is not reused.
//! Not reused: the answer of a call that was not repeatable, of a failed call, of any other
//! method. A reload builds a new snapshot, whose decisions start empty.
//!
//! Each thread keeps its own table: a proxy worker thread serves its connections whole, so a
//! reuse takes no lock and writes no cache line another core reads. Entries are compared by
//! their whole key, not by a hash, so two requests that differ anywhere are never confused.
//! The budget (`plugins.decision_cache_bytes`) is per thread; the table admits and evicts like
//! the memory tier (`quick_cache`, S3-FIFO-style), so one-off requests do not push out the
//! repeated ones.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::Weighter;
use quick_cache::unsync::Cache;

use crate::routes::Route;
use crate::store::key::ObjectKey;

/// A policy's decision on a request, as the request path acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// Forward without storing; the policy's reason.
    Pass(Arc<str>),
    /// Look up under this key (the policy's key parts and vary headers, hashed).
    Lookup(ObjectKey),
}

/// A request's identity for reuse: what the policy would be shown, encoded.
pub struct RequestKey(Box<[u8]>);

/// The outcome of asking for a reusable decision.
pub enum Reuse {
    /// The decision of an identical earlier request.
    Found(Decided),
    /// None yet: call the policy, and [`Decisions::remember`] its answer under this key if the
    /// call was repeatable.
    Missing(RequestKey),
    /// This request's decision is not reused: reuse is off, the method is not GET or HEAD,
    /// or the request is too large to be worth remembering.
    Never,
}

/// One snapshot's reusable decisions (held on each thread, see the module docs).
pub struct Decisions {
    /// Tells this snapshot's tables from an earlier snapshot's on the same thread.
    generation: u64,
    /// Bytes per thread; 0 is off.
    budget: u64,
}

/// The largest request key remembered: a request with kilobytes of cookies is not worth a
/// slot that a dozen ordinary requests could use.
const MAX_KEY_BYTES: usize = 8 * 1024;
/// What an entry costs beyond its key: the decision, the table's bookkeeping.
const ENTRY_OVERHEAD: u64 = 160;

impl Decisions {
    pub fn new(budget_bytes: usize) -> Self {
        static GENERATIONS: AtomicU64 = AtomicU64::new(1);
        Decisions {
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
            budget: budget_bytes as u64,
        }
    }

    /// The decision remembered for `parts` on `route`, if any.
    pub fn find(&self, route: &Route, parts: &http::request::Parts) -> Reuse {
        let reusable = parts.method == http::Method::GET || parts.method == http::Method::HEAD;
        if self.budget == 0 || !reusable {
            return Reuse::Never;
        }
        TABLE.with_borrow_mut(|Local { scratch, table }| {
            encode(scratch, route, parts);
            if scratch.len() > MAX_KEY_BYTES {
                return Reuse::Never;
            }
            match self.table(table).get(scratch.as_slice()) {
                Some(decided) => Reuse::Found(decided.clone()),
                None => Reuse::Missing(RequestKey(scratch.as_slice().into())),
            }
        })
    }

    /// Remembers `decided` for the request `key` was made from. (On a multi-threaded runtime
    /// the request may have moved to another thread since [`Decisions::find`]: any thread's
    /// table of this snapshot is a right place for it.)
    pub fn remember(&self, key: RequestKey, decided: Decided) {
        TABLE.with_borrow_mut(|local| self.table(&mut local.table).insert(key.0, decided));
    }

    /// This thread's table for this snapshot: an earlier snapshot's is dropped.
    fn table<'t>(&self, slot: &'t mut Option<(u64, Table)>) -> &'t mut Table {
        if !matches!(slot, Some((generation, _)) if *generation == self.generation) {
            // The table sizes itself for this many entries up front: a generous budget must
            // not allocate a huge empty table on every thread.
            let items = (self.budget / 512).clamp(16, 65_536) as usize;
            *slot = Some((
                self.generation,
                Cache::with_weighter(items, self.budget, Weight),
            ));
        }
        &mut slot.as_mut().expect("the table was just made").1
    }
}

type Table = Cache<Box<[u8]>, Decided, Weight>;

/// A thread's table, for one snapshot at a time, and where a request's key is encoded (kept, so
/// that finding a decision allocates nothing).
struct Local {
    scratch: Vec<u8>,
    table: Option<(u64, Table)>,
}

thread_local! {
    static TABLE: RefCell<Local> = const {
        RefCell::new(Local { scratch: Vec::new(), table: None })
    };
}

#[derive(Clone)]
struct Weight;

impl Weighter<Box<[u8]>, Decided> for Weight {
    fn weight(&self, key: &Box<[u8]>, decided: &Decided) -> u64 {
        let value = match decided {
            Decided::Pass(reason) => reason.len(),
            Decided::Lookup(key) => key.route.len() + key.implicit_tags.len() * 32,
        };
        key.len() as u64 + value as u64 + ENTRY_OVERHEAD
    }
}

/// Encodes what the policy is shown of a request, besides what its route fixes: the route's
/// number, the method, path, query and every header it shows, each length-prefixed so that no
/// two requests shown differently encode alike.
fn encode(out: &mut Vec<u8>, route: &Route, parts: &http::request::Parts) {
    fn field(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out.clear();
    out.extend_from_slice(&(route.index as u32).to_le_bytes());
    field(out, parts.method.as_str().as_bytes());
    // The authority of an HTTP/2 request is in its URI, not a header; it is part of the key.
    field(
        out,
        parts
            .uri
            .authority()
            .map_or(&b""[..], |a| a.as_str().as_bytes()),
    );
    field(out, parts.uri.path().as_bytes());
    match parts.uri.query() {
        Some(q) => {
            out.push(1);
            field(out, q.as_bytes());
        }
        None => out.push(0),
    }
    // Each header is marked, so the encoding needs no count up front.
    for (name, value) in parts.headers.iter().filter(|(name, _)| route.shows(name)) {
        out.push(1);
        field(out, name.as_str().as_bytes());
        field(out, value.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            b = b.header(*name, *value);
        }
        b.body(()).unwrap().into_parts().0
    }

    /// Routes 0 and 1 of a configuration with the default hidden header fields.
    fn route(index: usize) -> Arc<Route> {
        static TABLE: std::sync::LazyLock<crate::routes::RouteTable> = std::sync::LazyLock::new(
            || {
                let text = "[[route]]\nname = \"a\"\npath = \"/a\"\nplugin = \"p\"\n\n[[route]]\nname = \"b\"\npath = \"/b\"\nplugin = \"p\"\n";
                let c = crate::config::Config::parse(
                    std::path::Path::new("t.toml"),
                    text,
                    &crate::config::EnvOverrides::default(),
                )
                .unwrap();
                crate::routes::RouteTable::new(&c.routes, &c.plugins.hidden_headers).unwrap()
            },
        );
        TABLE.routes()[index].clone()
    }

    fn lookup(tag: &str) -> Decided {
        Decided::Lookup(ObjectKey::derive("r", &[tag], &[]))
    }

    /// Asks, and remembers `answer` when nothing was found; says what was found.
    fn ask(
        d: &Decisions,
        index: usize,
        p: &http::request::Parts,
        answer: Decided,
    ) -> Option<Decided> {
        match d.find(&route(index), p) {
            Reuse::Found(found) => Some(found),
            Reuse::Missing(key) => {
                d.remember(key, answer);
                None
            }
            Reuse::Never => panic!("a GET is reusable"),
        }
    }

    #[test]
    fn only_a_byte_for_byte_identical_request_on_the_same_route_reuses_a_decision() {
        let d = Decisions::new(1 << 20);
        let base = parts("GET", "/a?x=1", &[("accept", "json"), ("cookie", "u=1")]);
        assert_eq!(ask(&d, 0, &base, lookup("first")), None);
        assert_eq!(ask(&d, 0, &base, lookup("other")), Some(lookup("first")));

        let differing = [
            parts("HEAD", "/a?x=1", &[("accept", "json"), ("cookie", "u=1")]),
            parts("GET", "/b?x=1", &[("accept", "json"), ("cookie", "u=1")]),
            parts("GET", "/a?x=2", &[("accept", "json"), ("cookie", "u=1")]),
            parts("GET", "/a", &[("accept", "json"), ("cookie", "u=1")]),
            parts("GET", "/a?", &[("accept", "json"), ("cookie", "u=1")]),
            parts("GET", "/a?x=1", &[("accept", "json"), ("cookie", "u=2")]),
            parts("GET", "/a?x=1", &[("accept", "json")]),
            parts("GET", "/a?x=1", &[("cookie", "u=1"), ("accept", "json")]),
            // Lengths are encoded, so moving bytes between fields makes another request.
            parts("GET", "/a?x=1", &[("accept", "jso"), ("cookie", "nu=1")]),
        ];
        for (i, p) in differing.iter().enumerate() {
            let own = lookup(&i.to_string());
            assert_eq!(ask(&d, 0, p, own.clone()), None, "{p:?}");
            assert_eq!(ask(&d, 0, p, lookup("x")), Some(own), "{p:?}");
        }
        // Another route of the snapshot: its own decision.
        assert_eq!(ask(&d, 1, &base, lookup("route 1")), None);
        assert_eq!(ask(&d, 0, &base, lookup("x")), Some(lookup("first")));
    }

    #[test]
    fn header_fields_the_policy_is_not_shown_do_not_make_another_request() {
        let d = Decisions::new(1 << 20);
        let traced = |id: &str| {
            parts(
                "GET",
                "/a",
                &[
                    ("accept", "json"),
                    ("x-request-id", id),
                    ("traceparent", id),
                    ("X-B3-TraceId", id),
                ],
            )
        };
        assert_eq!(ask(&d, 0, &traced("1"), lookup("first")), None);
        assert_eq!(ask(&d, 0, &traced("2"), lookup("x")), Some(lookup("first")));
        assert_eq!(
            ask(
                &d,
                0,
                &parts("GET", "/a", &[("accept", "json")]),
                lookup("x")
            ),
            Some(lookup("first")),
            "no tracing fields at all: the same request to the policy"
        );
        // A field it is shown still makes another request.
        let other = parts("GET", "/a", &[("accept", "json"), ("x-request-ids", "1")]);
        assert_eq!(ask(&d, 0, &other, lookup("other")), None);
    }

    #[test]
    fn a_new_snapshot_starts_empty_and_a_disabled_table_or_an_unsafe_method_never_reuses() {
        let p = parts("GET", "/a", &[]);
        let old = Decisions::new(1 << 20);
        assert_eq!(ask(&old, 0, &p, Decided::Pass("old".into())), None);
        let new = Decisions::new(1 << 20);
        assert_eq!(ask(&new, 0, &p, Decided::Pass("new".into())), None);
        assert_eq!(
            ask(&new, 0, &p, lookup("x")),
            Some(Decided::Pass("new".into()))
        );

        let off = Decisions::new(0);
        assert!(matches!(off.find(&route(0), &p), Reuse::Never));
        for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
            assert!(matches!(
                new.find(&route(0), &parts(method, "/a", &[])),
                Reuse::Never
            ));
        }
        let huge = "x".repeat(MAX_KEY_BYTES);
        assert!(matches!(
            new.find(&route(0), &parts("GET", "/a", &[("cookie", &huge)])),
            Reuse::Never
        ));
    }

    #[test]
    fn the_table_keeps_to_its_budget() {
        let d = Decisions::new(64 * 1024);
        for i in 0..5_000 {
            let p = parts("GET", &format!("/item/{i}"), &[]);
            ask(&d, 0, &p, lookup(&i.to_string()));
        }
        let weight = TABLE.with_borrow_mut(|local| d.table(&mut local.table).weight());
        assert!(weight <= 64 * 1024, "{weight}");
    }
}
