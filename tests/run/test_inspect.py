"""inspect on real multi-process servers (tests/_mpserver.py): roles, listeners, discovery, leaks."""

import os
import signal
import socket
import sys
import time

import psutil
import pytest

from harness.run import inspection as inspect
from harness.run.process import ServerProcess
from harness.run.readiness import Target
from tests import _mpserver
from tests._mpserver import TIMEOUT

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="fork-based test server")


def _serve(tmp_path, *options: str):
    server = ServerProcess(
        _mpserver.argv("--info", str(tmp_path / "info.json"), *options),
        env=dict(os.environ),
        cwd=str(tmp_path),
        run_dir=str(tmp_path / "run"),
    ).start()
    return server, _mpserver.read_info(str(tmp_path / "info.json"))


def test_role_of_recognises_multiprocessing_helpers():
    tracker = [sys.executable, "-c", "from multiprocessing.resource_tracker import main;main(7)"]
    forkserver = [
        sys.executable,
        "-c",
        "from multiprocessing.forkserver import main; main(3, 4, ['__main__'])",
    ]
    spawned = [sys.executable, "-c", "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5)"]
    assert inspect.role_of(tracker, False) == "helper"
    assert inspect.role_of(forkserver, False) == "helper"
    assert inspect.role_of(spawned, False) == "worker"
    assert inspect.role_of(["python", "-m", "servers"], True) == "master"
    # forked by the forkserver: same command line as its parent, but a worker
    assert inspect.role_of(forkserver, False, parent_cmdline=forkserver) == "worker"
    assert inspect.role_of(forkserver, False, parent_cmdline=["python", "-m", "servers"]) == "helper"


@posix_only
def test_snapshot_roles_and_listeners(tmp_path):
    server, info = _serve(tmp_path, "--workers", "3", "--helper")
    with server:
        snap = inspect.snapshot(server.pid, "ready")
        assert inspect.worker_pids(server.pid) == set(info["workers"])
    assert snap["phase"] == "ready" and snap["t"] > 0
    roles = {p["pid"]: p["role"] for p in snap["processes"]}
    assert roles[server.pid] == "master"
    assert sorted(pid for pid, role in roles.items() if role == "worker") == sorted(info["workers"])
    assert list(roles.values()).count("helper") == 1  # the real resource_tracker
    assert all(p["ppid"] == server.pid for p in snap["processes"] if p["pid"] != server.pid)
    holders = {entry["pid"] for entry in snap["listeners"]}
    assert holders == {server.pid, *info["workers"]}  # the shared socket, inherited by every worker
    assert {(e["family"], e["address"], e["port"]) for e in snap["listeners"]} == {
        ("AF_INET", "127.0.0.1", info["port"])
    }
    assert inspect.tree_pids(server.pid) == []  # gone after the stop


@posix_only
def test_uds_listener_and_discovery(tmp_path):
    path = str(tmp_path / "s.sock")
    server, _ = _serve(tmp_path, "--workers", "2", "--uds", path)
    with server:
        listeners = inspect.listening_sockets(inspect.tree_pids(server.pid))
        assert {(e["family"], e["path"]) for e in listeners} == {("AF_UNIX", path)}
        assert inspect.discover_target(server.pid, Target(uds=path)) == Target(uds=path)
        # asked for another path: the tree listens nowhere else, so there is nothing to probe
        assert inspect.discover_target(server.pid, Target(uds=path + ".other")) is None
    assert inspect.find_leaks([], [path])["uds"] == []  # the server unlinked it on stop


@posix_only
def test_port_zero_discovery_and_wrong_listener(tmp_path):
    server, info = _serve(tmp_path, "--workers", "2")
    with server:
        found = inspect.discover_target(server.pid, Target("127.0.0.1", 0))
        assert found == Target("127.0.0.1", info["port"])
        # asked for a UDS but the tree listens on TCP (uvicorn <= 0.14 --uds --workers): report where
        assert inspect.discover_target(server.pid, Target(uds=str(tmp_path / "nope.sock"))) == found
    assert inspect.discover_target(server.pid, Target("127.0.0.1", 0)) is None


