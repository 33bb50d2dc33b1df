"""Readiness: prove a multi-worker server serves by responses from N distinct worker pids.

    result = wait_ready(lambda: target, expected_workers=4, deadline=time.monotonic() + 10,
                        alive=server.alive, worker_pids=lambda: set(server.members()))

* Target(host="127.0.0.1", port=0, uds="") - frozen; where to connect. A non-loopback host raises
  NonLoopbackTarget (the harness only ever talks to loopback); a wildcard ("0.0.0.0", "::") is accepted
  and reached through 127.0.0.1 / ::1. `url` is the httpx base URL.
* wait_ready(target_fn, expected_workers, deadline, *, alive, worker_pids, ready_event=lambda: None,
  path="/") -> ReadyResult
  - target_fn() -> Optional[Target]: where the server listens; None while unknown (re-asked every few ms
    until it answers; after a response the target is kept)
  - alive() -> bool: False ends the wait at once with exited=True
  - worker_pids() -> Set[int]: the server's current worker pids (psutil/events); consulted when N distinct
    pids have answered: only answering pids that are still workers count. An empty set means "unknown":
    then N distinct answering pids are enough (a single-process server answers from its master).
  - ready_event() -> Optional[float]: the server's own "ready" time if it has one (recorded, not trusted)
* ReadyResult(ready, first_response, all_workers, pid_first_seen, errors, exited, probes, responses,
  status, ready_event) - times are time.monotonic() values; errors counts error classes:
  ConnectionRefusedError, FileNotFoundError (UDS path missing), ConnectionResetError, ConnectTimeout,
  ReadTimeout, RemoteProtocolError (closed before/with a malformed response), NoWorkerPid (a response
  without x-worker-pid), NoTarget (target_fn had nothing yet), other OSError subclass names.

How it probes: raw non-blocking sockets in one selector loop, each probe a FRESH connection sending
`Connection: close` (one shared accept queue favours some workers: only fresh connections reach the others);
as soon as a probe finishes the next one starts (no sleeps). The number in flight is sized to the workers
still missing (2 per missing worker, never fewer than N or 4, at most 32), so the last, slow-to-accept
worker keeps being offered connections while busy workers hold theirs. Until the FIRST answer only one probe
is in flight, one more per _FIRST_HEDGE_S it has waited: the first worker to accept takes every queued
connection in one go and answers them all before its first answer leaves, while its siblings still import.
The figures behind these choices are in bench/README.md ("Readiness detection latency").

The only waits without an event are the retry interval after a refused connect or an unknown target (1 ms
doubling to 5 ms): a server that is not listening yet has nothing to select on. target_fn and worker_pids
may be psutil-backed (ms per call): each is re-asked no sooner than 2-3 times its own last CPU cost (thread
time, capped at _ASK_MAX_GAP), so the harness takes at most about a third of a core from a starting server.
CPU time, not wall time: on a loaded machine a call can take 100+ ms of wall time while costing 0.1 ms (the
harness was descheduled), and a wall-time back-off would turn one such stall into several. At the deadline,
a run whose N pids have answered is always checked once more: the rate limit never decides a verdict.

A probe is never cut mid-answer: once its head is read the rest is read to EOF, and when the wait ends the
probes already sent are drained for up to _DRAIN_S (never past the deadline). Cutting them made the server's
body write fail (EPIPE), and that traceback in its stderr became a record's signature.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import selectors
import socket
import time
from typing import Callable, Dict, Optional, Set, TypeVar

__all__ = ["NonLoopbackTarget", "ReadyResult", "Target", "wait_ready"]

_IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, getattr(errno, "WSAEWOULDBLOCK", -1)}
_RETRY_MIN, _RETRY_MAX = 0.001, 0.005
_T = TypeVar("_T")
_ASK_MAX_GAP = 0.25  # the longest wait before target_fn / worker_pids are asked again, whatever they cost
_FIRST_HEDGE_S = 0.25  # until the first answer: 1 probe in flight, one more per this long it has waited
_PROBE_TIMEOUT = 2.0  # one probe; a hanging accept queue shows up as ReadTimeout/ConnectTimeout counts
_DRAIN_S = 1.0  # at most this long after the wait: probes already sent get their answers read to the end
_MAX_HEADER = 65536


class NonLoopbackTarget(ValueError):
    """The harness only connects to loopback addresses."""


_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.strip("[]") in _WILDCARD:
        return True  # a wildcard bind is reached through loopback (sockaddr maps it)
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a server listens: TCP (host, port) on loopback, or a UNIX socket path (uds)."""

    host: str = "127.0.0.1"
    port: int = 0
    uds: str = ""

    def __post_init__(self) -> None:
        if not self.uds and not _is_loopback(self.host):
            raise NonLoopbackTarget(f"refusing non-loopback target {self.host!r}")

    @property
    def url(self) -> str:
        """Base URL for httpx (for a UDS target the host part is only the Host header)."""
        if self.uds:
            return "http://localhost"
        host = self.connect_host()
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def connect_host(self) -> str:
        """The address to connect to: wildcards mapped to loopback, brackets stripped."""
        host = self.host.strip("[]")
        return "127.0.0.1" if host == "localhost" else _WILDCARD.get(host, host)

    def family(self) -> int:
        if self.uds:
            return socket.AF_UNIX  # type: ignore[attr-defined,no-any-return]  # not on old Windows
        return socket.AF_INET6 if ":" in self.connect_host() else socket.AF_INET

    def sockaddr(self) -> object:
        if self.uds:
            return self.uds
        return (self.connect_host(), self.port)


