"""Hostile test policy in Python: tries what the sandbox forbids, and says what it got.

`on_request` with the route setting `mode`:
- absent: passes with a reason that lists, `;`-separated, what each attempt found: the file
  named by the setting `file` (`file`), a listing of `/` (`dir`), a connection to the loopback
  port in the setting `port` (`socket`), the environment (`env`: how many variables), the wall
  clock (`clock`: seconds since the epoch) and the monotonic clock (`elapsed`: milliseconds a
  busy loop of 200,000 steps took by it). An attempt that raised says `denied`. The test that
  uses it makes the file and listens on the port, so each would succeed outside the sandbox.
- `loop`: never returns (the deadline must stop it).
- `hog`: allocates without bound (the memory limit must stop it).

A request for the path `/records` is answered before the SDK's adapter sees it: it passes with
the classes componentize-py's runtime built for the host's `request` record and its first
header, `module.Class` each, `;`-separated. They are the SDK's own when its lift is in effect
(`larder_policy.export`), the generated bindings' otherwise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import larder_policy
from larder_policy import Invalidation, Request, RequestDecision, Response, ResponseDecision


def attempt(probe) -> str:
    try:
        return str(probe())
    except BaseException:  # noqa: BLE001 - any refusal is the answer
        return "denied"


def read_file(path: str) -> str:
    with open(path) as f:
        return "read:" + str(len(f.read()))


def list_root() -> str:
    return "listed:" + str(len(os.listdir("/")))


def connect(port: int) -> str:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return "connected"


def busy_millis() -> int:
    started = time.monotonic()
    total = 0
    for i in range(200_000):
        total += i
    return int((time.monotonic() - started) * 1000)


class Probe(larder_policy.Policy):
    def on_request(self, req: Request) -> RequestDecision:
        mode = req.setting("mode")
        if mode == "loop":
            while True:
                pass
        if mode == "hog":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        found = [
            ("file", attempt(lambda: read_file(req.setting("file") or "/etc/hostname"))),
            ("dir", attempt(list_root)),
            ("socket", attempt(lambda: connect(int(req.setting("port") or "6379")))),
            ("env", attempt(lambda: len(os.environ))),
            ("clock", attempt(lambda: int(time.time()))),
            ("elapsed", attempt(busy_millis)),
        ]
        return RequestDecision.pass_(";".join(f"{name}={got}" for name, got in found))

    def on_response(self, req: Request, resp: Response) -> ResponseDecision:
        return ResponseDecision.no_store("probe")

    def on_invalidate(self, req: Request, resp: Response) -> Sequence[Invalidation]:
        return []


def class_name(value: object) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


class Policy(larder_policy.export(Probe)):  # type: ignore[misc]
    def on_request(self, req: Any) -> Any:
        if req.path == "/records":
            from wit_world.imports import types

            built = [class_name(req), *map(class_name, req.headers[:1])]
            return types.RequestDecision_Pass(";".join(built))
        return super().on_request(req)
