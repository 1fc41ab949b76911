"""The Rust analysis-policy's unit tests, ported: every row of the README's decision table,
pinned for the Python port with the same expectations."""

from collections.abc import Iterator

import pytest
from larder_policy import (
    CacheKey,
    Invalidation,
    LogLevel,
    Request,
    RequestDecision,
    Response,
    ResponseDecision,
    SettingError,
    StoreDirective,
    testing,
)

from app import AnalysisPolicy

policy = AnalysisPolicy()


def ai_features(repo: str) -> Request:
    return (
        Request("GET", f"/api/v1/repositories/{repo}/ai-features")
        .with_route("ai-features", "/api/v1/repositories/{id}/ai-features")
        .with_param("id", repo)
    )


def insights() -> Request:
    return Request("GET", "/api/v1/insights").with_route("insights", "/api/v1/insights")


def analyze(repo: str) -> Request:
    return (
        Request("POST", f"/api/v1/repositories/{repo}/actions/analyze")
        .with_route("analyze", "/api/v1/repositories/{id}/actions/analyze")
        .with_param("id", repo)
    )


def check_settings(req: Request) -> str | None:
    """The reason `check_settings` refuses the request's settings, or `None`."""
    try:
        policy.check_settings(req.settings)
    except SettingError as refused:
        return str(refused)
    return None


@pytest.fixture
def body_digest() -> Iterator[None]:
    yield
    testing.set_body_digest(None)


def test_a_post_is_cached_by_its_body_digest_only_when_offered(body_digest: None) -> None:
    req = Request("POST", "/api/v1/embeddings").with_route("embeddings", "/api/v1/embeddings")
    testing.set_body_digest(None)
    assert policy.on_request(req) == RequestDecision.pass_("method")
    testing.set_body_digest("ab12")
    assert policy.on_request(req) == RequestDecision.lookup(CacheKey(["embeddings", "ab12"]))
    assert policy.on_response(req, Response(200)) == ResponseDecision.store(
        StoreDirective(1800).tag("embeddings")
    )
    # Only a POST: a digest offered for another method does not make it a lookup.
    put = Request("PUT", "/api/v1/embeddings").with_route("embeddings", "/api/v1/embeddings")
    assert policy.on_request(put) == RequestDecision.pass_("method")


@pytest.mark.parametrize(
    "req",
    [
        ai_features("1").with_header("authorization", "Bearer t"),
        ai_features("1").with_header("cookie", "session=1"),
        analyze("1").with_header("cookie", "session=1"),
    ],
)
def test_credentials_pass(req: Request) -> None:
    assert policy.on_request(req) == RequestDecision.pass_("credentials")


def test_unsafe_methods_pass() -> None:
    assert policy.on_request(analyze("1")) == RequestDecision.pass_("method")


def test_repository_keys_carry_the_id_view_and_query() -> None:
    assert policy.on_request(ai_features("7")) == RequestDecision.lookup(
        CacheKey(["repo", "7", "ai-features", ""])
    )
    req = ai_features("7").with_setting("view", "ai").with_query("lang=en")
    assert policy.on_request(req) == RequestDecision.lookup(
        CacheKey(["repo", "7", "ai", "lang=en"])
    )
    # An empty `view` is a view (the Rust policy's `unwrap_or` keeps it too).
    empty_view = ai_features("7").with_setting("view", "")
    assert policy.on_request(empty_view) == RequestDecision.lookup(CacheKey(["repo", "7", "", ""]))


def test_aggregate_keys_use_the_route_name() -> None:
    assert policy.on_request(insights()) == RequestDecision.lookup(CacheKey(["insights", ""]))
    listing = (
        Request("GET", "/api/v1/repositories")
        .with_route("repositories", "/api/v1/repositories")
        .with_query("page=2")
    )
    assert policy.on_request(listing) == RequestDecision.lookup(
        CacheKey(["repositories", "page=2"])
    )


def test_vary_setting() -> None:
    req = insights().with_setting("vary", "Accept, accept-language,")
    assert policy.on_request(req) == RequestDecision.lookup(
        CacheKey(["insights", ""], vary=["accept", "accept-language"])
    )


