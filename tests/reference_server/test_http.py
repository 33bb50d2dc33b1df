"""The reference server's HTTP/1.1 core (servers._http), over real loopback sockets.

Each test runs an asyncio server with HttpService in a thread (ServerThread) and talks to it with raw
sockets, so what is asserted is what goes over the wire. ServerThread, read_response and exchange are
reused by test_apps.py.
"""

import asyncio
import concurrent.futures
import gc
import logging
import os
import re
import socket
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servers import _http, apps
from servers._http import HttpService, Limits, stop_accepting

TIMEOUT = 10.0  # every wait in these tests; generous because the machine is shared

App = Callable[..., Any]


def limits(**overrides: Any) -> Limits:
    """Limits whose keep-alive outlasts every wait in these tests, so that a connection the server
    closes was closed for the reason under test, not by the idle timer."""
    overrides.setdefault("keepalive_timeout", 10 * TIMEOUT)
    return Limits(**overrides)


DEFAULT_LIMITS = limits()


class ServerThread:
    """An HttpService on its own event loop in a daemon thread, listening on 127.0.0.1:0 (or `sock`).

    * start() - returns when the server listens (ready handshake, deadline TIMEOUT)
    * stop(timeout) - server.close() + service.shutdown(timeout); returns shutdown's result
    * begin_stop(timeout) / finish_stop() - the same in two steps, to act while shutdown runs
    * call(fn) - run fn() on the loop thread and return its result
    * loop_errors - what reached the loop's exception handler (must stay empty)
    """

    def __init__(
        self,
        app: App,
        *,
        limits: Limits = DEFAULT_LIMITS,
        state: Optional[Dict[str, Any]] = None,
        root_path: str = "",
        sock: Optional[socket.socket] = None,
        uds: str = "",
        wrap_factory: Optional[
            Callable[[Callable[[], asyncio.Protocol]], Callable[[], asyncio.Protocol]]
        ] = None,
    ) -> None:
        self.app = app
        self.limits = limits
        self.state = state
        self.root_path = root_path
        self.sock = sock
        self.uds = uds
        self.wrap_factory = wrap_factory
        self.port = 0
        self.loop_errors: List[Dict[str, Any]] = []
        self.shutdown_result: Optional[bool] = None
        self.service: Optional[HttpService] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self._stop: Optional[asyncio.Future[float]] = None
        self._thread = threading.Thread(target=self._run, name="http-test-server", daemon=True)

    def start(self) -> "ServerThread":
        self._thread.start()
        if not self._ready.wait(TIMEOUT):
            raise RuntimeError(f"test server did not start within {TIMEOUT} s")
        if self._error is not None:
            raise RuntimeError("test server failed to start") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(lambda _loop, context: self.loop_errors.append(context))
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # the thread boundary: recorded, re-raised by start()
            self._error = exc
        finally:
            self._ready.set()
            loop.close()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self.service = HttpService(self.app, limits=self.limits, root_path=self.root_path, state=self.state)
        factory: Callable[[], asyncio.Protocol] = self.service.protocol_factory
        if self.wrap_factory is not None:
            factory = self.wrap_factory(factory)
        self._stop = loop.create_future()
        if self.uds:
            server = await loop.create_unix_server(factory, self.uds)
        elif self.sock is not None:
            server = await loop.create_server(factory, sock=self.sock)
        else:
            server = await loop.create_server(factory, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1] if not self.uds else 0
        self._ready.set()
        timeout = await self._stop
        await stop_accepting(server)  # as servers._worker stops
        self.shutdown_result = await self.service.shutdown(timeout)
        await server.wait_closed()

    def call(self, fn: Callable[[], Any]) -> Any:
        assert self._loop is not None
        result: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(fn())
            except BaseException as exc:
                result.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return result.result(TIMEOUT)

    def begin_stop(self, timeout: float = 1.0) -> None:
        assert self._loop is not None and self._stop is not None
        stop = self._stop

        def set_stop() -> None:
            if not stop.done():
                stop.set_result(timeout)

        self._loop.call_soon_threadsafe(set_stop)

    def finish_stop(self) -> Optional[bool]:
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive(), "test server did not stop"
        return self.shutdown_result

    def stop(self, timeout: float = 1.0) -> Optional[bool]:
        if self._thread.is_alive():
            self.begin_stop(timeout)
        return self.finish_stop()


@pytest.fixture
def serve() -> Any:
    """serve(app, **ServerThread kwargs) -> a started ServerThread, stopped and checked at teardown."""
    started: List[ServerThread] = []

    def start(app: App, **kwargs: Any) -> ServerThread:
        server = ServerThread(app, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        assert server.loop_errors == [], server.loop_errors
        assert server.service is not None
        # shutdown's contract: nothing left open or running
        assert (server.service.connections, server.service.in_flight) == (0, 0)


# -- wire helpers ------------------------------------------------------------------------------


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.settimeout(TIMEOUT)
    return sock


def recv_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset counts as closed); deadline TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    chunks = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"server did not close the connection within {TIMEOUT} s")
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def exchange(port: int, data: bytes) -> bytes:
    """Send data, half-close, return everything the server answers until it closes."""
    with connect(port) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return recv_until_closed(sock)


