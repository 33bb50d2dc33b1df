"""The reaper, for real: a pytest subprocess runs a slow scenario; we interrupt it mid-scenario (SIGINT,
pytest-timeout with its signal and its thread method, SIGKILL) and check with psutil that nothing of it
remains: no process, no listening socket, no UDS file.

Every process of the inner run is recognised by a unique token in its environment (the server inherits
the harness's environment), so nothing is missed because of its cmdline (spawned workers have none of ours).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Dict, List, Set, Tuple

import psutil
import pytest

from tests import _paths
from tests._mpserver import signal_state, with_default_sigint

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and process groups"),
]

ROOT = Path(_paths.ROOT)
TOKEN_VAR = "AWH_REAPER_TEST_TOKEN"

INNER = """
import os
import pytest
from harness.model.records import Scenario
from harness.run.runner import run_scenario

@pytest.mark.timeout({timeout}, method="{method}")
def test_slow_scenario(tmp_path):
    # every request waits 1 s: the load phase alone runs for minutes (base_timeout 600)
    sc = Scenario(app="servers.apps:slow", workers=2, bind="{bind}", requests=5000, concurrency=4,
                  keepalive_requests=0)
    run_scenario(sc, work_dir=str(tmp_path), base_timeout=600)
"""


def _ours(token: str) -> List[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(TOKEN_VAR) == token:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _cmd(proc: psutil.Process) -> str:
    """Its command line; "" once it exited (a worker can turn zombie between _ours() and this call)."""
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def _resources(procs: List[psutil.Process]) -> Tuple[Set[int], Set[str]]:
    """(TCP ports, UDS paths) the processes listen on."""
    ports: Set[int] = set()
    paths: Set[str] = set()
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet") + proc.net_connections(kind="unix")
            cmdline = proc.cmdline()
        except psutil.Error:
            continue
        for c in conns:
            if c.status == psutil.CONN_LISTEN and c.laddr:
                ports.add(c.laddr.port)
            elif isinstance(c.laddr, str) and c.laddr:
                paths.add(c.laddr)
        if "--uds" in cmdline:
            paths.add(cmdline[cmdline.index("--uds") + 1])
    return ports, paths


def _run_dirs(procs: List[psutil.Process]) -> Set[str]:
    """The private directories harness.run.runner made for the server (its scratch TMP dir and its run dir
    with
    HOME), read from the server processes' environment (run.py sets XDG_RUNTIME_DIR = TMPDIR)."""
    dirs: Set[str] = set()
    for proc in procs:
        try:
            env = proc.environ()
        except psutil.Error:
            continue
        tmp = env.get("TMPDIR", "")
        if tmp and env.get("XDG_RUNTIME_DIR") == tmp and env.get("HOME"):
            dirs.add(os.path.dirname(tmp))
            dirs.add(os.path.dirname(env["HOME"]))
    return dirs


def _listening(ports: Set[int]) -> List[int]:
    return sorted(
        c.laddr.port
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in ports
    )


def _run_and_interrupt(tmp_path: Path, how: str, bind: str) -> Tuple[int, str]:
    token = uuid.uuid4().hex
    method = "thread" if how == "timeout-thread" else "signal"
    timeout = 12 if how.startswith("timeout") else 600
    test = tmp_path / "test_inner.py"
    test.write_text(textwrap.dedent(INNER.format(timeout=timeout, method=method, bind=bind)))
    env: Dict[str, str] = dict(os.environ)
    env[TOKEN_VAR] = token
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTEST_XDIST_WORKER", None)
    out = tmp_path / "inner.out"
    with open(out, "wb") as fh:
        inner = subprocess.Popen(
            with_default_sigint(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    str(test),
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "-p",
                    "no:xdist",
                    "--rootdir",
                    str(tmp_path),
                    "-o",
                    "addopts=",
                    # should the inner run ever hang after its interruption, the stacks of its threads land
                    # in inner.out, which the failure below prints (seen beside 3 CPU hogs: the inner pytest
                    # sat in epoll_wait for 120 s after its timeout fired - pytest-timeout's exception was
                    # lost inside run_load's event loop, fixed there by harness.run.load._Interruptions)
                    "-o",
                    "faulthandler_timeout=45",
                ]
            ),
            cwd=str(tmp_path),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ports: Set[int] = set()
    paths: Set[str] = set()
    dirs: Set[str] = set()
    try:
        # mid-scenario: the server's master and both workers exist (and listen)
        deadline = time.monotonic() + 90
        seen: List[psutil.Process] = []
        while time.monotonic() < deadline and inner.poll() is None:
            seen = [p for p in _ours(token) if p.pid != inner.pid]
            servers = [p for p in seen if "servers" in _cmd(p) and "reaper" not in _cmd(p)]
            p_, u_ = _resources(seen)
            ports |= p_
            paths |= u_
            dirs |= _run_dirs(seen)
            if len(servers) >= 3 and (ports or paths):
                break
            time.sleep(0.1)  # polling a foreign process tree: there is no event to wait on
        else:
            pytest.fail(f"the inner run never got its server up:\n{out.read_text()[-3000:]}")
        if how == "sigint":
            os.killpg(inner.pid, signal.SIGINT)  # what Ctrl-C does to the foreground group
        elif how == "sigkill":
            os.killpg(inner.pid, signal.SIGKILL)
        # timeout-*: pytest-timeout fires on its own
        try:
            code = inner.wait(timeout=120)
        except subprocess.TimeoutExpired:  # say why it is still there (flaked once in CI after SIGINT)
            tail = out.read_text(errors="replace")[-3000:]
            pytest.fail(f"the inner pytest survived {how}: {signal_state(inner.pid)}\n{tail}")
    finally:
        if inner.poll() is None:
            os.killpg(inner.pid, signal.SIGKILL)
            inner.wait(10)
    # the guardian (its own session) may need a moment after our EOF; everything must go within a deadline
    left = _ours(token)
    _gone, alive = psutil.wait_procs(left, timeout=15)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    text = out.read_text(errors="replace")
    assert not alive, f"left behind after {how}: {[(p.pid, p.cmdline()) for p in alive]}\n{text[-2000:]}"
    assert not _listening(ports), f"still listening after {how}: {ports}"
    assert not [p for p in paths if os.path.exists(p)], f"UDS files left after {how}: {paths}"
    # the run's private HOME/TMP go too (atexit, SIGTERM handler or the guardian: harness.run.reaper)
    assert dirs and not [d for d in dirs if os.path.exists(d)], f"run dirs left after {how}: {dirs}"
    assert ports or paths  # we did see what to check
    return code, text