def test_stores_200_with_settings_and_tags() -> None:
    assert policy.on_response(ai_features("3"), Response(200)) == ResponseDecision.store(
        StoreDirective(1800).tag("repo:3")
    )
    req = (
        insights()
        .with_setting("ttl", "600")
        .with_setting("stale_while_revalidate", "30")
        .with_setting("stale_if_error", "3600")
    )
    assert policy.on_response(req, Response(200)) == ResponseDecision.store(
        StoreDirective(600, stale_while_revalidate=30, stale_if_error=3600).tag("all-repos")
    )


def test_settings_are_checked_at_load_by_name_and_type() -> None:
    good = (
        ai_features("1")
        .with_setting("ttl", "600")
        .with_setting("not_found_ttl", "0")
        .with_setting("stale_while_revalidate", "30")
        .with_setting("stale_if_error", "3600")
        .with_setting("view", "ai")
        .with_setting("vary", "accept")
        .with_setting("soft_purge", "true")
    )
    assert check_settings(good) is None
    assert check_settings(insights()) is None


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("ttl", "half an hour", 'setting `ttl` = "half an hour" is not a valid u32'),
        ("ttl", "-1", 'setting `ttl` = "-1" is not a valid u32'),
        ("soft_purge", "yes", 'setting `soft_purge` = "yes" is not a valid bool'),
        (
            "tll",
            "600",
            "unknown setting `tll` (this policy reads `ttl`, `not_found_ttl`, "
            "`stale_while_revalidate`, `stale_if_error`, `view`, `vary`, `soft_purge`)",
        ),
    ],
)
def test_bad_settings_are_refused_with_the_rust_policys_words(
    name: str, value: str, reason: str
) -> None:
    assert check_settings(ai_features("1").with_setting(name, value)) == reason


def test_bad_settings_fall_back_to_defaults() -> None:
    req = ai_features("3").with_setting("ttl", "half an hour").with_setting("stale_if_error", "5")
    # All of them: one bad setting makes the whole table the defaults, as in Rust.
    assert policy.on_response(req, Response(200)) == ResponseDecision.store(
        StoreDirective(1800).tag("repo:3")
    )


def test_not_found_is_stored_briefly() -> None:
    assert policy.on_response(ai_features("999"), Response(404)) == ResponseDecision.store(
        StoreDirective(60).tag("repo:999")
    )
    req = ai_features("999").with_setting("not_found_ttl", "0")
    assert policy.on_response(req, Response(404)) == ResponseDecision.no_store("status")


@pytest.mark.parametrize("status", [201, 204, 301, 400, 500, 502, 503])
def test_other_statuses_are_not_stored(status: int) -> None:
    assert policy.on_response(ai_features("1"), Response(status)) == ResponseDecision.no_store(
        "status"
    )


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        ("set-cookie", "a=b", "set-cookie"),
        ("cache-control", "no-store", "no-store"),
        ("cache-control", "private, max-age=60", "private"),
        ("cache-control", "no-cache", "no-cache"),
    ],
)
def test_origin_refusals_are_not_stored(header: str, value: str, reason: str) -> None:
    resp = Response(200).with_header(header, value)
    assert policy.on_response(ai_features("1"), resp) == ResponseDecision.no_store(reason)


def test_a_zero_ttl_stores_nothing() -> None:
    req = ai_features("1").with_setting("ttl", "0")
    assert policy.on_response(req, Response(200)) == ResponseDecision.no_store("ttl")


def test_analyze_purges_the_repository_and_the_aggregates() -> None:
    assert policy.on_invalidate(analyze("5"), Response(202)) == [
        Invalidation.tag("repo:5"),
        Invalidation.tag("all-repos"),
    ]
    soft = analyze("5").with_setting("soft_purge", "true")
    assert policy.on_invalidate(soft, Response(202)) == [
        Invalidation.tag("repo:5").as_soft(),
        Invalidation.tag("all-repos").as_soft(),
    ]
    embeddings = Request("POST", "/api/v1/embeddings").with_route(
        "embeddings", "/api/v1/embeddings"
    )
    assert list(policy.on_invalidate(embeddings, Response(200))) == []


