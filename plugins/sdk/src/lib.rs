//! The guest SDK for Larder cache policies.
//!
//! A Larder policy is a WebAssembly component (target `wasm32-wasip2`) that the gateway calls
//! at three points of a request's life (see `wit/policy.wit`, package `larder:policy@0.2.0`),
//! after it has checked each route's settings with it once, at load
//! ([`Policy::check_settings`], see [`settings`]):
//!
//! 1. [`Policy::on_request`], before the cache is consulted: [`RequestDecision::pass`] the
//!    request through, or [`RequestDecision::lookup`] it under a [`CacheKey`] the policy derives.
//! 2. [`Policy::on_response`], after the upstream answered a lookup that missed:
//!    [`ResponseDecision::no_store`], or [`ResponseDecision::store`] with a [`StoreDirective`]
//!    (TTL, stale windows, tags). Defaults to [`follow_origin`]: the origin's `Cache-Control`.
//! 3. [`Policy::on_invalidate`], after an unsafe request (POST, PUT, PATCH, DELETE) succeeded:
//!    which entries it made wrong, as a list of [`Invalidation`]s. Defaults to none.
//!
//! A plugin implements [`Policy`] on a unit struct and registers it with [`export_policy!`]:
//!
//! ```no_run
//! use larder_sdk::{CacheKey, Policy, Request, RequestDecision};
//!
//! struct ByPath;
//!
//! impl Policy for ByPath {
//!     fn on_request(req: &Request) -> RequestDecision {
//!         if !req.is_safe() {
//!             return RequestDecision::pass("method");
//!         }
//!         RequestDecision::lookup(CacheKey::new([req.path.as_str(), req.query_or_empty()]))
//!     }
//! }
//!
//! larder_sdk::export_policy!(ByPath);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (crate type `cdylib`) and drop
//! the `.wasm` into the gateway's plugin directory; see `plugins/README.md`.
//!
//! # Statelessness
//!
//! The host reuses instances between requests and replaces them at will, so the trait's
//! functions are associated functions without `self`: everything a policy may know arrives in
//! its arguments, including the route's settings ([`Request::setting`]). A policy has no clock
//! (it is frozen at the Unix epoch), no files, no network and no environment.
//!
//! # Errors
//!
//! A panic, a runaway loop or an invalid result (an empty key, a zero TTL) never fails the
//! request: the host logs it, counts it and proxies the request uncached (unless the route is
//! configured to fail closed). A policy should still prefer `pass` with a reason over a panic.
//!
//! # Canonical parameters
//!
//! Put a path parameter into keys and tags in its canonical form, not as the client spelled
//! it: a backend that reads `{id}` as a number serves `/items/01` as item 1, and a key or tag
//! built from the raw text would give that item two cache identities (a purge of `item:1`
//! would miss `/items/01`). [`Request::param_as`] parses a parameter into a [`FromParam`]
//! type (the integers, [`Digits`], or your own), [`Request::param_canonical`] gives its
//! canonical text, and a value that does not parse converts into
//! `RequestDecision::pass("bad-param")`; see [`params`].
//!
//! # Layout
//!
//! - `types`: helper methods and constructors on the WIT types re-exported at the crate root.
//! - [`settings`]: a route's settings, typed and checked once at load ([`Settings`],
//!   [`SettingError`]).
//! - [`params`]: typed path parameters ([`FromParam`], [`BadParam`]) and their canonical text.
//! - [`cache_control`]: parsing of `Cache-Control`, `Age` and HTTP dates.
//! - [`freshness`]: the shared-cache rules of RFC 9111 behind [`follow_origin`].

#![warn(missing_docs)]

mod types;

pub mod cache_control;
pub mod freshness;
pub mod params;
pub mod settings;

/// The bindings generated from `wit/` by `wit-bindgen`. Use the re-exports at the crate root
/// instead; this module is public only because [`export_policy!`] expands to paths inside it.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        // The current version's file alone: `wit/deps/` holds the older versions, which a
        // plugin built with this SDK does not target.
        path: "../../wit/policy.wit",
        world: "policy-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_policy_plugin",
        default_bindings_module: "larder_sdk::bindings",
        runtime_path: "larder_sdk::__private::wit_bindgen::rt",
        additional_derives: [PartialEq, Eq],
    });
}

