"""Stand-ins for the host's functions in plain `pytest` runs of a policy (outside
WebAssembly), as the Rust SDK's `testing` module: set what `request_body_digest()` returns, and
capture what the policy logs.

    def test_embeddings_are_keyed_by_the_body():
        testing.set_body_digest("ab12")
        ...
        testing.set_body_digest(None)

    def test_a_bad_id_warns():
        with testing.captured_logs() as lines:
            policy.on_invalidate(req, resp)
        assert lines == [(LogLevel.WARN, "...")]

In the component these have no effect: the host answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .host import LogLevel

#: What `request_body_digest()` returns outside WebAssembly.
body_digest: str | None = None

#: Where `log()` appends its lines outside WebAssembly while `captured_logs()` is active.
capture: list[tuple[LogLevel, str]] | None = None


def set_body_digest(digest: str | None) -> None:
    """Sets what `request_body_digest()` returns from now on (`None`: no digest, as for any
    request but a POST on a `cache_post` route)."""
    global body_digest
    body_digest = digest


@contextmanager
def captured_logs() -> Iterator[list[tuple[LogLevel, str]]]:
    """Collects the `(level, message)` of every line logged in the `with` block, instead of
    writing them to standard error."""
    global capture
    lines: list[tuple[LogLevel, str]] = []
    outer, capture = capture, lines
    try:
        yield lines
    finally:
        capture = outer