@posix_only
def test_a_leaked_daemon_is_found_then_cleaned(tmp_path):
    # The master double-forks a setsid'ed daemon that keeps the listening socket: it escapes the tree,
    # the session and the group, so the stop cannot see it; the port still held gives it away.
    server, info = _serve(tmp_path, "--workers", "2", "--orphan")
    stale = tmp_path / "stale.sock"
    stale.write_text("")  # a UDS path left behind
    with server:
        snap = inspect.snapshot(server.pid, "ready")
        run_pids = [p["pid"] for p in snap["processes"]]
        result = server.stop("group", timeout=TIMEOUT)
    assert result.exit_code == 0 and not result.escalated
    leaks = inspect.find_leaks(run_pids, [str(stale)], ports=[info["port"]])
    leaked = [p["pid"] for p in leaks["processes"]]
    assert len(leaked) == 1 and leaked[0] not in run_pids
    assert [(e["pid"], e["port"]) for e in leaks["listeners"]] == [(leaked[0], info["port"])]
    assert leaks["uds"] == [str(stale)]
    # clean up what the test itself made leak, then prove it gone
    os.kill(leaked[0], signal.SIGKILL)
    deadline = time.monotonic() + TIMEOUT
    while psutil.pid_exists(leaked[0]) and time.monotonic() < deadline:
        try:
            if psutil.Process(leaked[0]).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.Error:
            break
        time.sleep(0.01)
    stale.unlink()
    assert inspect.find_leaks(run_pids, [str(stale)], ports=[info["port"]]) == {
        "processes": [],
        "listeners": [],
        "uds": [],
    }


def test_find_leaks_reports_a_surviving_child(tmp_path):
    server = ServerProcess(
        [sys.executable, "-c", "import threading; threading.Event().wait(60)"],
        env=dict(os.environ),
        cwd=str(tmp_path),
        run_dir=str(tmp_path),
    ).start()
    try:
        leaks = inspect.find_leaks([server.pid, os.getpid()], [])
        assert [p["pid"] for p in leaks["processes"]] == [server.pid]  # the harness itself is never a leak
    finally:
        server.stop("group", timeout=TIMEOUT)
    assert inspect.find_leaks([server.pid], [])["processes"] == []


_FORKSERVER_SCRIPT = """
import multiprocessing, sys, threading


def work():
    threading.Event().wait(60)


if __name__ == "__main__":
    ctx = multiprocessing.get_context("forkserver")
    procs = [ctx.Process(target=work) for _ in range(2)]
    for p in procs:
        p.start()
    with open(sys.argv[1] + ".tmp", "w") as fh:
        fh.write(" ".join(str(p.pid) for p in procs))
    import os
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    threading.Event().wait(60)
"""


@posix_only
def test_forkserver_children_are_workers_and_the_forkserver_a_helper(tmp_path):
    script = tmp_path / "fs_main.py"
    script.write_text(_FORKSERVER_SCRIPT)
    out = tmp_path / "pids.txt"
    server = ServerProcess(
        [sys.executable, str(script), str(out)],
        env=dict(os.environ),
        cwd=str(tmp_path),
        run_dir=str(tmp_path),
    )
    with server:
        deadline = time.monotonic() + TIMEOUT
        while not out.exists() and server.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        workers = {int(p) for p in out.read_text().split()}
        snap = inspect.snapshot(server.pid, "ready")
    roles = {p["pid"]: p["role"] for p in snap["processes"]}
    assert {pid for pid, role in roles.items() if role == "worker"} == workers
    assert list(roles.values()).count("helper") == 2  # the forkserver and the resource_tracker
    assert inspect.worker_pids(server.pid) == set()  # stopped


@posix_only
def test_target_finder_walks_the_tree_only_when_a_listener_appears(tmp_path):
    # asked before anything of its tree listens, then after: the new listener is seen on the next call
    # (not RESCAN_S later), and the tree is not walked again while nothing changes
    finder = inspect.TargetFinder(os.getpid(), Target("127.0.0.1", 0))
    assert finder() is None and finder.walks == 1
    for _ in range(20):
        assert finder() is None
    assert finder.walks <= 2  # a rescan may fall in here, or a listener of another test appeared
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        assert finder() == Target("127.0.0.1", sock.getsockname()[1])
    server, info = _serve(tmp_path, "--workers", "2")
    with server:
        tree_finder = inspect.TargetFinder(server.pid, Target("127.0.0.1", 0))
        assert tree_finder() == Target("127.0.0.1", info["port"])
        walks = tree_finder.walks
        assert [tree_finder() for _ in range(20)] == [Target("127.0.0.1", info["port"])] * 20
        assert tree_finder.walks - walks <= 2
