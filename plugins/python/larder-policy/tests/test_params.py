"""The Rust SDK's tests of `params.rs` (typed path parameters), in Python."""

import pytest

from larder_policy import (
    I8,
    I64,
    U8,
    U64,
    BadParam,
    CacheKey,
    Digits,
    ParamError,
    Request,
    RequestDecision,
    canonical,
)

U64_MAX = 2**64 - 1


def test_every_spelling_of_an_integer_has_one_canonical_text() -> None:
    for raw in ["1", "01", "0001", "+1", "+01"]:
        assert canonical(raw, U64) == "1", raw
    assert canonical("0", U64) == "0"
    assert canonical("000", U64) == "0"
    assert canonical("-0", I64) == "0"
    assert canonical("-007", I64) == "-7"
    assert canonical("+7", I64) == "7"
    # Many leading zeros are not an overflow, nor too long for `int()`.
    assert canonical("0" * 100 + str(U64_MAX), U64) == str(U64_MAX)
    assert canonical("0" * 5000 + "1", U64) == "1"


def test_integers_refuse_what_is_not_a_number_of_the_type() -> None:
    assert U64.parse("") is ParamError.EMPTY
    for raw in ["+", "-", "abc", "1a", " 1", "1 ", "1_000", "1.0", "0x1", "١", "--1", "+-1"]:
        assert U64.parse(raw) is ParamError.INVALID_CHARACTER, raw
    # A negative number is not an unsigned one at all.
    assert U64.parse("-1") is ParamError.INVALID_CHARACTER
    assert U64.parse("18446744073709551616") is ParamError.OUT_OF_RANGE
    assert U8.parse("256") is ParamError.OUT_OF_RANGE
    assert I8.parse("-129") is ParamError.OUT_OF_RANGE
    assert U64.parse("18446744073709551615") == U64_MAX
    assert I8.parse("-128") == -128
    # Rust reads digit by digit: an overflow before a bad character is an overflow.
    assert U64.parse("99999999999999999999x") is ParamError.OUT_OF_RANGE
    assert U64.parse("9" * 5000) is ParamError.OUT_OF_RANGE


def test_digits_refuse_signs_and_keep_leading_zeros() -> None:
    assert Digits(U64).parse("0042") == 42
    assert canonical("0042", Digits(U64)) == "42"
    assert Digits(U64).parse("+42") is ParamError.INVALID_CHARACTER
    assert Digits(I64).parse("-42") is ParamError.INVALID_CHARACTER
    assert Digits(U64).parse("") is ParamError.EMPTY
    assert Digits(U8).parse("300") is ParamError.OUT_OF_RANGE
    assert Digits(U64).name == "Digits<u64>"


def test_request_accessors() -> None:
    req = Request("GET", "/repos/01").with_param("id", "01")
    assert req.param_as("id", U64) == 1
    assert req.param_canonical("id", U64) == "1"
    assert req.param_as("missing", U64) is None
    assert req.param_canonical("missing", U64) is None

    bad = Request("GET", "/repos/abc").with_param("id", "abc")
    with pytest.raises(BadParam) as raised:
        bad.param_as("id", U64)
    err = raised.value
    assert err == BadParam("id", "abc", ParamError.INVALID_CHARACTER)
    assert str(err) == (
        'path parameter `id` = "abc" is not valid: it contains a character the type does not accept'
    )
    assert err.decision() == RequestDecision.pass_("bad-param")
    with pytest.raises(BadParam) as again:
        bad.param_canonical("id", U64)
    assert again.value.error is ParamError.INVALID_CHARACTER


def test_a_bad_param_is_a_pass() -> None:
    def on_request(req: Request) -> RequestDecision:
        try:
            item = req.param_as("id", U64)
        except BadParam as bad:
            return bad.decision()
        if item is None:
            return RequestDecision.pass_("no-id")
        return RequestDecision.lookup(CacheKey(["item", str(item)]))

    def key(raw: str) -> RequestDecision:
        return on_request(Request("GET", "/items").with_param("id", raw))

    assert key("007") == RequestDecision.lookup(CacheKey(["item", "7"]))
    assert key("+1") == key("1")
    assert key("one") == RequestDecision.pass_("bad-param")
    assert on_request(Request("GET", "/items")) == RequestDecision.pass_("no-id")


def test_error_names() -> None:
    names = [e.as_str() for e in ParamError]
    assert names == ["empty", "invalid-character", "out-of-range", "malformed"]