@pytest.mark.parametrize(("how", "bind"), [("sigint", "uds"), ("timeout-signal", "tcp")])
def test_interrupted_pytest_leaves_nothing(tmp_path: Path, how: str, bind: str) -> None:
    code, text = _run_and_interrupt(tmp_path, how, bind)
    if how == "sigint":
        assert code == 2 and "KeyboardInterrupt" in text, text[-2000:]
    else:
        assert code == 1 and "Timeout" in text, text[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize(("how", "bind"), [("timeout-thread", "uds"), ("sigkill", "tcp")])
def test_hard_killed_pytest_leaves_nothing(tmp_path: Path, how: str, bind: str) -> None:
    # os._exit (pytest-timeout's thread method) and SIGKILL skip atexit: the guardian does the work
    code, _text = _run_and_interrupt(tmp_path, how, bind)
    assert code != 0


MATRIX = """
[defaults]
requests = 5
keepalive_requests = 0

[[scenario]]
server = "reference"
app = "servers.apps:slow"
workers = [1, 2, 3]
bind = ["tcp", "uds"]
"""


def test_matrix_killed_midway_keeps_every_record_and_resumes(tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    config = tmp_path / "m.toml"
    config.write_text(MATRIX)
    results = tmp_path / "r.jsonl"
    env: Dict[str, str] = dict(os.environ)
    env[TOKEN_VAR] = token
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # a SIGKILLed matrix cannot remove its hand-off dir (awh-matrix-*): it goes under tmp_path, not /tmp
    (tmp_path / "tmp").mkdir()
    env["TMPDIR"] = str(tmp_path / "tmp")
    argv = [sys.executable, "-m", "harness.cli", "matrix", "--config", str(config), "-n", "1"]
    argv += ["--results", str(results)]
    first = subprocess.Popen(
        argv,
        cwd=str(tmp_path),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and first.poll() is None:
            if results.exists() and len(results.read_bytes().splitlines()) >= 2:
                break
            time.sleep(0.05)  # polling a file another process appends to
        assert first.poll() is None, "the matrix finished before it could be killed midway"
        os.killpg(first.pid, signal.SIGKILL)  # the harness crashes mid-matrix (its children too)
        first.wait(30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
    before = results.read_bytes()
    lines = before.splitlines()
    assert 2 <= len(lines) < 6
    ids = [json.loads(line)["scenario"] for line in lines]  # every finished record is whole
    # nothing of the killed run survives (the guardians of the killed children did their job)
    _gone, alive = psutil.wait_procs(_ours(token), timeout=15)
    assert not [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    again = subprocess.run(
        [*argv, "--resume"],
        cwd=str(tmp_path),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert f"--resume: {len(lines)} scenario(s) already in" in again.stdout + again.stderr, again.stdout
    after = results.read_bytes()
    assert after.startswith(before)  # the records written before the crash are untouched
    records = [json.loads(line) for line in after.splitlines()]
    from harness.model.records import Scenario  # noqa: PLC0415

    sids = [Scenario.from_dict(r["scenario"]).scenario_id for r in records]
    assert len(sids) == len(set(sids)) == 6, sids  # each scenario exactly once: skipped, not re-run
    assert ids == [r["scenario"] for r in records[: len(ids)]]
