//! The shared-cache rules of RFC 9111 that decide whether, and for how long, the origin lets
//! Larder store a response. [`follow_origin`] is the default
//! [`Policy::on_response`](crate::Policy::on_response).
//!
//! The rules, in the order they are checked ([`NotStorable`] names each refusal; its
//! [`as_str`](NotStorable::as_str) is the reason shown in `Cache-Status`):
//!
//! 1. **Status** (`"status"`): only final status codes (200-599) are stored, never 206
//!    (Larder does not store partial content) or 304. A status code RFC 9110 does not define
//!    needs explicit freshness, since it is not heuristically cacheable.
//! 2. **`no-store`** in the response (`"no-store"`) or the request (`"request-no-store"`),
//!    unless the response also says `must-understand` and the status code is one RFC 9110
//!    defines; with `must-understand`, any other status code is not stored (`"status"`).
//! 3. **`private`** (`"private"`), qualified or not: Larder is a shared cache.
//! 4. **`no-cache`** (`"no-cache"`), qualified or not: stored with a TTL of 0 (revalidated with
//!    the origin before every use) when the response has a validator (`ETag` or
//!    `Last-Modified`), not stored otherwise.
//! 5. **`Authorization`** in the request (`"authorization"`): stored only if the response says
//!    `public`, `s-maxage` or `must-revalidate` (RFC 9111 section 3.5).
//! 6. **`Set-Cookie`** in the response (`"set-cookie"`). RFC 9111 lets a shared cache store
//!    such a response, but serving one user's cookie to another is rarely what anyone wants,
//!    so the default is conservative. [`FollowOrigin::store_set_cookie`] overrides it.
//! 7. **`Vary: *`** (`"vary-star"`): no later request can match it.
//! 8. **Explicit freshness** (`"no-explicit-freshness"`): the lifetime is `s-maxage`, else
//!    `max-age`, else `Expires` minus `Date` (an `Expires` without a parseable `Date` does not
//!    count; an unparseable `Expires`, such as `0`, is in the past). Heuristic freshness is off
//!    unless [`FollowOrigin::heuristic`] is set. With [`FollowOrigin::targeted`] fields
//!    (RFC 9213, `CDN-Cache-Control`), the first one present stands in for `Cache-Control`.
//! 9. **Age** (`"stale"`): the TTL is the lifetime minus the `Age` header (the origin is
//!    Larder's direct upstream, so `Age` is the whole current age); a result of zero is stale
//!    and not stored, unless the response has a validator: then it is stored with a TTL of 0,
//!    to be revalidated before each use (a 304 costs the origin no body).
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
    /// Remaining freshness: the lifetime minus the current age. 0 only for a response with a
    /// validator that must be revalidated before every use (`no-cache`, or already stale).
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FollowOrigin {
    /// Store responses that carry `Set-Cookie` (default `false`).
    pub store_set_cookie: bool,
    /// Freshness for responses without explicit freshness whose status is heuristically
    /// cacheable (or that say `public`). Off by default.
    pub heuristic: Heuristic,
    /// Targeted cache-control fields (RFC 9213) this cache obeys, lower-case, most specific
    /// first (`["larder-cache-control", "cdn-cache-control"]`). The first one present in a
    /// response replaces its `Cache-Control` entirely. Empty by default.
    pub targeted: Vec<String>,
    /// The stale-if-error window, in seconds, for responses that give none and do not forbid
    /// serving stale (`must-revalidate`, `proxy-revalidate`, `s-maxage`): RFC 9111 section
    /// 4.2.4 lets a cache serve stale when it cannot reach the origin. 0 by default.
    pub default_stale_if_error: u32,
}

/// Heuristic freshness (RFC 9111 section 4.2.2): how long a response without explicit
/// freshness may be served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Heuristic {
    /// Never: responses without explicit freshness are not stored (the default).
    #[default]
    Off,
    /// A fixed lifetime, in seconds.
    Fixed(u32),
    /// `percent` of the time since `Last-Modified` (as of `Date`), at most `max` seconds; no
    /// heuristic lifetime without a `Last-Modified` before `Date`. 10% is the customary value.
    SinceModified {
        /// The share of the time since `Last-Modified`, in percent.
        percent: u32,
        /// The longest lifetime it may give, in seconds.
        max: u32,
    },
}

