"""The readiness bench's app: like servers.apps:pid, plus a stamp of the instant each worker's startup ended.

    AWH_STAMP_FILE=/tmp/stamps.jsonl uvicorn bench.stamp_app:app --workers 4

* HTTP: body is the worker pid, header `x-worker-pid` (read per request, so a forked worker never reports
  its parent's pid), `content-length`; any path, any method.
* lifespan: on `lifespan.startup` it appends one JSON line `{"pid": os.getpid(), "t": time.monotonic()}`
  to the file named by the env var AWH_STAMP_FILE (nothing when unset), then completes startup; shutdown
  completes at once.
* the first HTTP request a process gets appends `{"pid", "t", "event": "first_request"}` the same way: the
  instant the server handed the worker its first connection's request (what the server took between
  startup and serving, as opposed to what the client took to notice).

CLOCK_MONOTONIC is system-wide on Linux, so `t` compares with the bench's own time.monotonic(). Every
server runs lifespan startup BEFORE its worker starts accepting, so the stamp is slightly earlier than the
real "this worker can answer" instant: latencies measured against it are upper bounds.

One write(2) per stamp on an O_APPEND descriptor: lines of concurrent workers never interleave.
Stdlib only, importable on Python 3.7+ (it runs under every server's interpreter).
"""

import json
import os
import time
from typing import Any, Awaitable, Callable, Dict, List, MutableMapping

STAMP_ENV = "AWH_STAMP_FILE"

_Message = MutableMapping[str, Any]


_served: List[
    int
] = []  # this process's pid once it served a request (a forked child starts with its parent's list)


def _stamp(**extra: str) -> None:
    path = os.environ.get(STAMP_ENV)
    if not path:
        return
    rec: Dict[str, Any] = {"pid": os.getpid(), "t": time.monotonic()}
    rec.update(extra)
    line = json.dumps(rec) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("ascii"))
    finally:
        os.close(fd)


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[_Message]],
    send: Callable[[_Message], Awaitable[None]],
) -> None:
    """ASGI 3: lifespan with a startup stamp; HTTP answers with the worker pid."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _stamp()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if os.getpid() not in _served:
        _served.append(os.getpid())
        _stamp(event="first_request")
    body = str(os.getpid()).encode("ascii")
    headers = [
        (b"content-type", b"text/plain"),
        (b"x-worker-pid", body),
        (b"content-length", str(len(body)).encode("ascii")),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
