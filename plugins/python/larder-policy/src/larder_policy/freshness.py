"""The shared-cache rules of RFC 9111 that decide whether, and for how long, the origin lets
Larder store a response. `follow_origin` is the default `Policy.on_response`.

The rules, in the order they are checked (`NotStorable` names each refusal; its value is the
reason shown in `Cache-Status`):

1. **Status** (`"status"`): only final status codes (200-599) are stored, never 206 (Larder
   does not store partial content) or 304. A status code RFC 9110 does not define needs
   explicit freshness, since it is not heuristically cacheable.
2. **`no-store`** in the response (`"no-store"`) or the request (`"request-no-store"`), unless
   the response also says `must-understand` and the status code is one RFC 9110 defines; with
   `must-understand`, any other status code is not stored (`"status"`).
3. **`private`** (`"private"`), qualified or not: Larder is a shared cache.
4. **`no-cache`** (`"no-cache"`), qualified or not: stored with a TTL of 0 (revalidated with the
   origin before every use) when the response has a validator (`ETag` or `Last-Modified`), not
   stored otherwise.
5. **`Authorization`** in the request (`"authorization"`): stored only if the response says
   `public`, `s-maxage` or `must-revalidate` (RFC 9111 section 3.5).
6. **`Set-Cookie`** in the response (`"set-cookie"`). RFC 9111 lets a shared cache store such a
   response, but serving one user's cookie to another is rarely what anyone wants, so the
   default is conservative. `FollowOrigin(store_set_cookie=True)` overrides it.
7. **`Vary: *`** (`"vary-star"`): no later request can match it.
8. **Explicit freshness** (`"no-explicit-freshness"`): the lifetime is `s-maxage`, else
   `max-age`, else `Expires` minus `Date` (an `Expires` without a parseable `Date` does not
   count; an unparseable `Expires`, such as `0`, is in the past). Heuristic freshness is off
   unless `FollowOrigin(heuristic=...)` is set. With `FollowOrigin(targeted=...)` fields
   (RFC 9213, `CDN-Cache-Control`), the first one present stands in for `Cache-Control`.
9. **Age** (`"stale"`): the TTL is the lifetime minus the `Age` header (the origin is Larder's
   direct upstream, so `Age` is the whole current age); a result of zero is stale and not
   stored, unless the response has a validator: then it is stored with a TTL of 0, to be
   revalidated before each use (a 304 costs the origin no body).

Stale windows come from the response's `stale-while-revalidate` and `stale-if-error` (RFC 5861)
and are zero when the response says `must-revalidate` or `proxy-revalidate`. An `s-maxage`
implies `proxy-revalidate` in RFC 9111, but an explicit stale directive next to it is taken as
the origin's more specific permission.

A port of the Rust SDK's `freshness` module: the same rules in the same order, so that the
default `on_response` of a Python policy stores what a Rust policy's would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from .cache_control import DELTA_SECONDS_MAX, CacheControl, parse_age, parse_http_date
from .decisions import ResponseDecision, StoreDirective
from .messages import Request, Response
from .text import ascii_lower, trim

_I64_MAX = 2**63 - 1


class NotStorable(Enum):
    """Why a response may not be stored under the origin's rules; the value is the reason
    for `no_store(reason)` and `Cache-Status`."""

    #: The status code is not final, not understood, 206 or 304.
    STATUS = "status"
    #: The response says `no-store`.
    NO_STORE = "no-store"
    #: The request says `no-store`.
    REQUEST_NO_STORE = "request-no-store"
    #: The response says `private`.
    PRIVATE = "private"
    #: The response says `no-cache` (not stored until the host revalidates).
    NO_CACHE = "no-cache"
    #: The request carried `Authorization` and the response does not allow sharing it.
    AUTHORIZATION = "authorization"
    #: The response sets a cookie.
    SET_COOKIE = "set-cookie"
    #: The response says `Vary: *`.
    VARY_STAR = "vary-star"
    #: The response has no explicit freshness lifetime.
    NO_EXPLICIT_FRESHNESS = "no-explicit-freshness"
    #: The response is already stale (or has a zero lifetime).
    STALE = "stale"

    def as_str(self) -> str:
        """The reason as a short token for `no_store(reason)` and `Cache-Status`."""
        return self.value

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Freshness:
    """How long a storable response may be stored and served stale, in seconds. `ttl` is the
    remaining freshness (the lifetime minus the current age), 0 only for a response with a
    validator that must be revalidated before every use."""

    ttl: int
    stale_while_revalidate: int = 0
    stale_if_error: int = 0

    def directive(self) -> StoreDirective:
        """A store directive with these windows and no tags."""
        return StoreDirective(
            self.ttl,
            stale_while_revalidate=self.stale_while_revalidate,
            stale_if_error=self.stale_if_error,
        )


@dataclass(frozen=True, slots=True)
class Fixed:
    """Heuristic freshness (RFC 9111 section 4.2.2) of a fixed lifetime, in seconds."""

    seconds: int

    def lifetime(self, resp: Response) -> int | None:
        """The heuristic lifetime of `resp` in seconds."""
        return self.seconds


@dataclass(frozen=True, slots=True)
class SinceModified:
    """Heuristic freshness of `percent` of the time since `Last-Modified` (as of `Date`), at
    most `max` seconds; none without a `Last-Modified` before `Date`. 10% is customary.

    >>> resp = (Response(200).with_header("date", "Thu, 01 Jan 2026 10:00:00 GMT")
    ...         .with_header("last-modified", "Thu, 01 Jan 2026 00:00:00 GMT"))
    >>> SinceModified(percent=10, max=86400).lifetime(resp)
    3600
    """

    percent: int
    max: int

    def lifetime(self, resp: Response) -> int | None:
        """The heuristic lifetime of `resp` in seconds, if any."""
        date_field, modified_field = resp.header("date"), resp.header("last-modified")
        if date_field is None or modified_field is None:
            return None
        date, modified = parse_http_date(date_field), parse_http_date(modified_field)
        if date is None or modified is None or date - modified <= 0:
            return None
        return min(min((date - modified) * self.percent, _I64_MAX) // 100, self.max)


#: Heuristic freshness: a fixed lifetime or a share of the time since the last modification.
#: `None` (the default) never stores a response without explicit freshness.
Heuristic = Fixed | SinceModified


@dataclass(frozen=True, slots=True)
class FollowOrigin:
    """The origin-driven storage rules, with the knobs a policy may want to turn:

    - `store_set_cookie`: store responses that carry `Set-Cookie` (default `False`);
    - `heuristic`: freshness for responses without explicit freshness whose status is
      heuristically cacheable (or that say `public`); `None`, off, by default;
    - `targeted`: targeted cache-control fields (RFC 9213) this cache obeys, most specific first
      (`["larder-cache-control", "cdn-cache-control"]`); the first one present in a response
      replaces its `Cache-Control` entirely; names are trimmed and lower-cased;
    - `default_stale_if_error`: the stale-if-error window, in seconds, for responses that give
      none and do not forbid serving stale (`must-revalidate`, `proxy-revalidate`,
      `s-maxage`); 0 by default.

    >>> rules = FollowOrigin(targeted=["larder-cache-control", "cdn-cache-control"])
    >>> resp = (Response(200).with_header("cache-control", "no-store")
    ...         .with_header("cdn-cache-control", "max-age=600"))
    >>> rules.decide(Request("GET", "/"), resp)
    Store(directive=StoreDirective(ttl=600, stale_while_revalidate=0, stale_if_error=0, tags=()))
    """

    store_set_cookie: bool = False
    heuristic: Heuristic | None = None
    targeted: Sequence[str] = ()
    default_stale_if_error: int = 0

    def __post_init__(self) -> None:
        names = (ascii_lower(trim(name)) for name in self.targeted)
        object.__setattr__(self, "targeted", tuple(name for name in names if name))

    def cache_control(self, resp: Response) -> CacheControl:
        """The directives this cache obeys: those of the first targeted field present and
        valid, else the response's `Cache-Control`."""
        for name in self.targeted:
            if resp.has_header(name):
                cc = CacheControl.parse_targeted(resp.header_values(name))
                if cc is not None:
                    return cc
        return resp.cache_control()

    def evaluate(self, req: Request, resp: Response) -> Freshness | NotStorable:
        """Applies the rules (see the module's documentation).

        >>> FollowOrigin().evaluate(Request("GET", "/"), Response(200))
        <NotStorable.NO_EXPLICIT_FRESHNESS: 'no-explicit-freshness'>
        """
        if not is_storable_status(resp.status):
            return NotStorable.STATUS
        cc = self.cache_control(resp)
        if cc.must_understand:
            # Stored only with a status code the cache understands; then `no-store` (sent for
            # caches that do not know `must-understand`) does not apply.
            if not is_understood_status(resp.status):
                return NotStorable.STATUS
        elif cc.no_store:
            return NotStorable.NO_STORE
        if req.cache_control().no_store:
            return NotStorable.REQUEST_NO_STORE
        if cc.private:
            return NotStorable.PRIVATE
        validator = resp.has_header("etag") or resp.has_header("last-modified")
        if cc.no_cache and not validator:
            return NotStorable.NO_CACHE
        if req.has_header("authorization") and not (
            cc.public or cc.s_maxage is not None or cc.must_revalidate
        ):
            return NotStorable.AUTHORIZATION
        if not self.store_set_cookie and resp.has_header("set-cookie"):
            return NotStorable.SET_COOKIE
        if any(trim(v) == "*" for value in resp.header_values("vary") for v in value.split(",")):
            return NotStorable.VARY_STAR
        if cc.no_cache:
            # Stored, but stale from the start: the host revalidates it before every use.
            return Freshness(0)
        lifetime = explicit_lifetime(resp, cc)
        if lifetime is None:
            heuristic = None if self.heuristic is None else self.heuristic.lifetime(resp)
            if heuristic is None or not (cc.public or is_heuristically_cacheable(resp.status)):
                return NotStorable.NO_EXPLICIT_FRESHNESS
            lifetime = heuristic
        ttl = max(lifetime - current_age(resp), 0)
        if ttl == 0 and not validator:
            return NotStorable.STALE
        if cc.must_revalidate or cc.proxy_revalidate:
            return Freshness(ttl)
        default_sie = 0 if cc.s_maxage is not None else self.default_stale_if_error
        return Freshness(
            ttl,
            stale_while_revalidate=cc.stale_while_revalidate or 0,
            stale_if_error=default_sie if cc.stale_if_error is None else cc.stale_if_error,
        )

    def decide(self, req: Request, resp: Response) -> ResponseDecision:
        """`evaluate` as a decision: `store` without tags, or `no_store` with the `NotStorable`
        reason."""
        verdict = self.evaluate(req, resp)
        if isinstance(verdict, NotStorable):
            return ResponseDecision.no_store(verdict.value)
        return ResponseDecision.store(verdict.directive())


