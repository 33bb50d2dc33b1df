"""wait_ready against real multi-process servers (tests/_mpserver.py)."""

import contextlib
import os
import socket
import subprocess
import sys
import time
from typing import Iterator, List, Tuple

import pytest

from harness.run import inspection as inspect
from harness.run import readiness
from harness.run.process import ServerProcess
from harness.run.readiness import NonLoopbackTarget, Target, wait_ready
from tests import _mpserver
from tests._mpserver import TIMEOUT


def _start(tmp_path, *options: str) -> ServerProcess:
    return ServerProcess(
        _mpserver.argv("--info", str(tmp_path / "info.json"), *options),
        env=dict(os.environ),
        cwd=str(tmp_path),
        run_dir=str(tmp_path / "run"),
    ).start()


def _workers(server: ServerProcess):
    return lambda: inspect.worker_pids(server.pid)


def test_target_refuses_non_loopback():
    with pytest.raises(NonLoopbackTarget):
        Target("10.0.0.1", 80)
    with pytest.raises(NonLoopbackTarget):
        Target("example.com", 80)
    assert Target("::1", 8000).url == "http://[::1]:8000"
    assert Target("127.0.0.2", 1).url == "http://127.0.0.2:1"
    assert Target(uds="/tmp/x.sock").url == "http://localhost"
    assert Target("0.0.0.0", 80).url == "http://127.0.0.1:80"  # a wildcard bind, reached via loopback
    assert Target("::", 80).sockaddr() == ("::1", 80)


@pytest.mark.parametrize("workers", [1, 4])
def test_every_worker_pid_seen_with_port_zero_discovery(tmp_path, workers):
    with _start(tmp_path, "--workers", str(workers)) as server:
        asked = Target("127.0.0.1", 0)
        result = wait_ready(
            lambda: inspect.discover_target(server.pid, asked),
            workers,
            time.monotonic() + TIMEOUT,
            alive=server.alive,
            worker_pids=_workers(server),
        )
        noticed = time.monotonic()
        info = _mpserver.read_info(str(tmp_path / "info.json"))
        assert result.ready and not result.exited, result
        assert set(result.pid_first_seen) == set(info["workers"])
        assert server.pid not in result.pid_first_seen  # the master never serves
        assert result.first_response is not None and result.all_workers is not None
        assert server.started_at <= result.first_response <= result.all_workers <= noticed
        assert result.status == {200: result.responses}


def test_a_slow_worker_is_waited_for(tmp_path):
    # Worker i starts accepting only after i * 0.3 s: the queue favours the early ones meanwhile.
    with _start(tmp_path, "--workers", "3", "--worker-delay", "0.3") as server:
        info = _mpserver.read_info(str(tmp_path / "info.json"))
        target = Target("127.0.0.1", info["port"])
        result = wait_ready(
            lambda: target, 3, time.monotonic() + TIMEOUT, alive=server.alive, worker_pids=_workers(server)
        )
        assert result.ready, result
        assert set(result.pid_first_seen) == set(info["workers"])
        first, last = sorted(result.pid_first_seen.values())[0], result.all_workers
        assert last is not None and last - first > 0.3  # really waited for the last one


@pytest.mark.skipif(sys.platform == "win32", reason="AF_UNIX")
def test_uds_target(tmp_path):
    path = str(tmp_path / "s.sock")
    with _start(tmp_path, "--workers", "2", "--uds", path) as server:
        asked = Target(uds=path)
        result = wait_ready(
            lambda: inspect.discover_target(server.pid, asked),
            2,
            time.monotonic() + TIMEOUT,
            alive=server.alive,
            worker_pids=_workers(server),
        )
        assert result.ready, result


