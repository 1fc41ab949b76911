//! The shared-cache rules of RFC 9111 that decide whether, and for how long, the origin lets
//! Larder store a response. [`follow_origin`] is the default
//! [`Policy::on_response`](crate::Policy::on_response).
//!
//! The rules, in the order they are checked ([`NotStorable`] names each refusal; its
//! [`as_str`](NotStorable::as_str) is the reason shown in `Cache-Status`):
//!
//! 1. **Status** (`"status"`): only final status codes that RFC 9110 defines are stored, and
//!    never 206 (Larder does not store partial content) or 304.
//! 2. **`no-store`** in the response (`"no-store"`) or the request (`"request-no-store"`).
//! 3. **`private`** (`"private"`), qualified or not: Larder is a shared cache.
//! 4. **`no-cache`** (`"no-cache"`), qualified or not. RFC 9111 allows storing such a response
//!    if every use is revalidated, but the gateway does not revalidate yet, so it is not
//!    stored. TODO(http-semantics): store and revalidate once the host sends conditional
//!    requests.
//! 5. **`Authorization`** in the request (`"authorization"`): stored only if the response says
//!    `public`, `s-maxage` or `must-revalidate` (RFC 9111 section 3.5).
//! 6. **`Set-Cookie`** in the response (`"set-cookie"`). RFC 9111 lets a shared cache store
//!    such a response, but serving one user's cookie to another is rarely what anyone wants,
//!    so the default is conservative. [`FollowOrigin::store_set_cookie`] overrides it.
//! 7. **`Vary: *`** (`"vary-star"`): no later request can match it.
//! 8. **Explicit freshness** (`"no-explicit-freshness"`): the lifetime is `s-maxage`, else
//!    `max-age`, else `Expires` minus `Date` (an `Expires` without a parseable `Date` does not
//!    count; an unparseable `Expires`, such as `0`, is in the past). Heuristic freshness is off
//!    unless [`FollowOrigin::heuristic_ttl`] is set.
//! 9. **Age** (`"stale"`): the TTL is the lifetime minus the `Age` header (the origin is
//!    Larder's direct upstream, so `Age` is the whole current age); a result of zero is stale.
//!
//! Stale windows come from the response's `stale-while-revalidate` and `stale-if-error`
//! (RFC 5861) and are zero when the response says `must-revalidate` or `proxy-revalidate`.
//! An `s-maxage` implies `proxy-revalidate` in RFC 9111, but an explicit stale directive next
//! to it is taken as the origin's more specific permission.

use crate::cache_control::{CacheControl, DELTA_SECONDS_MAX, parse_age, parse_http_date};
use crate::{Request, Response, ResponseDecision, StoreDirective};

/// Why a response may not be stored under the origin's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotStorable {
    /// The status code is not final, not understood, 206 or 304.
    Status,
    /// The response says `no-store`.
    NoStore,
    /// The request says `no-store`.
    RequestNoStore,
    /// The response says `private`.
    Private,
    /// The response says `no-cache` (not stored until the host revalidates).
    NoCache,
    /// The request carried `Authorization` and the response does not allow sharing it.
    Authorization,
    /// The response sets a cookie.
    SetCookie,
    /// The response says `Vary: *`.
    VaryStar,
    /// The response has no explicit freshness lifetime.
    NoExplicitFreshness,
    /// The response is already stale (or has a zero lifetime).
    Stale,
}

impl NotStorable {
    /// The reason as a short token for `no-store(reason)` and `Cache-Status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::NoStore => "no-store",
            Self::RequestNoStore => "request-no-store",
            Self::Private => "private",
            Self::NoCache => "no-cache",
            Self::Authorization => "authorization",
            Self::SetCookie => "set-cookie",
            Self::VaryStar => "vary-star",
            Self::NoExplicitFreshness => "no-explicit-freshness",
            Self::Stale => "stale",
        }
    }
}

