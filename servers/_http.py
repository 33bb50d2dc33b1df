"""HTTP/1.1 on h11, serving one ASGI 3.0 app: the per-worker core of the reference server.

* Limits - frozen request limits (see its fields); breaking one gets the status named there and the
  connection closed
* stop_accepting(server) - close an asyncio Server's listeners without losing what it accepted last
* HttpService(app, limits=, root_path=, state=) - shared by every connection of one worker:
    * protocol_factory() - pass to `loop.create_server(service.protocol_factory, sock=sock)`
    * in_flight - requests whose app task is still running
    * connections - open connections
    * shutdown(timeout) - call after `await stop_accepting(server)` (not a bare `server.close()`, which
      loses what the loop accepted in its last iteration): idle keep-alive connections close now, busy ones
      close after their current response, and whatever is still running at `timeout` is aborted (the
      app's tasks are cancelled). True when every request finished in time.

Behaviour on the wire:

* keep-alive (idle connections close after Limits.keepalive_timeout, also before the first request and
  while request headers trickle in), `Connection: close` and HTTP/1.0 honoured
* request bodies with Content-Length or chunked; `Expect: 100-continue` answered when the app first
  receives; reading pauses while unread body exceeds Limits.body_buffer_bytes
* pipelined requests are answered in order: reading pauses while a request is in flight
* HEAD, 204 and 304 responses never carry a body (whatever the app sends)
* a response head is held back until the first body message so that head and body leave in one write;
  a single-message body without Content-Length gets one, a streamed one is chunked (HTTP/1.1)
* `date` is added when the app sends none; no `server` header
* malformed request -> 400, headers over the limit -> 431, body over the limit -> 413 (a declared
  Content-Length is refused before the app runs), CONNECT -> 501; each then closes the connection
* an app that raises (or returns without a complete response) -> 500 if nothing was written yet,
  otherwise the connection is closed; the traceback goes to the "servers.http" logger
* client gone -> receive() returns http.disconnect and later sends are ignored (ASGI spec 2.3); a
  client EOF after a complete request also ends receive() with http.disconnect, but the answer is
  still written (a client that only half-closed gets it)
* after a final answer (error, `Connection: close`, shutdown) the server half-closes and drops further
  input for a bounded time (Limits.linger_*), so a reset cannot destroy the answer
* every accepted TCP socket gets TCP_NODELAY (see `_set_nodelay`)
"""

import asyncio
import dataclasses
import http
import logging
import socket
import time
from typing import Any, Callable, Dict, List, Optional, Set, Tuple
from urllib.parse import unquote_to_bytes

import h11

from servers._app import ASGIApp, Message

_log = logging.getLogger("servers.http")

_HTTP_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}
_REASONS: Dict[int, bytes] = {int(s): s.phrase.encode("ascii") for s in http.HTTPStatus}
_NO_BODY_STATUS = (204, 304)
#: a graceful shutdown waits (within its graceful timeout) for connections accepted before it that have not
#: sent their request yet: the client sent it (or a starved client is about to) to a listener that accepted
#: it, so closing it unanswered would drop a request (HUP's reload, TTOU). A kept-alive connection answered
#: less than this long ago is waited for too (until this long after its answer): a keep-alive client sends
#: its next request right after a response, and closing the connection then races that request (the
#: client reads "disconnected without a response"). One idle for longer is closed at once.
FRESH_GRACE_S = 1.0
#: loop iterations from an accepted socket to its protocol's connection_made (task step, transport, callback)
ACCEPT_HOPS = 3