def test_refused_port_is_not_ready_by_the_deadline(tmp_path):
    # The master holds the port bound but never listens: every connect is refused.
    with _start(tmp_path, "--workers", "2", "--no-listen") as server:
        info = _mpserver.read_info(str(tmp_path / "info.json"))
        target = Target("127.0.0.1", info["port"])
        t0 = time.monotonic()
        result = wait_ready(lambda: target, 2, t0 + 0.5, alive=server.alive, worker_pids=set)
        assert not result.ready and not result.exited
        assert time.monotonic() - t0 >= 0.5
        assert result.errors.get("ConnectionRefusedError", 0) > 0
        assert result.first_response is None and result.pid_first_seen == {}


def test_hanging_accept_queue_is_not_ready(tmp_path):
    # A listening socket nobody accepts on: connections complete in the kernel, answers never come.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        target = Target("127.0.0.1", sock.getsockname()[1])
        result = wait_ready(lambda: target, 1, time.monotonic() + 0.5, alive=lambda: True, worker_pids=set)
        assert not result.ready and result.responses == 0
    finally:
        sock.close()


def test_one_probe_waits_until_the_first_answer():
    # Before any answer only one probe is queued (plus one per _FIRST_HEDGE_S it waited): a worker that
    # starts accepting would otherwise take the whole queue in one go and answer it all first.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        target = Target("127.0.0.1", sock.getsockname()[1])
        t0 = time.monotonic()
        result = wait_ready(lambda: target, 4, t0 + 0.3, alive=lambda: True, worker_pids=set)
        elapsed = time.monotonic() - t0
        assert not result.ready and result.responses == 0
        assert 1 <= result.probes <= 1 + int(elapsed / readiness._FIRST_HEDGE_S), (result.probes, elapsed)
    finally:
        sock.close()


def test_exit_stops_the_wait_early(tmp_path):
    # The master exits (code 3) after 0.3 s without ever listening.
    with _start(tmp_path, "--workers", "2", "--no-listen", "--exit-after", "0.3") as server:
        info = _mpserver.read_info(str(tmp_path / "info.json"))
        target = Target("127.0.0.1", info["port"])
        t0 = time.monotonic()
        result = wait_ready(lambda: target, 2, t0 + TIMEOUT, alive=server.alive, worker_pids=set)
        assert result.exited and not result.ready
        assert time.monotonic() - t0 < TIMEOUT / 2
        assert server.poll() == 3


def test_unknown_target_counts_no_target(tmp_path):
    result = wait_ready(lambda: None, 1, time.monotonic() + 0.2, alive=lambda: True, worker_pids=set)
    assert not result.ready and result.errors.get("NoTarget", 0) >= 1 and result.probes == 0


def _stalled_once(stall: float, answer, then):
    """A callback whose first call is descheduled for `stall` s of wall time (about no CPU), as a loaded
    machine does to the harness; later calls answer at once."""
    calls = []

    def fn():
        calls.append(time.monotonic())
        if len(calls) == 1:
            time.sleep(stall)  # the simulated deschedule itself, not synchronisation
            return answer
        return then()

    return fn, calls


def test_a_stalled_target_call_does_not_starve_the_wait(tmp_path):
    # Regression: the back-off after asking target_fn was 3x its WALL time, so one 1 s stall (no target
    # yet) meant no new ask for 3 s: a server serving since the start of the wait came out not-ready
    # with only NoTarget errors. The rate limit is on CPU time now, capped.
    with _start(tmp_path, "--workers", "2") as server:
        info = _mpserver.read_info(str(tmp_path / "info.json"))
        target = Target("127.0.0.1", info["port"])
        target_fn, calls = _stalled_once(1.0, None, lambda: target)
        t0 = time.monotonic()
        result = wait_ready(target_fn, 2, t0 + 2.9, alive=server.alive, worker_pids=_workers(server))
        assert result.ready, result
        assert result.errors.get("NoTarget") == 1, result.errors
        assert len(calls) >= 2 and calls[1] - calls[0] < 1.5, calls