@dataclasses.dataclass(frozen=True)
class ReadyResult:
    ready: bool
    first_response: Optional[float]
    all_workers: Optional[float]
    pid_first_seen: Dict[int, float]
    errors: Dict[str, int]
    exited: bool
    probes: int = 0
    responses: int = 0
    status: Dict[int, int] = dataclasses.field(default_factory=dict)
    ready_event: Optional[float] = None


def _timed(fn: Callable[[], _T]) -> tuple[_T, float]:
    """fn() and the CPU time it cost this thread (a deschedule on a loaded machine is not a cost)."""
    started = time.thread_time()
    return fn(), time.thread_time() - started


def _error_name(code: int) -> str:
    return type(OSError(code, "")).__name__


class _Probe:
    __slots__ = ("buf", "connected", "done", "sock", "started")

    def __init__(self, sock: socket.socket, started: float, connected: bool) -> None:
        self.sock = sock
        self.started = started
        self.connected = connected
        self.done = False  # its head was read: the rest is drained, never cut (see _drain)
        self.buf = b""


def _drain(
    sel: selectors.BaseSelector,
    inflight: Dict[socket.socket, _Probe],
    close: Callable[[_Probe], None],
    until: float,
) -> None:
    """Read every probe whose request was sent to its EOF (answers are no longer counted), until `until`.

    Probes still connecting are closed at once: their request never reached the server."""
    for probe in [p for p in inflight.values() if not p.connected]:
        close(probe)
    while inflight:
        timeout = until - time.monotonic()
        if timeout <= 0:
            return
        for key, _mask in sel.select(timeout):
            probe = key.data
            try:
                chunk = probe.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if not chunk:
                close(probe)


def _parse_head(head: bytes) -> tuple[int, Optional[int]]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ValueError("bad status line")
    status = int(parts[1])
    pid: Optional[int] = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-worker-pid":
            pid = int(value.strip())
    return status, pid