async def stop_accepting(server: "asyncio.AbstractServer") -> None:
    """Close `server`'s listeners without losing a connection they already accepted.

    asyncio's selector loop accepts a burst of connections in one callback and builds each one's transport
    in a task a loop iteration later; that transport attaches to its Server, and asserts the Server is still
    open (`Server._attach`, CPython 3.8-3.13; python/cpython#109564, open). A `server.close()` in between
    makes those tasks fail silently: the accepted sockets are never closed or served, and the client reads
    a reset when the worker exits (measured: 18 of 25 TTOU retirements under load dropped 1-7 fresh
    requests). So the accept callback is removed first (nothing more is accepted), the accepted ones get
    ACCEPT_HOPS iterations to reach connection_made (then HttpService.shutdown sees them as fresh and
    answers them), and only then is the listener closed. The proactor loop (Windows) has no reader to
    remove: there the close comes at once, as before."""
    loop = asyncio.get_running_loop()
    listeners = list(server.sockets or ()) if hasattr(server, "sockets") else []
    removed = False
    for sock in listeners:
        try:
            removed = loop.remove_reader(sock.fileno()) or removed
        except (NotImplementedError, ValueError, OSError):
            pass  # a loop without readers (proactor): Server.close() cancels its pending accept
    if removed:
        for _ in range(ACCEPT_HOPS):
            await asyncio.sleep(0)
    server.close()


_DISCONNECT: Dict[str, Any] = {"type": "http.disconnect"}
_CONTINUE = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-worker request limits.

    * max_header_bytes - request line + headers larger than this -> 431
    * max_body_bytes - request body larger than this -> 413
    * keepalive_timeout - seconds an idle connection is kept open (also bounds slow headers)
    * body_buffer_bytes - unread request body above this pauses reading until the app receives
    * linger_timeout / linger_bytes - after a final answer the server half-closes and drops what the
      client still sends, for at most this long / this much, then closes: closing with unread input
      would send a reset, which can destroy the answer before the client reads it (a 413 to an
      upload in progress, the last of several pipelined answers)
    """

    max_header_bytes: int = 16384
    max_body_bytes: int = 1_048_576
    keepalive_timeout: float = 5.0
    body_buffer_bytes: int = 65536
    linger_timeout: float = 2.0
    linger_bytes: int = 4 * 1_048_576

    def __post_init__(self) -> None:
        if self.max_header_bytes <= 0 or self.max_body_bytes < 0 or self.body_buffer_bytes <= 0:
            raise ValueError("Limits: sizes must be positive")
        if self.linger_bytes < 0 or not self.linger_timeout >= 0:
            raise ValueError("Limits: linger_timeout and linger_bytes must be >= 0")
        if not self.keepalive_timeout > 0:
            raise ValueError("Limits: keepalive_timeout must be > 0")


# RFC 9110 IMF-fixdate pieces (email.utils.formatdate costs ~6 ms of import per spawned worker)
_DAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")


class _Clock:
    """The `date` header value, formatted at most once per second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            t = time.gmtime(now)
            self._value = b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
                _DAYS[t.tm_wday],
                t.tm_mday,
                _MONTHS[t.tm_mon - 1],
                t.tm_year,
                t.tm_hour,
                t.tm_min,
                t.tm_sec,
            )
        return self._value


_CLOCK = _Clock()


def _error_response(status: int) -> bytes:
    """A complete `connection: close` response for errors the server answers itself."""
    reason = _REASONS.get(status, b"")
    body = b"%d %s\n" % (status, reason)
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
        b"connection: close\r\ndate: %s\r\n\r\n%s" % (status, reason, len(body), _CLOCK.date(), body)
    )


def _set_nodelay(sock: Optional[socket.socket]) -> None:
    """Disable Nagle on a TCP socket, whatever its origin.

    asyncio sets TCP_NODELAY only when `sock.proto == IPPROTO_TCP`; a socket rebuilt from an fd or a
    handle (socket.socket(fileno=...), fromshare) may report proto 0, and then every keep-alive
    response waits for the peer's delayed ACK (~40 ms on Linux).
    """
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not a TCP socket after all
        pass


def _address(addr: Any, family: int) -> Optional[Tuple[Any, Optional[int]]]:
    """An ASGI `client`/`server` value: (host, port), (path, None) for a named unix socket, else None."""
    if family in (socket.AF_INET, socket.AF_INET6) and isinstance(addr, tuple) and len(addr) >= 2:
        return (str(addr[0]), int(addr[1]))
    if isinstance(addr, bytes):
        addr = addr.decode("utf-8", "backslashreplace")
    if isinstance(addr, str) and addr:
        return (addr, None)
    return None