// Lets the generated code name this crate as `larder_sdk` from inside it as well as from the
// plugin crates that expand `export_policy!`.
extern crate self as larder_sdk;

pub use bindings::larder::policy::types::{
    CacheKey, Header, Invalidation, InvalidationTarget, KeyRef, LogLevel, Param, Request,
    RequestDecision, Response, ResponseDecision, StoreDirective,
};
pub use freshness::follow_origin;
pub use params::{BadParam, Digits, FromParam, ParamError};
pub use settings::{SettingError, Settings};

/// A cache policy. Implement it on a unit struct and register the struct with
/// [`export_policy!`].
///
/// The functions take no `self`: the host reuses instances between requests and replaces them
/// at will, so a policy must not keep state between calls. Route settings ([`Request::setting`]) are the way
/// to configure one plugin differently per route; [`Policy::check_settings`] validates them
/// once, at load.
pub trait Policy {
    /// Called when the gateway loads or reloads its plugins, once for every route that uses
    /// this policy, before the route serves a request. `Err` refuses the route's settings with
    /// a reason: the gateway then refuses the whole config, naming the route and this plugin
    /// (at start-up it does not start; a reload keeps what was serving).
    ///
    /// The default accepts any settings. Validate them here rather than warning per request:
    /// a request's [`Request::settings`] are the ones checked here, so per-request code may
    /// read them knowing they parse. See [`settings`] for the usual shape.
    ///
    /// ```
    /// use larder_sdk::{CacheKey, Policy, Request, RequestDecision, Settings};
    ///
    /// struct Items;
    ///
    /// impl Policy for Items {
    ///     fn check_settings(settings: &Settings) -> Result<(), String> {
    ///         settings.only(&["ttl"])?;
    ///         settings.parse::<u32>("ttl")?;
    ///         Ok(())
    ///     }
    ///
    ///     fn on_request(req: &Request) -> RequestDecision {
    ///         RequestDecision::lookup(CacheKey::new([req.path.as_str()]))
    ///     }
    /// }
    ///
    /// let req = Request::new("GET", "/").with_setting("ttl", "soon");
    /// assert_eq!(
    ///     Items::check_settings(&req.settings()),
    ///     Err("setting `ttl` = \"soon\" is not a valid u32".to_owned())
    /// );
    /// ```
    fn check_settings(settings: &Settings) -> Result<(), String> {
        let _ = settings;
        Ok(())
    }

    /// Called for every request of a route served by this plugin, before the cache is
    /// consulted. Return [`RequestDecision::pass`] with a short reason, or
    /// [`RequestDecision::lookup`] with the key that identifies the object.
    ///
    /// For a GET or HEAD identical to an earlier one (method, path, query, every header) the
    /// host may reuse the earlier answer instead of calling again, unless that call logged,
    /// asked for [`request_body_digest`] or drew random numbers: the answer must follow from
    /// the request alone.
    ///
    /// There is no default: the key is the policy's decision. For methods other than GET and
    /// HEAD the host treats `lookup` as `pass`, except for a POST that asked for
    /// [`request_body_digest`].
    ///
    /// ```
    /// use larder_sdk::{CacheKey, Policy, Request, RequestDecision};
    ///
    /// struct Items;
    ///
    /// impl Policy for Items {
    ///     fn on_request(req: &Request) -> RequestDecision {
    ///         if !req.is_safe() {
    ///             return RequestDecision::pass("method");
    ///         }
    ///         match req.param("id") {
    ///             // A path parameter and a header in the key.
    ///             Some(id) => RequestDecision::lookup(CacheKey::new([
    ///                 "item",
    ///                 id,
    ///                 req.header("x-tenant").unwrap_or("public"),
    ///             ])),
    ///             None => RequestDecision::pass("no-id"),
    ///         }
    ///     }
    /// }
    ///
    /// let req = Request::new("GET", "/items/7")
    ///     .with_param("id", "7")
    ///     .with_header("x-tenant", "acme");
    /// assert_eq!(
    ///     Items::on_request(&req),
    ///     RequestDecision::lookup(CacheKey::new(["item", "7", "acme"]))
    /// );
    /// ```
    fn on_request(req: &Request) -> RequestDecision;