class _Wait:
    """The state of one wait_ready call; each step of its loop is one method (see the module docstring)."""

    def __init__(
        self,
        target_fn: Callable[[], Optional[Target]],
        expected_workers: int,
        deadline: float,
        worker_pids: Callable[[], Set[int]],
        path: str,
    ) -> None:
        self.target_fn = target_fn
        self.expected = expected_workers
        self.deadline = deadline
        self.worker_pids = worker_pids
        self.path = path
        self.sel = selectors.DefaultSelector()
        self.inflight: Dict[socket.socket, _Probe] = {}
        self.seen: Dict[int, float] = {}
        self.errors: Dict[str, int] = {}
        self.status: Dict[int, int] = {}
        self.first_response: Optional[float] = None
        self.probes = self.responses = 0
        self.target: Optional[Target] = None
        self.confirmed = False  # an answer came from the target: it is kept, no longer re-asked
        self.retry_at = self.target_at = self.next_workers_check = 0.0
        self.retry = _RETRY_MIN
        self.request = b""

    def err(self, name: str) -> None:
        self.errors[name] = self.errors.get(name, 0) + 1

    def close(self, probe: _Probe) -> None:
        try:
            self.sel.unregister(probe.sock)
        except (KeyError, ValueError):
            pass
        self.inflight.pop(probe.sock, None)
        probe.sock.close()

    def backoff(self, now: float) -> None:
        self.retry_at = now + self.retry
        self.retry = min(self.retry * 2, _RETRY_MAX)

    def enough(self, now: float, force: bool = False) -> Optional[float]:
        """The time the N-th still-current worker first answered, or None."""
        if len(self.seen) < self.expected or (now < self.next_workers_check and not force):
            return None
        current, cost = _timed(self.worker_pids)
        # a psutil-backed callback costs ms: never spend more than a third of the CPU in it
        self.next_workers_check = now + min(_ASK_MAX_GAP, max(0.005, 2 * cost))
        times = sorted(t for pid, t in self.seen.items() if not current or pid in current)
        return times[self.expected - 1] if len(times) >= self.expected else None

    def ask_target(self, now: float) -> None:
        """Where the server listens, re-asked (rate-limited by its own CPU cost) until an answer came."""
        if self.confirmed or now < self.target_at:
            return
        asked_at = time.monotonic()
        new_target, cost = _timed(self.target_fn)
        if new_target != self.target:
            self.target = new_target
            if new_target is not None:
                host = "localhost" if new_target.uds else f"{new_target.host}:{new_target.port}"
                self.request = (
                    f"GET {self.path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
                    "User-Agent: harness-readiness\r\n\r\n"
                ).encode("ascii")
        if self.target is None:
            self.err("NoTarget")
            self.backoff(now)
        # discovery through psutil costs ms per call: keep it under a third of the CPU
        self.target_at = asked_at + min(_ASK_MAX_GAP, max(3 * cost, self.retry))

    def wanted(self, now: float) -> tuple[int, Optional[float]]:
        """(probes to keep in flight, when one more is allowed before the first answer or None)."""
        missing = max(1, self.expected - len(self.seen))
        want = min(32, max(4, 2 * missing, self.expected))
        if self.confirmed:
            return want, None
        # no answer yet: ONE probe (the first worker takes every queued connection in one go and answers
        # them all before the first answer leaves), one more per _FIRST_HEDGE_S it waits
        oldest = min((p.started for p in self.inflight.values() if not p.done), default=now)
        allowed = 1 + int((now - oldest) / _FIRST_HEDGE_S)
        hedge_at = oldest + allowed * _FIRST_HEDGE_S if allowed < want else None
        return min(want, allowed), hedge_at

    def open_probes(self, now: float, want: int) -> None:
        active = sum(1 for p in self.inflight.values() if not p.done)
        target = self.target
        while target is not None and now >= self.retry_at and active < want:
            sock = socket.socket(target.family(), socket.SOCK_STREAM)
            sock.setblocking(False)
            self.probes += 1
            code = sock.connect_ex(target.sockaddr())  # type: ignore[arg-type]
            # AF_UNIX: EAGAIN means the backlog is full, not "in progress".
            if not (code == 0 or (code in _IN_PROGRESS and not (target.uds and code == errno.EAGAIN))):
                sock.close()
                self.err(_error_name(code))
                self.backoff(now)
                continue
            probe = _Probe(sock, now, connected=code == 0)
            self.inflight[sock] = probe
            active += 1
            if not probe.connected:
                self.sel.register(sock, selectors.EVENT_WRITE, probe)
                continue
            try:
                sock.send(self.request)
            except OSError as exc:
                self.err(type(exc).__name__)
                self.inflight.pop(sock, None)
                active -= 1
                sock.close()
                continue
            self.sel.register(sock, selectors.EVENT_READ, probe)

    def on_connected(self, probe: _Probe) -> None:
        code = probe.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self.err(_error_name(code))
            self.close(probe)
            self.backoff(time.monotonic())
            return
        probe.connected = True
        try:
            probe.sock.send(self.request)
        except OSError as exc:
            self.err(type(exc).__name__)
            self.close(probe)
            return
        self.sel.modify(probe.sock, selectors.EVENT_READ, probe)

    def on_readable(self, probe: _Probe) -> None:
        try:
            chunk = probe.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if not probe.done:
                self.err(type(exc).__name__)
            self.close(probe)
            return
        if probe.done:  # the rest of an answer already counted: read to EOF, then close
            if not chunk:
                self.close(probe)
            return
        probe.buf += chunk
        end = probe.buf.find(b"\r\n\r\n")
        if end < 0:
            if not chunk or len(probe.buf) > _MAX_HEADER:
                self.err("RemoteProtocolError")
                self.close(probe)
            return
        t = time.monotonic()
        try:
            status, pid = _parse_head(probe.buf[:end])
        except ValueError:
            self.err("RemoteProtocolError")
            self.close(probe)
            return
        # Cutting the connection now would make the server's body write fail (EPIPE/ECONNRESET), and a
        # traceback in its stderr can become a record's signature: read it to the end.
        probe.done = True
        probe.buf = b""
        if not chunk:
            self.close(probe)
        self.answered(t, status, pid)

    def answered(self, t: float, status: int, pid: Optional[int]) -> None:
        self.responses += 1
        self.status[status] = self.status.get(status, 0) + 1
        self.confirmed = True
        self.retry = _RETRY_MIN
        if self.first_response is None:
            self.first_response = t
        if pid is None:
            self.err("NoWorkerPid")
        elif pid not in self.seen:
            self.seen[pid] = t
            self.next_workers_check = 0.0

    def expire(self) -> None:
        """Probes older than _PROBE_TIMEOUT: a hanging accept queue shows up as these counts."""
        now = time.monotonic()
        for probe in [p for p in self.inflight.values() if now - p.started > _PROBE_TIMEOUT]:
            if not probe.done:
                self.err("ReadTimeout" if probe.connected else "ConnectTimeout")
            self.close(probe)

    def wait_for_events(self, next_alive: float, hedge_at: Optional[float]) -> None:
        """Sleep until a socket is ready, the alive check, the retry time, a hedge or the deadline."""
        wake = min(self.deadline, next_alive)
        now = time.monotonic()
        if self.target is None:
            wake = min(wake, self.target_at)
        elif self.retry_at > now:
            wake = min(wake, self.retry_at)
        if hedge_at is not None:
            wake = min(wake, hedge_at)
        timeout = max(0.0, wake - time.monotonic())
        if not self.inflight:
            time.sleep(timeout)  # nothing to select on: poll interval (see module docstring)
            return
        for key, _mask in self.sel.select(timeout):
            probe = key.data
            if probe.connected:
                self.on_readable(probe)
            else:
                self.on_connected(probe)
        self.expire()

    def finish(self) -> None:
        """Read the answers of probes already sent, for at most _DRAIN_S and never past the deadline."""
        now = time.monotonic()
        _drain(self.sel, self.inflight, self.close, min(now + _DRAIN_S, max(self.deadline, now)))

    def shut(self) -> None:
        for probe in list(self.inflight.values()):
            self.close(probe)
        self.sel.close()