def test_a_stalled_worker_pids_call_does_not_decide_the_verdict(tmp_path):
    # Regression: after a worker_pids() call the next one waited 2x its wall time; when that stalled
    # (first answer: a snapshot from before the workers registered) past the deadline, every worker had
    # answered and the result still said not ready. Now CPU-timed, and checked once more at the deadline.
    with _start(tmp_path, "--workers", "2") as server:
        info = _mpserver.read_info(str(tmp_path / "info.json"))
        target = Target("127.0.0.1", info["port"])
        worker_pids, calls = _stalled_once(1.0, {-1}, _workers(server))
        deadline = time.monotonic() + 1.9
        result = wait_ready(lambda: target, 2, deadline, alive=server.alive, worker_pids=worker_pids)
        assert result.ready, result
        assert set(result.pid_first_seen) == set(info["workers"])
        assert len(calls) >= 2, calls


@contextlib.contextmanager
def _forking_master(child: List[str], after: List[str]) -> Iterator[Tuple["subprocess.Popen[bytes]", int]]:
    """A master (this test's child) that forks a child running the `child` lines, prints its pid, then runs
    the `after` lines and waits for stdin's end: (master, child pid); the master is killed afterwards."""
    head = ["import os, sys", "r, w = os.pipe()", "pid = os.fork()", "if pid == 0:", "    os.close(w)"]
    code = "\n".join([*head, *("    " + line for line in child), "print(pid, flush=True)", *after])
    master = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert master.stdout is not None
        yield master, int(master.stdout.readline())
    finally:
        master.kill()
        master.communicate(timeout=10)


@pytest.mark.skipif(sys.platform == "win32", reason="zombies are POSIX")
def test_a_worker_that_died_before_any_sample_is_still_counted() -> None:
    # a master forks a "worker" that exits at once and is never reaped: the watch's sampler never saw it
    # alive, but the zombie says a worker died (uvicorn <= 0.29 on a starved machine: both workers fail
    # their lifespan between two samples)
    from harness.run.serverwatch import ServerWatch, dead_children  # noqa: PLC0415

    with _forking_master(["os._exit(3)"], ["sys.stdin.read()"]) as (master, worker):
        deadline = time.monotonic() + 10
        while worker not in dead_children(master.pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # bounded poll of another process's state
        assert dead_children(master.pid) == {worker}
        watch = ServerWatch(master.pid, master.poll, workers=1)
        assert watch.worker_pids() == set()  # not a live worker ...
        assert watch.ever_workers == {worker}  # ... but one that was, and died


@pytest.mark.skipif(sys.platform == "win32", reason="fork is POSIX")
def test_a_helper_seen_before_its_exec_is_not_a_worker() -> None:
    # a master forks a child that waits before its exec, showing the master's command line - as uvicorn's
    # resource tracker does for a moment on a starved machine - then execs into a command line that names
    # the helper: it must not stay among the workers ever seen, or a failed start reads as a restart
    # (uvicorn 0.29.0, failing lifespan: not-serving instead of startup-failure)
    from harness.run.serverwatch import ServerWatch  # noqa: PLC0415

    child = [
        "os.read(r, 1)",
        "exe, marker = sys.executable, 'multiprocessing.' + 'resource_tracker'",  # not in our cmdline
        "os.execv(exe, [exe, '-c', 'import sys; sys.stdin.read()', marker])",
    ]
    with _forking_master(child, ["sys.stdin.readline()", "os.write(w, b'x')", "sys.stdin.read()"]) as (
        master,
        helper,
    ):
        assert master.stdin is not None
        watch = ServerWatch(master.pid, master.poll, workers=1)
        assert watch.worker_pids() == {helper}  # before its exec it looks like a worker ...
        master.stdin.write(b"go\n")
        master.stdin.flush()
        deadline = time.monotonic() + 10
        while helper not in watch.helpers and time.monotonic() < deadline:
            watch.worker_pids()
            time.sleep(0.01)  # bounded poll of another process's exec
        assert helper in watch.helpers  # ... after it, it is what it is
        assert watch.worker_pids() == set()
        assert watch.ever_workers == set()  # and it was never a worker
