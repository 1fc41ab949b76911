"""Parsing of the header fields that drive HTTP caching: `Cache-Control` (RFC 9111 section
5.2, plus `stale-while-revalidate` and `stale-if-error` from RFC 5861), `Age` (section 5.1)
and HTTP dates for `Expires` and `Date` (RFC 9110 section 5.6.7).

Parsing is lenient in what it accepts and conservative in what it concludes: an argument that
cannot be read as delta-seconds makes `max-age`/`s-maxage` zero (the response is stale), an
unreadable `Expires` is in the past, and a value too large to represent saturates at 2^31
seconds as RFC 9111 section 1.2.2 requires.

This is a port of the Rust SDK's `cache_control` module, rule for rule, so that a Python policy
and a Rust one conclude the same from the same headers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .text import ascii_lower, trim

#: The value RFC 9111 section 1.2.2 requires for delta-seconds too large to represent.
DELTA_SECONDS_MAX = 2_147_483_648

_ASCII_WHITESPACE = " \t\n\f\r"
_DIGITS = frozenset("0123456789")


@dataclass(slots=True)
class CacheControl:
    """The `Cache-Control` directives Larder understands, from one or more field values.

    Directive names are case-insensitive. When a directive with an argument appears more than
    once, the first occurrence wins (RFC 9111 section 4.2.1). Unknown directives are ignored.
    The qualified forms `private="field"` and `no-cache="field"` are treated like their
    unqualified forms: the gateway cannot strip single fields from a stored response, so it
    does not store it at all.

    >>> cc = CacheControl.parse(["public, max-age=60", 'stale-if-error="600"'])
    >>> cc.public, cc.max_age, cc.stale_if_error
    (True, 60, 600)
    """

    #: `no-store`: do not store (request or response).
    no_store: bool = False
    #: `no-cache` (qualified or not): do not use a stored response without revalidating it.
    no_cache: bool = False
    #: `private` (qualified or not): a shared cache must not store the response.
    private: bool = False
    #: `public`: a shared cache may store the response even if it would not otherwise.
    public: bool = False
    #: `must-revalidate`: once stale, the response must not be served without revalidation.
    must_revalidate: bool = False
    #: `proxy-revalidate`: `must-revalidate` for shared caches only.
    proxy_revalidate: bool = False
    #: `must-understand`: store only if the status code is understood; then `no-store` does
    #: not apply (RFC 9111 section 5.2.2.3).
    must_understand: bool = False
    #: `max-age=N`, in seconds.
    max_age: int | None = None
    #: `s-maxage=N`, in seconds: overrides `max-age` and `Expires` for shared caches.
    s_maxage: int | None = None
    #: `stale-while-revalidate=N`, in seconds (RFC 5861).
    stale_while_revalidate: int | None = None
    #: `stale-if-error=N`, in seconds (RFC 5861).
    stale_if_error: int | None = None

    @classmethod
    def parse(cls, values: Iterable[str]) -> CacheControl:
        """Parses and combines the given `Cache-Control` field values (pass every field line
        of the message, in order)."""
        cc = cls()
        for value in values:
            for name, arg in _directives(value):
                cc._apply(name, arg)
        return cc

    def _apply(self, name: str, arg: str | None) -> None:
        if name in _FLAGS:
            setattr(self, _FLAGS[name], True)
        elif name in _SECONDS and getattr(self, _SECONDS[name]) is None:
            # Missing or invalid argument: conservatively zero (stale / no window).
            seconds = None if arg is None else parse_delta_seconds(arg)
            setattr(self, _SECONDS[name], 0 if seconds is None else seconds)

    @classmethod
    def parse_targeted(cls, values: Iterable[str]) -> CacheControl | None:
        """Parses a targeted cache-control field (RFC 9213, `CDN-Cache-Control`): unlike
        `Cache-Control`, it is a Structured Field dictionary (RFC 8941), parsed strictly.
        `None` when the field is not a valid dictionary, or a known directive has a value of
        the wrong type (`max-age="60"`): RFC 9213 says such a field is ignored as a whole.

        >>> cc = CacheControl.parse_targeted(["max-age=600, stale-if-error=60"])
        >>> cc.max_age, cc.stale_if_error
        (600, 60)
        >>> CacheControl.parse_targeted(['max-age="600"']) is None
        True
        """
        members = _sf_dictionary(", ".join(values))
        if members is None:
            return None
        cc = cls()
        for name, value in members:
            if name in ("no-cache", "private"):
                # Qualified forms (`private="set-cookie"`) count as unqualified, as in
                # `Cache-Control`: anything but `?0` sets them.
                if value is not False:
                    setattr(cc, _FLAGS[name], True)
            elif name in _FLAGS:
                if not isinstance(value, bool):
                    return None
                if value:
                    setattr(cc, _FLAGS[name], True)
            elif name in _SECONDS:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    return None
                if getattr(cc, _SECONDS[name]) is None:
                    setattr(cc, _SECONDS[name], min(value, DELTA_SECONDS_MAX))
        return cc


_FLAGS = {
    "no-store": "no_store",
    "no-cache": "no_cache",
    "private": "private",
    "public": "public",
    "must-revalidate": "must_revalidate",
    "proxy-revalidate": "proxy_revalidate",
    "must-understand": "must_understand",
}
_SECONDS = {
    "max-age": "max_age",
    "s-maxage": "s_maxage",
    "stale-while-revalidate": "stale_while_revalidate",
    "stale-if-error": "stale_if_error",
}


def _directives(value: str) -> list[tuple[str, str | None]]:
    """Splits one `Cache-Control` field value into lower-cased directive names and their
    arguments, unquoting quoted-string arguments. Commas inside quotes do not split."""
    out: list[tuple[str, str | None]] = []
    i, n = 0, len(value)
    while True:
        # Skip separators and white space before a directive.
        while i < n and (value[i] == "," or value[i] in _ASCII_WHITESPACE):
            i += 1
        if i >= n:
            return out
        start = i
        while i < n and value[i] not in "=,":
            i += 1
        name = trim(ascii_lower(value[start:i]))
        arg = None
        if i < n and value[i] == "=":
            i += 1
            while i < n and value[i] in " \t":
                i += 1
            if i < n and value[i] == '"':
                i += 1
                text = []
                while i < n:
                    c = value[i]
                    i += 1
                    if c == '"':
                        break
                    if c == "\\":
                        if i < n:
                            text.append(value[i])
                            i += 1
                    else:
                        text.append(c)
                # Anything between the closing quote and the next comma is garbage.
                while i < n and value[i] != ",":
                    i += 1
                arg = "".join(text)
            else:
                start = i
                while i < n and value[i] != ",":
                    i += 1
                arg = trim(value[start:i])
        if name:
            out.append((name, arg))


# A Structured Field member's value, as far as directives care: a `bool` for a Boolean, an
# `int` for an Integer, `None` for anything else (a string, token, decimal, byte sequence or
# inner list).
_Item = bool | int | None

_KEY_FIRST = frozenset(b"abcdefghijklmnopqrstuvwxyz*")
_KEY_REST = _KEY_FIRST | frozenset(b"0123456789_-.")
_ASCII_DIGITS = frozenset(b"0123456789")
_ALPHA = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN = _ALPHA | _ASCII_DIGITS | frozenset(b"!#$%&'*+-.^_`|~:/")
_BASE64 = _ALPHA | _ASCII_DIGITS | frozenset(b"+/=")


class _Invalid(Exception):
    """The text is not a valid Structured Field dictionary."""


class _SfParser:
    """A strict parser of Structured Field dictionaries (RFC 8941 section 4.2.2), as much as
    targeted cache-control fields need: member names and bare items; parameters and inner
    lists are parsed and dropped."""

    def __init__(self, text: bytes) -> None:
        self.text = text
        self.i = 0

    def peek(self) -> int | None:
        return self.text[self.i] if self.i < len(self.text) else None

    def at_end(self) -> bool:
        return self.i >= len(self.text)

    def eat(self, c: str) -> bool:
        if self.peek() == ord(c):
            self.i += 1
            return True
        return False

    def expect(self, c: str) -> None:
        if not self.eat(c):
            raise _Invalid

    def ows(self) -> None:
        while self.peek() in (0x20, 0x09):
            self.i += 1

    def take_while(self, allowed: frozenset[int]) -> bytes:
        start = self.i
        while self.i < len(self.text) and self.text[self.i] in allowed:
            self.i += 1
        return self.text[start : self.i]

    def key(self) -> str:
        if self.peek() not in _KEY_FIRST:
            raise _Invalid
        return self.take_while(_KEY_REST).decode()

    def parameters(self) -> None:
        while self.eat(";"):
            while self.eat(" "):
                pass
            self.key()
            if self.eat("="):
                self.bare_item()

    def inner_list(self) -> _Item:
        self.expect("(")
        while True:
            while self.eat(" "):
                pass
            if self.eat(")"):
                self.parameters()
                return None
            self.bare_item()
            self.parameters()
            if self.peek() not in (0x20, 0x29):
                raise _Invalid

    def bare_item(self) -> _Item:
        c = self.peek()
        if c is None:
            raise _Invalid
        if c == 0x2D or c in _ASCII_DIGITS:
            return self.number()
        if c == 0x22:  # a string
            self.i += 1
            while True:
                c = self.peek()
                if c == 0x22:
                    self.i += 1
                    return None
                if c == 0x5C:
                    if self.text[self.i + 1 : self.i + 2] not in (b'"', b"\\"):
                        raise _Invalid
                    self.i += 2
                elif c is not None and 0x20 <= c <= 0x7E:
                    self.i += 1
                else:
                    raise _Invalid
        if c == 0x3F:  # a boolean
            self.i += 1
            if self.eat("0"):
                return False
            if self.eat("1"):
                return True
            raise _Invalid
        if c == 0x3A:  # a byte sequence
            self.i += 1
            self.take_while(_BASE64)
            self.expect(":")
            return None
        if c in _ALPHA or c == 0x2A:  # a token
            self.take_while(_TOKEN)
            return None
        raise _Invalid

    def number(self) -> _Item:
        negative = self.eat("-")
        integer = self.take_while(_ASCII_DIGITS)
        if not integer:
            raise _Invalid
        if self.eat("."):
            fraction = self.take_while(_ASCII_DIGITS)
            if len(integer) <= 12 and 1 <= len(fraction) <= 3:
                return None
            raise _Invalid
        if len(integer) > 15:
            raise _Invalid
        return -int(integer) if negative else int(integer)


def _sf_dictionary(text: str) -> list[tuple[str, _Item]] | None:
    p = _SfParser(text.strip(" ").encode())
    members: dict[str, _Item] = {}  # in first-seen order; the last value of a key wins
    try:
        while not p.at_end():
            key = p.key()
            if p.eat("="):
                item = p.inner_list() if p.peek() == 0x28 else p.bare_item()
                p.parameters()
            else:
                p.parameters()
                item = True
            members[key] = item
            p.ows()
            if p.at_end():
                break
            p.expect(",")
            p.ows()
            if p.at_end():
                return None
    except _Invalid:
        return None
    return list(members.items())


def parse_delta_seconds(text: str) -> int | None:
    """Parses delta-seconds (`1*DIGIT`), saturating at `DELTA_SECONDS_MAX`. `None` for anything
    that is not a non-empty run of ASCII digits.

    >>> parse_delta_seconds("60"), parse_delta_seconds("99999999999999"), parse_delta_seconds("-1")
    (60, 2147483648, None)
    """
    text = trim(text)
    if not text or not _DIGITS.issuperset(text):
        return None
    significant = text.lstrip("0") or "0"
    if len(significant) > len(str(DELTA_SECONDS_MAX)):
        return DELTA_SECONDS_MAX  # `int()` refuses texts of thousands of digits
    return min(int(significant), DELTA_SECONDS_MAX)


def parse_age(value: str) -> int | None:
    """Parses an `Age` field value (delta-seconds). A list (`7200, 0`, from repeated fields
    combined) counts by its first member, which the origin's nearest cache wrote. `None` when
    invalid; callers treat an invalid `Age` as absent."""
    return parse_delta_seconds(value.split(",", 1)[0])


_WEEKDAYS_SHORT = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAYS_LONG = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def parse_http_date(text: str) -> int | None:
    """Parses an HTTP date into seconds since the Unix epoch (RFC 9110 section 5.6.7).

    Accepts the preferred IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) and the two obsolete
    forms: RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and ANSI C asctime
    (`Sun Nov  6 08:49:37 1994`). Month and weekday names and `GMT` are matched
    case-insensitively (the grammar says otherwise, but origins get it wrong); the weekday is
    not checked against the date. A two-digit RFC 850 year is read as 1970-2069: the guest has
    no clock to apply the "50 years in the future" rule against.

    >>> parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), parse_http_date("0")
    (784111777, None)
    """
    text = trim(text)
    weekday, comma, rest = text.partition(",")
    if not comma:
        return _parse_asctime(text)
    if not rest.startswith(" "):
        return None
    weekday = ascii_lower(weekday)
    if weekday in _WEEKDAYS_SHORT:
        return _parse_imf_fixdate(rest[1:])
    if weekday in _WEEKDAYS_LONG:
        return _parse_rfc850(rest[1:])
    return None


def _parse_imf_fixdate(rest: str) -> int | None:
    """`DD Mon YYYY HH:MM:SS GMT`"""
    fields = rest.split(" ")
    if len(fields) != 5 or ascii_lower(fields[4]) != "gmt":
        return None
    day, month, year = _digits(fields[0], 2), _month(fields[1]), _digits(fields[2], 4)
    time = _time_of_day(fields[3])
    if day is None or month is None or year is None or time is None:
        return None
    return _to_unix(year, month, day, time)


def _parse_rfc850(rest: str) -> int | None:
    """`DD-Mon-YY HH:MM:SS GMT`"""
    fields = rest.split(" ")
    if len(fields) != 3 or ascii_lower(fields[2]) != "gmt":
        return None
    date = fields[0].split("-")
    if len(date) != 3:
        return None
    day, month, yy = _digits(date[0], 2), _month(date[1]), _digits(date[2], 2)
    time = _time_of_day(fields[1])
    if day is None or month is None or yy is None or time is None:
        return None
    return _to_unix(1900 + yy if yy >= 70 else 2000 + yy, month, day, time)


def _parse_asctime(text: str) -> int | None:
    """`Www Mon _D HH:MM:SS YYYY` (the day is space-padded to two characters)."""
    weekday, _, rest = text.partition(" ")
    month_name, space, rest = rest.partition(" ")
    if ascii_lower(weekday) not in _WEEKDAYS_SHORT or not space or len(rest) < 3:
        return None
    month = _month(month_name)
    day = rest[:2].lstrip(" ")
    fields = rest[3:].split(" ")
    if month is None or not day or not _DIGITS.issuperset(day):
        return None
    if rest[2] != " " or len(fields) != 2:
        return None
    time, year = _time_of_day(fields[0]), _digits(fields[1], 4)
    if time is None or year is None:
        return None
    return _to_unix(year, month, int(day), time)


def _digits(text: str, length: int) -> int | None:
    return int(text) if len(text) == length and _DIGITS.issuperset(text) else None


def _month(name: str) -> int | None:
    name = ascii_lower(name)
    return _MONTHS.index(name) + 1 if name in _MONTHS else None


def _time_of_day(text: str) -> int | None:
    """`HH:MM:SS` as seconds since midnight. Accepts a leap second (`:60`) as RFC 9110
    allows."""
    parts = text.split(":")
    if len(parts) != 3:
        return None
    hour, minute, second = (_digits(part, 2) for part in parts)
    if hour is None or minute is None or second is None:
        return None
    if hour > 23 or minute > 59 or second > 60:
        return None
    return hour * 3600 + minute * 60 + second


def _to_unix(year: int, month: int, day: int, seconds: int) -> int | None:
    if day == 0 or day > _days_in_month(year, month):
        return None
    return _days_from_civil(year, month, day) * 86_400 + seconds


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if _is_leap(year) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm)."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    mp = month - 3 if month > 2 else month + 9
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468