class _Cycle:
    """One request/response exchange: the app's receive/send and the state they share."""

    __slots__ = (
        "_waiter",
        "body",
        "body_complete",
        "body_delivered",
        "body_size",
        "buffered",
        "disconnected",
        "head",
        "head_written",
        "no_body",
        "proto",
        "response_complete",
        "scope",
        "task",
    )

    def __init__(self, proto: "_HttpProtocol", scope: Dict[str, Any], head_request: bool) -> None:
        self.proto = proto
        self.scope = scope
        self.body: List[bytes] = []
        self.buffered = 0
        self.body_size = 0
        self.body_complete = False
        self.body_delivered = False
        self.disconnected = False
        self.head: Optional[Message] = None  # the http.response.start message, until written
        self.head_written = False
        self.no_body = head_request
        self.response_complete = False
        self.task: Optional[asyncio.Future[None]] = None
        self._waiter: Optional[asyncio.Future[None]] = None

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = self._waiter  # shared, should the app receive() from two tasks at once
        if waiter is None:
            waiter = self._waiter = self.proto.loop.create_future()
        await waiter

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            self.fail()
        except Exception:
            if not self.disconnected:
                scope = self.scope
                _log.exception("ASGI app raised while serving %s %s", scope["method"], scope["path"])
            self.fail()
        else:
            if not self.response_complete and not self.disconnected:
                _log.error(
                    "ASGI app returned without a complete response for %s %s",
                    self.scope["method"],
                    self.scope["path"],
                )
                self.fail()
        finally:
            self.proto.service._request_finished(self)

    def fail(self) -> None:
        """The exchange cannot complete: 500 if nothing was written, else close the connection."""
        if self.response_complete or self.disconnected:
            return
        self.disconnected = True
        self.response_complete = True
        if self.head_written:
            self.proto.close()
        else:
            self.proto.error(500)

    async def receive(self) -> Message:
        if self.body_delivered or self.disconnected or self.response_complete:
            # The whole body was handed over: the next event is the end of the exchange.
            while not (self.disconnected or self.response_complete or self.proto.eof):
                await self._wait()
            return _DISCONNECT
        proto = self.proto
        while not self.body and not self.body_complete and not self.disconnected:
            if proto.conn.they_are_waiting_for_100_continue and not self.head_written:
                proto.transport_write(proto.conn.send(_CONTINUE) or b"")
            proto.resume_reading()
            await self._wait()
        if self.disconnected:
            return _DISCONNECT
        chunks = self.body
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.body = []
        self.buffered = 0
        proto.resume_reading()
        more = not self.body_complete
        self.body_delivered = not more
        return {"type": "http.request", "body": body, "more_body": more}

    async def send(self, message: Message) -> None:
        if self.disconnected:
            return  # ASGI 2.3: sends after the client went away are ignored
        kind = message["type"]
        if self.head is None and not self.head_written:
            if kind != "http.response.start":
                raise RuntimeError(f"expected 'http.response.start', got {kind!r}")
            status = message["status"]
            if type(status) is not int or not 200 <= status <= 999:
                raise RuntimeError(f"invalid response status {status!r}")
            if status in _NO_BODY_STATUS:
                self.no_body = True
            self.head = message
            return
        if self.response_complete:
            raise RuntimeError(f"response already complete, got {kind!r}")
        if kind != "http.response.body":
            raise RuntimeError(f"expected 'http.response.body', got {kind!r}")
        body = message.get("body", b"")
        if type(body) is not bytes:
            if not isinstance(body, (bytearray, memoryview)):
                raise TypeError(f"http.response.body 'body' must be bytes, got {type(body).__name__}")
            body = bytes(body)
        more = bool(message.get("more_body", False))
        proto = self.proto
        conn = proto.conn
        try:
            if self.head_written:
                out = b""
            else:
                out = conn.send(self._response(body, more)) or b""
            if body and not self.no_body:
                out += conn.send(h11.Data(data=body)) or b""
            if not more:
                out += conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError as exc:
            raise RuntimeError(f"invalid ASGI response: {exc}") from exc
        self.head_written = True
        self.head = None
        if not more:
            self.response_complete = True
        proto.transport_write(out)
        if not more:
            self.wake()
            proto.response_complete(self)
        elif proto.write_paused:
            await proto.drain()

    def _response(self, body: bytes, more: bool) -> h11.Response:
        head = self.head
        assert head is not None
        status: int = head["status"]
        headers = []
        framed = has_date = False
        for raw_name, raw_value in head.get("headers", ()):
            name, value = raw_name, raw_value
            if type(name) is not bytes or type(value) is not bytes:
                if not isinstance(name, (bytes, bytearray)) or not isinstance(value, (bytes, bytearray)):
                    raise RuntimeError(f"header names and values must be bytes, got {(name, value)!r}")
                name, value = bytes(name), bytes(value)
            lname = name.lower()
            if lname == b"content-length" or lname == b"transfer-encoding":  # noqa: PLR1714 - no set per header
                framed = True
            elif lname == b"date":
                has_date = True
            headers.append((name, value))
        if not framed and not more and status not in _NO_BODY_STATUS and (body or not self.no_body):
            headers.append((b"content-length", b"%d" % len(body)))
        if not has_date:
            headers.append((b"date", _CLOCK.date()))
        if self.proto.service._closing:
            headers.append((b"connection", b"close"))
        return h11.Response(status_code=status, headers=headers, reason=_REASONS.get(status, b""))


