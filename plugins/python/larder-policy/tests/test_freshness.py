"""The Rust SDK's tests of `freshness.rs`, in Python: the same rules give the same results."""

from larder_policy import (
    FollowOrigin,
    Request,
    Response,
    ResponseDecision,
    StoreDirective,
    follow_origin,
)
from larder_policy.freshness import (
    Fixed,
    Freshness,
    NotStorable,
    SinceModified,
    is_heuristically_cacheable,
)


def get() -> Request:
    return Request("GET", "/thing")


def ok(cache_control: str) -> Response:
    return Response(200).with_header("cache-control", cache_control)


def evaluate(resp: Response) -> Freshness | NotStorable:
    return FollowOrigin().evaluate(get(), resp)


def fresh(ttl: int) -> Freshness:
    return Freshness(ttl)


def test_max_age_is_the_ttl() -> None:
    assert evaluate(ok("max-age=60")) == fresh(60)
    assert evaluate(ok("public, max-age=60")) == fresh(60)


def test_s_maxage_beats_max_age_and_expires() -> None:
    resp = (
        ok("max-age=60, s-maxage=120")
        .with_header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
        .with_header("expires", "Sun, 06 Nov 1994 09:49:37 GMT")
    )
    assert evaluate(resp) == fresh(120)


def test_max_age_beats_expires() -> None:
    resp = (
        ok("max-age=60")
        .with_header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
        .with_header("expires", "Sun, 06 Nov 1994 09:49:37 GMT")
    )
    assert evaluate(resp) == fresh(60)


def test_expires_minus_date() -> None:
    resp = (
        Response(200)
        .with_header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
        .with_header("expires", "Sun, 06 Nov 1994 09:49:37 GMT")
    )
    assert evaluate(resp) == fresh(3600)


def test_expires_in_the_past_or_invalid_is_stale() -> None:
    past = (
        Response(200)
        .with_header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
        .with_header("expires", "Sun, 06 Nov 1994 07:49:37 GMT")
    )
    assert evaluate(past) is NotStorable.STALE
    zero = (
        Response(200)
        .with_header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
        .with_header("expires", "0")
    )
    assert evaluate(zero) is NotStorable.STALE


def test_expires_without_date_is_not_explicit() -> None:
    resp = Response(200).with_header("expires", "Sun, 06 Nov 1994 09:49:37 GMT")
    assert evaluate(resp) is NotStorable.NO_EXPLICIT_FRESHNESS


def test_age_is_subtracted() -> None:
    assert evaluate(ok("max-age=60").with_header("age", "20")) == fresh(40)
    assert evaluate(ok("max-age=60").with_header("age", "60")) is NotStorable.STALE
    assert evaluate(ok("max-age=60").with_header("age", "6000")) is NotStorable.STALE
    assert evaluate(ok("max-age=60").with_header("age", "bogus")) == fresh(60)


def test_zero_max_age_is_stale() -> None:
    assert evaluate(ok("max-age=0")) is NotStorable.STALE
    assert evaluate(ok("max-age=oops")) is NotStorable.STALE


def test_responses_with_validators_are_kept_to_be_revalidated() -> None:
    revalidate = Freshness(0)

    def etag(cc: str) -> Response:
        return ok(cc).with_header("etag", '"v1"')

    assert evaluate(etag("no-cache")) == revalidate
    assert evaluate(etag("no-cache, max-age=600")) == revalidate
    assert evaluate(etag("max-age=0")) == revalidate
    lm = ok("max-age=0").with_header("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")
    assert evaluate(lm) == revalidate
    # Still refused for the other reasons.
    assert evaluate(etag("no-cache, private")) is NotStorable.PRIVATE


def test_no_explicit_freshness_is_not_stored() -> None:
    assert evaluate(Response(200)) is NotStorable.NO_EXPLICIT_FRESHNESS
    assert evaluate(ok("public")) is NotStorable.NO_EXPLICIT_FRESHNESS


def test_heuristic_ttl_when_enabled() -> None:
    rules = FollowOrigin(heuristic=Fixed(30))
    assert rules.evaluate(get(), Response(200)) == fresh(30)
    assert rules.evaluate(get(), Response(404)) == fresh(30)
    assert rules.evaluate(get(), Response(500)) is NotStorable.NO_EXPLICIT_FRESHNESS
    public_500 = Response(500).with_header("cache-control", "public")
    assert rules.evaluate(get(), public_500) == fresh(30)
    assert rules.evaluate(get(), ok("max-age=5")) == fresh(5)


def test_refusals_by_directive() -> None:
    assert evaluate(ok("no-store, max-age=60")) is NotStorable.NO_STORE
    assert evaluate(ok("private, max-age=60")) is NotStorable.PRIVATE
    assert evaluate(ok('private="set-cookie", max-age=60')) is NotStorable.PRIVATE
    assert evaluate(ok("no-cache, max-age=60")) is NotStorable.NO_CACHE
    assert evaluate(ok('no-cache="x", max-age=60')) is NotStorable.NO_CACHE


def test_request_no_store() -> None:
    req = get().with_header("cache-control", "no-store")
    assert FollowOrigin().evaluate(req, ok("max-age=60")) is NotStorable.REQUEST_NO_STORE


def test_set_cookie_is_conservative_by_default() -> None:
    resp = ok("public, max-age=60").with_header("set-cookie", "a=b")
    assert evaluate(resp) is NotStorable.SET_COOKIE
    assert FollowOrigin(store_set_cookie=True).evaluate(get(), resp) == fresh(60)