impl std::fmt::Display for NotStorable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long a storable response may be stored and served stale, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// Remaining freshness: the lifetime minus the current age. At least 1.
    pub ttl: u32,
    /// The `stale-while-revalidate` window (0 if none).
    pub stale_while_revalidate: u32,
    /// The `stale-if-error` window (0 if none).
    pub stale_if_error: u32,
}

impl From<Freshness> for StoreDirective {
    fn from(f: Freshness) -> Self {
        StoreDirective::ttl(f.ttl)
            .stale_while_revalidate(f.stale_while_revalidate)
            .stale_if_error(f.stale_if_error)
    }
}

/// The origin-driven storage rules, with the two knobs a policy may want to turn.
///
/// ```
/// use larder_sdk::freshness::FollowOrigin;
/// use larder_sdk::{Request, Response, ResponseDecision, StoreDirective};
///
/// let req = Request::new("GET", "/feed");
/// let resp = Response::new(200)
///     .with_header("cache-control", "max-age=60")
///     .with_header("set-cookie", "visited=1");
/// let rules = FollowOrigin::new().store_set_cookie(true);
/// assert_eq!(
///     rules.decide(&req, &resp).with_tags(["feed"]),
///     ResponseDecision::store(StoreDirective::ttl(60).tag("feed")),
/// );
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FollowOrigin {
    /// Store responses that carry `Set-Cookie` (default `false`).
    pub store_set_cookie: bool,
    /// TTL for responses without explicit freshness whose status is heuristically cacheable
    /// (or that say `public`). `None` (the default) disables heuristic freshness.
    pub heuristic_ttl: Option<u32>,
}

impl FollowOrigin {
    /// The default rules: no `Set-Cookie`, no heuristic freshness.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`FollowOrigin::store_set_cookie`].
    #[must_use]
    pub fn store_set_cookie(mut self, store: bool) -> Self {
        self.store_set_cookie = store;
        self
    }

    /// Sets [`FollowOrigin::heuristic_ttl`].
    #[must_use]
    pub fn heuristic_ttl(mut self, seconds: Option<u32>) -> Self {
        self.heuristic_ttl = seconds;
        self
    }

    /// Applies the rules (see the [module documentation](self)).
    pub fn evaluate(&self, req: &Request, resp: &Response) -> Result<Freshness, NotStorable> {
        if !is_storable_status(resp.status) {
            return Err(NotStorable::Status);
        }
        let cc = resp.cache_control();
        if cc.no_store {
            return Err(NotStorable::NoStore);
        }
        if req.cache_control().no_store {
            return Err(NotStorable::RequestNoStore);
        }
        if cc.private {
            return Err(NotStorable::Private);
        }
        if cc.no_cache {
            return Err(NotStorable::NoCache);
        }
        if req.has_header("authorization")
            && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate)
        {
            return Err(NotStorable::Authorization);
        }
        if !self.store_set_cookie && resp.has_header("set-cookie") {
            return Err(NotStorable::SetCookie);
        }
        if resp
            .header_values("vary")
            .flat_map(|v| v.split(','))
            .any(|v| v.trim() == "*")
        {
            return Err(NotStorable::VaryStar);
        }
        let lifetime = match explicit_lifetime(resp, &cc) {
            Some(lifetime) => lifetime,
            None => match self.heuristic_ttl {
                Some(ttl) if cc.public || is_heuristically_cacheable(resp.status) => ttl,
                _ => return Err(NotStorable::NoExplicitFreshness),
            },
        };
        let ttl = lifetime.saturating_sub(current_age(resp));
        if ttl == 0 {
            return Err(NotStorable::Stale);
        }
        let (stale_while_revalidate, stale_if_error) = if cc.must_revalidate || cc.proxy_revalidate
        {
            (0, 0)
        } else {
            (
                cc.stale_while_revalidate.unwrap_or(0),
                cc.stale_if_error.unwrap_or(0),
            )
        };
        Ok(Freshness {
            ttl,
            stale_while_revalidate,
            stale_if_error,
        })
    }

    /// [`FollowOrigin::evaluate`] as a decision: `store` without tags, or `no-store` with the
    /// [`NotStorable`] reason.
    pub fn decide(&self, req: &Request, resp: &Response) -> ResponseDecision {
        match self.evaluate(req, resp) {
            Ok(freshness) => ResponseDecision::store(freshness.into()),
            Err(reason) => ResponseDecision::no_store(reason.as_str()),
        }
    }
}