class _HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, service: "HttpService") -> None:
        self.service = service
        self.loop = asyncio.get_running_loop()
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=service.limits.max_header_bytes)
        self.transport: Optional[asyncio.Transport] = None
        self.cycle: Optional[_Cycle] = None
        self.started = (
            False  # a request began on this connection (False: fresh, its request may be on the way)
        )
        self.closed = False  # no more requests on this connection (the transport may still linger)
        self.lingering = 0  # > 0: bytes still accepted (and dropped) before the transport closes
        self.eof = False
        self.read_paused = False
        self.write_paused = False
        self._drain_waiter: Optional[asyncio.Future[None]] = None
        self._timer: Optional[asyncio.TimerHandle] = None
        self._idle_since = 0.0
        self._server: Optional[Tuple[Any, Optional[int]]] = None
        self._client: Optional[Tuple[Any, Optional[int]]] = None

    # -- asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        _set_nodelay(sock)
        family = sock.family if sock is not None else socket.AF_INET
        self._server = _address(transport.get_extra_info("sockname"), family)
        self._client = _address(transport.get_extra_info("peername"), family)
        self.service._connections.add(self)
        # accepted while the service is closing: a fresh connection still gets its request answered
        # (with `connection: close`) within FRESH_GRACE_S (HttpService.shutdown)
        self._idle()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.closed = True
        self.service._connection_lost(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
        if cycle is not None:
            cycle.wake()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> Optional[bool]:
        # The client will send nothing more. An app waiting in receive() for the end of the exchange
        # gets http.disconnect now (as with uvicorn), but the transport stays open for the answer to
        # a complete request, for clients that only half-closed. A request whose body is incomplete
        # can never complete: close.
        self.eof = True
        cycle = self.cycle
        if self.closed or cycle is None or not cycle.body_complete or cycle.response_complete:
            return False
        cycle.wake()
        return True

    def data_received(self, data: bytes) -> None:
        if self.closed:
            if self.lingering:
                self.lingering = max(self.lingering - len(data), 0)
                if not self.lingering:
                    self._end_linger()
            return
        self.conn.receive_data(data)
        self.handle_events()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- events from h11 ----------------------------------------------------------------------

    def handle_events(self) -> None:
        conn = self.conn
        while not self.closed:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self.protocol_error(exc.error_status_hint)
                return
            kind = type(event)
            if kind is h11.Request:
                self.on_request(event)  # type: ignore[arg-type]
            elif kind is h11.Data:
                self.on_data(event.data)  # type: ignore[union-attr]
            elif kind is h11.EndOfMessage:
                cycle = self.cycle
                assert cycle is not None
                cycle.body_complete = True
                cycle.wake()
                if cycle.response_complete:
                    self.next_cycle()
            elif event is h11.NEED_DATA:
                if self.eof and self.cycle is None:
                    self.close()
                return
            elif event is h11.PAUSED:
                self.pause_reading()
                return
            else:  # ConnectionClosed
                self.close()
                return

    def on_request(self, event: h11.Request) -> None:
        service = self.service
        limits = service.limits
        headers = list(event.headers)
        # h11 enforces max_incomplete_event_size only while a head is incomplete; a head that arrives
        # in one read is measured here (request line + header lines, as received give or take spaces).
        size = len(event.method) + len(event.target) + 12
        declared = 0
        framing = set()
        for name, value in headers:
            size += len(name) + len(value) + 4
            if name == b"content-length":
                declared = int(value)  # h11 checked it is digits
            if name in (b"content-length", b"transfer-encoding"):
                framing.add(name)
        if event.http_version not in _HTTP_VERSIONS:
            # h11 accepts any HTTP/1.x-shaped version line ("HTTP/9.9", the HTTP/2 preface's "2.0"): this
            # server speaks 1.0 and 1.1 only (RFC 9110 15.6.6). The HTTP/2 connection preface
            # (`PRI * HTTP/2.0`) is a client that expected h2 here: a bad request for an HTTP/1 server
            self.error(400 if event.method == b"PRI" and event.target == b"*" else 505)
            return
        if len(framing) > 1:
            # Content-Length together with Transfer-Encoding (in either order) is how requests are smuggled
            # past a proxy that reads the other header: RFC 9112 6.3 lets a server reject it, and it must
            # then close the connection, so nothing after this head is read as a second request
            self.error(400)
            return
        if size > limits.max_header_bytes:
            self.error(431)
            return
        if declared > limits.max_body_bytes:
            self.error(413)
            return
        if event.method == b"CONNECT":  # a tunnel, not a request: h11 would switch protocols on a 2xx
            self.error(501)
            return
        target = event.target
        raw_path, _, query = target.partition(b"?")
        if b"%" in raw_path:
            path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
        else:
            path = raw_path.decode("utf-8", "replace")
        root_path = service.root_path
        if root_path:
            path = root_path + path
            raw_path = service._raw_root_path + raw_path
        scope: Dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": _HTTP_VERSIONS.get(event.http_version, "1.1"),
            "server": self._server,
            "client": self._client,
            "scheme": "http",
            "method": event.method.decode("ascii"),
            "root_path": root_path,
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": headers,
        }
        if service.state is not None:
            scope["state"] = service.state.copy()
        cycle = _Cycle(self, scope, event.method == b"HEAD")
        self.cycle = cycle
        self.started = True
        service._request_started(cycle)

    def on_data(self, data: bytes) -> None:
        cycle = self.cycle
        assert cycle is not None
        cycle.body_size += len(data)
        if cycle.body_size > self.service.limits.max_body_bytes:
            self.abandon(cycle, 413)
            return
        if cycle.response_complete:
            return  # the app answered without reading everything: drop the rest of the body
        cycle.body.append(data)
        cycle.buffered += len(data)
        cycle.wake()
        if cycle.buffered > self.service.limits.body_buffer_bytes:
            self.pause_reading()

    def protocol_error(self, status_hint: int) -> None:
        status = status_hint if status_hint in (400, 413, 414, 431) else 400
        cycle = self.cycle
        if cycle is None:
            self.error(status)
        else:
            self.abandon(cycle, status)

    def abandon(self, cycle: _Cycle, status: int) -> None:
        """The request cannot go on: answer `status` if nothing was written yet, else just close."""
        if cycle.head_written:
            cycle.disconnected = True
            cycle.response_complete = True
            cycle.wake()
            self.close()
        else:
            self.error(status)

    # -- called by the cycle ------------------------------------------------------------------

    def response_complete(self, cycle: _Cycle) -> None:
        if self.closed:
            return
        conn = self.conn
        if conn.our_state is h11.MUST_CLOSE or self.service._closing:
            self.linger()
        elif conn.our_state is not h11.DONE or (self.eof and conn.their_state is not h11.DONE):
            self.close()
        elif conn.their_state is h11.DONE:
            self.next_cycle()
            self.resume_reading()
            self.handle_events()
        else:
            # Drain the unread request body, then start the next cycle; the keep-alive timer bounds a
            # client that stops sending it.
            self.resume_reading()
            self._idle()

    def next_cycle(self) -> None:
        try:
            self.conn.start_next_cycle()
        except h11.LocalProtocolError:
            self.close()
            return
        self.cycle = None
        self._idle()

    def transport_write(self, data: bytes) -> None:
        if not self.closed and data:
            assert self.transport is not None
            self.transport.write(data)

    async def drain(self) -> None:
        if self.closed or not self.write_paused:
            return
        waiter = self._drain_waiter
        if waiter is None:
            waiter = self._drain_waiter = self.loop.create_future()
        await waiter

    def error(self, status: int) -> None:
        """Answer with a server-made error response and close (bypasses h11, which may be in ERROR)."""
        cycle = self.cycle
        if cycle is not None:
            cycle.disconnected = True
            cycle.response_complete = True
            cycle.wake()
        self.transport_write(_error_response(status))
        self.linger()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            assert self.transport is not None
            self.transport.close()

    def linger(self) -> None:
        """Close after a final answer: half-close now, drop further input for a bounded time."""
        if self.closed:
            return
        assert self.transport is not None
        limits = self.service.limits
        if self.eof or not self.transport.can_write_eof() or not limits.linger_bytes:
            self.close()
            return
        try:
            self.transport.write_eof()  # FIN after the answer: the client sees a complete response
        except OSError:
            # the peer is gone already (ENOTCONN / EPIPE after a reset): the server's own closing, not the
            # app's doing - never let it surface inside the app's `await send()` as "ASGI app raised"
            self.close()
            return
        self.closed = True
        self.lingering = limits.linger_bytes
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(limits.linger_timeout, self._end_linger)
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def _end_linger(self) -> None:
        self.lingering = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        assert self.transport is not None
        self.transport.close()

    def abort(self) -> None:
        self.closed = True
        self.lingering = 0
        assert self.transport is not None
        self.transport.abort()

    def pause_reading(self) -> None:
        if not self.read_paused and not self.closed:
            self.read_paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and not self.closed:
            self.read_paused = False
            assert self.transport is not None
            self.transport.resume_reading()

    # -- keep-alive ---------------------------------------------------------------------------

    def _idle(self) -> None:
        """Mark the connection idle from now; one timer per keep-alive period, not per request."""
        self._idle_since = self.loop.time()
        if self._timer is None:
            deadline = self._idle_since + self.service.limits.keepalive_timeout
            self._timer = self.loop.call_at(deadline, self._tick)

    def _tick(self) -> None:
        self._timer = None
        cycle = self.cycle
        if self.closed or (cycle is not None and not cycle.response_complete):
            return  # busy: the next _idle() re-arms
        deadline = self._idle_since + self.service.limits.keepalive_timeout
        if self.loop.time() >= deadline:
            self.close()
        else:
            self._timer = self.loop.call_at(deadline, self._tick)

    def shutdown(self) -> None:
        """Close now if no answer is pending; otherwise the answer ends with `connection: close`. A
        connection whose request may be on its way (awaiting) is left for HttpService.shutdown's grace."""
        cycle = self.cycle
        if self.awaiting(self.loop.time()):
            return
        if cycle is None or cycle.response_complete:
            self.close()

    def awaiting(self, now: float) -> bool:
        """No request is in progress and one may be on its way: none came yet (fresh), or the last answer
        went out less than FRESH_GRACE_S ago (a keep-alive client's next request)."""
        if self.closed or self.cycle is not None:
            return False
        return not self.started or now < self.warm_until

    @property
    def warm_until(self) -> float:
        """When a kept-alive connection stops counting as awaiting its next request."""
        return self._idle_since + FRESH_GRACE_S


