"""A route's settings, checked once when the gateway loads the plugin.

The gateway calls `Policy.check_settings` for every route that uses the policy when it loads or
reloads its plugins, with the route's `[route.settings]`. A policy that validates them there is
told about a typo at start-up (the gateway refuses the config with the policy's reason, naming
the route and the plugin), not by a warning on every request, and its per-request code can read
the settings knowing they parse.

The usual shape is one function that reads the settings into a typed value, used by both:

    @dataclass(frozen=True)
    class Tuning:
        ttl: int = 600
        soft_purge: bool = False

        @staticmethod
        def read(settings: Settings) -> Tuning:
            settings.only(["ttl", "soft_purge"])
            return Tuning(settings.parse_or("ttl", U32, 600),
                          settings.parse_or("soft_purge", BOOL, False))

    class Items(Policy):
        def check_settings(self, settings: Settings) -> None:
            Tuning.read(settings)  # raises SettingError: the gateway refuses the config

A refusal is a `SettingError` raised from `check_settings`; its text is what the gateway shows.
`InvalidSetting` and `UnknownSetting` word theirs as the Rust SDK does, so a Python policy and
its Rust twin refuse a config with the same message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from .params import ParamError, ValueType
from .text import rust_debug, trim

T = TypeVar("T")


class Param(NamedTuple):
    """A name and a value: a captured path parameter, or one of a route's settings."""

    name: str
    value: str


class SettingError(ValueError):
    """A setting the policy cannot use; raised from `Policy.check_settings`, its text is the
    reason the gateway shows when it refuses the config. Raise it with your own words for a
    rule of your own (`SettingError("set `ttl` or `max_ttl`, not both")`)."""


class InvalidSetting(SettingError):
    """Setting `name` is present, but its `value` is not what the policy reads; `expected`
    completes "is not ..." (`a valid u32`, or the policy's own words).

    >>> str(InvalidSetting("percent", "150", "a percentage from 0 to 100"))
    'setting `percent` = "150" is not a percentage from 0 to 100'
    """

    def __init__(self, name: str, value: str, expected: str) -> None:
        super().__init__(f"setting `{name}` = {rust_debug(value)} is not {expected}")
        self.name = name
        self.value = value
        self.expected = expected


class UnknownSetting(SettingError):
    """Setting `name` is one the policy does not read (`known` are those it reads)."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        reads = ", ".join(f"`{k}`" for k in known) or "none"
        super().__init__(f"unknown setting `{name}` (this policy reads {reads})")
        self.name = name
        self.known = tuple(known)


@dataclass(frozen=True, slots=True)
class Settings:
    """A route's name and settings, as `check_settings` receives them and as every request of
    the route carries them (`Request.settings`). Values are strings: numbers and booleans in
    their TOML form."""

    route: str
    params: tuple[Param, ...]

    def get(self, name: str) -> str | None:
        """The raw value of setting `name`, or `None`."""
        for p in self.params:
            if p.name == name:
                return p.value
        return None

    def parse(self, name: str, value_type: ValueType[T]) -> T | None:
        """Setting `name` read as a `value_type` (surrounding white space ignored): `None` when
        absent; raises `InvalidSetting`, naming the setting, its value and the type, when it
        does not parse.

        >>> from larder_policy import U32
        >>> Settings("r", (Param("ttl", "ten"),)).parse("ttl", U32)
        Traceback (most recent call last):
        ...
        larder_policy.settings.InvalidSetting: setting `ttl` = "ten" is not a valid u32
        """
        raw = self.get(name)
        if raw is None:
            return None
        value = value_type.parse(trim(raw))
        if isinstance(value, ParamError):
            raise InvalidSetting(name, raw, f"a valid {value_type.name}")
        return value

    def parse_or(self, name: str, value_type: ValueType[T], default: T) -> T:
        """Setting `name` read as a `value_type`, or `default` when it is absent; raises
        `InvalidSetting` when it is present and does not parse."""
        value = self.parse(name, value_type)
        return default if value is None else value

    def only(self, known: Sequence[str]) -> None:
        """Raises `UnknownSetting` for the first setting not named in `known`: a misspelt name
        (`tll` for `ttl`) would otherwise be silently ignored."""
        for p in self.params:
            if p.name not in known:
                raise UnknownSetting(p.name, known)
