"""Typed path parameters: one resource, one identity.

A backend that reads `{id}` as a number serves `/items/1`, `/items/01` and `/items/001` (and,
depending on its parser, `/items/+1`) as the same item. A policy that puts the raw text into
its keys and tags gives that item several cache identities: a write through one spelling purges
`item:1` and leaves `/items/01` cached under `item:01`, and an operator's purge of `item:1`
misses it too. Parsing the parameter into a typed value and using the value's canonical text
(`"1"`) in keys and tags gives every spelling one key namespace and one tag.

`Request.param_as(name, U64)` parses a parameter with a `ValueType`;
`Request.param_canonical(name, U64)` returns its canonical text. A value the type refuses raises
a `BadParam`, whose `decision()` is the decision to pass the request uncached
(`BadParam.REASON`, `"bad-param"`): the backend will most likely answer it with an error, and the
cache must not give it an identity the backend does not.

Which spellings are one value: the integer types (`U8` ... `U64`, `I8` ... `I64`) accept what
common backend parsers accept (Rust's `str::parse`, Python's `int`, Java's `Long.parseLong`,
PostgreSQL's `int8`): ASCII digits, leading zeros, an optional leading `+` (and `-` for the
signed types). They refuse the empty string, any other character (spaces, `_`, non-ASCII
digits, which Python's `int()` would accept) and values outside the type's range.

If your backend refuses a sign (as the Source Code Analysis Tool's does: `/+1` is a 400 there),
use `Digits(U64)`: the same integers, written with digits only. Accepting a spelling the backend
refuses would let a cached answer for `/1` be served for `/+1`, which the backend answers with
an error; refusing one it accepts only passes those requests uncached. When in doubt, accept
less.

Your own types: any object with a `name` and a `parse(raw)` that returns the value or a
`ParamError` is a `ValueType`; `str()` of the value must be its canonical text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Generic, Protocol, TypeVar

from .decisions import RequestDecision
from .text import rust_debug

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

_DIGITS = frozenset("0123456789")


class ParamError(Enum):
    """Why a text is not a value of the type asked for. `value` is the short name for logs."""

    #: The text is empty.
    EMPTY = "empty"
    #: A character the type does not accept: a non-digit in a number, a sign where none is
    #: allowed.
    INVALID_CHARACTER = "invalid-character"
    #: A number outside the type's range.
    OUT_OF_RANGE = "out-of-range"
    #: Characters the type accepts, in an order it does not (for types with more structure
    #: than a number).
    MALFORMED = "malformed"

    def as_str(self) -> str:
        """A short name for logs: `empty`, `invalid-character`, `out-of-range`, `malformed`."""
        return self.value

    def __str__(self) -> str:
        return _PARAM_ERROR_TEXT[self]


_PARAM_ERROR_TEXT = {
    ParamError.EMPTY: "it is empty",
    ParamError.INVALID_CHARACTER: "it contains a character the type does not accept",
    ParamError.OUT_OF_RANGE: "it is out of range",
    ParamError.MALFORMED: "it is malformed",
}


class ValueType(Protocol[T_co]):
    """How a path parameter's (or a setting's) text is read as a value, with one canonical text
    per value: `str()` of what `parse` returns is the same for every spelling it accepts for one
    value, and `parse` reads it back as that value. The counterpart of Rust's `FromParam` (and,
    for settings, `FromStr`)."""

    @property
    def name(self) -> str:
        """The type's name in messages: `u32` in `setting ttl = "x" is not a valid u32`."""
        ...

    def parse(self, raw: str) -> T_co | ParamError:
        """The value `raw` spells, or why it is not one."""
        ...