class Response:
    def __init__(self, status: int, headers: List[Tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: bytes) -> Optional[bytes]:
        for key, value in self.headers:
            if key == name:
                return value
        return None


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) [^\r\n]*\Z")


class ResponseParser:
    """A strict incremental HTTP/1.x response parser (raises AssertionError on anything malformed).

    The body of a response to HEAD is recognised by the `x-method: HEAD` header the test apps set.
    """

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def next(self, at_eof: bool = False) -> Optional[Response]:
        """The next complete response, or None if more data is needed (AssertionError if at_eof)."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            assert not at_eof or not self.buffer, f"truncated response head: {self.buffer[:200]!r}"
            return None
        lines = self.buffer[:end].split(b"\r\n")
        match = _STATUS_LINE.match(lines[0])
        assert match, f"bad status line {lines[0]!r}"
        status = int(match.group(1))
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            assert sep and name and name == name.strip(), f"bad header line {line!r}"
            headers.append((name.lower(), value.strip()))
        response = Response(status, headers, b"")
        rest = self.buffer[end + 4 :]
        no_body = status in (204, 304) or 100 <= status < 200 or response.header(b"x-method") == b"HEAD"
        te = response.header(b"transfer-encoding")
        cl = response.header(b"content-length")
        if no_body:
            consumed = 0
        elif te is not None:
            assert te.lower() == b"chunked", te
            parsed = self._chunked(rest, at_eof)
            if parsed is None:
                return None
            response.body, consumed = parsed
        elif cl is not None:
            length = int(cl)
            if len(rest) < length:
                assert not at_eof, f"truncated body: {len(rest)} of {length} bytes"
                return None
            response.body, consumed = rest[:length], length
        else:  # close-delimited
            if not at_eof:
                return None
            response.body, consumed = rest, len(rest)
        self.buffer = rest[consumed:]
        return response

    @staticmethod
    def _chunked(data: bytes, at_eof: bool) -> Optional[Tuple[bytes, int]]:
        pos = 0
        body: List[bytes] = []
        while True:
            end = data.find(b"\r\n", pos)
            if end < 0:
                assert not at_eof, "truncated chunked body"
                return None
            size = int(data[pos:end].split(b";")[0], 16)
            start = end + 2
            if size == 0:
                trailer_end = data.find(b"\r\n", start)
                if trailer_end != start:  # no trailers are ever sent
                    assert not at_eof, "truncated chunked body"
                    return None
                return b"".join(body), start + 2
            if len(data) < start + size + 2:
                assert not at_eof, "truncated chunk"
                return None
            assert data[start + size : start + size + 2] == b"\r\n", "bad chunk terminator"
            body.append(data[start : start + size])
            pos = start + size + 2


def parse_all(data: bytes) -> List[Response]:
    """Every response in data (the complete output of a closed connection)."""
    parser = ResponseParser()
    parser.feed(data)
    responses = []
    while parser.buffer:
        response = parser.next(at_eof=True)
        assert response is not None
        responses.append(response)
    return responses


def read_response(sock: socket.socket, parser: Optional[ResponseParser] = None) -> Response:
    """Read exactly one response from a keep-alive connection (deadline TIMEOUT)."""
    parser = parser if parser is not None else ResponseParser()
    deadline = time.monotonic() + TIMEOUT
    while True:
        response = parser.next()
        if response is not None:
            return response
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no complete response within {TIMEOUT} s"
        sock.settimeout(remaining)
        data = sock.recv(65536)
        if not data:
            response = parser.next(at_eof=True)
            assert response is not None, "connection closed before a response"
            return response
        parser.feed(data)


def get(path: str = "/", extra: bytes = b"", method: bytes = b"GET") -> bytes:
    return method + b" " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n"


# -- test apps -----------------------------------------------------------------------------------


async def path_app(scope: Dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the path and `x-method`; reads (and drops) the request body first."""
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    body = scope["path"].encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"x-method", scope["method"].encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Recorder:
    """An app that records each scope and every message its receive() returned."""

    def __init__(self) -> None:
        self.scopes: List[Dict[str, Any]] = []
        self.received: List[Dict[str, Any]] = []
        self.disconnected = threading.Event()
        self.entered = threading.Event()

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        self.entered.set()
        while True:
            message = await receive()
            self.received.append(message)
            if message["type"] == "http.disconnect":
                self.disconnected.set()
                return
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-method", b"GET")]})
        await send({"type": "http.response.body", "body": b"ok"})


# -- tests -------------------------------------------------------------------------------------