    /// Called after the upstream answered a lookup that missed. Decide whether and how long to
    /// store the response.
    ///
    /// The default, [`follow_origin`], stores only what the origin's `Cache-Control`/`Expires`
    /// explicitly allows a shared cache to store (see [`freshness`]), without tags.
    ///
    /// ```
    /// use larder_sdk::{
    ///     CacheKey, Policy, Request, RequestDecision, Response, ResponseDecision, StoreDirective,
    /// };
    ///
    /// struct Items;
    ///
    /// impl Policy for Items {
    ///     fn on_request(req: &Request) -> RequestDecision {
    ///         RequestDecision::lookup(CacheKey::new([req.path.as_str()]))
    ///     }
    ///
    ///     // A TTL per status (from the route's settings), and a tag to purge by.
    ///     fn on_response(req: &Request, resp: &Response) -> ResponseDecision {
    ///         let ttl = match resp.status {
    ///             200 => req.setting_or("ttl", 300u32),
    ///             404 => 30,
    ///             _ => return ResponseDecision::no_store("status"),
    ///         };
    ///         let id = req.param("id").unwrap_or_default();
    ///         ResponseDecision::store(StoreDirective::ttl(ttl).tag(format!("item:{id}")))
    ///     }
    /// }
    ///
    /// let req = Request::new("GET", "/items/7").with_param("id", "7");
    /// assert_eq!(
    ///     Items::on_response(&req, &Response::new(404)),
    ///     ResponseDecision::store(StoreDirective::ttl(30).tag("item:7"))
    /// );
    /// ```
    fn on_response(req: &Request, resp: &Response) -> ResponseDecision {
        follow_origin(req, resp)
    }

    /// Called after an unsafe request (POST, PUT, PATCH, DELETE) was answered with a 2xx or
    /// 3xx status. Return the entries that write made wrong; the default invalidates nothing.
    ///
    /// ```
    /// use larder_sdk::{CacheKey, Invalidation, Policy, Request, RequestDecision, Response};
    ///
    /// struct Items;
    ///
    /// impl Policy for Items {
    ///     fn on_request(req: &Request) -> RequestDecision {
    ///         RequestDecision::lookup(CacheKey::new([req.path.as_str()]))
    ///     }
    ///
    ///     // `PUT /items/7` purges everything tagged `item:7`, on any route.
    ///     fn on_invalidate(req: &Request, _resp: &Response) -> Vec<Invalidation> {
    ///         req.param("id")
    ///             .map(|id| vec![Invalidation::tag(format!("item:{id}"))])
    ///             .unwrap_or_default()
    ///     }
    /// }
    ///
    /// let put = Request::new("PUT", "/items/7").with_param("id", "7");
    /// assert_eq!(
    ///     Items::on_invalidate(&put, &Response::new(204)),
    ///     [Invalidation::tag("item:7")]
    /// );
    /// ```
    fn on_invalidate(req: &Request, resp: &Response) -> Vec<Invalidation> {
        let _ = (req, resp);
        Vec::new()
    }
}

/// Registers a [`Policy`] implementation as the component's `larder:policy/policy` export.
///
/// Invoke it once in the plugin crate (a `cdylib`), with the type (or path to the type) that
/// implements [`Policy`]. It implements the generated bindings' `Guest` trait on a hidden
/// adapter that borrows the arguments for your functions, and exports the component's
/// `larder:policy/policy` interface:
///
/// ```no_run
/// use larder_sdk::{Policy, Request, RequestDecision};
///
/// struct NeverCache;
///
/// impl Policy for NeverCache {
///     fn on_request(_req: &Request) -> RequestDecision {
///         RequestDecision::pass("never-cache")
///     }
/// }
///
/// larder_sdk::export_policy!(NeverCache);
/// ```
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        const _: () = {
            #[doc(hidden)]
            pub struct __LarderPolicyExport;

            impl $crate::bindings::exports::larder::policy::policy::Guest for __LarderPolicyExport {
                fn check_settings(
                    route: ::std::string::String,
                    settings: ::std::vec::Vec<$crate::Param>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::log_panics();
                    <$policy as $crate::Policy>::check_settings(&$crate::Settings::new(
                        &route, &settings,
                    ))
                }

                fn on_request(req: $crate::Request) -> $crate::RequestDecision {
                    $crate::__private::log_panics();
                    <$policy as $crate::Policy>::on_request(&req)
                }

                fn on_response(
                    req: $crate::Request,
                    resp: $crate::Response,
                ) -> $crate::ResponseDecision {
                    $crate::__private::log_panics();
                    <$policy as $crate::Policy>::on_response(&req, &resp)
                }

                fn on_invalidate(
                    req: $crate::Request,
                    resp: $crate::Response,
                ) -> ::std::vec::Vec<$crate::Invalidation> {
                    $crate::__private::log_panics();
                    <$policy as $crate::Policy>::on_invalidate(&req, &resp)
                }
            }

            $crate::bindings::__export_policy_plugin!(
                __LarderPolicyExport with_types_in $crate::bindings
            );
        };
    };
}