def follow_origin(req: Request, resp: Response) -> ResponseDecision:
    """Stores what the origin's headers explicitly allow a shared cache to store, for as long as
    they allow, without tags; see the module's documentation for the rules. The default
    `Policy.on_response`.

    >>> resp = (Response(200)
    ...     .with_header("cache-control", "public, max-age=600, stale-while-revalidate=30")
    ...     .with_header("age", "100"))
    >>> follow_origin(Request("GET", "/"), resp).directive.ttl
    500
    """
    return _DEFAULT.decide(req, resp)


_DEFAULT = FollowOrigin()


def explicit_lifetime(resp: Response, cc: CacheControl) -> int | None:
    """The explicit freshness lifetime for a shared cache: `s-maxage`, else `max-age`, else
    `Expires` minus `Date` (RFC 9111 section 4.2.1). `None` when none applies, including an
    `Expires` without a parseable `Date` (the guest has no clock to stand in for `Date`). An
    unparseable `Expires` counts as a lifetime of zero."""
    if cc.s_maxage is not None:
        return cc.s_maxage
    if cc.max_age is not None:
        return cc.max_age
    expires_field = resp.header("expires")
    if expires_field is None:
        return None
    expires = parse_http_date(expires_field)
    if expires is None:
        return 0
    date_field = resp.header("date")
    date = None if date_field is None else parse_http_date(date_field)
    if date is None:
        return None
    return min(max(expires - date, 0), DELTA_SECONDS_MAX)


