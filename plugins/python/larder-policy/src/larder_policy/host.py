"""What the host offers a policy: its log, and the digest of a POST's body.

In the gateway these call the component's imports (`larder:policy/host`). Outside WebAssembly,
in a plain `pytest` run of a policy, they fall back as the Rust SDK's do natively: a log line
goes to standard error (or to `testing.captured_logs()`), and `request_body_digest()` returns
what `testing.set_body_digest` set. The choice is made once, at import, from `sys.platform`:
`wasi` under componentize-py, as Rust's `cfg(target_arch = "wasm32")`.
"""

from __future__ import annotations

import sys
from enum import Enum

from . import testing


class LogLevel(Enum):
    """How urgent a log line is."""

    DEBUG = 0
    INFO = 1
    WARN = 2
    ERROR = 3


if sys.platform == "wasi":  # pragma: no cover - runs in the component only
    from wit_world.imports import host as _host
    from wit_world.imports import types as _types

    def log(level: LogLevel, message: str) -> None:
        """Writes `message` to the gateway's log at `level`, tagged by the host with the
        plugin's name and the request id. Lines longer than 1 KiB are cut by the host.

        Logging is cheap but not free: do not log every request at `INFO`. A call that logs
        is never answered from the gateway's table of reused decisions."""
        _host.log(_types.LogLevel(level.value), message)

    def request_body_digest() -> str | None:
        """The digest of the request's body (64 lower-case hex digits of BLAKE3), for a POST
        on a route configured with `cache_post = true` and a body no larger than the gateway's
        `cache.max_request_body`; `None` for any other request.

        Calling it from `on_request` is how a policy opts a POST into caching: the host honours
        `lookup` for a POST only if the policy asked for the digest (and got one), and adds the
        digest to the key itself. Use it for calls whose answer depends only on the body."""
        return _host.request_body_digest()

else:

    def log(level: LogLevel, message: str) -> None:
        """Writes `message` to the gateway's log at `level` (see the component's version);
        here, outside WebAssembly, to `testing.captured_logs()` or standard error."""
        if testing.capture is not None:
            testing.capture.append((level, message))
        else:
            print(f"[larder-policy {level.name}] {message}", file=sys.stderr)

    def request_body_digest() -> str | None:
        """The digest of the request's body (see the component's version); here, outside
        WebAssembly, what `testing.set_body_digest` set."""
        return testing.body_digest


def debug(message: str) -> None:
    """`log` at `LogLevel.DEBUG`."""
    log(LogLevel.DEBUG, message)


def info(message: str) -> None:
    """`log` at `LogLevel.INFO`."""
    log(LogLevel.INFO, message)


def warn(message: str) -> None:
    """`log` at `LogLevel.WARN`."""
    log(LogLevel.WARN, message)


def error(message: str) -> None:
    """`log` at `LogLevel.ERROR`."""
    log(LogLevel.ERROR, message)
