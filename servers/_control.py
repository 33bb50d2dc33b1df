"""Supervisor <-> worker messages over the control channel (a multiprocessing Channel).

Every message is one JSON object with a "type" (sent with send_bytes):

worker -> supervisor

* {"type": "ready", "pid"} - listening and lifespan startup complete
* {"type": "failed", "code", "kind", "message"} - failed before ready; code is a servers.exitcodes
  value, kind is an `error` event kind, message is the one-line exception
* {"type": "stopping", "reason"} - the worker began a graceful stop on its own (a signal it received)
* {"type": "alive"} - heartbeat, sent by the worker's event loop every spec["heartbeat"] seconds once
  ready: a worker whose loop is hung (or that was SIGSTOPped) stops sending it

supervisor -> worker

* {"type": "stop"} - stop gracefully (stop accepting, finish in-flight, lifespan shutdown, exit 0)
* {"type": "share", "data": hex} - `share` strategy: socket.share(worker pid) bytes
* {"type": "handle", "value": int} - `duplicate-handle` strategy: the handle value in the worker

The channel doubles as the worker's lifeline: EOF on it means the supervisor is gone.

SocketChannel(sock) is the exec'd worker's end: the same framing as multiprocessing's Connection (a
4-byte big-endian signed length, -1 + an 8-byte length for messages over 2 GiB), over the socket the
supervisor holds a Connection to. It spares the exec'd worker the import of multiprocessing.connection
(tempfile, random, hashlib: about 6 ms per worker on this machine).

Fork hygiene: a forked worker inherits the supervisor's ends of *other* workers' channels, and EOF never
comes while any copy stays open. Supervisor-side objects are registered with `parent_only()`; a worker
calls `close_parent_only()` first thing (a no-op in spawned and exec'd workers, where the registry is
empty).
"""

import json
import selectors
import socket
import struct
import time
from typing import Any, Dict, List, Optional, Protocol, TypeVar

READY = "ready"
FAILED = "failed"
STOPPING = "stopping"
ALIVE = "alive"
STOP = "stop"
SHARE = "share"
HANDLE = "handle"

_T = TypeVar("_T")
_PARENT_ONLY: List[Any] = []


class Channel(Protocol):
    """What both ends of a control channel are: a multiprocessing Channel (or PipeChannel on
    Windows)."""

    def send_bytes(self, buf: bytes) -> None: ...

    def recv_bytes(self) -> bytes: ...

    def poll(self, timeout: Optional[float] = ...) -> bool: ...

    def fileno(self) -> int: ...

    def close(self) -> None: ...


class SocketChannel:
    """A Channel over a connected stream socket, framed like multiprocessing.connection.Connection."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self._sock = sock

    def send_bytes(self, buf: bytes) -> None:
        n = len(buf)
        header = struct.pack("!i", n) if n <= 0x7FFFFFFF else struct.pack("!iQ", -1, n)
        self._sock.sendall(header + buf)

    def _recv_exact(self, n: int, started: bool) -> bytes:
        chunks: List[bytes] = []
        missing = n
        while missing:
            chunk = self._sock.recv(min(missing, 1 << 20))
            if not chunk:
                if started or chunks:
                    raise EOFError("end of file in the middle of a control message")
                raise EOFError("the control channel was closed")
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def recv_bytes(self) -> bytes:
        (size,) = struct.unpack("!i", self._recv_exact(4, False))
        if size == -1:
            (size,) = struct.unpack("!Q", self._recv_exact(8, True))
        return self._recv_exact(size, True) if size else b""

    def poll(self, timeout: Optional[float] = 0.0) -> bool:
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ)
            return bool(selector.select(timeout))

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()


def send(conn: Channel, kind: str, /, **fields: Any) -> None:
    """Send one message. Raises OSError/EOFError-like errors (BrokenPipeError) if the peer is gone."""
    message: Dict[str, Any] = {"type": kind}
    message.update(fields)
    conn.send_bytes(json.dumps(message).encode("utf-8"))


def recv(conn: Channel) -> Dict[str, Any]:
    """Receive one message (blocking). Raises EOFError when the peer closed its end."""
    data = conn.recv_bytes()
    message = json.loads(data.decode("utf-8"))
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError(f"malformed control message: {data[:80]!r}")
    return message


class StopRequested(Exception):
    """The supervisor said stop while the worker was still waiting for its socket."""


def recv_type(conn: Channel, kind: str, timeout: float) -> Dict[str, Any]:
    """Wait at most `timeout` seconds for a message of type `kind`; other types are dropped.

    Raises EOFError on EOF, StopRequested on a stop message and TimeoutError at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not conn.poll(remaining):
            raise TimeoutError(f"no {kind!r} message from the supervisor within {timeout:g} s")
        message = recv(conn)
        if message["type"] == kind:
            return message
        if message["type"] == STOP:
            raise StopRequested(f"stopped before the {kind!r} message arrived")


def parent_only(obj: _T) -> _T:
    """Register a supervisor-side object (has close()) that forked workers must close; returns obj."""
    _PARENT_ONLY.append(obj)
    return obj


def forget(obj: Any) -> None:
    """The supervisor closed `obj` itself: stop tracking it."""
    try:
        _PARENT_ONLY.remove(obj)
    except ValueError:
        pass


def close_parent_only() -> None:
    """In a forked worker: close every inherited supervisor-side object."""
    while _PARENT_ONLY:
        obj = _PARENT_ONLY.pop()
        try:
            obj.close()
        except OSError:
            pass


def last_line(exc: BaseException) -> str:
    """`Type: message` - the line a traceback ends with (what the harness's signature extractor reads)."""
    text = str(exc).strip().splitlines()
    name = type(exc).__name__
    module = type(exc).__module__
    if module not in ("builtins", "__main__"):
        name = f"{module}.{name}"
    return f"{name}: {text[0]}" if text else name


def optional_int(value: Any) -> Optional[int]:
    """int(value), or None for None."""
    return None if value is None else int(value)


__all__ = [
    "ALIVE",
    "FAILED",
    "HANDLE",
    "READY",
    "SHARE",
    "STOP",
    "STOPPING",
    "Channel",
    "SocketChannel",
    "StopRequested",
    "close_parent_only",
    "forget",
    "last_line",
    "optional_int",
    "parent_only",
    "recv",
    "recv_type",
    "send",
]