/// Stores what the origin's headers explicitly allow a shared cache to store, for as long as
/// they allow, without tags; see the [module documentation](self) for the rules. The default
/// [`Policy::on_response`](crate::Policy::on_response).
///
/// ```
/// use larder_sdk::{follow_origin, Request, Response, ResponseDecision, StoreDirective};
///
/// let req = Request::new("GET", "/");
/// let resp = Response::new(200)
///     .with_header("cache-control", "public, max-age=600, stale-while-revalidate=30")
///     .with_header("age", "100");
/// assert_eq!(
///     follow_origin(&req, &resp),
///     ResponseDecision::store(StoreDirective::ttl(500).stale_while_revalidate(30)),
/// );
/// let resp = Response::new(200).with_header("cache-control", "no-store");
/// assert_eq!(follow_origin(&req, &resp), ResponseDecision::no_store("no-store"));
/// ```
pub fn follow_origin(req: &Request, resp: &Response) -> ResponseDecision {
    FollowOrigin::default().decide(req, resp)
}

/// The explicit freshness lifetime for a shared cache: `s-maxage`, else `max-age`, else
/// `Expires` minus `Date` (RFC 9111 section 4.2.1). `None` when none applies, including an
/// `Expires` without a parseable `Date` (the guest has no clock to stand in for `Date`).
/// An unparseable `Expires` counts as a lifetime of zero.
pub fn explicit_lifetime(resp: &Response, cc: &CacheControl) -> Option<u32> {
    if let Some(s_maxage) = cc.s_maxage {
        return Some(s_maxage);
    }
    if let Some(max_age) = cc.max_age {
        return Some(max_age);
    }
    let expires = resp.header("expires")?;
    let Some(expires) = parse_http_date(expires) else {
        return Some(0);
    };
    let date = parse_http_date(resp.header("date")?)?;
    let lifetime = (expires - date).clamp(0, i64::from(DELTA_SECONDS_MAX));
    u32::try_from(lifetime).ok()
}

/// The response's current age in seconds: its `Age` header, or 0 if absent or invalid. Larder
/// talks to the origin directly, so the response delay is negligible next to `Age`.
pub fn current_age(resp: &Response) -> u32 {
    resp.header("age").and_then(parse_age).unwrap_or(0)
}