def test_vary_star() -> None:
    assert evaluate(ok("max-age=60").with_header("vary", "accept, *")) is NotStorable.VARY_STAR
    assert evaluate(ok("max-age=60").with_header("vary", "accept-encoding")) == fresh(60)


def test_authorization_needs_explicit_permission() -> None:
    req = get().with_header("authorization", "Bearer x")
    rules = FollowOrigin()
    assert rules.evaluate(req, ok("max-age=60")) is NotStorable.AUTHORIZATION
    assert rules.evaluate(req, ok("public, max-age=60")) == fresh(60)
    assert rules.evaluate(req, ok("s-maxage=60")) == fresh(60)
    assert rules.evaluate(req, ok("must-revalidate, max-age=60")) == fresh(60)


def test_must_understand_overrides_no_store_for_understood_status_codes_only() -> None:
    cc = "max-age=60, no-store, must-understand"
    assert evaluate(ok(cc)) == fresh(60)
    assert evaluate(Response(599).with_header("cache-control", cc)) is NotStorable.STATUS


def test_status_codes() -> None:
    for status in [100, 101, 206, 304, 999]:
        resp = Response(status).with_header("cache-control", "max-age=60")
        assert evaluate(resp) is NotStorable.STATUS, status
    # Unknown final status codes too, with explicit freshness.
    for status in [200, 203, 204, 299, 301, 308, 404, 410, 418, 500, 503, 599]:
        resp = Response(status).with_header("cache-control", "max-age=60")
        assert evaluate(resp) == fresh(60), status
    assert is_heuristically_cacheable(404)
    assert not is_heuristically_cacheable(500)


def test_stale_windows() -> None:
    assert evaluate(ok("max-age=60, stale-while-revalidate=30, stale-if-error=600")) == Freshness(
        60, stale_while_revalidate=30, stale_if_error=600
    )
    assert evaluate(
        ok("max-age=60, must-revalidate, stale-while-revalidate=30, stale-if-error=600")
    ) == fresh(60)
    assert evaluate(ok("max-age=60, proxy-revalidate, stale-if-error=600")) == fresh(60)


def test_multiple_cache_control_fields_combine() -> None:
    resp = (
        Response(200)
        .with_header("cache-control", "max-age=60")
        .with_header("cache-control", "private")
    )
    assert evaluate(resp) is NotStorable.PRIVATE


def test_decisions_and_reasons() -> None:
    assert follow_origin(get(), ok("max-age=60, stale-if-error=5")) == ResponseDecision.store(
        StoreDirective(60, stale_if_error=5)
    )
    assert follow_origin(get(), Response(200)) == ResponseDecision.no_store("no-explicit-freshness")
    assert str(NotStorable.SET_COOKIE) == "set-cookie"
    resp = ok("max-age=60").with_header("set-cookie", "visited=1")
    decision = FollowOrigin(store_set_cookie=True).decide(get(), resp).with_tags(["feed"])
    assert decision == ResponseDecision.store(StoreDirective(60).tag("feed"))


def test_heuristic_since_modified_is_a_fraction_of_the_age_of_the_content() -> None:
    rules = FollowOrigin(heuristic=SinceModified(percent=10, max=3600))

    def dated(last_modified: str) -> Response:
        return (
            Response(200)
            .with_header("date", "Mon, 01 Jan 2024 10:00:00 GMT")
            .with_header("last-modified", last_modified)
        )

    # Modified 1000 s before Date: 10% is 100 s.
    assert rules.evaluate(get(), dated("Mon, 01 Jan 2024 09:43:20 GMT")) == fresh(100)
    # A year old: capped.
    assert rules.evaluate(get(), dated("Sun, 01 Jan 2023 10:00:00 GMT")) == fresh(3600)
    # No Last-Modified, or one after Date: no heuristic.
    assert rules.evaluate(get(), Response(200)) is NotStorable.NO_EXPLICIT_FRESHNESS
    after = dated("Mon, 01 Jan 2024 11:00:00 GMT")
    assert rules.evaluate(get(), after) is NotStorable.NO_EXPLICIT_FRESHNESS


def test_a_default_stale_if_error_window_unless_the_origin_forbids_stale() -> None:
    rules = FollowOrigin(default_stale_if_error=60)

    def sie(cc: str) -> int:
        verdict = rules.evaluate(get(), ok(cc))
        assert isinstance(verdict, Freshness)
        return verdict.stale_if_error

    assert sie("max-age=10") == 60
    assert sie("max-age=10, stale-if-error=5") == 5
    assert sie("max-age=10, must-revalidate") == 0
    assert sie("max-age=10, proxy-revalidate") == 0
    assert sie("s-maxage=10") == 0


def test_the_first_targeted_field_present_replaces_cache_control() -> None:
    rules = FollowOrigin(targeted=["Larder-Cache-Control", "cdn-cache-control"])
    resp = (
        ok("max-age=10")
        .with_header("cdn-cache-control", "max-age=20")
        .with_header("larder-cache-control", "max-age=30")
    )
    assert rules.evaluate(get(), resp) == fresh(30)
    resp = ok("max-age=10").with_header("cdn-cache-control", "no-store")
    assert rules.evaluate(get(), resp) is NotStorable.NO_STORE
    resp = ok("no-store").with_header("cdn-cache-control", "max-age=20")
    assert rules.evaluate(get(), resp) == fresh(20)
    # Not targeted: ignored.
    resp = ok("max-age=10").with_header("cdn-cache-control", "max-age=20")
    assert FollowOrigin().evaluate(get(), resp) == fresh(10)
