"""The adapter against the real bindings: componentize-py generates them for `wit/policy.wit`
(skipped where componentize-py is not installed next to this Python), and the adapter must
turn the host's records into the SDK's types and the SDK's decisions into the host's.

Inside a component the SDK points the generated record names at its own types, so the runtime
builds those (`lift_into_sdk_types`); the tests taking `wit` run both ways: with the records
as generated, and lifted into the SDK's types.
"""

import importlib
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from larder_policy import (
    U32,
    CacheKey,
    Invalidation,
    KeyRef,
    LogLevel,
    Policy,
    Request,
    RequestDecision,
    Response,
    ResponseDecision,
    Settings,
    StoreDirective,
    export,
    testing,
)
from larder_policy.export import lift_into_sdk_types

WIT = Path(__file__).resolve().parents[4] / "wit" / "policy.wit"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The generated `larder:policy/types` module, as generated."""
    cli = Path(sys.executable).with_name("componentize-py")
    if not cli.exists():
        pytest.skip("componentize-py is not installed next to this Python")
    out = tmp_path_factory.mktemp("bindings") / "generated"
    subprocess.run(
        [cli, "-q", "-d", WIT, "-w", "policy-plugin", "bindings", out],
        check=True,
    )
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("wit_world.imports.types")
    finally:
        sys.path.remove(str(out))


#: The records the host sends, which `lift_into_sdk_types` replaces.
LIFTED = ("Header", "Param", "Request", "Response")


@contextmanager
def lifted(types: ModuleType) -> Iterator[ModuleType]:
    """`types` with the host's records lifted into the SDK's types, as inside a component."""
    saved = {name: getattr(types, name) for name in LIFTED}
    lift_into_sdk_types(types)
    try:
        yield types
    finally:
        for name, record in saved.items():
            setattr(types, name, record)


@pytest.fixture(params=["as generated", "lifted into the SDK's types"])
def wit(request: pytest.FixtureRequest, generated: ModuleType) -> Iterator[ModuleType]:
    """The generated module, both ways."""
    if request.param == "as generated":
        yield generated
    else:
        with lifted(generated) as types:
            yield types


class Mirror(Policy):
    """Answers with what it was given, so that both directions of the conversion show."""

    def check_settings(self, settings: Settings) -> None:
        settings.only(["ttl"])
        settings.parse("ttl", U32)

    def on_request(self, req: Request) -> RequestDecision:
        if req.param("id") == "boom":
            raise ValueError("no\nid")
        return RequestDecision.lookup(
            CacheKey(
                [
                    req.method,
                    req.path,
                    req.query or "<none>",
                    req.route_name,
                    req.route_pattern,
                    req.param("id") or "",
                    req.setting("ttl") or "",
                    req.settings.route,
                    req.header("X-A") or "",
                ],
                vary=["X-A"],
            )
        )

    def on_response(self, req: Request, resp: Response) -> ResponseDecision:
        return ResponseDecision.store(
            StoreDirective(
                resp.status,
                stale_while_revalidate=resp.body_size or 0,
                stale_if_error=7,
                tags=[resp.header("etag") or "", req.path],
            )
        )

    def on_invalidate(self, req: Request, resp: Response) -> Sequence[Invalidation]:
        return [
            Invalidation.tag(f"repo:{req.param('id')}"),
            Invalidation.key(KeyRef.here([req.path, ""])),
            Invalidation.prefix(KeyRef.on_route("list", ["list"])).as_soft(),
        ]


def request(t: Any, param_id: str = "7", query: str | None = "a=1") -> Any:
    return t.Request(
        method="GET",
        path="/items/7",
        query=query,
        headers=[t.Header("x-a", "1"), t.Header("x-a", "2")],
        route_name="items",
        route_pattern="/items/{id}",
        params=[t.Param("id", param_id)],
        settings=[t.Param("ttl", "60")],
    )


def test_a_request_arrives_whole_and_the_key_goes_back(wit: ModuleType) -> None:
    exported = export(Mirror)()
    decision = exported.on_request(request(wit))
    assert decision == wit.RequestDecision_Lookup(
        wit.CacheKey(
            ["GET", "/items/7", "a=1", "items", "/items/{id}", "7", "60", "items", "1"],
            ["x-a"],
        )
    )
    absent = exported.on_request(request(wit, query=None))
    assert absent.value.parts[2] == "<none>"


def test_a_pass_goes_back(wit: ModuleType) -> None:
    class Never(Policy):
        def on_request(self, req: Request) -> RequestDecision:
            return RequestDecision.pass_("never")

    assert export(Never)().on_request(request(wit)) == wit.RequestDecision_Pass("never")


def test_store_and_no_store_go_back(wit: ModuleType) -> None:
    resp = wit.Response(status=200, headers=[wit.Header("etag", '"v1"')], body_size=30)
    assert export(Mirror)().on_response(request(wit), resp) == wit.ResponseDecision_Store(
        wit.StoreDirective(200, 30, 7, ['"v1"', "/items/7"])
    )

    # The default `on_response` follows the origin.
    class Default(Policy):
        def on_request(self, req: Request) -> RequestDecision:
            return RequestDecision.pass_("x")

    no_fields = wit.Response(status=200, headers=[], body_size=None)
    assert export(Default)().on_response(request(wit), no_fields) == (
        wit.ResponseDecision_NoStore("no-explicit-freshness")
    )


def test_invalidations_go_back(wit: ModuleType) -> None:
    resp = wit.Response(status=204, headers=[], body_size=None)
    assert export(Mirror)().on_invalidate(request(wit), resp) == [
        wit.Invalidation(wit.InvalidationTarget_Tag("repo:7"), False),
        wit.Invalidation(wit.InvalidationTarget_Key(wit.KeyRef(None, ["/items/7", ""])), False),
        wit.Invalidation(wit.InvalidationTarget_Prefix(wit.KeyRef("list", ["list"])), True),
    ]


def test_settings_are_accepted_or_refused_with_the_reason(wit: ModuleType) -> None:
    from componentize_py_types import Err

    exported = export(Mirror)()
    assert exported.check_settings("items", [wit.Param("ttl", "60")]) is None
    with pytest.raises(Err) as refused:
        exported.check_settings("items", [wit.Param("ttl", "soon")])
    assert refused.value.value == 'setting `ttl` = "soon" is not a valid u32'
    with pytest.raises(Err) as unknown:
        exported.check_settings("items", [wit.Param("tll", "60")])
    assert unknown.value.value == "unknown setting `tll` (this policy reads `ttl`)"


def test_an_exception_is_logged_with_its_place_and_traps(wit: ModuleType) -> None:
    with testing.captured_logs() as lines, pytest.raises(ValueError):
        export(Mirror)().on_request(request(wit, param_id="boom"))
    [(level, message)] = lines
    assert level is LogLevel.ERROR
    assert message.startswith("plugin raised ValueError: no id at ")
    assert "test_export.py:" in message and message.endswith(" in on_request")


def test_a_result_that_is_not_a_decision_is_named(wit: ModuleType) -> None:
    class Confused(Policy):
        def on_request(self, req: Request) -> RequestDecision:
            return CacheKey(["x"])  # type: ignore[return-value]

    with testing.captured_logs() as lines, pytest.raises(TypeError):
        export(Confused)().on_request(request(wit))
    assert "on_request returned CacheKey(" in lines[0][1]


def test_the_adapter_builds_the_same_request_and_response_as_the_constructors(
    wit: ModuleType,
) -> None:
    # `export` builds them without their `__init__`, for speed: the result must be the same.
    from larder_policy import Header, Param
    from larder_policy.export import _request, _response

    req = _request(request(wit))
    assert type(req) is Request
    assert req == Request(
        method="GET",
        path="/items/7",
        query="a=1",
        headers=(Header("x-a", "1"), Header("x-a", "2")),
        route_name="items",
        route_pattern="/items/{id}",
        params=(Param("id", "7"),),
        settings=Settings("items", (Param("ttl", "60"),)),
    )
    assert type(req.headers[0]) is Header and type(req.params[0]) is Param
    assert type(req.settings.params[0]) is Param
    assert req.with_query("b=2").query == "b=2" and hash(req) == hash(req.with_query("a=1"))
    resp = _response(wit.Response(status=200, headers=[wit.Header("etag", '"v1"')], body_size=3))
    assert type(resp) is Response
    assert resp == Response(200, (Header("etag", '"v1"'),), 3)
    assert repr(resp) == (
        "Response(status=200, headers=(Header(name='etag', value='\"v1\"'),), body_size=3)"
    )


def test_records_lifted_into_the_sdks_types_reach_the_policy_as_they_are(
    generated: ModuleType,
) -> None:
    from larder_policy import Header, Param
    from larder_policy.export import _request

    converted = _request(request(generated))
    with lifted(generated) as types:
        req = request(types)
        resp = types.Response(200, [types.Header("etag", '"v1"')], None)
    assert type(req) is Request and type(resp) is Response
    assert type(req.headers[0]) is Header and type(req.params[0]) is Param
    assert req == converted
    # One `Settings` per route, whichever way the request came.
    assert req.settings is converted.settings
    seen: list[tuple[Request, Response]] = []

    class Spy(Policy):
        def on_request(self, req: Request) -> RequestDecision:
            return RequestDecision.pass_("spy")

        def on_response(self, req: Request, resp: Response) -> ResponseDecision:
            seen.append((req, resp))
            return ResponseDecision.no_store("spy")

    export(Spy)().on_response(req, resp)
    assert seen[0][0] is req and seen[0][1] is resp


def test_a_routes_settings_are_one_object_until_they_change(generated: ModuleType) -> None:
    wit = generated
    # `larder_policy.export` is also the name of the function the package exports.
    export_module = importlib.import_module("larder_policy.export")
    _request, _settings = export_module._request, export_module._settings

    first, second = _request(request(wit)), _request(request(wit, param_id="8"))
    assert first.settings is second.settings
    other = request(wit)
    other.settings = [wit.Param("ttl", "61")]
    assert _request(other).settings == Settings("items", (("ttl", "61"),))
    other.route_name = "things"
    assert _request(other).settings.route == "things"
    # Bounded: a config that keeps changing does not grow it without end.
    for ttl in range(2 * export_module._SETTINGS_CACHE_SIZE):
        assert _settings("r", [wit.Param("ttl", str(ttl))]).get("ttl") == str(ttl)
    assert len(export_module._settings_cache) <= export_module._SETTINGS_CACHE_SIZE