@pytest.mark.parametrize("repo", ["1", "01", "0001"])
def test_every_spelling_of_a_repository_id_has_one_key_and_one_tag(repo: str) -> None:
    assert policy.on_request(ai_features(repo)) == RequestDecision.lookup(
        CacheKey(["repo", "1", "ai-features", ""])
    )
    assert policy.on_response(ai_features(repo), Response(200)) == ResponseDecision.store(
        StoreDirective(1800).tag("repo:1")
    )
    assert policy.on_invalidate(analyze(repo), Response(200)) == [
        Invalidation.tag("repo:1"),
        Invalidation.tag("all-repos"),
    ]


def test_the_ends_of_the_id_range() -> None:
    assert policy.on_request(ai_features("0")) == RequestDecision.lookup(
        CacheKey(["repo", "0", "ai-features", ""])
    )
    assert policy.on_request(ai_features("18446744073709551615")) == RequestDecision.lookup(
        CacheKey(["repo", "18446744073709551615", "ai-features", ""])
    )


@pytest.mark.parametrize(
    "repo", ["abc", "1a", "+1", "-1", "", " 1", "1.0", "18446744073709551616", "١"]
)
def test_ids_the_backend_refuses_pass_uncached(repo: str) -> None:
    # `+1` is a spelling of 1 to some parsers, but this backend answers it with 400: serving
    # repository 1's cached answer for it would contradict the backend.
    assert policy.on_request(ai_features(repo)) == RequestDecision.pass_("bad-param")
    assert policy.on_response(ai_features(repo), Response(200)) == ResponseDecision.no_store(
        "bad-param"
    )


def test_credentials_are_checked_before_the_id() -> None:
    # The reason names the more important rule.
    req = ai_features("abc").with_header("cookie", "s=1")
    assert policy.on_request(req) == RequestDecision.pass_("credentials")


@pytest.mark.parametrize(
    ("repo", "purged", "warning"),
    [
        # Leniently read as a number: that repository, and the aggregates.
        (
            "+1",
            ["repo:1", "all-repos"],
            'path parameter `id` = "+1" is not valid: it contains a character the type does '
            "not accept, but the backend accepted the write; purging repo:1 and all-repos",
        ),
        ("+01", ["repo:1", "all-repos"], None),
        ("\u30001\t", ["repo:1", "all-repos"], None),
        # Not a number at all: the aggregates only.
        (
            "abc",
            ["all-repos"],
            'path parameter `id` = "abc" is not valid: it contains a character the type does '
            "not accept, but the backend accepted the write; purging only all-repos",
        ),
        ("-1", ["all-repos"], None),
        (
            "99999999999999999999",
            ["all-repos"],
            'path parameter `id` = "99999999999999999999" is not valid: it is out of range, '
            "but the backend accepted the write; purging only all-repos",
        ),
        # Rust's `trim` keeps U+001C, so the id stays unreadable.
        ("\x1c1", ["all-repos"], None),
    ],
)
def test_a_successful_write_to_an_id_the_policy_does_not_serve_purges_what_it_can_read(
    repo: str, purged: list[str], warning: str | None
) -> None:
    with testing.captured_logs() as lines:
        invalidations = policy.on_invalidate(analyze(repo), Response(200))
    assert invalidations == [Invalidation.tag(tag) for tag in purged]
    assert [level for level, _ in lines] == [LogLevel.WARN]
    if warning is not None:
        assert lines[0][1] == warning


def test_a_lenient_purge_is_soft_when_configured() -> None:
    soft = analyze("+1").with_setting("soft_purge", "true")
    with testing.captured_logs():
        assert policy.on_invalidate(soft, Response(200)) == [
            Invalidation.tag("repo:1").as_soft(),
            Invalidation.tag("all-repos").as_soft(),
        ]


def test_the_module_exports_the_policy_for_componentize_py() -> None:
    import app

    assert callable(app.Policy().on_request)