impl Heuristic {
    /// The heuristic lifetime of `resp` in seconds, if any.
    ///
    /// ```
    /// use larder_sdk::freshness::Heuristic;
    /// use larder_sdk::Response;
    ///
    /// let resp = Response::new(200)
    ///     .with_header("date", "Thu, 01 Jan 2026 10:00:00 GMT")
    ///     .with_header("last-modified", "Thu, 01 Jan 2026 00:00:00 GMT");
    /// let tenth = Heuristic::SinceModified { percent: 10, max: 86400 };
    /// assert_eq!(tenth.lifetime(&resp), Some(3600));
    /// assert_eq!(Heuristic::Off.lifetime(&resp), None);
    /// ```
    pub fn lifetime(self, resp: &Response) -> Option<u32> {
        match self {
            Heuristic::Off => None,
            Heuristic::Fixed(ttl) => Some(ttl),
            Heuristic::SinceModified { percent, max } => {
                let date = parse_http_date(resp.header("date")?)?;
                let modified = parse_http_date(resp.header("last-modified")?)?;
                let since = date.checked_sub(modified).filter(|s| *s > 0)?;
                let lifetime = since.saturating_mul(i64::from(percent)) / 100;
                Some(u32::try_from(lifetime.min(i64::from(max))).unwrap_or(max))
            }
        }
    }
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

    /// A fixed heuristic lifetime, or none ([`Heuristic::Fixed`], [`Heuristic::Off`]).
    #[must_use]
    pub fn heuristic_ttl(mut self, seconds: Option<u32>) -> Self {
        self.heuristic = seconds.map_or(Heuristic::Off, Heuristic::Fixed);
        self
    }

    /// Sets [`FollowOrigin::default_stale_if_error`].
    #[must_use]
    pub fn default_stale_if_error(mut self, seconds: u32) -> Self {
        self.default_stale_if_error = seconds;
        self
    }

    /// Sets [`FollowOrigin::heuristic`].
    #[must_use]
    pub fn heuristic(mut self, heuristic: Heuristic) -> Self {
        self.heuristic = heuristic;
        self
    }