class HttpService:
    """Everything one worker's connections share: the app, the limits, and the bookkeeping for shutdown."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: Limits = Limits(),
        root_path: str = "",
        state: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.app = app
        self.limits = limits
        self.root_path = root_path.rstrip("/")
        self._raw_root_path = self.root_path.encode("utf-8")
        self.state = state
        self._connections: Set[_HttpProtocol] = set()
        self._tasks: Set[asyncio.Future[None]] = set()
        self._closing = False
        self._changed: Optional[asyncio.Future[None]] = None

    def protocol_factory(self) -> asyncio.Protocol:
        return _HttpProtocol(self)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    @property
    def connections(self) -> int:
        return len(self._connections)

    def _request_started(self, cycle: _Cycle) -> None:
        task = cycle.proto.loop.create_task(cycle.run(self.app))
        cycle.task = task
        self._tasks.add(task)
        if self._changed is not None:  # a fresh connection's request began (shutdown's grace)
            self._notify()

    def _request_finished(self, cycle: _Cycle) -> None:
        task = cycle.task
        if task is not None:
            self._tasks.discard(task)
        if self._changed is not None:
            self._notify()

    def _connection_lost(self, proto: _HttpProtocol) -> None:
        self._connections.discard(proto)
        if self._changed is not None:
            self._notify()

    def _notify(self) -> None:
        changed = self._changed
        self._changed = None
        if changed is not None and not changed.done():
            changed.set_result(None)

    async def _wait_until(
        self, done: Callable[[], bool], deadline: float, wake: Optional[Callable[[], float]] = None
    ) -> bool:
        """Wait until done() (re-checked on every connection/request change, and at wake()'s time: when
        done() may turn true with no event) or the deadline."""
        loop = asyncio.get_running_loop()
        while not done():
            now = loop.time()
            remaining = deadline - now
            if remaining <= 0:
                return False
            if wake is not None:
                remaining = min(remaining, max(0.0, wake() - now))
            changed = self._changed = loop.create_future()
            await asyncio.wait({changed}, timeout=remaining)
        return True

    def _awaited(self) -> bool:
        now = asyncio.get_running_loop().time()
        return any(p.awaiting(now) for p in self._connections)

    def _next_cold(self) -> float:
        """The soonest time a kept-alive connection stops being waited for (FRESH_GRACE_S on: none is)."""
        now = asyncio.get_running_loop().time()
        warm = [p.warm_until for p in self._connections if p.started and p.awaiting(now)]
        return min(warm, default=now + FRESH_GRACE_S)

    async def shutdown(self, timeout: float) -> bool:
        """Close idle connections now (not those a request may be on its way to: fresh ones, and kept-alive
        ones answered less than FRESH_GRACE_S ago, get it answered with `connection: close`), let in-flight
        requests finish within `timeout`, abort the rest.

        Returns True if every in-flight request finished in time. On return every connection is
        closed or aborted and every request task has ended (or was cancelled and given 1 s to end).
        """
        loop = asyncio.get_running_loop()
        self._closing = True
        # connections the listener accepted just before it was closed are still on their way in: asyncio
        # accepts them in its reader callback and makes their protocol in a task (then connection_made in a
        # callback after it); let those callbacks run, so they are counted as fresh below, not left to be
        # cut when the worker exits
        for _ in range(ACCEPT_HOPS):
            await asyncio.sleep(0)
        for proto in list(self._connections):
            proto.shutdown()
        if timeout > 0:  # a quick stop (timeout 0) waits for nothing
            await self._wait_until(lambda: not self._awaited(), loop.time() + timeout, wake=self._next_cold)
        finished = await self._wait_until(lambda: not self._tasks, loop.time() + max(timeout, 0.0))
        for proto in list(self._connections):
            if proto.lingering:
                proto._end_linger()
                continue
            if proto.closed:
                continue
            if proto.cycle is None or proto.cycle.response_complete:
                proto.close()
            else:
                proto.abort()
        if self._tasks:
            for task in list(self._tasks):
                task.cancel()
            await self._wait_until(lambda: not self._tasks, loop.time() + 1.0)
        await self._wait_until(lambda: not self._connections, loop.time() + 1.0)
        return finished


__all__ = ["HttpService", "Limits", "stop_accepting"]
