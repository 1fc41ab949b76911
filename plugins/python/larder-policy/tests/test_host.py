"""The host's functions outside WebAssembly: the stand-ins a policy's tests rely on."""

import pytest

from larder_policy import LogLevel, debug, error, info, log, request_body_digest, testing, warn


def test_the_body_digest_is_what_the_test_set() -> None:
    assert request_body_digest() is None
    testing.set_body_digest("ab12")
    try:
        assert request_body_digest() == "ab12"
    finally:
        testing.set_body_digest(None)
    assert request_body_digest() is None


def test_log_lines_are_captured_in_order_with_their_level() -> None:
    with testing.captured_logs() as lines:
        debug("d")
        info("i")
        warn("w")
        error("e")
        log(LogLevel.WARN, "direct")
    assert lines == [
        (LogLevel.DEBUG, "d"),
        (LogLevel.INFO, "i"),
        (LogLevel.WARN, "w"),
        (LogLevel.ERROR, "e"),
        (LogLevel.WARN, "direct"),
    ]


def test_uncaptured_lines_go_to_standard_error(capsys: pytest.CaptureFixture[str]) -> None:
    with testing.captured_logs() as outer:
        with testing.captured_logs() as inner:
            warn("inner")
        warn("outer")
    warn("setting `ttl` is not a number")
    assert inner == [(LogLevel.WARN, "inner")]
    assert outer == [(LogLevel.WARN, "outer")]
    assert capsys.readouterr().err == "[larder-policy WARN] setting `ttl` is not a number\n"
