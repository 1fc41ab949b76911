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

The conversions run on every call, so they are written for speed (a call's whole budget inside
WebAssembly is tens of microseconds, and CPython there is several times slower than natively):

- The host's records arrive as the SDK's own objects, with no conversion: componentize-py's
  runtime looks up the class of each WIT record in the generated module once, after importing
  the app (and with it this module), and calls it with the record's fields in WIT order. So
  at import this module points the generated names `Header`, `Param`, `Request` and
  `Response` at the SDK's `Header` and `Param` and at functions building the SDK's `Request`
  and `Response` (`lift_into_sdk_types`). A call checks the type it was given and converts
  anything else as below, so a runtime that looked its classes up earlier still works. This
  saves the generated dataclasses' `__init__` per record and the second object per header:
  about 4 µs of a 50 µs `on-request` (`cargo bench --bench figures -- policy_call`).
- `Request` and `Response` are built with `object.__new__` and their slots set directly, not
  through the frozen dataclass's `__init__` (which sets each field through
  `object.__setattr__` by name, with its keyword handling on top). The result is the same
  object; `_REQUEST_FIELDS` is checked against the dataclass at import so a field added to it
  cannot be forgotten here.
- `Header`s and `Param`s are made with `tuple.__new__`, as `NamedTuple._make` does, skipping the
  Python-level `__new__` of the named tuple.
- A route's settings are the same on every request of the route, so its `Settings` object is
  built once and reused (`_settings`), keyed by the route's name and the settings' names and
  values, not by the route alone: a reload may change them. A policy that memoises what it
  derives from its settings (analysis-policy's `Tuning.of`, with `functools.lru_cache`) then
  finds it by identity, without comparing the settings. The cache is bounded (a config has a
  few dozen routes; it is emptied when full) and holds only immutable values, so nothing of one
  call reaches another's decision.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
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


_new_object = object.__new__
_new_tuple = tuple.__new__
_name_value = operator.attrgetter("name", "value")


def _params(params: Iterable[Any]) -> tuple[Param, ...]:
    return tuple([_new_tuple(Param, (p.name, p.value)) for p in params])


def _headers(headers: Iterable[Any]) -> tuple[Header, ...]:
    return tuple([_new_tuple(Header, (h.name, h.value)) for h in headers])


#: At most this many distinct `Settings` are kept (then the cache is emptied and refilled).
_SETTINGS_CACHE_SIZE = 256
_settings_cache: dict[tuple[str, tuple[tuple[str, str], ...]], Settings] = {}


def _settings(route: str, params: Iterable[Any]) -> Settings:
    """The `Settings` of `route`, one object per distinct route name and settings."""
    return _route_settings(route, tuple(map(_name_value, params)))


def _route_settings(route: str, pairs: tuple[tuple[str, str], ...]) -> Settings:
    """`_settings`, given the settings as (name, value) pairs (`Param`s are such pairs)."""
    key = (route, pairs)
    settings = _settings_cache.get(key)
    if settings is None:
        if len(_settings_cache) >= _SETTINGS_CACHE_SIZE:
            _settings_cache.clear()
        settings = Settings(route, tuple([_new_tuple(Param, pair) for pair in pairs]))
        _settings_cache[key] = settings
    return settings


def _slot_setters(cls: type, names: tuple[str, ...]) -> tuple[Callable[[Any, Any], None], ...]:
    """The `__set__` of the slots `names` of the dataclass `cls`, checked to be all its fields,
    in order."""
    declared = tuple(f.name for f in dataclasses.fields(cls))
    if declared != names:
        raise TypeError(f"export.py builds {cls.__name__} with {names}, but it has {declared}")
    return tuple(cls.__dict__[name].__set__ for name in names)


_REQUEST_FIELDS = (
    "method",
    "path",
    "query",
    "headers",
    "route_name",
    "route_pattern",
    "params",
    "settings",
)
(
    _set_method,
    _set_path,
    _set_query,
    _set_request_headers,
    _set_route_name,
    _set_route_pattern,
    _set_params,
    _set_settings,
) = _slot_setters(Request, _REQUEST_FIELDS)
_set_status, _set_response_headers, _set_body_size = _slot_setters(
    Response, ("status", "headers", "body_size")
)


def _lift_request(
    method: str,
    path: str,
    query: str | None,
    headers: list[Header],
    route_name: str,
    route_pattern: str,
    params: list[Param],
    settings: list[Param],
) -> Request:
    """The SDK's `Request` from the fields of the WIT record, as the runtime passes them when
    `Header` and `Param` are the SDK's (`lift_into_sdk_types`)."""
    request = _new_object(Request)
    _set_method(request, method)
    _set_path(request, path)
    _set_query(request, query)
    _set_request_headers(request, tuple(headers))
    _set_route_name(request, route_name)
    _set_route_pattern(request, route_pattern)
    _set_params(request, tuple(params))
    _set_settings(request, _route_settings(route_name, tuple(settings)))
    return request


def _lift_response(status: int, headers: list[Header], body_size: int | None) -> Response:
    """The SDK's `Response` from the fields of the WIT record (see `_lift_request`)."""
    response = _new_object(Response)
    _set_status(response, status)
    _set_response_headers(response, tuple(headers))
    _set_body_size(response, body_size)
    return response


def lift_into_sdk_types(types: ModuleType) -> None:
    """Points the generated module `types` (`wit_world.imports.types`) at the SDK's types for
    the records the host sends, so that the runtime builds those directly (see the module docs).
    Done at import when the generated module exists, that is inside the component."""
    types.Header = Header  # type: ignore[attr-defined]
    types.Param = Param  # type: ignore[attr-defined]
    types.Request = _lift_request  # type: ignore[attr-defined]
    types.Response = _lift_response  # type: ignore[attr-defined]


def _request(req: Any) -> Request:
    if type(req) is Request:
        return req
    request = _new_object(Request)
    _set_method(request, req.method)
    _set_path(request, req.path)
    _set_query(request, req.query)
    _set_request_headers(request, _headers(req.headers))
    _set_route_name(request, req.route_name)
    _set_route_pattern(request, req.route_pattern)
    _set_params(request, _params(req.params))
    _set_settings(request, _settings(req.route_name, req.settings))
    return request


def _response(resp: Any) -> Response:
    if type(resp) is Response:
        return resp
    response = _new_object(Response)
    _set_status(response, resp.status)
    _set_response_headers(response, _headers(resp.headers))
    _set_body_size(response, resp.body_size)
    return response


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
                policy.check_settings(_settings(route, settings))
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


def _generated_types() -> ModuleType | None:
    """The generated `larder:policy/types` module, if this runs inside a component build (or
    beside generated bindings); `None` natively."""
    try:
        from wit_world.imports import types
    except ImportError:
        return None
    return types if hasattr(types, "RequestDecision_Lookup") else None


_generated = _generated_types()
if _generated is not None:
    lift_into_sdk_types(_generated)
