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

How it probes (one shared accept queue favours some workers, measured): raw non-blocking sockets in one
selector loop, each probe a FRESH connection sending `Connection: close`; as soon as a probe finishes the
next one starts (no sleeps); the number in flight is sized to the workers still missing (2 per missing
worker, but never fewer than N or 4, at most 32), so the last, slow-to-accept worker keeps being offered
connections while busy workers hold theirs (measured with the reference server, 8 workers: the last worker
answered 19-82 ms after the server's own "ready" event with >= N in flight, 6-217 ms with 2 per missing).
Until the FIRST answer only one probe is in flight (one more per _FIRST_HEDGE_S it has waited, so a probe held
by a process that never answers does not stall the wait for _PROBE_TIMEOUT): the first worker to accept takes
every queued connection in one go (asyncio accepts up to its backlog per wake-up) and answers them all before
its first answer leaves, while its N-1 siblings still import on the same cores. Measured with
bench/bench_readiness.py (first answer after the first worker's lifespan-startup stamp, N=8, 5 rounds under
the bench lock, 2 cores, load ~2.5; median (min-max), 2N probes queued -> one): uvicorn 22 (5-27) -> 9 (5-26)
ms, hypercorn 19 (10-51) -> 10 (7-42) ms, gunicorn 2.9 -> 1.1 ms; granian (Rust accept loop) 21 -> 24 ms,
within its noise. At N=4 (4 queued -> one) no difference shows beyond the noise (uvicorn 12 -> 14, hypercorn
17 -> 12, granian 11 -> 16, gunicorn 2.4 -> 4.2 ms); the harness thread's CPU in wait_ready went down at both
N (N=4: uvicorn 320 -> 198 ms, hypercorn 382 -> 263 ms). Of what remains, listen() follows the stamp by ~1 ms
(uvicorn, hypercorn and granian bind in the master but listen only in the first worker); target_fn has to
notice the listener (psutil-backed discovery costs ~3.5 ms CPU per call and is asked every ~3x that: found
4-12 ms after the stamp); the rest is the server's own time to serve. Pacing the probes once workers answer
(at most one new probe per ms) made the LAST worker later, not sooner (gunicorn -w 8, load 6-13: 197 -> 578 ms
median of 3): likely because the new worker has to win accept wake-ups against idle siblings, so it needs many
offered connections, not fewer. The last worker's first answer came 10-24 ms after its startup stamp
(bench/results/readiness.json, N=8, medians per upstream server), the app saw its first request 5-21 ms after
it: that part is the accept queue's, not the probing's.
The only waits without an event are the retry interval after a refused connect
or an unknown target (1 ms doubling to 5 ms) - a server that is not listening yet has nothing to select on.
target_fn and worker_pids may be psutil-backed (ms per call): each is re-asked no sooner than 2-3 times
its own last CPU cost (thread time, capped at _ASK_MAX_GAP), so the harness never takes more than about a
third of a core from a starting server. CPU time, not wall time: on a loaded machine a call can take
100+ ms of wall time while costing 0.1 ms (the harness was descheduled, measured at load ~9 on 2 cores), and
a wall-time back-off turned one such stall into 3x the stall before asking again (the suspected cause of a
reference server `ready` at 0.69 s recorded not-serving with only NoTarget errors). At the deadline, a run
whose N pids have answered is always checked once more: the rate limit never decides a verdict.
A probe is never cut mid-answer: once its head is read the rest is read to EOF, and when the wait ends
the probes already sent are drained for up to _DRAIN_S (never past the deadline). Cutting them made the
server's body write fail (EPIPE), and that traceback in its stderr became a record's signature
(tests/test_faults.py's shutdown-hang case came out `BrokenPipeError: [EPIPE] Broken pipe` 2 runs in 3).
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
    sel = selectors.DefaultSelector()
    inflight: Dict[socket.socket, _Probe] = {}
    seen: Dict[int, float] = {}
    errors: Dict[str, int] = {}
    status_counts: Dict[int, int] = {}
    first_response: Optional[float] = None
    all_workers: Optional[float] = None
    exited = False
    probes = responses = 0
    target: Optional[Target] = None
    target_confirmed = False
    retry_at = 0.0
    target_at = 0.0
    retry = _RETRY_MIN
    next_alive = 0.0
    next_workers_check = 0.0
    last_event: Optional[float] = None
    request = b""

    def err(name: str) -> None:
        errors[name] = errors.get(name, 0) + 1

    def close(probe: _Probe) -> None:
        try:
            sel.unregister(probe.sock)
        except (KeyError, ValueError):
            pass
        inflight.pop(probe.sock, None)
        probe.sock.close()

    def backoff(now: float) -> None:
        nonlocal retry_at, retry
        retry_at = now + retry
        retry = min(retry * 2, _RETRY_MAX)

    def enough(now: float, force: bool = False) -> Optional[float]:
        """The time the N-th still-current worker first answered, or None."""
        nonlocal next_workers_check
        if len(seen) < expected_workers or (now < next_workers_check and not force):
            return None
        current, cost = _timed(worker_pids)
        # a psutil-backed callback costs ms: never spend more than a third of the CPU in it
        next_workers_check = now + min(_ASK_MAX_GAP, max(0.005, 2 * cost))
        times = sorted(t for pid, t in seen.items() if not current or pid in current)
        return times[expected_workers - 1] if len(times) >= expected_workers else None

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
            all_workers = enough(now)
            if all_workers is not None:
                break
            if now >= deadline:
                all_workers = enough(now, force=True)  # N answered: the rate limit must not decide
                break
            if not target_confirmed and now >= target_at:
                asked_at = time.monotonic()
                new_target, cost = _timed(target_fn)
                if new_target != target:
                    target = new_target
                    if target is not None:
                        host = "localhost" if target.uds else f"{target.host}:{target.port}"
                        request = (
                            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
                            "User-Agent: harness-readiness\r\n\r\n"
                        ).encode("ascii")
                if target is None:
                    err("NoTarget")
                    backoff(now)
                # discovery through psutil costs ms per call: keep it under a third of the CPU
                target_at = asked_at + min(_ASK_MAX_GAP, max(3 * cost, retry))
            missing = max(1, expected_workers - len(seen))
            want = min(32, max(4, 2 * missing, expected_workers))
            waiting = [p.started for p in inflight.values() if not p.done]
            active = len(waiting)
            hedge_at: Optional[float] = None
            if not target_confirmed:
                # no answer yet: ONE probe (the first worker takes every queued connection in one go and
                # answers them all before the first answer leaves), one more per _FIRST_HEDGE_S it waits
                oldest = min(waiting, default=now)
                allowed = 1 + int((now - oldest) / _FIRST_HEDGE_S)
                if allowed < want:
                    hedge_at = oldest + allowed * _FIRST_HEDGE_S
                want = min(want, allowed)
            while target is not None and now >= retry_at and active < want:
                sock = socket.socket(target.family(), socket.SOCK_STREAM)
                sock.setblocking(False)
                probes += 1
                code = sock.connect_ex(target.sockaddr())  # type: ignore[arg-type]
                # AF_UNIX: EAGAIN means the backlog is full, not "in progress".
                if code == 0 or (code in _IN_PROGRESS and not (target.uds and code == errno.EAGAIN)):
                    probe = _Probe(sock, now, connected=code == 0)
                    inflight[sock] = probe
                    active += 1
                    if probe.connected:
                        try:
                            sock.send(request)
                        except OSError as exc:
                            err(type(exc).__name__)
                            inflight.pop(sock, None)
                            active -= 1
                            sock.close()
                            continue
                        sel.register(sock, selectors.EVENT_READ, probe)
                    else:
                        sel.register(sock, selectors.EVENT_WRITE, probe)
                else:
                    sock.close()
                    err(_error_name(code))
                    backoff(now)
            # Wait for the next event: a socket, the alive check, the retry time, or the deadline.
            wake = min(deadline, next_alive)
            if target is None:
                wake = min(wake, target_at)
            elif retry_at > now:
                wake = min(wake, retry_at)
            if hedge_at is not None:
                wake = min(wake, hedge_at)
            timeout = max(0.0, wake - time.monotonic())
            if not inflight:
                time.sleep(timeout)  # nothing to select on: poll interval (see module docstring)
                continue
            for key, _mask in sel.select(timeout):
                probe = key.data
                if not probe.connected:
                    code = probe.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code:
                        err(_error_name(code))
                        close(probe)
                        backoff(time.monotonic())
                        continue
                    probe.connected = True
                    try:
                        probe.sock.send(request)
                    except OSError as exc:
                        err(type(exc).__name__)
                        close(probe)
                        continue
                    sel.modify(probe.sock, selectors.EVENT_READ, probe)
                    continue
                try:
                    chunk = probe.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:
                    if not probe.done:
                        err(type(exc).__name__)
                    close(probe)
                    continue
                if probe.done:  # the rest of an answer already counted: read to EOF, then close
                    if not chunk:
                        close(probe)
                    continue
                probe.buf += chunk
                end = probe.buf.find(b"\r\n\r\n")
                if end < 0:
                    if not chunk or len(probe.buf) > _MAX_HEADER:
                        err("RemoteProtocolError")
                        close(probe)
                    continue
                t = time.monotonic()
                try:
                    status, pid = _parse_head(probe.buf[:end])
                except ValueError:
                    err("RemoteProtocolError")
                    close(probe)
                    continue
                # Cutting the connection now would make the server's body write fail (EPIPE/ECONNRESET),
                # and a traceback in its stderr can become a record's signature: read it to the end.
                probe.done = True
                probe.buf = b""
                if not chunk:
                    close(probe)
                responses += 1
                status_counts[status] = status_counts.get(status, 0) + 1
                target_confirmed = True
                retry = _RETRY_MIN
                if first_response is None:
                    first_response = t
                if pid is None:
                    err("NoWorkerPid")
                elif pid not in seen:
                    seen[pid] = t
                    next_workers_check = 0.0
            now = time.monotonic()
            for probe in [p for p in inflight.values() if now - p.started > _PROBE_TIMEOUT]:
                if not probe.done:
                    err("ReadTimeout" if probe.connected else "ConnectTimeout")
                close(probe)
        _drain(sel, inflight, close, min(time.monotonic() + _DRAIN_S, max(deadline, time.monotonic())))
    finally:
        for probe in list(inflight.values()):
            close(probe)
        sel.close()
    if last_event is None:
        last_event = ready_event()
    return ReadyResult(
        ready=all_workers is not None,
        first_response=first_response,
        all_workers=all_workers,
        pid_first_seen=dict(seen),
        errors=errors,
        exited=exited,
        probes=probes,
        responses=responses,
        status=status_counts,
        ready_event=last_event,
    )