def test_keepalive_reuses_one_connection(serve: Any) -> None:
    server = serve(path_app)
    with connect(server.port) as sock:
        parser = ResponseParser()
        for path in ("/one", "/two", "/three"):
            sock.sendall(get(path))
            response = read_response(sock, parser)
            assert response.status == 200
            assert response.body == path.encode()
            assert response.header(b"date")
        assert server.call(lambda: server.service.connections) == 1
    # and an ordinary client agrees
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=TIMEOUT) as client:
        assert [client.get("/x").text for _ in range(3)] == ["/x"] * 3


def test_http_scope_is_complete(serve: Any) -> None:
    recorder = Recorder()
    state = {"shared": "yes"}
    server = serve(recorder, state=state, root_path="/mount")
    with connect(server.port) as sock:
        sock.sendall(b"GET /a%20b/%E2%82%AC?x=1&y=%20 HTTP/1.1\r\nHost: t\r\nX-Mixed-Case: V\r\n\r\n")
        assert read_response(sock).status == 200
        client_port = sock.getsockname()[1]
    (scope,) = recorder.scopes
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["root_path"] == "/mount"
    assert scope["path"] == "/mount/a b/\u20ac"
    assert scope["raw_path"] == b"/mount/a%20b/%E2%82%AC"
    assert scope["query_string"] == b"x=1&y=%20"
    assert (b"x-mixed-case", b"V") in [tuple(h) for h in scope["headers"]]
    assert all(name == name.lower() and isinstance(name, bytes) for name, _ in scope["headers"])
    assert scope["client"] == ("127.0.0.1", client_port)
    assert scope["server"] == ("127.0.0.1", server.port)
    assert scope["state"] == state and scope["state"] is not state