@dataclass(frozen=True, slots=True)
class Integer:
    """An integer type of Rust's, with its range and the syntax of Rust's `str::parse`:
    ASCII digits with leading zeros, an optional leading `+` (and `-` when signed)."""

    name: str
    min: int
    max: int

    def parse(self, raw: str) -> int | ParamError:
        if not raw:
            return ParamError.EMPTY
        negative = raw[0] == "-" and self.min < 0
        digits = raw[1:] if negative or raw[0] == "+" else raw
        if not digits:
            return ParamError.INVALID_CHARACTER
        if digits.isascii() and digits.isdigit():
            end = len(digits)
        else:
            # Rust reads digit by digit, so an overflow before the first bad character wins.
            end = next(i for i, c in enumerate(digits) if c not in _DIGITS)
        significant = digits[:end].lstrip("0") or "0"
        bound = -self.min if negative else self.max
        # The length first: `int()` refuses texts of thousands of digits.
        magnitude = int(significant) if len(significant) <= len(str(bound)) else bound + 1
        if magnitude > bound:
            return ParamError.OUT_OF_RANGE
        if end < len(digits):
            return ParamError.INVALID_CHARACTER
        return -magnitude if negative else magnitude


U8 = Integer("u8", 0, 2**8 - 1)
U16 = Integer("u16", 0, 2**16 - 1)
U32 = Integer("u32", 0, 2**32 - 1)
U64 = Integer("u64", 0, 2**64 - 1)
I8 = Integer("i8", -(2**7), 2**7 - 1)
I16 = Integer("i16", -(2**15), 2**15 - 1)
I32 = Integer("i32", -(2**31), 2**31 - 1)
I64 = Integer("i64", -(2**63), 2**63 - 1)


class Boolean:
    """`true` or `false`, exactly: Rust's `bool::from_str`, which TOML booleans render as."""

    name = "bool"

    def parse(self, raw: str) -> bool | ParamError:
        if raw == "true":
            return True
        if raw == "false":
            return False
        return ParamError.MALFORMED


BOOL = Boolean()


@dataclass(frozen=True, slots=True)
class Digits(Generic[T]):
    """A value of `inner` written with ASCII digits only: leading zeros are accepted, a sign is
    not. `Digits(U64)` is Rust's `Digits<u64>`.

    For backends whose parser refuses `+1`: the cache must not treat `/items/+1` as `/items/1`
    when the backend answers the first with an error.
    """

    inner: ValueType[T]

    @property
    def name(self) -> str:
        return f"Digits<{self.inner.name}>"

    def parse(self, raw: str) -> T | ParamError:
        if not raw:
            return ParamError.EMPTY
        if not _DIGITS.issuperset(raw):
            return ParamError.INVALID_CHARACTER
        return self.inner.parse(raw)


def canonical(raw: str, value_type: ValueType[object]) -> str | ParamError:
    """The canonical text of `raw` as a `value_type`: `"1"` for `"01"` as a `U64`."""
    value = value_type.parse(raw)
    return value if isinstance(value, ParamError) else str(value)


class BadParam(Exception):
    """A path parameter whose text is not a value of the type it was asked as; raised by
    `Request.param_as`.

    `decision()` is the ready-made answer: pass uncached with the reason `BadParam.REASON`. The
    SDK does not log it: a scan of invalid ids would flood the gateway's log, and a call that
    logs is never answered from the gateway's table of reused decisions.
    """

    #: The reason of the decision a `BadParam` turns into; shown by the gateway as
    #: `Cache-Status: larder; fwd=bypass; detail="bad-param"`.
    REASON: ClassVar[str] = "bad-param"

    def __init__(self, name: str, value: str, error: ParamError) -> None:
        super().__init__(name, value, error)
        #: The parameter's name (`id` for `{id}`).
        self.name = name
        #: Its text, as the policy received it.
        self.value = value
        #: Why the text was refused.
        self.error = error

    def __str__(self) -> str:
        return f"path parameter `{self.name}` = {rust_debug(self.value)} is not valid: {self.error}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BadParam) and self.args == other.args

    __hash__ = Exception.__hash__

    def decision(self) -> RequestDecision:
        """Pass the request uncached, with the reason `BadParam.REASON`."""
        return RequestDecision.pass_(self.REASON)
