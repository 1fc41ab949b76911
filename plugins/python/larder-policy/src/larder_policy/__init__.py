"""The Python SDK for Larder cache policies, the counterpart of the Rust `larder-sdk`.

A Larder policy is a WebAssembly component that the gateway calls at three points of a
request's life (see `wit/policy.wit`, package `larder:policy@0.2.0`), after it has checked each
route's settings with it once, at load (`Policy.check_settings`):

1. `Policy.on_request`, before the cache is consulted: `RequestDecision.pass_` the request
   through, or `RequestDecision.lookup` it under a `CacheKey` the policy derives.
2. `Policy.on_response`, after the upstream answered a lookup that missed:
   `ResponseDecision.no_store`, or `ResponseDecision.store` with a `StoreDirective` (TTL, stale
   windows, tags). Defaults to `follow_origin`: the origin's `Cache-Control`.
3. `Policy.on_invalidate`, after an unsafe request (POST, PUT, PATCH, DELETE) succeeded: which
   entries it made wrong, as a list of `Invalidation`s. Defaults to none.

A policy is a module (built with componentize-py) that subclasses `Policy` and exports it:

    import larder_policy
    from larder_policy import CacheKey, Request, RequestDecision

    class ByPath(larder_policy.Policy):
        def on_request(self, req: Request) -> RequestDecision:
            if not req.is_safe():
                return RequestDecision.pass_("method")
            return RequestDecision.lookup(CacheKey([req.path, req.query_or_empty()]))

    Policy = larder_policy.export(ByPath)

Why an SDK and not the generated bindings: the bindings exist only inside the component build,
so a policy written against them cannot be tested with `pytest`; they carry no helpers (no
`Cache-Control` parsing, no typed settings or parameters); and the rules those helpers encode
must be the Rust SDK's, so that a Python policy and a Rust one decide alike. Everything here is
plain Python; only `export` touches the bindings, at call time.

Modules: `decisions` (keys, decisions, invalidations), `messages` (`Request`, `Response`),
`settings` (typed settings, `SettingError`), `params` (typed path parameters, `BadParam`),
`cache_control` (`Cache-Control`, `Age`, HTTP dates), `freshness` (RFC 9111 rules behind
`follow_origin`), `host` (log, body digest), `testing` (their stand-ins under pytest), `text`
(Rust's text rules), `policy` (`Policy`), `export` (the adapter).
"""

from .cache_control import CacheControl
from .decisions import (
    CacheKey,
    Invalidation,
    InvalidationTarget,
    Key,
    KeyRef,
    Lookup,
    NoStore,
    Pass,
    Prefix,
    RequestDecision,
    ResponseDecision,
    Store,
    StoreDirective,
    Tag,
)
from .export import export
from .freshness import FollowOrigin, follow_origin
from .host import LogLevel, debug, error, info, log, request_body_digest, warn
from .messages import Header, Request, Response
from .params import (
    BOOL,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    BadParam,
    Digits,
    ParamError,
    ValueType,
    canonical,
)
from .policy import Policy
from .settings import InvalidSetting, Param, SettingError, Settings, UnknownSetting

__all__ = [
    "BOOL",
    "I8",
    "I16",
    "I32",
    "I64",
    "U8",
    "U16",
    "U32",
    "U64",
    "BadParam",
    "CacheControl",
    "CacheKey",
    "Digits",
    "FollowOrigin",
    "Header",
    "InvalidSetting",
    "Invalidation",
    "InvalidationTarget",
    "Key",
    "KeyRef",
    "LogLevel",
    "Lookup",
    "NoStore",
    "Param",
    "ParamError",
    "Pass",
    "Policy",
    "Prefix",
    "Request",
    "RequestDecision",
    "Response",
    "ResponseDecision",
    "SettingError",
    "Settings",
    "Store",
    "StoreDirective",
    "Tag",
    "UnknownSetting",
    "ValueType",
    "canonical",
    "debug",
    "error",
    "export",
    "follow_origin",
    "info",
    "log",
    "request_body_digest",
    "warn",
]