def test_ipv6_loopback_scope(serve: Any) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python build")
    listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        listener.bind(("::1", 0))
    except OSError as exc:  # IPv6 disabled on the host
        listener.close()
        pytest.skip(f"cannot bind ::1: {exc}")
    listener.listen(8)
    recorder = Recorder()
    server = serve(recorder, sock=listener)
    with socket.create_connection(("::1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(get("/six", b"Connection: close\r\n"))
        assert parse_all(recv_until_closed(sock))[0].status == 200
        client_port = sock.getsockname()[1]
    (scope,) = recorder.scopes
    assert scope["server"] == ("::1", server.port)
    assert scope["client"] == ("::1", client_port)


def test_unix_socket_scope(serve: Any) -> None:
    if sys.platform == "win32":
        pytest.skip("asyncio unix servers are POSIX-only")
    recorder = Recorder()
    directory = tempfile.mkdtemp(prefix="http-uds-")  # short: AF_UNIX paths are limited to ~107 bytes
    path = os.path.join(directory, "s")
    try:
        server = serve(recorder, uds=path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(path)
            sock.sendall(get("/u", b"Connection: close\r\n"))
            assert parse_all(recv_until_closed(sock))[0].status == 200
        server.stop()
    finally:
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(directory)
    (scope,) = recorder.scopes
    assert scope["server"] == (path, None)
    assert scope["client"] is None
    assert "state" not in scope


def test_malformed_request_gets_400_and_server_keeps_serving(serve: Any) -> None:
    server = serve(path_app)
    with connect(server.port) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        (response,) = parse_all(recv_until_closed(sock))  # answered, then closed
    assert response.status == 400
    assert response.header(b"connection") == b"close"
    (after,) = parse_all(exchange(server.port, get("/next")))
    assert after.status == 200 and after.body == b"/next"


def test_connect_is_refused_with_501(serve: Any) -> None:
    recorder = Recorder()
    server = serve(recorder)
    (response,) = parse_all(exchange(server.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: t\r\n\r\n"))
    assert response.status == 501
    assert recorder.scopes == []


def test_slow_headers_are_cut_off_by_the_keepalive_timeout(serve: Any) -> None:
    server = serve(path_app, limits=limits(keepalive_timeout=0.2))
    with connect(server.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")  # and never finishes the head
        assert recv_until_closed(sock) == b""


def test_body_limit_holds_after_the_app_answered(serve: Any) -> None:
    # path_app reads the body; this app answers at once and leaves the body unread: the server drains
    # it, but not beyond the limit.
    async def early(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-method", b"POST")]})
        await send({"type": "http.response.body", "body": b"early"})

    server = serve(early, limits=limits(max_body_bytes=1000))
    with connect(server.port) as sock:
        chunks = _chunked(b"z" * 600, 300)[: -len(b"0\r\n\r\n")]  # the body goes on...
        sock.sendall(get("/", b"Transfer-Encoding: chunked\r\n", b"POST") + chunks)
        parser = ResponseParser()
        assert read_response(sock, parser).body == b"early"
        assert server.call(lambda: server.service.connections) == 1
        sock.sendall(chunks)  # ...past the limit: the connection is closed, nothing more is sent
        assert recv_until_closed(sock) == b""


def test_unread_body_that_stalls_is_cut_off_by_the_keepalive_timeout(serve: Any) -> None:
    keepalive = 0.2

    async def early(scope: Any, receive: Any, send: Any) -> None:
        # Outlive the keep-alive timer armed at connect (it fires while busy and is dropped), so only
        # a timer armed when the answer completes can end the stalled body.
        await asyncio.sleep(2 * keepalive)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-method", b"POST")]})
        await send({"type": "http.response.body", "body": b"early"})

    server = serve(early, limits=limits(keepalive_timeout=keepalive))
    with connect(server.port) as sock:
        sock.sendall(get("/", b"Content-Length: 1000\r\n", b"POST") + b"partial")  # and stalls
        parser = ResponseParser()
        assert read_response(sock, parser).body == b"early"
        assert recv_until_closed(sock) == b""


def test_oversized_headers_get_431(serve: Any) -> None:
    server = serve(path_app, limits=limits(max_header_bytes=1024))
    (response,) = parse_all(exchange(server.port, get("/", b"X-Big: " + b"a" * 4096 + b"\r\n")))
    assert response.status == 431
    (ok,) = parse_all(exchange(server.port, get("/", b"X-Small: " + b"a" * 100 + b"\r\n")))
    assert ok.status == 200


def test_declared_body_over_limit_gets_413_without_calling_the_app(serve: Any) -> None:
    recorder = Recorder()
    server = serve(recorder, limits=limits(max_body_bytes=1000))
    (response,) = parse_all(
        exchange(server.port, get("/", b"Content-Length: 1001\r\n", b"POST") + b"x" * 1001)
    )
    assert response.status == 413
    assert recorder.scopes == []
    (ok,) = parse_all(exchange(server.port, get("/", b"Content-Length: 1000\r\n", b"POST") + b"x" * 1000))
    assert ok.status == 200
    assert b"".join(m.get("body", b"") for m in recorder.received) == b"x" * 1000


@pytest.mark.parametrize("transfer", ["content-length", "chunked"])
def test_upload_over_limit_gets_its_413_delivered(serve: Any, transfer: str) -> None:
    # The client is still sending when the server answers. (On Linux loopback a reset does not
    # discard what the client already received, so this checks the outcome; the lingering close that
    # secures it where a reset does discard, e.g. Windows, is checked by the test below.)
    server = serve(apps.echo, limits=limits(max_body_bytes=1000))
    body = b"u" * (3 * 1_048_576)
    content: Any = (
        body
        if transfer == "content-length"
        else iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
    )
    with httpx.Client(timeout=TIMEOUT) as client:
        response = client.post(f"http://127.0.0.1:{server.port}/", content=content)
    assert response.status_code == 413
    assert response.headers["connection"] == "close"


def test_final_answer_is_followed_by_a_lingering_half_close(serve: Any) -> None:
    server = serve(path_app, limits=limits(linger_timeout=10 * TIMEOUT))
    with connect(server.port) as sock:
        sock.sendall(b"NOT HTTP\r\n\r\n")
        (response,) = parse_all(recv_until_closed(sock))  # ends at the server's FIN
        assert response.status == 400
        # half-closed, not closed: the server still takes (and drops) what the client sends
        assert server.call(lambda: server.service.connections) == 1
        sock.sendall(b"x" * 200_000)
        assert server.call(lambda: server.service.connections) == 1


def _chunked(body: bytes, size: int) -> bytes:
    out = b""
    for i in range(0, len(body), size):
        part = body[i : i + size]
        out += b"%x\r\n%s\r\n" % (len(part), part)
    return out + b"0\r\n\r\n"


def test_chunked_body_over_limit_gets_413(serve: Any) -> None:
    server = serve(apps.echo, limits=limits(max_body_bytes=1000))
    request = get("/", b"Transfer-Encoding: chunked\r\n", b"POST") + _chunked(b"y" * 2000, 300)
    (response,) = parse_all(exchange(server.port, request))
    assert response.status == 413


def test_chunked_request_body_reaches_the_app(serve: Any) -> None:
    server = serve(apps.echo)
    body = bytes(range(256)) * 40
    request = get("/", b"Transfer-Encoding: chunked\r\n", b"POST") + _chunked(body, 777)
    (response,) = parse_all(exchange(server.port, request))
    assert response.status == 200
    assert response.body == body


def test_large_body_both_ways_with_flow_control(serve: Any) -> None:
    # 900 KiB in and out: more than body_buffer_bytes and the transport's write buffer, so reading
    # pauses and resumes, and the app's send waits for drain.
    server = serve(apps.echo, limits=limits(body_buffer_bytes=4096))
    body = os.urandom(900 * 1024)
    with httpx.Client(timeout=TIMEOUT) as client:
        response = client.post(f"http://127.0.0.1:{server.port}/", content=body)
    assert response.status_code == 200
    assert response.content == body


def test_pipelined_requests_are_answered_in_order(serve: Any) -> None:
    server = serve(path_app)
    data = (
        get("/1")
        + get("/2", b"Content-Length: 3\r\n", b"POST")
        + b"abc"
        + get("/3", b"Connection: close\r\n")
    )
    responses = parse_all(exchange(server.port, data))
    assert [r.body for r in responses] == [b"/1", b"/2", b"/3"]
    assert [r.status for r in responses] == [200, 200, 200]


def test_head_response_has_no_body(serve: Any) -> None:
    server = serve(apps.pid)
    with connect(server.port) as sock:
        sock.sendall(get("/", method=b"HEAD") + get("/", b"Connection: close\r\n"))
        data = recv_until_closed(sock)
    # apps.pid does not set x-method, so parse by hand: the HEAD answer ends at its blank line and the
    # GET answer follows immediately.
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:40]
    (get_response,) = parse_all(rest)
    assert get_response.body == str(os.getpid()).encode()
    head_length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
    assert head_length is not None and int(head_length.group(1)) == len(get_response.body)


def test_client_disconnect_is_seen_by_the_app(serve: Any) -> None:
    recorder = Recorder()
    server = serve(recorder)
    with connect(server.port) as sock:
        # headers promise a body that never comes; the app waits in receive() until the client leaves
        sock.sendall(get("/", b"Content-Length: 100\r\n", b"POST") + b"partial")
        assert recorder.entered.wait(TIMEOUT)
        assert server.call(lambda: server.service.in_flight) == 1
    assert recorder.disconnected.wait(TIMEOUT), "the app never saw http.disconnect"
    assert recorder.received[-1] == {"type": "http.disconnect"}


def test_disconnect_reaches_every_task_waiting_in_receive(serve: Any) -> None:
    # Starlette-style: one task listens for the disconnect while another waits as well.
    seen: List[str] = []
    both = threading.Event()

    entered = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()  # the (empty) body
        entered.set()

        async def listen(name: str) -> None:
            message = await receive()
            seen.append(name + ":" + message["type"])

        await asyncio.gather(listen("a"), listen("b"))
        both.set()

    server = serve(app)
    with connect(server.port) as sock:
        sock.sendall(get("/"))
        assert entered.wait(TIMEOUT)
    assert both.wait(TIMEOUT), seen
    assert sorted(seen) == ["a:http.disconnect", "b:http.disconnect"]


def test_connection_close_is_honoured(serve: Any) -> None:
    server = serve(path_app)
    with connect(server.port) as sock:
        sock.sendall(get("/c", b"Connection: close\r\n"))  # no half-close: the server must close
        (response,) = parse_all(recv_until_closed(sock))
    assert response.body == b"/c"
    assert response.header(b"connection") == b"close"


def test_http10_without_keepalive_closes(serve: Any) -> None:
    server = serve(path_app)
    with connect(server.port) as sock:
        sock.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        (response,) = parse_all(recv_until_closed(sock))
    assert response.body == b"/old"


def test_idle_keepalive_connection_is_closed(serve: Any) -> None:
    server = serve(path_app, limits=limits(keepalive_timeout=0.2))
    with connect(server.port) as sock:
        sock.sendall(get("/k"))
        parser = ResponseParser()
        assert read_response(sock, parser).body == b"/k"
        assert recv_until_closed(sock) == b""  # closed by the server, not by the deadline


def test_tcp_nodelay_is_set_on_sockets_rebuilt_with_proto_0(serve: Any) -> None:
    """A socket rebuilt from an fd can report proto 0; asyncio then skips TCP_NODELAY (40 ms stalls)."""
    seen: List[Tuple[str, int]] = []

    def listener() -> socket.socket:
        base = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        base.bind(("127.0.0.1", 0))
        base.listen(8)
        rebuilt = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, fileno=base.detach())
        assert rebuilt.proto == 0
        return rebuilt

    def recording(name: str) -> Any:
        def wrap(factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
            class Probe(asyncio.Protocol):
                def connection_made(self, transport: asyncio.BaseTransport) -> None:
                    # runs after the real protocol's connection_made (below): what the socket ended with
                    inner.connection_made(transport)
                    sock = transport.get_extra_info("socket")
                    seen.append((name, sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))

                def data_received(self, data: bytes) -> None:
                    inner.data_received(data)

                def eof_received(self) -> Optional[bool]:
                    keep_open: Optional[bool] = inner.eof_received()
                    return keep_open

                def connection_lost(self, exc: Optional[BaseException]) -> None:
                    inner.connection_lost(exc)

                def pause_writing(self) -> None:
                    inner.pause_writing()

                def resume_writing(self) -> None:
                    inner.resume_writing()

            inner: Any = None

            def make() -> asyncio.Protocol:
                nonlocal inner
                inner = factory()
                return Probe()

            return make

        return wrap

    def plain(factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        # control: asyncio alone, same kind of socket
        class Plain(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                seen.append(("plain", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
                transport.close()

        return Plain

    control = serve(path_app, sock=listener(), wrap_factory=plain)
    exchange(control.port, b"")
    server = serve(path_app, sock=listener(), wrap_factory=recording("service"))
    (response,) = parse_all(exchange(server.port, get("/n")))
    assert response.body == b"/n"
    assert dict(seen) == {"plain": 0, "service": 1}


def test_app_exception_before_response_gets_500(serve: Any, caplog: Any) -> None:
    async def broken(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        raise ValueError("boom")

    server = serve(broken)
    with caplog.at_level(logging.ERROR, logger="servers.http"):
        (response,) = parse_all(exchange(server.port, get("/")))
    assert response.status == 500
    assert any("boom" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_invalid_asgi_messages_get_500(serve: Any, caplog: Any) -> None:
    async def body_first(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.body", "body": b"x"})

    async def bad_header(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x", b"a\r\nb")]})
        await send({"type": "http.response.body", "body": b"x"})

    async def no_response(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        return None

    async def str_body(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": "text"})

    async def informational(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 101, "headers": []})

    with caplog.at_level(logging.CRITICAL, logger="servers.http"):
        for app in (body_first, bad_header, no_response, str_body, informational):
            server = serve(app)
            (response,) = parse_all(exchange(server.port, get("/")))
            assert response.status == 500, app.__name__


def test_app_exception_after_start_closes_the_connection(serve: Any, caplog: Any) -> None:
    async def half(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        raise ValueError("mid-stream")

    server = serve(half)
    with caplog.at_level(logging.CRITICAL, logger="servers.http"):
        data = exchange(server.port, get("/"))
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding: chunked" in data.lower()
    assert not data.endswith(b"0\r\n\r\n")  # the chunked body was never terminated: the client knows
    with pytest.raises(AssertionError, match="truncated"):
        parse_all(data)


def test_streamed_response_is_chunked(serve: Any) -> None:
    async def stream(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"a", b"", b"bc"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"d"})

    server = serve(stream)
    (response,) = parse_all(exchange(server.port, get("/")))
    assert response.header(b"transfer-encoding") == b"chunked"
    assert response.header(b"content-length") is None
    assert response.body == b"abcd"
    (old,) = parse_all(exchange(server.port, b"GET / HTTP/1.0\r\n\r\n"))  # HTTP/1.0: close-delimited
    assert old.header(b"transfer-encoding") is None and old.body == b"abcd"


def test_no_body_statuses_and_app_headers_kept(serve: Any) -> None:
    async def no_content(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"date", b"custom"), (b"x-app", b"1")]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b"dropped"})

    server = serve(no_content)
    with connect(server.port) as sock:
        sock.sendall(get("/") + get("/", b"Connection: close\r\n"))
        data = recv_until_closed(sock)
    responses = parse_all(data)
    assert [r.status for r in responses] == [204, 204]
    assert responses[0].header(b"x-app") == b"1"
    assert responses[0].header(b"date") == b"custom"
    assert b"dropped" not in data


def test_expect_100_continue(serve: Any) -> None:
    server = serve(apps.echo)
    with connect(server.port) as sock:
        sock.sendall(get("/", b"Content-Length: 5\r\nExpect: 100-continue\r\n", b"POST"))
        parser = ResponseParser()
        interim = read_response(sock, parser)
        assert interim.status == 100
        sock.sendall(b"hello")
        final = read_response(sock, parser)
    assert final.status == 200 and final.body == b"hello"


class Gate:
    """An app that signals when a request reached it and holds it until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release: Optional[asyncio.Event] = None
        self.outcome: List[str] = []

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] != "/hold":
            await path_app(scope, receive, send)
            return
        if self.release is None:
            self.release = asyncio.Event()
        self.entered.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.outcome.append("cancelled")
            raise
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"held"})
        self.outcome.append("finished")


def test_shutdown_finishes_in_flight_and_closes_idle(serve: Any, monkeypatch: Any) -> None:
    gate = Gate()
    # no keep-alive grace: a connection answered before the stop is idle, not awaiting its next request
    monkeypatch.setattr(_http, "FRESH_GRACE_S", 0.0)
    # keep-alive longer than any wait here: only shutdown can be what closes the idle connection
    server = serve(gate, limits=DEFAULT_LIMITS)
    idle = connect(server.port)
    busy = connect(server.port)
    try:
        idle.sendall(get("/idle"))
        assert read_response(idle).body == b"/idle"
        busy.sendall(get("/hold"))
        assert gate.entered.wait(TIMEOUT)
        assert server.call(lambda: (server.service.in_flight, server.service.connections)) == (1, 2)
        server.begin_stop(timeout=TIMEOUT)
        assert recv_until_closed(idle) == b""  # the idle keep-alive connection is closed at once
        assert gate.release is not None
        server.call(gate.release.set)
        (response,) = parse_all(recv_until_closed(busy))
        assert response.body == b"held"
        assert response.header(b"connection") == b"close"
        assert server.finish_stop() is True
        assert gate.outcome == ["finished"]
    finally:
        idle.close()
        busy.close()


def test_shutdown_answers_a_kept_alive_clients_next_request(serve: Any, monkeypatch: Any) -> None:
    # a keep-alive client sends its next request right after a response: a stop in between must not
    # close the connection under that request (the client would read "disconnected without a response",
    # one dropped request per such connection at every reload); within FRESH_GRACE_S of its last answer
    # it is answered, with `connection: close`
    monkeypatch.setattr(_http, "FRESH_GRACE_S", 10 * TIMEOUT)  # longer than any wait here
    server = serve(path_app)
    with connect(server.port) as kept:
        kept.sendall(get("/first"))
        assert read_response(kept).body == b"/first"
        server.begin_stop(timeout=TIMEOUT)
        # until the stop has dealt with its connections: it waits (on its grace) or has closed them all
        service = server.service
        deadline = time.monotonic() + TIMEOUT
        while not server.call(lambda: service._changed is not None or not service._connections):
            assert time.monotonic() < deadline, "the stop never got to its connections"  # 1 loop trip each
        kept.sendall(get("/next"))
        (response,) = parse_all(recv_until_closed(kept))
        assert (response.status, response.body) == (200, b"/next")
        assert response.header(b"connection") == b"close"
    assert server.finish_stop() is True


def test_a_warm_connection_that_sends_nothing_is_closed_when_its_grace_ends(
    serve: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(_http, "FRESH_GRACE_S", 0.3)
    server = serve(path_app)
    with connect(server.port) as kept:
        kept.sendall(get("/only"))
        assert read_response(kept).body == b"/only"
        # a graceful timeout far beyond TIMEOUT: only the grace's end can close it within recv's deadline
        server.begin_stop(timeout=100 * TIMEOUT)
        assert recv_until_closed(kept) == b""
    assert server.finish_stop() is True


def _pending_accepts() -> int:
    """asyncio's tasks that build an accepted connection's transport and have not finished (selector loop)."""
    return sum(
        1 for t in asyncio.all_tasks() if "_accept_connection2" in getattr(t.get_coro(), "__qualname__", "")
    )


@pytest.mark.skipif(sys.platform == "win32", reason="the selector loop's accept path")
@pytest.mark.parametrize("close", ["stop_accepting", "server.close"])
def test_a_burst_accepted_just_before_the_stop_is_answered(close: str) -> None:
    # the loop accepts a burst in one callback and builds each transport in a task one iteration later; a
    # stop between the two must not lose them (servers._http.stop_accepting; Server._attach asserts)
    async def main() -> List[socket.socket]:
        loop = asyncio.get_running_loop()
        service = HttpService(path_app, limits=DEFAULT_LIMITS)
        server = await loop.create_server(service.protocol_factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        clients = []
        for i in range(5):  # connected by the kernel (the backlog), each with its request sent
            client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            client.sendall(get(f"/{i}", b"connection: close\r\n"))
            clients.append(client)
        deadline = loop.time() + TIMEOUT
        while not _pending_accepts():  # the accept callback ran; the tasks have not taken their first step
            assert loop.time() < deadline, "the loop never accepted the burst"
            await asyncio.sleep(0)
        if close == "stop_accepting":
            await stop_accepting(server)
        else:
            server.close()
            await stop_accepting(server)  # a no-op now: what it guards against has happened
        assert await service.shutdown(TIMEOUT) is True
        return clients

    clients = asyncio.run(main())
    gc.collect()  # a lost accepted socket is garbage now: collecting it closes it (the client reads a reset)
    answered = []
    for i, client in enumerate(clients):
        with client:
            try:
                answered.append(read_response(client).body == f"/{i}".encode())
            except (ConnectionError, AssertionError, socket.timeout):
                answered.append(False)
    if close == "stop_accepting":
        assert answered == [True] * 5
    else:  # the mechanism the fix is for: a bare close loses every one of them (CPython 3.8-3.13)
        assert answered == [False] * 5 or sys.version_info >= (3, 14), answered


def test_shutdown_timeout_aborts_and_cancels(serve: Any) -> None:
    gate = Gate()
    server = serve(gate)
    with connect(server.port) as busy:
        busy.sendall(get("/hold"))
        assert gate.entered.wait(TIMEOUT)
        assert server.stop(timeout=0.1) is False
        assert recv_until_closed(busy) == b""
    assert gate.outcome == ["cancelled"]
    assert server.service.in_flight == 0 and server.service.connections == 0


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        Limits(max_header_bytes=0)
    with pytest.raises(ValueError):
        Limits(keepalive_timeout=0)
    with pytest.raises(ValueError):
        Limits(linger_timeout=float("nan"))


# -- fuzz ----------------------------------------------------------------------------------------

_token = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-!#$%&'*+.^_`|~",
    min_size=1,
    max_size=12,
)
_method = st.one_of(st.sampled_from(["GET", "HEAD", "POST", "PUT", "OPTIONS", "CONNECT", "DELETE"]), _token)
_target = st.one_of(
    st.sampled_from(["/", "*", "/a?b=c", "/%zz", "/%E2%82%AC", "http://h/x", "//", "/a b"]),
    st.text(min_size=0, max_size=30).map(lambda s: "/" + s),
)
_version = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 ", "http/1.1", ""])
_header = st.tuples(
    st.one_of(
        st.sampled_from(["Host", "Content-Length", "Transfer-Encoding", "Connection", "Expect"]), _token
    ),
    st.one_of(
        st.sampled_from(
            ["chunked", "close", "keep-alive", "100-continue", "0", "5", "-1", "gzip, chunked", ""]
        ),
        st.text(max_size=20),
    ),
)


@st.composite
def _request_bytes(draw: Any) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        noise: bytes = draw(st.binary(max_size=300))  # pure noise
        return noise
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        line = f"{draw(_method)} {draw(_target)} {draw(_version)}"
        headers = draw(st.lists(_header, max_size=5))
        head = line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        body = draw(st.binary(max_size=40))
        raw = head.encode("utf-8", "surrogateescape") + body
        if draw(st.booleans()):  # damage it
            cut = draw(st.integers(0, len(raw)))
            raw = raw[:cut] + draw(st.binary(max_size=8)) + raw[cut + draw(st.integers(0, 4)) :]
        parts.append(raw)
    return b"".join(parts)


@pytest.fixture(scope="module")
def fuzz_server() -> Any:
    server = ServerThread(path_app, limits=limits(max_header_bytes=2048, max_body_bytes=64)).start()
    yield server
    server.stop()
    assert server.loop_errors == [], server.loop_errors


@settings(
    max_examples=int(os.environ.get("HTTP_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=_request_bytes(), cuts=st.lists(st.integers(1, 400), max_size=4))
def test_fuzz_every_connection_gets_valid_responses_or_a_clean_close(
    fuzz_server: Any, data: bytes, cuts: List[int]
) -> None:
    # sent in pieces (cut points), so incomplete heads and bodies are exercised too
    bounds = sorted({c for c in cuts if c < len(data)})
    pieces = [data[a:b] for a, b in zip([0, *bounds], [*bounds, len(data)])]
    with connect(fuzz_server.port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for piece in pieces:
                sock.sendall(piece)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # EPIPE, ECONNRESET, ENOTCONN: the server already answered and closed
            pass  # what it sent is checked below
        answer = recv_until_closed(sock)
    for response in parse_all(answer):
        assert 100 <= response.status <= 599
        if response.status >= 400:
            assert response.status in (400, 413, 431, 501, 505), response.status
    # and the server still serves
    (ok,) = parse_all(exchange(fuzz_server.port, get("/alive")))
    assert ok.status == 200 and ok.body == b"/alive"
    assert fuzz_server.loop_errors == []


# --- issue #16 items 18, 19: smuggling and versions ------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
        b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
    ],
)
def test_content_length_with_transfer_encoding_is_rejected_and_closed(serve: Any, head: bytes) -> None:
    """RFC 9112 6.3: reject, and close - the 'smuggled' second request is never served."""
    server = serve(path_app)
    smuggled = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n"
    responses = parse_all(exchange(server.port, head + smuggled))
    assert [r.status for r in responses] == [400]
    assert responses[0].header(b"connection") == b"close"
    assert b"/smuggled" not in b"".join(r.body for r in responses)


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (b"GET / HTTP/9.9", 505),
        (b"GET / HTTP/2.0", 505),
        (b"PRI * HTTP/2.0", 400),
    ],
)
def test_versions_it_does_not_speak(serve: Any, line: bytes, status: int) -> None:
    server = serve(path_app)
    extra = b"\r\n\r\nSM\r\n\r\n" if line.startswith(b"PRI") else b"\r\nhost: x\r\n\r\n"
    (response,) = parse_all(exchange(server.port, line + extra))
    assert response.status == status
    assert response.header(b"connection") == b"close"
    (after,) = parse_all(exchange(server.port, get("/next")))
    assert after.status == 200  # and it keeps serving


def test_a_peer_gone_before_the_fin_is_not_the_apps_error(serve: Any, monkeypatch: Any, caplog: Any) -> None:
    """Issue #16 item 20: write_eof() failing with ENOTCONN (the peer reset first) is the server's own
    closing path; it used to surface inside the app's `await send()` and be logged as "ASGI app raised"."""
    import asyncio.selector_events as se  # noqa: PLC0415
    import errno  # noqa: PLC0415

    def gone(self: Any) -> None:
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

    server = serve(path_app)
    monkeypatch.setattr(se._SelectorSocketTransport, "write_eof", gone)
    with caplog.at_level(logging.DEBUG):
        data = exchange(server.port, b"GET /x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    (response,) = parse_all(data)
    assert response.status == 200 and response.body == b"/x"
    assert "ASGI app raised" not in caplog.text
