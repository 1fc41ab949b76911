"""The one place the SDK meets the bindings componentize-py generates for the `policy-plugin`
world of `larder:policy@0.2.0`.

componentize-py calls the class named after the exported interface, `Policy`, in the app's
module, with the generated records and variants. `export(MyPolicy)` returns such a class: it
converts the host's records into the SDK's plain types, calls the policy, and converts its
decisions back. The generated modules (`wit_world`, `componentize_py_types`) exist only when
the component is built, so they are imported at the first call, not at import: the policy's
module, `export` line included, imports and runs under a plain `pytest`.

An exception a policy does not handle traps the call, and the gateway proxies the request
uncached (or refuses the config, in `check_settings`). The sandbox discards the guest's standard
error, so the adapter first logs the exception with its place through the host's log, as the
Rust SDK logs a panic.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any, TypeVar

from .decisions import (
    Invalidation,
    Key,
    Lookup,
    NoStore,
    Pass,
    Prefix,
    RequestDecision,
    ResponseDecision,
    Store,
    Tag,
)
from .host import error
from .messages import Header, Request, Response
from .policy import Policy
from .settings import Param, SettingError, Settings

F = TypeVar("F", bound=Callable[..., Any])


@functools.cache
def _types() -> ModuleType:
    """The generated `larder:policy/types` module."""
    from wit_world.imports import types

    return types


@functools.cache
def _err() -> type[Exception]:
    """The generated `result` error, which componentize-py turns into `err(..)`."""
    from componentize_py_types import Err

    return Err


def _params(params: Iterable[Any]) -> tuple[Param, ...]:
    return tuple([Param(p.name, p.value) for p in params])


def _headers(headers: Iterable[Any]) -> tuple[Header, ...]:
    return tuple([Header(h.name, h.value) for h in headers])


def _request(req: Any) -> Request:
    return Request(
        method=req.method,
        path=req.path,
        query=req.query,
        headers=_headers(req.headers),
        route_name=req.route_name,
        route_pattern=req.route_pattern,
        params=_params(req.params),
        settings=Settings(req.route_name, _params(req.settings)),
    )


def _response(resp: Any) -> Response:
    return Response(status=resp.status, headers=_headers(resp.headers), body_size=resp.body_size)


def _request_decision(decision: RequestDecision) -> Any:
    t = _types()
    if isinstance(decision, Pass):
        return t.RequestDecision_Pass(decision.reason)
    if isinstance(decision, Lookup):
        key = decision.key
        return t.RequestDecision_Lookup(t.CacheKey(list(key.parts), list(key.vary)))
    raise TypeError(f"on_request returned {decision!r}, not a RequestDecision")


def _response_decision(decision: ResponseDecision) -> Any:
    t = _types()
    if isinstance(decision, NoStore):
        return t.ResponseDecision_NoStore(decision.reason)
    if isinstance(decision, Store):
        d = decision.directive
        directive = t.StoreDirective(
            d.ttl, d.stale_while_revalidate, d.stale_if_error, list(d.tags)
        )
        return t.ResponseDecision_Store(directive)
    raise TypeError(f"on_response returned {decision!r}, not a ResponseDecision")


def _invalidation(invalidation: Invalidation) -> Any:
    t = _types()
    target = invalidation.target
    if isinstance(target, Tag):
        wit_target = t.InvalidationTarget_Tag(target.tag)
    elif isinstance(target, Key):
        wit_target = t.InvalidationTarget_Key(t.KeyRef(target.key.route, list(target.key.parts)))
    elif isinstance(target, Prefix):
        wit_target = t.InvalidationTarget_Prefix(t.KeyRef(target.key.route, list(target.key.parts)))
    else:
        raise TypeError(f"on_invalidate returned {invalidation!r}, not an Invalidation")
    return t.Invalidation(wit_target, invalidation.soft)


def _logs_exceptions(call: F) -> F:
    """Logs an exception escaping `call` through the host's log, then lets it trap the call."""

    @functools.wraps(call)
    def logged(*args: Any) -> Any:
        try:
            return call(*args)
        except Exception as e:
            if not isinstance(e, _err()):
                place = traceback.extract_tb(e.__traceback__)[-1]
                error(
                    f"plugin raised {type(e).__name__}: {e} at {place.filename}:{place.lineno} "
                    f"in {place.name}".replace("\n", " ")
                )
            raise

    return logged  # type: ignore[return-value]


def export(policy_class: type[Policy]) -> type:
    """The class componentize-py calls for the `larder:policy/policy` export, serving an
    instance of `policy_class`. Bind it to the name `Policy` in the app's module:

        class Items(larder_policy.Policy):
            ...

        Policy = larder_policy.export(Items)
    """
    policy = policy_class()

    class Export:
        @_logs_exceptions
        def check_settings(self, route: str, settings: list[Any]) -> None:
            try:
                policy.check_settings(Settings(route, _params(settings)))
            except SettingError as refused:
                raise _err()(str(refused)) from None

        @_logs_exceptions
        def on_request(self, req: Any) -> Any:
            return _request_decision(policy.on_request(_request(req)))

        @_logs_exceptions
        def on_response(self, req: Any, resp: Any) -> Any:
            return _response_decision(policy.on_response(_request(req), _response(resp)))

        @_logs_exceptions
        def on_invalidate(self, req: Any, resp: Any) -> list[Any]:
            invalidations = policy.on_invalidate(_request(req), _response(resp))
            return [_invalidation(i) for i in invalidations]

    return Export
