"""The Rust SDK's tests of `cache_control.rs`, in Python, plus its documented examples of
targeted fields."""

import pytest

from larder_policy.cache_control import (
    DELTA_SECONDS_MAX,
    CacheControl,
    _days_from_civil,
    parse_age,
    parse_delta_seconds,
    parse_http_date,
)


def cc(value: str) -> CacheControl:
    return CacheControl.parse([value])


def test_empty_and_unknown_directives() -> None:
    assert cc("") == CacheControl()
    assert cc(" , ,, ") == CacheControl()
    assert cc("immutable, foo=bar") == CacheControl()


def test_boolean_directives() -> None:
    parsed = cc("no-store, no-cache, private, public, must-revalidate, proxy-revalidate")
    assert parsed.no_store
    assert parsed.no_cache
    assert parsed.private
    assert parsed.public
    assert parsed.must_revalidate
    assert parsed.proxy_revalidate


def test_names_are_case_insensitive() -> None:
    parsed = cc("No-Store, MAX-AGE=5")
    assert parsed.no_store
    assert parsed.max_age == 5


def test_delta_seconds_directives() -> None:
    parsed = cc("max-age=60, s-maxage=120, stale-while-revalidate=30, stale-if-error=600")
    assert parsed.max_age == 60
    assert parsed.s_maxage == 120
    assert parsed.stale_while_revalidate == 30
    assert parsed.stale_if_error == 600


def test_whitespace_around_tokens() -> None:
    parsed = cc("  public ,max-age = 60 ")
    assert parsed.public
    assert parsed.max_age == 60


def test_quoted_arguments_are_accepted() -> None:
    assert cc('max-age="60"').max_age == 60


def test_commas_inside_quotes_do_not_split() -> None:
    parsed = cc('private="set-cookie, x-foo", max-age=10')
    assert parsed.private
    assert parsed.max_age == 10
    parsed = cc('no-cache="a,b"')
    assert parsed.no_cache
    assert parsed.max_age is None


def test_a_backslash_at_the_end_of_a_quote_ends_the_field() -> None:
    assert cc('max-age="6\\') == CacheControl(max_age=6)


def test_invalid_arguments_mean_zero() -> None:
    assert cc("max-age=abc").max_age == 0
    assert cc("max-age").max_age == 0
    assert cc("max-age=-5").max_age == 0
    assert cc("s-maxage=1.5").s_maxage == 0


def test_first_occurrence_wins() -> None:
    assert cc("max-age=10, max-age=20").max_age == 10
    parsed = CacheControl.parse(["max-age=10", "max-age=20, public"])
    assert parsed.max_age == 10
    assert parsed.public


def test_huge_values_saturate() -> None:
    assert cc("max-age=99999999999999999999").max_age == DELTA_SECONDS_MAX
    assert parse_delta_seconds("2147483647") == 2_147_483_647
    assert parse_delta_seconds("2147483648") == DELTA_SECONDS_MAX
    assert parse_delta_seconds("9" * 5000) == DELTA_SECONDS_MAX


def test_delta_seconds_rejects_non_digits() -> None:
    assert parse_delta_seconds("") is None
    assert parse_delta_seconds("+5") is None
    assert parse_delta_seconds("5s") is None
    assert parse_delta_seconds(" 7 ") == 7
    assert parse_age("0") == 0
    assert parse_age("x") is None
    assert parse_age("7200, 0") == 7200


def test_imf_fixdate() -> None:
    assert parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT") == 0
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784_111_777
    assert parse_http_date("Tue, 29 Feb 2000 23:59:59 GMT") == 951_868_799
    assert parse_http_date("Fri, 01 Jan 2038 00:00:00 GMT") == 2_145_916_800


def test_obsolete_forms() -> None:
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784_111_777
    assert parse_http_date("Saturday, 01-Jan-22 00:00:00 GMT") == 1_640_995_200
    assert parse_http_date("Sun Nov  6 08:49:37 1994") == 784_111_777
    assert parse_http_date("Sat Jan 22 00:00:00 2022") == 1_642_809_600


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "0",
        "-1",
        "tomorrow",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Sun, 29 Feb 1900 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:49 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT extra",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sun Nov 6 08:49:37 1994",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT\u00e9",
        "Sun Nov \u00e96 08:49:37 1994",
    ],
)
def test_invalid_dates(bad: str) -> None:
    assert parse_http_date(bad) is None


@pytest.mark.parametrize(
    "odd",
    [
        "sun, 06 nov 1994 08:49:37 gmt",
        "SUN, 06 NOV 1994 08:49:37 GMT",
        "sunday, 06-nov-94 08:49:37 Gmt",
        "sun nov  6 08:49:37 1994",
    ],
)
def test_names_in_dates_are_case_insensitive(odd: str) -> None:
    assert parse_http_date(odd) == 784111777


def test_civil_days() -> None:
    assert _days_from_civil(1970, 1, 1) == 0
    assert _days_from_civil(2000, 3, 1) == 11_017
    assert _days_from_civil(1969, 12, 31) == -1


def test_targeted_fields_are_strict_dictionaries() -> None:
    parsed = CacheControl.parse_targeted(["max-age=600, stale-if-error=60"])
    assert parsed == CacheControl(max_age=600, stale_if_error=60)
    assert CacheControl.parse_targeted(['max-age="600"']) is None
    assert CacheControl.parse_targeted(["max-age =600"]) is None
    assert CacheControl.parse_targeted(["max-age=-1"]) is None
    assert CacheControl.parse_targeted(["max-age=60,"]) is None
    assert CacheControl.parse_targeted(["no-store=1"]) is None
    # A decimal is a valid item, but not delta-seconds.
    assert CacheControl.parse_targeted(["max-age=1.5"]) is None
    assert CacheControl.parse_targeted(["public=1.5"]) is None


def test_targeted_members_values_and_parameters() -> None:
    parsed = CacheControl.parse_targeted(
        ['private="set-cookie", no-cache=?0, public=?1;a=b, max-age=10', "max-age=20, x=(1 2)"]
    )
    assert parsed is not None
    assert parsed.private and not parsed.no_cache and parsed.public
    # The last value of a repeated member wins; the first member's place is kept.
    assert parsed.max_age == 20
    assert CacheControl.parse_targeted(["no-cache=0"]) == CacheControl(no_cache=True)
    assert CacheControl.parse_targeted(["max-age=9999999999"]) == CacheControl(
        max_age=DELTA_SECONDS_MAX
    )
    assert CacheControl.parse_targeted(["max-age=9999999999999999"]) is None
    assert CacheControl.parse_targeted(['x=:YWJj:, y=tok/en, z="a\\"b"']) == CacheControl()
    assert CacheControl.parse_targeted(['z="a\\nb"']) is None
    assert CacheControl.parse_targeted(["Max-Age=1"]) is None
    assert CacheControl.parse_targeted([""]) == CacheControl()
