"""The `Policy` base class: the four calls the gateway makes, with the Rust SDK's defaults.

A policy subclasses `Policy`, overrides `on_request` (and whichever of the others it needs), and
hands the class to `larder_policy.export` at the bottom of its module. The methods take the
SDK's plain Python types, so a policy is unit-tested by calling them directly.

Statelessness: the host reuses an instance for many requests and replaces it at will, so a
policy must not keep state between calls in `self` or in globals. Everything it may know
arrives in its arguments, including the route's settings (`Request.settings`). It has no clock
(frozen at the Unix epoch), no files, no network and no environment.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from .decisions import Invalidation, RequestDecision, ResponseDecision
from .freshness import follow_origin
from .messages import Request, Response
from .settings import Settings


class Policy(ABC):
    """A cache policy. Subclass it, implement `on_request`, and export the subclass with
    `larder_policy.export`."""

    def check_settings(self, settings: Settings) -> None:
        """Called when the gateway loads or reloads its plugins, once for every route that uses
        this policy, before the route serves a request. Raising `SettingError` refuses the
        route's settings with its text as the reason: the gateway then refuses the whole config,
        naming the route and this plugin (at start-up it does not start; a reload keeps what was
        serving).

        The default accepts any settings. Validate them here rather than warning per request: a
        request's `settings` are the ones checked here, so per-request code may read them
        knowing they parse."""

    @abstractmethod
    def on_request(self, req: Request) -> RequestDecision:
        """Called for every request of a route served by this plugin, before the cache is
        consulted. Return `RequestDecision.pass_` with a short reason, or
        `RequestDecision.lookup` with the key that identifies the object.

        For a GET or HEAD identical to an earlier one (method, path, query, every header) the
        host may reuse the earlier answer instead of calling again, unless that call logged,
        asked for `request_body_digest()` or drew random numbers: the answer must follow from
        the request alone. For methods other than GET and HEAD the host treats `lookup` as
        `pass`, except for a POST that asked for `request_body_digest()`."""

    def on_response(self, req: Request, resp: Response) -> ResponseDecision:
        """Called after the upstream answered a lookup that missed: whether and how long to
        store the response. The default, `follow_origin`, stores only what the origin's
        `Cache-Control`/`Expires` explicitly allows a shared cache to store, without tags."""
        return follow_origin(req, resp)

    def on_invalidate(self, req: Request, resp: Response) -> Sequence[Invalidation]:
        """Called after an unsafe request (POST, PUT, PATCH, DELETE) was answered with a 2xx or
        3xx status, or its outcome is unknown (`resp.status` 502 or 504, no headers): the
        entries that write made wrong. The default invalidates nothing."""
        return ()
