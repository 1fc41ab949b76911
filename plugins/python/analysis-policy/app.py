"""The Larder cache policy for the Source Code Analysis Tool (SCAT) API, in Python.

A port of `plugins/analysis-policy` (Rust) that makes exactly the same decisions: the same keys,
tags, reasons, settings and warnings. Its README's decision table describes both; the tests in
`tests/test_policy.py` are the Rust unit tests, ported. It exists to show, and to test, that a
policy written with the Python SDK decides as a Rust one does.

- every cached answer about one repository carries the tag `repo:{id}`;
- every aggregate over all repositories (the repository list, insights) carries `all-repos`;
- a successful `POST /api/v1/repositories/{id}/actions/analyze` purges `repo:{id}` and
  `all-repos`;
- a POST whose answer depends only on its body (embeddings) is cached by the body's digest on a
  route with `cache_post = true`.

What it derives from a route's settings (`Tuning`, the `vary` names) is memoised per settings
(`functools.lru_cache`, bounded): a route's settings are the same on every request, and the SDK
hands every request of a route the same `Settings` object, so reading them again on each call
would only cost time. The memo is a pure function of the settings, not state between calls.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import larder_policy
from larder_policy import (
    BOOL,
    U32,
    U64,
    BadParam,
    CacheKey,
    Digits,
    Invalidation,
    ParamError,
    Request,
    RequestDecision,
    Response,
    ResponseDecision,
    SettingError,
    Settings,
    StoreDirective,
    request_body_digest,
    warn,
)
from larder_policy.text import trim

#: Tag on every aggregate over all repositories (the list, insights).
ALL_REPOS = "all-repos"

#: A repository id as the backend parses it: ASCII digits with leading zeros, no sign (`+1` is a
#: 400 there), within u64. Its `str()` is the canonical text used in keys and tags.
REPO_ID = Digits(U64)


@dataclass(frozen=True)
class Tuning:
    """A route's settings (the README's table), typed."""

    ttl: int = 1800
    not_found_ttl: int = 60
    stale_while_revalidate: int = 0
    stale_if_error: int = 0
    soft_purge: bool = False

    #: Every setting this policy reads; `view` and `vary` are free text.
    NAMES = (
        "ttl",
        "not_found_ttl",
        "stale_while_revalidate",
        "stale_if_error",
        "view",
        "vary",
        "soft_purge",
    )

    @staticmethod
    def read(settings: Settings) -> Tuning:
        """The settings, typed; raises `SettingError` for the first one that does not parse."""
        d = Tuning()
        return Tuning(
            ttl=settings.parse_or("ttl", U32, d.ttl),
            not_found_ttl=settings.parse_or("not_found_ttl", U32, d.not_found_ttl),
            stale_while_revalidate=settings.parse_or(
                "stale_while_revalidate", U32, d.stale_while_revalidate
            ),
            stale_if_error=settings.parse_or("stale_if_error", U32, d.stale_if_error),
            soft_purge=settings.parse_or("soft_purge", BOOL, d.soft_purge),
        )

    @staticmethod
    def of(req: Request) -> Tuning:
        """The request's route's settings, which `check_settings` accepted at load; silently
        the defaults should they not parse (logging would cost every request its decision
        reuse)."""
        return _tuning(req.settings)


#: Bound of the memos below: more than the routes of any config this policy serves.
ROUTES_MEMOISED = 64


@functools.lru_cache(maxsize=ROUTES_MEMOISED)
def _tuning(settings: Settings) -> Tuning:
    """`Tuning.of`, memoised per settings."""
    try:
        return Tuning.read(settings)
    except SettingError:
        return Tuning()


@functools.lru_cache(maxsize=ROUTES_MEMOISED)
def vary_names(settings: Settings) -> tuple[str, ...]:
    """The request headers named by the `vary` setting (comma-separated, blanks ignored)."""
    names = (trim(name) for name in (settings.get("vary") or "").split(","))
    return tuple(name for name in names if name)


def repo_tag(repo: int) -> str:
    return f"repo:{repo}"


def repository(req: Request) -> int | None:
    """The repository of the request: `None` on a route without `{id}` (the aggregates,
    embeddings); raises `BadParam` for an id the backend does not accept."""
    return req.param_as("id", REPO_ID)


class AnalysisPolicy(larder_policy.Policy):
    """The Source Code Analysis Tool policy."""

    def check_settings(self, settings: Settings) -> None:
        settings.only(Tuning.NAMES)
        Tuning.read(settings)

    def on_request(self, req: Request) -> RequestDecision:
        # Answers to authenticated requests may be personal; never share them.
        if req.has_header("authorization") or req.has_header("cookie"):
            return RequestDecision.pass_("credentials")
        if not req.is_safe():
            # A POST whose answer depends only on its body (embeddings) is cached by the body's
            # digest, on routes configured with `cache_post = true`.
            digest = request_body_digest()
            if digest is not None and req.method == "POST":
                return RequestDecision.lookup(CacheKey([req.route_name, digest]))
            return RequestDecision.pass_("method")
        query = req.query_or_empty()
        try:
            repo = repository(req)
        except BadParam as bad:
            # Not an id the backend accepts: it answers with an error, which is not cached.
            return bad.decision()
        if repo is not None:
            # The repository id is always in the key, in its canonical form: two repositories
            # never share an entry, and two spellings of one repository always do.
            view = req.setting("view")
            parts = ["repo", str(repo), req.route_name if view is None else view, query]
        else:
            parts = [req.route_name, query]
        return RequestDecision.lookup(CacheKey(parts, vary=vary_names(req.settings)))

    def on_response(self, req: Request, resp: Response) -> ResponseDecision:
        if resp.has_header("set-cookie"):
            return ResponseDecision.no_store("set-cookie")
        cc = resp.cache_control()
        if cc.no_store:
            return ResponseDecision.no_store("no-store")
        if cc.private:
            return ResponseDecision.no_store("private")
        # The backend sends no validators, so a `no-cache` answer could not be revalidated.
        if cc.no_cache:
            return ResponseDecision.no_store("no-cache")
        tuning = Tuning.of(req)
        if resp.status == 200:
            ttl = tuning.ttl
        elif resp.status == 404:
            ttl = tuning.not_found_ttl
        else:
            return ResponseDecision.no_store("status")
        # A zero TTL is the config's way of turning storing off (the host rejects `store` with
        # a zero TTL).
        if ttl == 0:
            return ResponseDecision.no_store("status" if resp.status == 404 else "ttl")
        try:
            repo = repository(req)
        except BadParam:
            # `on_request` passed it, so this is not called for it; never store one anyway.
            return ResponseDecision.no_store(BadParam.REASON)
        if repo is not None:
            tags = [repo_tag(repo)]
        elif req.method == "POST":
            # A body-keyed POST (embeddings) depends on no repository: tagged by its route.
            tags = [req.route_name]
        else:
            tags = [ALL_REPOS]
        return ResponseDecision.store(
            StoreDirective(
                ttl,
                stale_while_revalidate=tuning.stale_while_revalidate,
                stale_if_error=tuning.stale_if_error,
                tags=tags,
            )
        )

    def on_invalidate(self, req: Request, resp: Response) -> Sequence[Invalidation]:
        # Only writes to one repository (analyze) change cached answers; anything else
        # (embeddings) touches nothing cached.
        try:
            repo = repository(req)
            if repo is None:
                return []
        except BadParam as bad:
            # The backend took a write for an id this policy does not serve: it reads ids more
            # leniently than we thought. Purging more than needed is harmless, so read the id as
            # leniently as common parsers do (`+1`, surrounding spaces) and purge that
            # repository.
            lenient = U64.parse(trim(bad.value))
            repo = None if isinstance(lenient, ParamError) else lenient
            purging = f"only {ALL_REPOS}" if repo is None else f"{repo_tag(repo)} and {ALL_REPOS}"
            warn(f"{bad}, but the backend accepted the write; purging {purging}")
        soft = Tuning.of(req).soft_purge
        # The aggregates (list, insights) are computed over every repository, so they go too.
        tags = ([] if repo is None else [repo_tag(repo)]) + [ALL_REPOS]
        return [Invalidation.tag(tag).soft_if(soft) for tag in tags]


# componentize-py calls the class named after the WIT export, `policy`, in this module.
Policy = larder_policy.export(AnalysisPolicy)
