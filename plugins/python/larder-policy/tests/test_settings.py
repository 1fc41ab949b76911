"""The Rust SDK's tests of `settings.rs`, in Python: the same refusals, word for word."""

import pytest

from larder_policy import (
    BOOL,
    U8,
    U32,
    InvalidSetting,
    Param,
    Request,
    SettingError,
    Settings,
    UnknownSetting,
)


def settings(*pairs: tuple[str, str]) -> Settings:
    return Settings("r", tuple(Param(n, v) for n, v in pairs))


def test_a_setting_that_does_not_parse_is_named_with_its_value_and_type() -> None:
    s = settings(("ttl", "ten"), ("soft", "yes"), ("n", " 7 "))
    with pytest.raises(InvalidSetting, match=r'^setting `ttl` = "ten" is not a valid u32$'):
        s.parse("ttl", U32)
    with pytest.raises(InvalidSetting, match=r'^setting `soft` = "yes" is not a valid bool$'):
        s.parse_or("soft", BOOL, False)
    assert s.parse("n", U8) == 7, "spaces are ignored"
    assert s.parse_or("absent", U8, 3) == 3
    assert s.route == "r"


def test_unknown_settings_are_refused_by_name() -> None:
    s = settings(("ttl", "1"), ("tll", "2"))
    with pytest.raises(UnknownSetting) as unknown:
        s.only(["ttl"])
    assert str(unknown.value) == "unknown setting `tll` (this policy reads `ttl`)"
    with pytest.raises(UnknownSetting) as none:
        s.only([])
    assert str(none.value) == "unknown setting `ttl` (this policy reads none)"
    s.only(["tll", "ttl"])


def test_values_are_quoted_as_rust_quotes_them() -> None:
    s = settings(("a", 'say "hi"\\'), ("b", "\t\x1b\u0301é"), ("c", "\x1c7\x1c"))
    with pytest.raises(InvalidSetting) as quoted:
        s.parse("a", U32)
    assert str(quoted.value) == 'setting `a` = "say \\"hi\\"\\\\" is not a valid u32'
    with pytest.raises(InvalidSetting) as escaped:
        s.parse("b", U32)
    assert str(escaped.value) == 'setting `b` = "\\t\\u{1b}\\u{301}é" is not a valid u32'
    # Rust's `trim` keeps U+001C, which Python's `strip()` would remove.
    with pytest.raises(InvalidSetting):
        s.parse("c", U32)


def test_a_policy_words_its_own_refusals() -> None:
    e = InvalidSetting("percent", "150", "a percentage from 0 to 100")
    assert str(e) == 'setting `percent` = "150" is not a percentage from 0 to 100'
    assert isinstance(e, SettingError)
    req = Request("GET", "/").with_setting("ttl", "600")
    assert req.settings.parse_or("ttl", U32, 1800) == 600
    assert req.settings.parse_or("stale_if_error", U32, 0) == 0
