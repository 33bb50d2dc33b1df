"""Every socket strategy x start method this machine can run, with 1, 2 and 4 workers, for real:
`ready`, every worker pid answers concurrent fresh-connection bursts (and nothing else answers), SIGTERM
stops it cleanly, and no process or listener remains. Plus the strategies that cannot run here."""

import json
import os
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any, Dict, List, Optional, Set, Tuple

import psutil
import pytest

from servers import exitcodes
from servers.strategies import START_METHODS, STRATEGIES, availability, pair_error
from tests._refserver import PYTHON, ROOT, RefServer, burst_until, stop_and_check, target_of

pytestmark = pytest.mark.timeout(120)

LINUX_PAIRS = {
    ("inherit", "fork"),
    ("inherit", "exec"),
    ("reuseport", "fork"),
    ("reuseport", "spawn"),
    ("reuseport", "forkserver"),
    ("reuseport", "exec"),
    ("pickle", "fork"),
    ("pickle", "spawn"),
    ("pickle", "forkserver"),
    ("scm-rights", "exec"),
    ("systemd", "exec"),
}

PAIRS = sorted(
    (s, m)
    for s in STRATEGIES
    for m in START_METHODS
    if pair_error(s, m) is None and availability(s, m) is None
)


@pytest.mark.skipif(sys.platform != "linux", reason="the expected set is Linux's")
def test_linux_runs_exactly_the_expected_pairs() -> None:
    assert set(PAIRS) == LINUX_PAIRS


def _listeners(pid: int, port: int) -> List[str]:
    return [
        c.status
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.laddr and c.laddr.port == port and not c.raddr
    ]


def _check_reservation(supervisor: int, workers: Set[int], port: int) -> None:
    """reuseport: the supervisor's reservation is not listening (a bound-only TCP socket is not even in
    /proc/net/tcp); each worker listens on its own socket."""
    assert _listeners(supervisor, port) == []
    for pid in workers:
        assert _listeners(pid, port) == [psutil.CONN_LISTEN], pid


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize(("strategy", "start_method"), PAIRS)
def test_every_worker_serves_then_stops(strategy: str, start_method: str, workers: int) -> None:
    args = [
        "servers.apps:pid",
        "--workers",
        str(workers),
        "--strategy",
        strategy,
        "--start-method",
        start_method,
    ]
    with RefServer(args) as server:
        starting = server.wait_for("starting")
        assert (starting["strategy"], starting["start_method"], starting["workers"]) == (
            strategy,
            start_method,
            workers,
        )
        bound = server.wait_for("bound")
        assert bound["port"] > 0 and bound["address"] == "127.0.0.1"
        ready = server.wait_for("ready")
        pids = set(ready["pids"])
        assert len(pids) == workers and server.proc.pid not in pids
        if strategy == "reuseport":
            _check_reservation(server.proc.pid, pids, bound["port"])
        seen = burst_until(target_of(bound), pids)
        assert set(seen) == pids, f"answered {dict(seen)} expected {pids}"
        code = stop_and_check(server, port=bound["port"])
        assert code == exitcodes.OK, server.stderr()
        assert server.named("stopped")[-1]["exitcode"] == exitcodes.OK
        exits = server.named("worker-exit")
        assert sorted(e["worker_pid"] for e in exits) == sorted(pids)
        assert all(e["exitcode"] == 0 for e in exits), exits
        assert not server.named("worker-restart")


@pytest.mark.skipif(sys.platform == "win32", reason="these are Windows-only strategies")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("strategy", ["share", "duplicate-handle"])
def test_windows_only_strategy_is_unsupported_here(strategy: str) -> None:
    with RefServer(["servers.apps:pid", "--workers", "2", "--strategy", strategy]) as server:
        code = server.wait_exit()
        assert code == exitcodes.STRATEGY_UNSUPPORTED
        lines = server.stderr().strip().splitlines()
        assert len(lines) == 1 and strategy in lines[0] and "Windows" in lines[0], lines
        assert server.events == []  # nothing was bound, not even `starting`
    probe = json.loads(
        subprocess.run(
            [PYTHON, "-m", "servers", "--probe"],
            cwd=str(ROOT),
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    )
    info = probe["strategies"][strategy]
    assert info["available"] is False and "Windows" in info["reason"]
    assert not any(m["available"] for m in info["start_methods"].values())


def test_probe_lists_every_strategy_and_start_method_with_reasons() -> None:
    proc = subprocess.run(
        [PYTHON, "-m", "servers", "--probe"],
        cwd=str(ROOT),
        capture_output=True,
        check=True,
        timeout=60,
    )
    probe = json.loads(proc.stdout)
    assert probe["platform"] == sys.platform
    assert set(probe["strategies"]) == set(STRATEGIES)
    available = set()
    for name, info in probe["strategies"].items():
        assert set(info["start_methods"]) == set(START_METHODS)
        for method, minfo in info["start_methods"].items():
            assert minfo["available"] == (minfo["reason"] == "")
            if minfo["available"]:
                available.add((name, method))
    assert available == set(PAIRS)
    assert (probe["default_strategy"], probe["default_start_method"]) in available
    if sys.platform == "linux" and sys.version_info < (3, 14):
        assert (probe["default_strategy"], probe["default_start_method"]) == ("inherit", "fork")
    assert (
        "does not work with start method" in probe["strategies"]["pickle"]["start_methods"]["exec"]["reason"]
    )


def _run_child(spec: Dict[str, Any], env: Dict[str, str]) -> Tuple[int, List[Dict[str, Any]], str]:
    """Run one exec'd worker by hand with a control socketpair; (exit code, its messages, stderr)."""
    ours, theirs = socket.socketpair()
    try:
        proc = subprocess.run(
            [PYTHON, "-m", "servers._child", "--control", str(theirs.fileno()), "--spec", json.dumps(spec)],
            cwd=str(ROOT),
            env=env,
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        theirs.close()
        conn = Connection(ours.detach())
        messages = []
        while conn.poll(0):
            try:
                messages.append(json.loads(conn.recv_bytes()))
            except EOFError:
                break
        conn.close()
        return proc.returncode, messages, proc.stderr
    finally:
        theirs.close()
        ours.close()


@pytest.mark.skipif(sys.platform == "win32", reason="systemd socket activation is POSIX")
@pytest.mark.parametrize("listen_pid", [None, "1"])
def test_systemd_worker_refuses_variables_meant_for_another_process(listen_pid: Optional[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    if listen_pid is not None:
        env.update(LISTEN_PID=listen_pid, LISTEN_FDS="1")
    spec = {
        "index": 0,
        "app": "servers.apps:pid",
        "strategy": "systemd",
        "start_method": "exec",
        "lifespan": "auto",
        "graceful_timeout": 1.0,
        "payload": {},
    }
    code, messages, stderr = _run_child(spec, env)
    assert code == exitcodes.STARTUP_FAILURE, stderr
    assert [m["type"] for m in messages] == ["failed"]
    assert messages[0]["kind"] == "startup-failure" and "LISTEN_PID" in messages[0]["message"]
    assert stderr.strip().splitlines()[-1] == messages[0]["message"]


def test_child_with_a_malformed_command_line_is_usage() -> None:
    proc = subprocess.run(
        [PYTHON, "-m", "servers._child", "--control", "x"],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == exitcodes.USAGE
    assert len(proc.stderr.strip().splitlines()) == 1