/// Not part of the public API: paths used by generated and macro-expanded code.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    /// Installs, once per instance, a panic hook that sends the panic's message and location
    /// to the gateway's log. In WebAssembly a panic ends in an `unreachable` trap, and the
    /// sandbox discards the guest's standard error, so without this the author would see only
    /// the trap.
    pub fn log_panics() {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                crate::error(&format!("plugin {}", info.to_string().replace('\n', " ")));
            }));
        });
    }
}

/// Writes `message` to the gateway's log at `level`, tagged by the host with the plugin's name
/// and the request id. Lines longer than 1 KiB are cut by the host.
///
/// Logging is cheap but not free: do not log every request at [`LogLevel::Info`].
///
/// Outside WebAssembly (in native unit tests of a policy) the line goes to standard error.
///
/// ```no_run
/// larder_sdk::log(larder_sdk::LogLevel::Warn, "setting `ttl` is not a number; using 60");
/// ```
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::larder::policy::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let level = match level {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        };
        eprintln!("[larder-sdk {level}] {message}");
    }
}

/// The digest of the request's body (64 lower-case hex digits of BLAKE3), for a POST on a
/// route configured with `cache_post = true` and a body no larger than the gateway's
/// `cache.max_request_body`; `None` for any other request.
///
/// Calling it from [`Policy::on_request`] is how a policy opts a POST into caching: the host
/// honours `lookup` for a POST only if the policy asked for the digest (and got one), and adds
/// the digest to the key itself. Use it for calls whose answer depends only on the body.
///
/// ```no_run
/// use larder_sdk::{CacheKey, Request, RequestDecision};
///
/// fn on_request(req: &Request) -> RequestDecision {
///     match larder_sdk::request_body_digest() {
///         Some(digest) if req.method == "POST" => {
///             RequestDecision::lookup(CacheKey::new(["embedding", digest.as_str()]))
///         }
///         _ => RequestDecision::pass("method"),
///     }
/// }
/// ```
///
/// Outside WebAssembly (native unit tests) it returns what [`testing::set_body_digest`] set.
pub fn request_body_digest() -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    return bindings::larder::policy::host::request_body_digest();
    #[cfg(not(target_arch = "wasm32"))]
    return testing::BODY_DIGEST.with(|d| d.borrow().clone());
}

/// Stand-ins for host functions in native unit tests of a policy.
#[cfg(not(target_arch = "wasm32"))]
pub mod testing {
    use std::cell::RefCell;

    thread_local! {
        pub(crate) static BODY_DIGEST: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    /// Sets what [`request_body_digest`](crate::request_body_digest) returns on this thread.
    ///
    /// ```
    /// use larder_sdk::testing::set_body_digest;
    ///
    /// set_body_digest(Some("ab12"));
    /// assert_eq!(larder_sdk::request_body_digest().as_deref(), Some("ab12"));
    /// set_body_digest(None);
    /// assert_eq!(larder_sdk::request_body_digest(), None);
    /// ```
    pub fn set_body_digest(digest: Option<&str>) {
        BODY_DIGEST.with(|d| *d.borrow_mut() = digest.map(str::to_owned));
    }
}

/// [`log`] at [`LogLevel::Debug`].
///
/// ```no_run
/// let ttl = 600;
/// larder_sdk::debug(&format!("storing for {ttl} s"));
/// larder_sdk::warn("setting `ttl` is negative; not storing");
/// ```
pub fn debug(message: &str) {
    log(LogLevel::Debug, message);
}

/// [`log`] at [`LogLevel::Info`].
pub fn info(message: &str) {
    log(LogLevel::Info, message);
}

/// [`log`] at [`LogLevel::Warn`].
pub fn warn(message: &str) {
    log(LogLevel::Warn, message);
}

/// [`log`] at [`LogLevel::Error`].
pub fn error(message: &str) {
    log(LogLevel::Error, message);
}