def wait_ready(
    target_fn: Callable[[], Optional[Target]],
    expected_workers: int,
    deadline: float,
    *,
    alive: Callable[[], bool],
    worker_pids: Callable[[], Set[int]],
    ready_event: Callable[[], Optional[float]] = lambda: None,
    path: str = "/",
) -> ReadyResult:
    """Probe until `expected_workers` distinct worker pids answered, the server exited, or `deadline`."""
    w = _Wait(target_fn, expected_workers, deadline, worker_pids, path)
    all_workers: Optional[float] = None
    exited = False
    next_alive = 0.0
    last_event: Optional[float] = None
    try:
        while True:
            now = time.monotonic()
            if last_event is None:
                last_event = ready_event()
            if now >= next_alive:
                next_alive = now + 0.005
                if not alive():
                    exited = True
                    break
            all_workers = w.enough(now)
            if all_workers is not None:
                break
            if now >= deadline:
                all_workers = w.enough(now, force=True)  # N answered: the rate limit must not decide
                break
            w.ask_target(now)
            want, hedge_at = w.wanted(now)
            w.open_probes(now, want)
            w.wait_for_events(next_alive, hedge_at)
        w.finish()
    finally:
        w.shut()
    if last_event is None:
        last_event = ready_event()
    return ReadyResult(
        ready=all_workers is not None,
        first_response=w.first_response,
        all_workers=all_workers,
        pid_first_seen=dict(w.seen),
        errors=w.errors,
        exited=exited,
        probes=w.probes,
        responses=w.responses,
        status=w.status,
        ready_event=last_event,
    )
