"""The test apps: plain ASGI 3 single-callables, stdlib only, importable on Python 3.7+.

Every HTTP answer carries `x-worker-pid` (the pid of the process that served it, read per request so a
forked worker never reports its parent's pid). The harness proves readiness and load distribution with it.

* pid - body is the worker pid; supports lifespan (startup and shutdown complete)
* seed - the reproduction app of uvicorn #514 (https://github.com/encode/uvicorn/issues/514): it asserts
  `scope["type"] == "http"`, so it raises on a lifespan scope; body "Uvicorn is the best!"
* failing_lifespan - answers lifespan.startup with lifespan.startup.failed (message FAILING_LIFESPAN_MESSAGE);
  HTTP like `pid`
* slow - like `pid` but first waits `?delay=SECONDS` (default 1, capped at SLOW_MAX_DELAY) with
  asyncio.sleep; a delay that is not a finite number gets 400
* crash - like `pid`, but `GET /crash` ends the process at once with `os._exit(CRASH_EXIT_CODE)`
* echo - answers with the request body (application/octet-stream); a client that goes away mid-body gets
  no answer

Apps that support lifespan put `LIFESPAN_STATE_KEY` into the lifespan state at startup; when a request
scope's state carries it, the answer also has `x-lifespan: started` (proof that this worker ran startup).
"""

import asyncio
import math
import os
from typing import Any, Awaitable, Callable, List, MutableMapping, Optional, Tuple
from urllib.parse import parse_qsl

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]

FAILING_LIFESPAN_MESSAGE = "failing_lifespan: startup refused on purpose"
SEED_BODY = b"Uvicorn is the best!"
SLOW_DEFAULT_DELAY = 1.0
SLOW_MAX_DELAY = 30.0
CRASH_EXIT_CODE = 13
LIFESPAN_STATE_KEY = "servers.apps.lifespan"


def _headers(scope: _Scope, content_type: bytes = b"text/plain") -> List[Tuple[bytes, bytes]]:
    headers = [(b"content-type", content_type), (b"x-worker-pid", str(os.getpid()).encode("ascii"))]
    state = scope.get("state")
    if state is not None and state.get(LIFESPAN_STATE_KEY):
        headers.append((b"x-lifespan", b"started"))
    return headers


async def _respond(
    scope: _Scope, send: _Send, status: int, body: bytes, content_type: bytes = b"text/plain"
) -> None:
    headers = _headers(scope, content_type)
    headers.append((b"content-length", str(len(body)).encode("ascii")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(
    scope: _Scope, receive: _Receive, send: _Send, fail_message: Optional[str] = None
) -> None:
    """Run the lifespan protocol: complete startup and shutdown, or fail startup with fail_message."""
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "lifespan.startup":
            if fail_message is not None:
                await send({"type": "lifespan.startup.failed", "message": fail_message})
                return
            state = scope.get("state")
            if state is not None:
                state[LIFESPAN_STATE_KEY] = True
            await send({"type": "lifespan.startup.complete"})
        elif kind == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def pid(scope: _Scope, receive: _Receive, send: _Send) -> None:
    """Answer with the worker pid."""
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    await _respond(scope, send, 200, str(os.getpid()).encode("ascii"))


async def seed(scope: _Scope, receive: _Receive, send: _Send) -> None:
    """The uvicorn #514 reproduction app (plus x-worker-pid): raises AssertionError on lifespan."""
    assert scope["type"] == "http"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                [b"content-type", b"text/plain"],
                [b"x-worker-pid", str(os.getpid()).encode("ascii")],
            ],
        }
    )
    await send({"type": "http.response.body", "body": SEED_BODY})


async def failing_lifespan(scope: _Scope, receive: _Receive, send: _Send) -> None:
    """Refuse lifespan startup with FAILING_LIFESPAN_MESSAGE; HTTP like `pid`."""
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send, fail_message=FAILING_LIFESPAN_MESSAGE)
        return
    await pid(scope, receive, send)


def _parse_delay(query_string: bytes) -> Optional[float]:
    """The ?delay= value in seconds, clamped to [0, SLOW_MAX_DELAY]; None when it is not a finite number."""
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key == "delay":
            try:
                delay = float(value)
            except ValueError:
                return None
            if math.isnan(delay) or math.isinf(delay):
                return None
            return min(max(delay, 0.0), SLOW_MAX_DELAY)
    return SLOW_DEFAULT_DELAY


async def slow(scope: _Scope, receive: _Receive, send: _Send) -> None:
    """Wait ?delay=SECONDS (default 1, capped at 30), then answer like `pid`."""
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    delay = _parse_delay(scope.get("query_string", b""))
    if delay is None:
        await _respond(scope, send, 400, b"delay must be a finite number of seconds\n")
        return
    await asyncio.sleep(delay)
    await _respond(scope, send, 200, str(os.getpid()).encode("ascii"))


async def crash(scope: _Scope, receive: _Receive, send: _Send) -> None:
    """Like `pid`; GET /crash ends the process with os._exit(CRASH_EXIT_CODE) (no cleanup, no answer)."""
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    if scope["method"] == "GET" and scope["path"] == "/crash":
        os._exit(CRASH_EXIT_CODE)
    await _respond(scope, send, 200, str(os.getpid()).encode("ascii"))


async def echo(scope: _Scope, receive: _Receive, send: _Send) -> None:
    """Answer with the request body; nothing when the client disconnects before the body is complete."""
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    chunks: List[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await _respond(scope, send, 200, b"".join(chunks), content_type=b"application/octet-stream")


__all__ = [
    "CRASH_EXIT_CODE",
    "FAILING_LIFESPAN_MESSAGE",
    "LIFESPAN_STATE_KEY",
    "SEED_BODY",
    "SLOW_DEFAULT_DELAY",
    "SLOW_MAX_DELAY",
    "crash",
    "echo",
    "failing_lifespan",
    "pid",
    "seed",
    "slow",
]