def current_age(resp: Response) -> int:
    """The response's current age in seconds: its `Age` header, or 0 if absent or invalid.
    Larder talks to the origin directly, so the response delay is negligible next to `Age`."""
    age = resp.header("age")
    parsed = None if age is None else parse_age(age)
    return 0 if parsed is None else parsed


def is_heuristically_cacheable(status: int) -> bool:
    """Whether RFC 9110 section 15.1 defines `status` as heuristically cacheable: 200, 203,
    204, 206, 300, 301, 308, 404, 405, 410, 414 and 501. (Larder never stores 206 anyway.)"""
    return status in (200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501)


def is_storable_status(status: int) -> bool:
    """Whether Larder may store a response with `status` at all, given explicit freshness: a
    final status code, except 206 (partial content is not stored) and 304 (a revalidation
    answer, not a representation)."""
    return 200 <= status <= 599 and status not in (206, 304)


def is_understood_status(status: int) -> bool:
    """Whether Larder understands `status` (RFC 9110 defines it and it is not partial content),
    as `must-understand` requires (RFC 9111 section 5.2.2.3)."""
    return (
        200 <= status <= 205
        or 300 <= status <= 303
        or status in (305, 307, 308)
        or 400 <= status <= 417
        or 421 <= status <= 426
        or 500 <= status <= 505
    )