/// Whether RFC 9110 section 15.1 defines `status` as heuristically cacheable: 200, 203, 204,
/// 206, 300, 301, 308, 404, 405, 410, 414 and 501. (Larder never stores 206 anyway.)
pub fn is_heuristically_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Whether Larder may store a response with `status` at all, given explicit freshness: a
/// final status code defined by RFC 9110, except 206 (partial content is not stored) and 304
/// (a revalidation answer, not a representation).
pub fn is_storable_status(status: u16) -> bool {
    matches!(
        status,
        200..=205 | 300..=303 | 305 | 307 | 308 | 400..=417 | 421..=426 | 500..=505
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get() -> Request {
        Request::new("GET", "/thing")
    }

    fn ok(cache_control: &str) -> Response {
        Response::new(200).with_header("cache-control", cache_control)
    }

    fn eval(resp: &Response) -> Result<Freshness, NotStorable> {
        FollowOrigin::default().evaluate(&get(), resp)
    }

    fn fresh(ttl: u32) -> Result<Freshness, NotStorable> {
        Ok(Freshness {
            ttl,
            stale_while_revalidate: 0,
            stale_if_error: 0,
        })
    }

    #[test]
    fn max_age_is_the_ttl() {
        assert_eq!(eval(&ok("max-age=60")), fresh(60));
        assert_eq!(eval(&ok("public, max-age=60")), fresh(60));
    }

    #[test]
    fn s_maxage_beats_max_age_and_expires() {
        let resp = ok("max-age=60, s-maxage=120")
            .with_header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
            .with_header("expires", "Sun, 06 Nov 1994 09:49:37 GMT");
        assert_eq!(eval(&resp), fresh(120));
    }

    #[test]
    fn max_age_beats_expires() {
        let resp = ok("max-age=60")
            .with_header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
            .with_header("expires", "Sun, 06 Nov 1994 09:49:37 GMT");
        assert_eq!(eval(&resp), fresh(60));
    }

    #[test]
    fn expires_minus_date() {
        let resp = Response::new(200)
            .with_header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
            .with_header("expires", "Sun, 06 Nov 1994 09:49:37 GMT");
        assert_eq!(eval(&resp), fresh(3600));
    }

    #[test]
    fn expires_in_the_past_or_invalid_is_stale() {
        let past = Response::new(200)
            .with_header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
            .with_header("expires", "Sun, 06 Nov 1994 07:49:37 GMT");
        assert_eq!(eval(&past), Err(NotStorable::Stale));
        let zero = Response::new(200)
            .with_header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
            .with_header("expires", "0");
        assert_eq!(eval(&zero), Err(NotStorable::Stale));
    }

    #[test]
    fn expires_without_date_is_not_explicit() {
        let resp = Response::new(200).with_header("expires", "Sun, 06 Nov 1994 09:49:37 GMT");
        assert_eq!(eval(&resp), Err(NotStorable::NoExplicitFreshness));
    }

    #[test]
    fn age_is_subtracted() {
        assert_eq!(eval(&ok("max-age=60").with_header("age", "20")), fresh(40));
        assert_eq!(
            eval(&ok("max-age=60").with_header("age", "60")),
            Err(NotStorable::Stale)
        );
        assert_eq!(
            eval(&ok("max-age=60").with_header("age", "6000")),
            Err(NotStorable::Stale)
        );
        assert_eq!(
            eval(&ok("max-age=60").with_header("age", "bogus")),
            fresh(60)
        );
    }

    #[test]
    fn zero_max_age_is_stale() {
        assert_eq!(eval(&ok("max-age=0")), Err(NotStorable::Stale));
        assert_eq!(eval(&ok("max-age=oops")), Err(NotStorable::Stale));
    }

    #[test]
    fn no_explicit_freshness_is_not_stored() {
        assert_eq!(
            eval(&Response::new(200)),
            Err(NotStorable::NoExplicitFreshness)
        );
        assert_eq!(eval(&ok("public")), Err(NotStorable::NoExplicitFreshness));
    }

    #[test]
    fn heuristic_ttl_when_enabled() {
        let rules = FollowOrigin::new().heuristic_ttl(Some(30));
        assert_eq!(rules.evaluate(&get(), &Response::new(200)), fresh(30));
        assert_eq!(rules.evaluate(&get(), &Response::new(404)), fresh(30));
        assert_eq!(
            rules.evaluate(&get(), &Response::new(500)),
            Err(NotStorable::NoExplicitFreshness)
        );
        assert_eq!(
            rules.evaluate(
                &get(),
                &Response::new(500).with_header("cache-control", "public")
            ),
            fresh(30)
        );
        assert_eq!(rules.evaluate(&get(), &ok("max-age=5")), fresh(5));
    }

    #[test]
    fn refusals_by_directive() {
        assert_eq!(eval(&ok("no-store, max-age=60")), Err(NotStorable::NoStore));
        assert_eq!(eval(&ok("private, max-age=60")), Err(NotStorable::Private));
        assert_eq!(
            eval(&ok("private=\"set-cookie\", max-age=60")),
            Err(NotStorable::Private)
        );
        assert_eq!(eval(&ok("no-cache, max-age=60")), Err(NotStorable::NoCache));
        assert_eq!(
            eval(&ok("no-cache=\"x\", max-age=60")),
            Err(NotStorable::NoCache)
        );
    }

    #[test]
    fn request_no_store() {
        let req = get().with_header("cache-control", "no-store");
        assert_eq!(
            FollowOrigin::default().evaluate(&req, &ok("max-age=60")),
            Err(NotStorable::RequestNoStore)
        );
    }

    #[test]
    fn set_cookie_is_conservative_by_default() {
        let resp = ok("public, max-age=60").with_header("set-cookie", "a=b");
        assert_eq!(eval(&resp), Err(NotStorable::SetCookie));
        assert_eq!(
            FollowOrigin::new()
                .store_set_cookie(true)
                .evaluate(&get(), &resp),
            fresh(60)
        );
    }

    #[test]
    fn vary_star() {
        let resp = ok("max-age=60").with_header("vary", "accept, *");
        assert_eq!(eval(&resp), Err(NotStorable::VaryStar));
        let resp = ok("max-age=60").with_header("vary", "accept-encoding");
        assert_eq!(eval(&resp), fresh(60));
    }

    #[test]
    fn authorization_needs_explicit_permission() {
        let req = get().with_header("authorization", "Bearer x");
        let rules = FollowOrigin::default();
        assert_eq!(
            rules.evaluate(&req, &ok("max-age=60")),
            Err(NotStorable::Authorization)
        );
        assert_eq!(rules.evaluate(&req, &ok("public, max-age=60")), fresh(60));
        assert_eq!(rules.evaluate(&req, &ok("s-maxage=60")), fresh(60));
        assert_eq!(
            rules.evaluate(&req, &ok("must-revalidate, max-age=60")),
            fresh(60)
        );
    }

    #[test]
    fn status_codes() {
        for status in [100, 101, 206, 304, 299, 418, 599, 999] {
            let resp = Response::new(status).with_header("cache-control", "max-age=60");
            assert_eq!(eval(&resp), Err(NotStorable::Status), "{status}");
        }
        for status in [200, 203, 204, 301, 308, 404, 410, 500, 503] {
            let resp = Response::new(status).with_header("cache-control", "max-age=60");
            assert_eq!(eval(&resp), fresh(60), "{status}");
        }
        assert!(is_heuristically_cacheable(404));
        assert!(!is_heuristically_cacheable(500));
    }

    #[test]
    fn stale_windows() {
        assert_eq!(
            eval(&ok(
                "max-age=60, stale-while-revalidate=30, stale-if-error=600"
            )),
            Ok(Freshness {
                ttl: 60,
                stale_while_revalidate: 30,
                stale_if_error: 600
            })
        );
        assert_eq!(
            eval(&ok(
                "max-age=60, must-revalidate, stale-while-revalidate=30, stale-if-error=600"
            )),
            fresh(60)
        );
        assert_eq!(
            eval(&ok("max-age=60, proxy-revalidate, stale-if-error=600")),
            fresh(60)
        );
    }

    #[test]
    fn multiple_cache_control_fields_combine() {
        let resp = Response::new(200)
            .with_header("cache-control", "max-age=60")
            .with_header("cache-control", "private");
        assert_eq!(eval(&resp), Err(NotStorable::Private));
    }

    #[test]
    fn decisions_and_reasons() {
        assert_eq!(
            follow_origin(&get(), &ok("max-age=60, stale-if-error=5")),
            ResponseDecision::store(StoreDirective::ttl(60).stale_if_error(5))
        );
        assert_eq!(
            follow_origin(&get(), &Response::new(200)),
            ResponseDecision::no_store("no-explicit-freshness")
        );
        assert_eq!(NotStorable::SetCookie.to_string(), "set-cookie");
    }
}