    /// Sets [`FollowOrigin::targeted`]: the targeted cache-control fields to obey, most
    /// specific first.
    ///
    /// ```
    /// use larder_sdk::freshness::FollowOrigin;
    /// use larder_sdk::{Request, Response, ResponseDecision, StoreDirective};
    ///
    /// let rules = FollowOrigin::new().targeted(["larder-cache-control", "cdn-cache-control"]);
    /// let resp = Response::new(200)
    ///     .with_header("cache-control", "no-store")
    ///     .with_header("cdn-cache-control", "max-age=600");
    /// let req = Request::new("GET", "/");
    /// assert_eq!(rules.decide(&req, &resp), ResponseDecision::store(StoreDirective::ttl(600)));
    /// ```
    #[must_use]
    pub fn targeted<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.targeted = fields
            .into_iter()
            .map(|f| f.as_ref().trim().to_ascii_lowercase())
            .filter(|f| !f.is_empty())
            .collect();
        self
    }

    /// The directives this cache obeys: those of the first targeted field present and valid,
    /// else the response's `Cache-Control`.
    pub fn cache_control(&self, resp: &Response) -> CacheControl {
        self.targeted
            .iter()
            .filter(|field| resp.has_header(field))
            .find_map(|field| CacheControl::parse_targeted(resp.header_values(field)))
            .unwrap_or_else(|| resp.cache_control())
    }

    /// Applies the rules (see the [module documentation](self)).
    ///
    /// ```
    /// use larder_sdk::freshness::{FollowOrigin, NotStorable};
    /// use larder_sdk::{Request, Response};
    ///
    /// let req = Request::new("GET", "/");
    /// let resp = Response::new(200).with_header("cache-control", "max-age=120, stale-if-error=60");
    /// let freshness = FollowOrigin::new().evaluate(&req, &resp).unwrap();
    /// assert_eq!((freshness.ttl, freshness.stale_if_error), (120, 60));
    /// let resp = Response::new(200);
    /// assert_eq!(FollowOrigin::new().evaluate(&req, &resp), Err(NotStorable::NoExplicitFreshness));
    /// ```
    pub fn evaluate(&self, req: &Request, resp: &Response) -> Result<Freshness, NotStorable> {
        if !is_storable_status(resp.status) {
            return Err(NotStorable::Status);
        }
        let cc = self.cache_control(resp);
        if cc.must_understand {
            // Stored only with a status code the cache understands; then `no-store` (sent for
            // caches that do not know `must-understand`) does not apply.
            if !is_understood_status(resp.status) {
                return Err(NotStorable::Status);
            }
        } else if cc.no_store {
            return Err(NotStorable::NoStore);
        }
        if req.cache_control().no_store {
            return Err(NotStorable::RequestNoStore);
        }
        if cc.private {
            return Err(NotStorable::Private);
        }
        let validator = resp.has_header("etag") || resp.has_header("last-modified");
        if cc.no_cache && !validator {
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
        if cc.no_cache {
            // Stored, but stale from the start: the host revalidates it before every use.
            return Ok(Freshness {
                ttl: 0,
                stale_while_revalidate: 0,
                stale_if_error: 0,
            });
        }
        let lifetime = match explicit_lifetime(resp, &cc) {
            Some(lifetime) => lifetime,
            None => match self.heuristic.lifetime(resp) {
                Some(ttl) if cc.public || is_heuristically_cacheable(resp.status) => ttl,
                _ => return Err(NotStorable::NoExplicitFreshness),
            },
        };
        let ttl = lifetime.saturating_sub(current_age(resp));
        if ttl == 0 && !validator {
            return Err(NotStorable::Stale);
        }
        let (stale_while_revalidate, stale_if_error) = if cc.must_revalidate || cc.proxy_revalidate
        {
            (0, 0)
        } else {
            let default_sie = if cc.s_maxage.is_some() {
                0
            } else {
                self.default_stale_if_error
            };
            (
                cc.stale_while_revalidate.unwrap_or(0),
                cc.stale_if_error.unwrap_or(default_sie),
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
///
/// ```
/// use larder_sdk::freshness::explicit_lifetime;
/// use larder_sdk::Response;
///
/// let resp = Response::new(200).with_header("cache-control", "max-age=60, s-maxage=600");
/// assert_eq!(explicit_lifetime(&resp, &resp.cache_control()), Some(600));
/// ```
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
///
/// ```
/// use larder_sdk::freshness::current_age;
/// use larder_sdk::Response;
///
/// assert_eq!(current_age(&Response::new(200).with_header("age", "30")), 30);
/// assert_eq!(current_age(&Response::new(200)), 0);
/// ```
pub fn current_age(resp: &Response) -> u32 {
    resp.header("age").and_then(parse_age).unwrap_or(0)
}

/// Whether RFC 9110 section 15.1 defines `status` as heuristically cacheable: 200, 203, 204,
/// 206, 300, 301, 308, 404, 405, 410, 414 and 501. (Larder never stores 206 anyway.)
///
/// ```
/// use larder_sdk::freshness::{is_heuristically_cacheable, is_storable_status};
///
/// assert!(is_heuristically_cacheable(404) && !is_heuristically_cacheable(500));
/// assert!(is_storable_status(500) && !is_storable_status(206));
/// ```
pub fn is_heuristically_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Whether Larder may store a response with `status` at all, given explicit freshness: a
/// final status code, except 206 (partial content is not stored) and 304 (a revalidation
/// answer, not a representation).
pub fn is_storable_status(status: u16) -> bool {
    (200..=599).contains(&status) && status != 206 && status != 304
}

/// Whether Larder understands `status` (RFC 9110 defines it and it is not partial content), as
/// `must-understand` requires (RFC 9111 section 5.2.2.3).
pub fn is_understood_status(status: u16) -> bool {
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
    fn responses_with_validators_are_kept_to_be_revalidated() {
        let revalidate = Ok(Freshness {
            ttl: 0,
            stale_while_revalidate: 0,
            stale_if_error: 0,
        });
        let etag = |cc: &str| ok(cc).with_header("etag", "\"v1\"");
        assert_eq!(eval(&etag("no-cache")), revalidate);
        assert_eq!(eval(&etag("no-cache, max-age=600")), revalidate);
        assert_eq!(eval(&etag("max-age=0")), revalidate);
        let lm = ok("max-age=0").with_header("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(eval(&lm), revalidate);
        // Still refused for the other reasons.
        assert_eq!(eval(&etag("no-cache, private")), Err(NotStorable::Private));
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
    fn must_understand_overrides_no_store_for_understood_status_codes_only() {
        let cc = "max-age=60, no-store, must-understand";
        assert_eq!(eval(&ok(cc)), fresh(60));
        let resp = Response::new(599).with_header("cache-control", cc);
        assert_eq!(eval(&resp), Err(NotStorable::Status));
    }

    #[test]
    fn status_codes() {
        for status in [100, 101, 206, 304, 999] {
            let resp = Response::new(status).with_header("cache-control", "max-age=60");
            assert_eq!(eval(&resp), Err(NotStorable::Status), "{status}");
        }
        // Unknown final status codes too, with explicit freshness.
        for status in [200, 203, 204, 299, 301, 308, 404, 410, 418, 500, 503, 599] {
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

    #[test]
    fn heuristic_since_modified_is_a_fraction_of_the_age_of_the_content() {
        let rules = FollowOrigin::new().heuristic(Heuristic::SinceModified {
            percent: 10,
            max: 3600,
        });
        let dated = |lm: &str| {
            Response::new(200)
                .with_header("date", "Mon, 01 Jan 2024 10:00:00 GMT")
                .with_header("last-modified", lm)
        };
        // Modified 1000 s before Date: 10% is 100 s.
        assert_eq!(
            rules.evaluate(&get(), &dated("Mon, 01 Jan 2024 09:43:20 GMT")),
            fresh(100)
        );
        // A year old: capped.
        assert_eq!(
            rules.evaluate(&get(), &dated("Sun, 01 Jan 2023 10:00:00 GMT")),
            fresh(3600)
        );
        // No Last-Modified, or one after Date: no heuristic.
        assert_eq!(
            rules.evaluate(&get(), &Response::new(200)),
            Err(NotStorable::NoExplicitFreshness)
        );
        assert_eq!(
            rules.evaluate(&get(), &dated("Mon, 01 Jan 2024 11:00:00 GMT")),
            Err(NotStorable::NoExplicitFreshness)
        );
    }

    #[test]
    fn a_default_stale_if_error_window_unless_the_origin_forbids_stale() {
        let rules = FollowOrigin::new().default_stale_if_error(60);
        let sie = |cc: &str| rules.evaluate(&get(), &ok(cc)).map(|f| f.stale_if_error);
        assert_eq!(sie("max-age=10"), Ok(60));
        assert_eq!(sie("max-age=10, stale-if-error=5"), Ok(5));
        assert_eq!(sie("max-age=10, must-revalidate"), Ok(0));
        assert_eq!(sie("max-age=10, proxy-revalidate"), Ok(0));
        assert_eq!(sie("s-maxage=10"), Ok(0));
    }

    #[test]
    fn the_first_targeted_field_present_replaces_cache_control() {
        let rules = FollowOrigin::new().targeted(["Larder-Cache-Control", "cdn-cache-control"]);
        let resp = ok("max-age=10")
            .with_header("cdn-cache-control", "max-age=20")
            .with_header("larder-cache-control", "max-age=30");
        assert_eq!(rules.evaluate(&get(), &resp), fresh(30));
        let resp = ok("max-age=10").with_header("cdn-cache-control", "no-store");
        assert_eq!(rules.evaluate(&get(), &resp), Err(NotStorable::NoStore));
        let resp = ok("no-store").with_header("cdn-cache-control", "max-age=20");
        assert_eq!(rules.evaluate(&get(), &resp), fresh(20));
        // Not targeted: ignored.
        let resp = ok("max-age=10").with_header("cdn-cache-control", "max-age=20");
        assert_eq!(FollowOrigin::new().evaluate(&get(), &resp), fresh(10));
    }
}
