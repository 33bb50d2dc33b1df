"""Test helpers for the reference server: launch `python -m servers` for real, read its event stream
from stdout with deadlines, prove every worker serves with concurrent fresh-connection bursts, and check
that nothing (process or listener) outlives it.

* RefServer(args, ...) - a context manager owning the server's whole process group
* burst_until(target, expected, deadline) - distinct pids that answered (HTTP/1.1, Connection: close)
* assert_nothing_left(procs, port=None, uds="") - the psutil leak check every test ends with
"""

import asyncio
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import psutil

ROOT = Path(__file__).resolve().parents[1]
#: every deadline derives from this (scale with ASGI_HARNESS_TIMEOUT_SCALE on slow machines)
BASE_TIMEOUT = 30.0 * float(os.environ.get("ASGI_HARNESS_TIMEOUT_SCALE", "1"))

#: the interpreter the server runs under (REFSERVER_PYTHON=/path/to/python to test another one; it needs h11)
PYTHON = os.environ.get("REFSERVER_PYTHON") or sys.executable

Target = Union[Tuple[str, int], str]  # (host, port) or a UDS path


class RefServer:
    """`python -m servers ARGS` in its own session; events on stdout (a drained pipe), stderr to a file."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        stdin: Union[int, IO[Any], None] = subprocess.DEVNULL,
        pass_fds: Sequence[int] = (),
        python: str = "",
    ) -> None:
        python = python or PYTHON
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [python, "-m", "servers", *args],
            cwd=str(ROOT),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            pass_fds=tuple(pass_fds),
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        self._fd = self.proc.stdout.fileno()
        os.set_blocking(self._fd, False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._fd, selectors.EVENT_READ)
        self._buf = b""
        self._eof = False
        self.events: List[Dict[str, Any]] = []
        self.seen_pids: Set[int] = {self.proc.pid}

    # -- events -----------------------------------------------------------------------------------

    def _pump(self, timeout: float) -> None:
        if self._eof:
            return
        if not self._sel.select(max(timeout, 0.0)):
            return
        try:
            chunk = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            self._eof = True
            return
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            if line.strip():
                event = json.loads(line)
                self.events.append(event)
                if "worker_pid" in event:
                    self.seen_pids.add(int(event["worker_pid"]))

    def wait_for(self, name: str, timeout: float = BASE_TIMEOUT, **match: Any) -> Dict[str, Any]:
        """The first event called `name` (whose fields equal `match`); AssertionError (with stderr) at the
        deadline or on EOF."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event["event"] == name and all(event.get(k) == v for k, v in match.items()):
                    return event
            if self._eof:
                raise AssertionError(f"server exited without {name!r}; stderr:\n{self.stderr()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {name!r} event within {timeout} s; stderr:\n{self.stderr()}")
            self._pump(remaining)

    def pump(self, timeout: float) -> None:
        """Read whatever events arrive within `timeout` seconds."""
        self._pump(timeout)

    def named(self, name: str) -> List[Dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]

    def wait_exit(self, timeout: float = BASE_TIMEOUT) -> int:
        """Read events to EOF and return the exit code; AssertionError at the deadline."""
        deadline = time.monotonic() + timeout
        while not self._eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"server still running after {timeout} s; stderr:\n{self.stderr()}")
            self._pump(remaining)
        try:
            return self.proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            raise AssertionError("server closed stdout but did not exit; stderr:\n" + self.stderr()) from None

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    # -- processes --------------------------------------------------------------------------------

    def tree(self) -> List[psutil.Process]:
        """The supervisor and every descendant now (also remembered for the leak check)."""
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        self.seen_pids.update(p.pid for p in procs)
        return procs

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def known_processes(self) -> List[psutil.Process]:
        """psutil handles for every pid this server ever showed (events or tree) that still exists."""
        procs = []
        for pid in sorted(self.seen_pids):
            try:
                procs.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        return procs

    def close(self) -> None:
        """Kill whatever is left of the session (leaves first), reap, release the pipes."""
        leftovers = self.tree() + self.known_processes()
        for proc in reversed(leftovers):
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(leftovers, timeout=BASE_TIMEOUT)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(BASE_TIMEOUT)
        self._sel.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> "RefServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def target_of(bound: Dict[str, Any]) -> Target:
    """Where to connect, from a `bound` event."""
    if bound.get("path"):
        return str(bound["path"])
    return (str(bound["address"]), int(bound["port"]))


async def _request(target: Target, path: str, timeout: float) -> Tuple[int, int, bytes]:
    if isinstance(target, str):
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(target), timeout)
    else:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*target), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    pid = 0
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"x-worker-pid":
            pid = int(value.strip())
    return status, pid, body


def request(target: Target, path: str = "/", timeout: float = 10.0) -> Tuple[int, int, bytes]:
    """One request on a fresh connection: (status, x-worker-pid, body)."""
    return asyncio.run(_request(target, path, timeout))


async def _burst(target: Target, size: int, timeout: float) -> List[int]:
    results = await asyncio.gather(*(_request(target, "/", timeout) for _ in range(size)))
    assert all(status == 200 for status, _, _ in results), results
    return [pid for _, pid, _ in results]


def burst_until(
    target: Target, expected: Iterable[int], timeout: float = BASE_TIMEOUT, size: int = 16
) -> "Counter[int]":
    """Concurrent fresh-connection bursts until every expected pid answered (one shared accept queue is
    uneven, so keep going) or the deadline; returns pid -> answers."""
    expected = set(expected)
    seen: Counter[int] = Counter()
    deadline = time.monotonic() + timeout
    while not expected <= set(seen) and time.monotonic() < deadline:
        seen.update(asyncio.run(_burst(target, size, 10.0)))
    return seen


def listening_on(port: Optional[int] = None, path: str = "") -> List[Any]:
    """System-wide listening sockets on that TCP port / UDS path."""
    found = []
    for conn in psutil.net_connections(kind="tcp" if port is not None else "unix"):
        if port is not None and conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            found.append(conn)
        if path and str(conn.laddr) == path:
            found.append(conn)
    return found


def assert_nothing_left(server: RefServer, port: Optional[int] = None, uds: str = "") -> None:
    """Every process the server ever showed is gone (within a deadline) and nothing listens any more."""
    procs = server.known_processes()
    _gone, alive = psutil.wait_procs(procs, timeout=5.0)
    assert not alive, f"processes left behind: {[(p.pid, p.cmdline()) for p in alive]}"
    if port is not None:
        assert not listening_on(port=port), f"still listening on port {port}"
    if uds:
        assert not os.path.exists(uds), f"socket file {uds} left behind"
        assert not listening_on(path=uds)


def stop_and_check(server: RefServer, port: Optional[int] = None, uds: str = "") -> int:
    """SIGTERM the supervisor, expect `stopped`, return the exit code after the leak check."""
    server.tree()
    server.signal(signal.SIGTERM)
    code = server.wait_exit()
    assert server.named("stopped"), server.stderr()
    assert_nothing_left(server, port=port, uds=uds)
    return code
