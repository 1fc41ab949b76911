"""The decisions a policy returns, as plain Python values.

They mirror the WIT types of `larder:policy` (`cache-key`, `request-decision`,
`store-directive`, `response-decision`, `invalidation`) and the Rust SDK's constructors, but are
the SDK's own frozen dataclasses, not the generated bindings: a policy builds and compares them
in a plain `pytest` run, and only `larder_policy.export` converts them for the host.

Where Rust has a constructor or builder named like a field (`StoreDirective::ttl(60)` next to
the field `ttl`), Python cannot have both, so the dataclass takes keyword arguments and the
chainable methods are named `with_*`:

    StoreDirective(1800, stale_if_error=600, tags=["repo:1"]).tag("all-repos")
    CacheKey(["repo", "1"]).part("readme").with_vary(["Accept"])
    Invalidation.tag("repo:1").as_soft()

`pass` is a Python keyword, so the pass decision is built with `RequestDecision.pass_(reason)`.
Match decisions by class (`Pass`, `Lookup`, `Store`, `NoStore`; `Tag`, `Key`, `Prefix`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .text import ascii_lower


@dataclass(frozen=True, slots=True, init=False)
class CacheKey:
    """A cache key: the parts that identify the object within the route, most significant
    first, and the request headers whose values select a variant of it (like `Vary`).

    The parts must not be empty (the host rejects an empty key and proxies uncached). Parts are
    length-delimited when hashed, so there is no need to escape separators. Vary names are
    lower-cased; the host adds the headers' values to the key.

    >>> CacheKey(["repo", "1", "ai-features", ""], vary=["Accept"])
    CacheKey(parts=('repo', '1', 'ai-features', ''), vary=('accept',))
    """

    parts: tuple[str, ...]
    vary: tuple[str, ...]

    def __init__(self, parts: Iterable[str], vary: Iterable[str] = ()) -> None:
        object.__setattr__(self, "parts", tuple(parts))
        # `map`, not a generator expression: a key is built on every call, most without vary.
        object.__setattr__(self, "vary", tuple(map(ascii_lower, vary)))

    def part(self, part: str) -> CacheKey:
        """This key with one more part.

        >>> CacheKey(["repo", "7"]).part("readme").parts
        ('repo', '7', 'readme')
        """
        return CacheKey((*self.parts, part), self.vary)

    def with_vary(self, headers: Iterable[str]) -> CacheKey:
        """This key with more vary headers (lower-cased).

        >>> CacheKey(["page", "intro"]).with_vary(["Accept-Language"]).vary
        ('accept-language',)
        """
        return CacheKey(self.parts, (*self.vary, *headers))


class RequestDecision:
    """The decision taken before the cache is consulted: `Pass` or `Lookup`."""

    __slots__ = ()

    @staticmethod
    def pass_(reason: str) -> RequestDecision:
        """Forward the request upstream and do not store the answer. `reason` is short and
        machine-friendly (`"method"`, `"credentials"`); the host shows it in `Cache-Status`."""
        return Pass(reason)

    @staticmethod
    def lookup(key: CacheKey) -> RequestDecision:
        """Look the request up under `key`; on a miss the host forwards it and calls
        `Policy.on_response`."""
        return Lookup(key)


@dataclass(frozen=True, slots=True)
class Pass(RequestDecision):
    """Forward the request and do not store the answer, for `reason`."""

    reason: str


@dataclass(frozen=True, slots=True)
class Lookup(RequestDecision):
    """Look the request up under `key`."""

    key: CacheKey


@dataclass(frozen=True, slots=True, init=False)
class StoreDirective:
    """How a response is stored: `ttl` seconds fresh (0 stores it stale, to be revalidated on
    every use, which only works for a response with `ETag` or `Last-Modified`), the
    `stale_while_revalidate` and `stale_if_error` windows in seconds after the TTL (0 disables
    them), and surrogate keys (`tags`) for `Invalidation.tag`. Seconds are u32 in the WIT.

    >>> StoreDirective(1800, stale_if_error=600, tags=["repo:1"]).tag("all-repos").tags
    ('repo:1', 'all-repos')
    """

    ttl: int
    stale_while_revalidate: int
    stale_if_error: int
    tags: tuple[str, ...]

    def __init__(
        self,
        ttl: int,
        *,
        stale_while_revalidate: int = 0,
        stale_if_error: int = 0,
        tags: Iterable[str] = (),
    ) -> None:
        object.__setattr__(self, "ttl", ttl)
        object.__setattr__(self, "stale_while_revalidate", stale_while_revalidate)
        object.__setattr__(self, "stale_if_error", stale_if_error)
        object.__setattr__(self, "tags", tuple(tags))

    def with_tags(self, tags: Iterable[str]) -> StoreDirective:
        """This directive with more tags."""
        return StoreDirective(
            self.ttl,
            stale_while_revalidate=self.stale_while_revalidate,
            stale_if_error=self.stale_if_error,
            tags=(*self.tags, *tags),
        )

    def tag(self, tag: str) -> StoreDirective:
        """This directive with one more tag."""
        return self.with_tags((tag,))


class ResponseDecision:
    """The decision taken after the upstream answered a lookup that missed: `Store` or
    `NoStore`."""

    __slots__ = ()

    @staticmethod
    def store(directive: StoreDirective) -> ResponseDecision:
        """Store the response under the key chosen by `on_request`."""
        return Store(directive)

    @staticmethod
    def no_store(reason: str) -> ResponseDecision:
        """Do not store the response; `reason` says why (`"status"`, `"no-store"`)."""
        return NoStore(reason)

    def with_tags(self, tags: Iterable[str]) -> ResponseDecision:
        """Adds tags if this is a `Store` decision; a `NoStore` is returned unchanged. Handy on
        top of `follow_origin`."""
        if isinstance(self, Store):
            return Store(self.directive.with_tags(tags))
        return self


@dataclass(frozen=True, slots=True)
class Store(ResponseDecision):
    """Store the response as `directive` says."""

    directive: StoreDirective


@dataclass(frozen=True, slots=True)
class NoStore(ResponseDecision):
    """Do not store the response, for `reason`."""

    reason: str


@dataclass(frozen=True, slots=True, init=False)
class KeyRef:
    """A key or key prefix (`parts`) on the route named `route`, or on the route of the request
    being handled when `route` is `None`."""

    route: str | None
    parts: tuple[str, ...]

    def __init__(self, route: str | None, parts: Iterable[str]) -> None:
        object.__setattr__(self, "route", route)
        object.__setattr__(self, "parts", tuple(parts))

    @staticmethod
    def here(parts: Iterable[str]) -> KeyRef:
        """A key (or key prefix) on the route of the request being handled."""
        return KeyRef(None, parts)

    @staticmethod
    def on_route(route: str, parts: Iterable[str]) -> KeyRef:
        """A key (or key prefix) on the route named `route` in the gateway's config."""
        return KeyRef(route, parts)


