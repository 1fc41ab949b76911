"""What a policy sees of a request and of the upstream's response.

`Request` and `Response` mirror the WIT records of `larder:policy` as the SDK's own frozen
dataclasses (headers and parameters as named tuples), with the Rust SDK's helpers: case-insensitive headers, the query's pairs
percent-decoded, path parameters typed (`param_as`), the route's settings typed (`settings`),
`Cache-Control` parsed. The `with_*` methods are the test constructors: they return a copy with
one more header, parameter or setting, as the host would have built it.

    req = (Request("GET", "/api/v1/repositories/1")
           .with_route("repository", "/api/v1/repositories/{id}")
           .with_param("id", "1")
           .with_header("Accept", "application/json"))
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple, TypeVar
from urllib.parse import unquote_to_bytes

from .cache_control import CacheControl
from .host import warn
from .params import BadParam, ParamError, ValueType
from .settings import InvalidSetting, Param, Settings
from .text import ascii_lower, rust_debug

T = TypeVar("T")


class Header(NamedTuple):
    """One HTTP header field. The host passes names lower-case; a value that is not valid UTF-8
    arrives with each invalid sequence replaced by U+FFFD and should not be key material."""

    name: str
    value: str


# Header lookups run several times per call (a policy typically asks for `authorization`,
# `cookie`, `cache-control` ...), over a dozen fields for a browser's request, so the scan is
# written for the common case: the host's names are lower-case already, so a field whose name is
# `wanted` exactly matches at once; only a field of the same length that is not lower-case (a
# name a test or a policy wrote) is folded to compare. ASCII folding keeps the length, and a name
# that is lower-case already folds to itself, so nothing else can match.


def _values(headers: tuple[Header, ...], name: str) -> list[str]:
    wanted = ascii_lower(name)
    size = len(wanted)
    return [
        value
        for field, value in headers
        if field == wanted
        or (len(field) == size and not field.islower() and ascii_lower(field) == wanted)
    ]


def _first(headers: tuple[Header, ...], name: str) -> str | None:
    wanted = ascii_lower(name)
    size = len(wanted)
    for field, value in headers:
        if field == wanted or (
            len(field) == size and not field.islower() and ascii_lower(field) == wanted
        ):
            return value
    return None


def _form_decode(text: str) -> str:
    """`application/x-www-form-urlencoded` decoding of one name or value: `+` is a space, `%XX`
    a byte, anything else as written; bytes that are not UTF-8 become U+FFFD."""
    return unquote_to_bytes(text.replace("+", " ")).decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Request:
    """What the policy sees of the client's request.

    `method` is upper-case as sent; `path` percent-encoded as sent, without the query; `query`
    the query string without `?`, or `None`; `headers` in the order received, repeated fields
    repeated; `route_name` and `route_pattern` as written in the gateway's config; `params` the
    values captured by the pattern's `{name}` segments, percent-decoded; `settings` the route's
    `[route.settings]`, the same for every request of the route.
    """

    method: str
    path: str
    query: str | None = None
    headers: tuple[Header, ...] = ()
    route_name: str = ""
    route_pattern: str = ""
    params: tuple[Param, ...] = ()
    settings: Settings = Settings("", ())

    def with_query(self, query: str) -> Request:
        """A copy with this query string (without the leading `?`). For tests."""
        return replace(self, query=query)

    def with_header(self, name: str, value: str) -> Request:
        """A copy with one more header (the name lower-cased, as the host does). For tests."""
        return replace(self, headers=(*self.headers, Header(ascii_lower(name), value)))

    def with_route(self, name: str, pattern: str) -> Request:
        """A copy with this route name and pattern. For tests."""
        return replace(
            self,
            route_name=name,
            route_pattern=pattern,
            settings=Settings(name, self.settings.params),
        )

    def with_param(self, name: str, value: str) -> Request:
        """A copy with one more captured path parameter. For tests."""
        return replace(self, params=(*self.params, Param(name, value)))

    def with_setting(self, name: str, value: str) -> Request:
        """A copy with one more route setting. For tests."""
        params = (*self.settings.params, Param(name, value))
        return replace(self, settings=Settings(self.route_name, params))

    def header(self, name: str) -> str | None:
        """The value of the first header named `name` (compared case-insensitively), if any.
        Repeated fields are not joined; `header_values` has all of them.

        >>> req = Request("GET", "/").with_header("Accept", "a").with_header("accept", "b")
        >>> req.header("ACCEPT"), req.header_values("accept")
        ('a', ['a', 'b'])
        """
        return _first(self.headers, name)

    def header_values(self, name: str) -> list[str]:
        """The values of every header named `name` (compared case-insensitively), in order."""
        return _values(self.headers, name)

    def has_header(self, name: str) -> bool:
        """Whether the request has at least one header named `name` (case-insensitive)."""
        return _first(self.headers, name) is not None

    def param(self, name: str) -> str | None:
        """The path parameter `name` captured by the route pattern (`{id}`), percent-decoded by
        the host, as the client spelled it. For an identifier that goes into keys or tags,
        prefer `param_as`: `01` and `1` are different texts but, to a backend that reads a
        number, the same resource."""
        for p in self.params:
            if p.name == name:
                return p.value
        return None

    def param_as(self, name: str, value_type: ValueType[T]) -> T | None:
        """The path parameter `name` read as a `value_type`: `None` when the route captured no
        such parameter; raises `BadParam` when its text is not a value of the type (turn it
        into a decision with `bad.decision()`, `pass("bad-param")`).

        >>> from larder_policy import U64
        >>> Request("GET", "/items/007").with_param("id", "007").param_as("id", U64)
        7
        """
        raw = self.param(name)
        if raw is None:
            return None
        value = value_type.parse(raw)
        if isinstance(value, ParamError):
            raise BadParam(name, raw, value)
        return value

    def param_canonical(self, name: str, value_type: ValueType[object]) -> str | None:
        """The canonical text of the path parameter `name` as a `value_type` (`"1"` for `"01"`
        as a `U64`): `param_as`, as text. Raises `BadParam` as `param_as` does."""
        value = self.param_as(name, value_type)
        return None if value is None else str(value)

    def setting(self, name: str) -> str | None:
        """The raw value of the route setting `name`, rendered as a string: numbers and booleans
        in their TOML form (`"1800"`, `"true"`)."""
        return self.settings.get(name)

    def setting_or(self, name: str, value_type: ValueType[T], default: T) -> T:
        """The route setting `name` read as a `value_type`, or `default` when it is absent.

        A setting that is present but does not parse also yields `default`, and logs a warning
        naming it, so that a typo in the config degrades to the documented default instead of
        failing every request. Better, check settings once, in `Policy.check_settings`: the
        gateway then refuses a config with a bad value, and this warning (which also costs the
        call its decision reuse) never happens.
        """
        try:
            value = self.settings.parse(name, value_type)
        except InvalidSetting as bad:
            warn(
                f"route `{self.route_name}`: setting `{name}` = {rust_debug(bad.value)} "
                "is not valid; using the default"
            )
            return default
        return default if value is None else value

    def is_safe(self) -> bool:
        """Whether the method is GET or HEAD: the only methods whose responses Larder caches."""
        method = self.method
        return method in ("GET", "HEAD") or ascii_lower(method) in ("get", "head")

    def query_or_empty(self) -> str:
        """The query string without the leading `?`, or `""` when the request had none. Handy
        as the last key part."""
        return self.query or ""

    def query_pairs(self) -> list[tuple[str, str]]:
        """The query's `name=value` pairs in order, percent-decoded, with `+` read as a space
        (the form encoding browsers and most clients use). A pair without `=` has an empty
        value; empty pairs (`a=1&&b=2`) are skipped; an escape that is not `%` and two hex
        digits is kept as written, and bytes that do not decode to UTF-8 become U+FFFD.

        >>> Request("GET", "/").with_query("q=caf%C3%A9+au+lait&flag").query_pairs()
        [('q', 'café au lait'), ('flag', '')]
        """
        pairs = []
        for pair in self.query_or_empty().split("&"):
            if pair:
                name, _, value = pair.partition("=")
                pairs.append((_form_decode(name), _form_decode(value)))
        return pairs

    def query_param(self, name: str) -> str | None:
        """The decoded value of the first query parameter called `name` (compared after
        decoding, case-sensitively, as servers do), or `None`."""
        return next((v for n, v in self.query_pairs() if n == name), None)

    def cache_control(self) -> CacheControl:
        """The request's `Cache-Control` directives (all fields combined)."""
        return CacheControl.parse(self.header_values("cache-control"))


@dataclass(frozen=True, slots=True)
class Response:
    """What the policy sees of the upstream's answer: its status, headers (lower-case names, in
    the order received) and the body's length when known before storing. Not the body."""

    status: int
    headers: tuple[Header, ...] = ()
    body_size: int | None = None

    def with_header(self, name: str, value: str) -> Response:
        """A copy with one more header (the name lower-cased, as the host does). For tests."""
        return replace(self, headers=(*self.headers, Header(ascii_lower(name), value)))

    def header(self, name: str) -> str | None:
        """The value of the first header named `name` (compared case-insensitively), if any."""
        return _first(self.headers, name)

    def header_values(self, name: str) -> list[str]:
        """The values of every header named `name` (compared case-insensitively), in order."""
        return _values(self.headers, name)

    def has_header(self, name: str) -> bool:
        """Whether the response has at least one header named `name` (case-insensitive)."""
        return _first(self.headers, name) is not None

    def is_success(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    def cache_control(self) -> CacheControl:
        """The response's `Cache-Control` directives (all fields combined).

        >>> cc = Response(200).with_header("cache-control", "private, max-age=60").cache_control()
        >>> cc.private, cc.max_age
        (True, 60)
        """
        return CacheControl.parse(self.header_values("cache-control"))
