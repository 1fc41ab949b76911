"""The Rust SDK's tests of `types.rs` (requests, responses, keys, decisions), in Python."""

import pytest

from larder_policy import (
    BOOL,
    U32,
    CacheKey,
    Header,
    Invalidation,
    InvalidSetting,
    Key,
    KeyRef,
    LogLevel,
    Lookup,
    NoStore,
    Pass,
    Prefix,
    Request,
    RequestDecision,
    Response,
    ResponseDecision,
    Store,
    StoreDirective,
    Tag,
    testing,
)


def test_headers_are_case_insensitive_and_first_wins() -> None:
    req = Request("GET", "/").with_header("Accept", "a").with_header("accept", "b")
    assert req.header("ACCEPT") == "a"
    assert req.header_values("accept") == ["a", "b"]
    assert req.has_header("accept")
    assert not req.has_header("authorization")
    # ASCII case folding only, as the Rust SDK's `eq_ignore_ascii_case`.
    assert Request("GET", "/").with_header("k", "v").header("\u212a") is None


def test_header_names_not_written_lower_case_are_folded_in_order() -> None:
    # The host's names are lower-case; one built by hand may not be, and still matches, in
    # order, while a lower-case name of the same length that differs never does.
    req = Request(
        "GET",
        "/",
        headers=(
            Header("Accept", "a"),
            Header("cookie", "no"),
            Header("accept", "b"),
            Header("ACCEPT", "c"),
            Header("X-\u00c9", "d"),
            Header("1-2", "e"),
        ),
    )
    assert req.header("accept") == "a"
    assert req.header_values("Accept") == ["a", "b", "c"]
    assert req.header("x-\u00c9") == "d" and req.header("x-\u00e9") is None
    assert req.header("1-2") == "e" and req.header_values("1-2") == ["e"]
    assert not req.has_header("origin")
    assert not Request("GET", "/").has_header("accept")


def test_settings_parse_with_defaults() -> None:
    req = (
        Request("GET", "/")
        .with_setting("ttl", "600")
        .with_setting("bad", "ten")
        .with_setting("soft_purge", "true")
    )
    assert req.setting("ttl") == "600"
    assert req.setting_or("ttl", U32, 1) == 600
    assert req.setting_or("missing", U32, 7) == 7
    with testing.captured_logs() as lines:
        assert req.setting_or("bad", U32, 7) == 7
    assert lines == [
        (LogLevel.WARN, 'route ``: setting `bad` = "ten" is not valid; using the default')
    ]
    assert req.setting_or("soft_purge", BOOL, False) is True
    with pytest.raises(InvalidSetting) as bad:
        req.settings.parse("bad", U32)
    assert bad.value.value == "ten"
    assert req.settings.parse("missing", U32) is None


def test_query_pairs_are_decoded_and_odd_escapes_kept() -> None:
    req = Request("GET", "/").with_query("a=1&&b=x%2By+z&c=%zz&d=100%&%E2%82%AC=euro&e")
    assert req.query_pairs() == [
        ("a", "1"),
        ("b", "x+y z"),
        ("c", "%zz"),
        ("d", "100%"),
        ("€", "euro"),
        ("e", ""),
    ]
    assert req.query_param("€") == "euro"
    assert req.query_param("A") is None, "names are case-sensitive"
    assert Request("GET", "/").query_pairs() == []
    bad = Request("GET", "/").with_query("x=%FF")
    assert bad.query_param("x") == "\ufffd"
    # Every maximal invalid sequence is one U+FFFD, as Rust's `from_utf8_lossy`.
    assert Request("GET", "/").with_query("x=%E2%82%E2%82%AC").query_param("x") == "\ufffd€"


def test_safe_methods() -> None:
    assert Request("GET", "/").is_safe()
    assert Request("HEAD", "/").is_safe()
    assert Request("get", "/").is_safe()
    assert not Request("POST", "/").is_safe()
    assert not Request("DELETE", "/").is_safe()


def test_query_or_empty() -> None:
    assert Request("GET", "/").query_or_empty() == ""
    assert Request("GET", "/").with_query("a=1").query_or_empty() == "a=1"


def test_route_and_settings_travel_together() -> None:
    req = Request("GET", "/").with_setting("ttl", "1").with_route("items", "/items/{id}")
    assert (req.route_name, req.route_pattern) == ("items", "/items/{id}")
    assert req.settings.route == "items"
    assert req.settings.get("ttl") == "1"


def test_response_helpers() -> None:
    resp = Response(200).with_header("Cache-Control", "max-age=60").with_header("ETag", '"1"')
    assert resp.header("cache-control") == "max-age=60"
    assert resp.has_header("etag")
    assert resp.cache_control().max_age == 60
    assert Response(204).is_success()
    assert not Response(304).is_success()
    assert Request("GET", "/").with_header("cache-control", "no-store").cache_control().no_store


def test_key_builders() -> None:
    key = CacheKey(["repo", "1"]).part("view").with_vary(["Accept-Encoding"])
    assert key.parts == ("repo", "1", "view")
    assert key.vary == ("accept-encoding",)
    assert RequestDecision.lookup(key) == Lookup(key)
    assert RequestDecision.pass_("method") == Pass("method")
    assert CacheKey(["a"], vary=["X-Tenant"]) == CacheKey(("a",), ("x-tenant",))


def test_store_directive_builders() -> None:
    d = StoreDirective(1800, stale_while_revalidate=30, stale_if_error=600, tags=["repo:1"]).tag(
        "all-repos"
    )
    assert d.ttl == 1800
    assert d.tags == ("repo:1", "all-repos")
    assert d.stale_while_revalidate == 30
    assert d.stale_if_error == 600
    stored = ResponseDecision.store(StoreDirective(5)).with_tags(["t"])
    assert stored == Store(StoreDirective(5).tag("t"))
    not_stored = ResponseDecision.no_store("status").with_tags(["t"])
    assert not_stored == NoStore("status")


def test_invalidation_builders() -> None:
    inv = Invalidation.tag("repo:1").as_soft()
    assert inv.target == Tag("repo:1")
    assert inv.soft
    assert not Invalidation.tag("x").soft_if(False).soft
    key = Invalidation.key(KeyRef.here(["/a", ""]))
    assert key.target == Key(KeyRef(None, ["/a", ""]))
    prefix = Invalidation.prefix(KeyRef.on_route("list", ["list"]))
    assert prefix.target == Prefix(KeyRef("list", ["list"]))