@dataclass(frozen=True, slots=True)
class Tag:
    """Every entry that carries `tag`, on any route."""

    tag: str


@dataclass(frozen=True, slots=True)
class Key:
    """The entry (every variant of it) stored under exactly these key parts."""

    key: KeyRef


@dataclass(frozen=True, slots=True)
class Prefix:
    """Every entry of the route whose key parts start with these parts."""

    key: KeyRef


#: Which cached entries an invalidation concerns.
InvalidationTarget = Tag | Key | Prefix


@dataclass(frozen=True, slots=True)
class Invalidation:
    """One invalidation: its `target`, and whether it is `soft` (the entries become stale and
    are served stale while one request refreshes them, if they have a `stale-while-revalidate`
    window) or hard (the entries are gone).

    >>> Invalidation.tag("repo:1").as_soft()
    Invalidation(target=Tag(tag='repo:1'), soft=True)
    """

    target: InvalidationTarget
    soft: bool = False

    @staticmethod
    def tag(tag: str) -> Invalidation:
        """Every entry carrying `tag`, on any route; hard unless made soft."""
        return Invalidation(Tag(tag))

    @staticmethod
    def key(key: KeyRef) -> Invalidation:
        """The entry (every variant of it) stored under exactly these key parts."""
        return Invalidation(Key(key))

    @staticmethod
    def prefix(key: KeyRef) -> Invalidation:
        """Every entry whose key parts start with these parts."""
        return Invalidation(Prefix(key))

    def as_soft(self) -> Invalidation:
        """This invalidation as a soft purge."""
        return self.soft_if(True)

    def soft_if(self, soft: bool) -> Invalidation:
        """This invalidation, soft or hard as `soft` says (itself when it already is: it is
        immutable)."""
        return self if soft is self.soft else Invalidation(self.target, soft)
