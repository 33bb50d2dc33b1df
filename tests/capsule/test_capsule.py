"""harness.capsule: the folder's files, and repro.py run for real against small stdlib servers."""

import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Tuple

import psutil
import pytest

from harness import capsule
from harness.capsule import ROOT_TOKEN, target_of, write_capsule
from harness.model.records import ResultRecord, Scenario
from tests import _paths

PROJECT_ROOT = _paths.ROOT
OLD_PYTHONS = [
    p
    for p in ("/root/.pyenv/versions/3.7.16/bin/python", "/root/.pyenv/versions/3.8.18/bin/python")
    if os.path.exists(p)
]

# A tiny pre-fork HTTP server (stdlib): binds --host/--port, forks --workers-1 children that serve the same
# socket, answers GET with its pid in x-worker-pid. The parent reaps its children on SIGTERM, like a real
# supervisor. --fail makes it die at startup the way a worker with a bad socket does.
SERVER = textwrap.dedent(
    """
    import http.server, os, signal, socket, sys

    args = sys.argv[1:]
    opt = lambda name, default: args[args.index(name) + 1] if name in args else default
    if "--fail" in args:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.accept()  # not listening: OSError [Errno 22] Invalid argument

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("x-worker-pid", str(os.getpid()))
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a):
            pass

    if "--fd" in args:  # the socket was passed in, already bound and listening
        server = http.server.HTTPServer(("127.0.0.1", 0), H, bind_and_activate=False)
        server.socket.close()
        server.socket = socket.socket(fileno=int(opt("--fd", "3")))
    else:
        server = http.server.HTTPServer((opt("--host", "127.0.0.1"), int(opt("--port", "8000"))), H)
    children = []
    for _ in range(int(opt("--workers", "1")) - 1):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            server.serve_forever()
            os._exit(0)
        children.append(pid)

    def term(signum, frame):
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        for pid in children:
            os.waitpid(pid, 0)
        sys.exit(0)

    signal.signal(signal.SIGTERM, term)
    if "--events" in args:
        open(opt("--events", ""), "a").close()
    print("serving home=%s cache=%s" % (os.environ.get("HOME"), os.environ.get("APP_CACHE_DIR")), flush=True)
    server.serve_forever()
    """
)


def _record(
    tmp_path: Path, server_args: List[str], workers: int, failure_class: str = "partial-workers", **kw: Any
) -> ResultRecord:
    script = tmp_path / "tiny_server.py"
    script.write_text(SERVER)
    fields: Dict[str, Any] = dict(
        scenario=Scenario(server="tiny", workers=workers).to_dict(),
        failure_class=failure_class,
        signature="partial-workers: 1/2",
        reason="Only 1 of 2 worker processes answered requests.",
        platform={"system": "Linux", "sys_platform": "linux"},
        python={"version": "3.11.7", "implementation": "CPython"},
        installed={"h11": "0.14.0", "uvicorn": "0.10.8"},
        command=[
            sys.executable,
            str(script),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--events",
            str(tmp_path / "run-1" / "events" / "events.jsonl"),
            *server_args,
        ],
        env={
            "HOME": str(tmp_path / "run-1" / "home"),
            "TMPDIR": str(tmp_path / "run-1" / "tmp"),
            "APP_CACHE_DIR": str(tmp_path / "gone" / "cache"),
            "APP_ROOT": PROJECT_ROOT,
            "PATH": "/original/machine/venv/bin:/usr/bin",
            "VIRTUAL_ENV": "/original/machine/venv",
        },
        stderr_tail="Traceback (most recent call last):\nOSError: [WinError 10022] An invalid argument",
    )
    fields.update(kw)
    return ResultRecord(**fields)


def _run_repro(folder: str, python: str = sys.executable, deadline: float = 15) -> Tuple[int, str, int]:
    proc = subprocess.run(
        [python, os.path.join(folder, "repro.py"), "--deadline", str(deadline), "--grace", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=90,
        check=False,
    )
    out = proc.stdout.decode("utf-8", "replace")
    m = re.search(r"server pid (\d+)", out)
    assert m, out
    return proc.returncode, out, int(m.group(1))


def _gone(pid: int) -> bool:
    # a zombie counts as left behind: nobody reaped it
    return not psutil.pid_exists(pid)


def _pids_in(out: str) -> List[int]:
    return [int(p) for p in re.findall(r"(\d+) x\d+", out)]


def test_capsule_files(tmp_path: Path) -> None:
    rec = _record(tmp_path, [], 2)
    folder = write_capsule(rec, str(tmp_path / "capsules"), project_root=PROJECT_ROOT)
    assert os.path.dirname(folder) == str(tmp_path / "capsules")
    names = set(os.listdir(folder))
    assert {
        "README.md",
        "requirements.txt",
        "command.txt",
        "run.sh",
        "run.bat",
        "env.json",
        "repro.py",
    } <= names
    assert os.path.isfile(os.path.join(folder, "servers", "apps.py"))  # the apps travel with the capsule
    with open(os.path.join(folder, "requirements.txt")) as fh:
        assert fh.read() == "h11==0.14.0\nuvicorn==0.10.8\n"
    with open(os.path.join(folder, "env.json")) as fh:
        assert json.load(fh) == rec.env
    readme = open(os.path.join(folder, "README.md"), encoding="utf-8").read()
    assert "partial-workers" in readme and "3.11.7" in readme and "uvicorn==0.10.8" in readme
    assert "--port 0" in readme and "WinError 10022" in readme
    command = open(os.path.join(folder, "command.txt")).read().splitlines()
    assert "--host 127.0.0.1 --port 0 --events" in command[0]
    # the project root inside env values becomes the capsule folder
    repro = open(os.path.join(folder, "capsule.json")).read()
    assert ROOT_TOKEN in repro and PROJECT_ROOT not in repro
    shipped = os.path.join(os.path.dirname(capsule.__file__), "repro.py")
    assert open(os.path.join(folder, "repro.py")).read() == open(shipped).read()  # the real file, as it is
    # the run's private dir becomes {run}: nothing of the original run dir is reused
    assert str(tmp_path / "run-1") not in repro and "{run}/events/events.jsonl" in repro
    run_sh = open(os.path.join(folder, "run.sh")).read()
    assert "/original/machine" not in run_sh and 'export HOME="$RUN"/home' in run_sh
    if shutil.which("sh"):
        assert subprocess.run(["sh", "-n", os.path.join(folder, "run.sh")], check=False).returncode == 0
    assert os.access(os.path.join(folder, "run.sh"), os.X_OK)


def test_repro_cannot_run_exits_2(tmp_path: Path) -> None:
    rec = _record(tmp_path, [], 2, command=["/nonexistent/bin/granian-xyz", "app:app"])
    folder = write_capsule(rec, str(tmp_path), project_root=PROJECT_ROOT)
    proc = subprocess.run(
        [sys.executable, os.path.join(folder, "repro.py")], capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 2 and b"cannot run" in proc.stderr


def test_capsule_refuses_passed_records(tmp_path: Path) -> None:
    rec = _record(tmp_path, [], 1, failure_class="passed", signature="")
    with pytest.raises(ValueError):
        write_capsule(rec, str(tmp_path), project_root=PROJECT_ROOT)


def test_requirements_fall_back_to_scenario(tmp_path: Path) -> None:
    sc = Scenario(server="uvicorn", requirements=("uvicorn==0.16.0",)).to_dict()
    rec = _record(tmp_path, [], 2, scenario=sc, installed={})
    folder = write_capsule(rec, str(tmp_path), project_root=PROJECT_ROOT)
    assert open(os.path.join(folder, "requirements.txt")).read() == "uvicorn==0.16.0\n"


@pytest.mark.parametrize("python", [sys.executable, *OLD_PYTHONS])
def test_repro_compiles(tmp_path: Path, python: str) -> None:
    folder = write_capsule(_record(tmp_path, [], 2), str(tmp_path), project_root=PROJECT_ROOT)
    if python == sys.executable:
        py_compile.compile(os.path.join(folder, "repro.py"), doraise=True)
    else:
        subprocess.run([python, "-m", "py_compile", os.path.join(folder, "repro.py")], check=True)


@pytest.mark.parametrize(
    "argv, target",
    [
        (["uvicorn", "app:app", "--host", "127.0.0.1", "--port", "8123"], ("tcp", "127.0.0.1", 8123)),
        (["uvicorn", "app:app", "--uds", "/tmp/x/s.sock"], ("uds", "/tmp/x/s.sock")),
        (["uvicorn", "app:app", "--fd", "3"], ("fd", 3)),
        (["gunicorn", "-b", "0.0.0.0:9000", "app:app"], ("tcp", "127.0.0.1", 9000)),
        (["hypercorn", "--bind", "unix:/run/h.sock", "app:app"], ("uds", "/run/h.sock")),
        (["hypercorn", "--bind=[::1]:8001", "app:app"], ("tcp", "::1", 8001)),
        (["hypercorn", "--bind", "fd://5", "app:app"], ("fd", 5)),
        (["granian", "--interface", "asgi", "--port=8002", "app:app"], ("tcp", "127.0.0.1", 8002)),
        (["uvicorn", "app:app", "--workers", "2"], ("tcp", "127.0.0.1", 8000)),
    ],
)
def test_target_of(argv: List[str], target: Tuple[Any, ...]) -> None:
    t = target_of(argv)
    assert tuple(t[k] for k in ("kind", "host", "port", "path", "fd") if k in t) == target


posix_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="the tiny pre-fork server needs fork()")


@posix_only
@pytest.mark.parametrize("python", [sys.executable, *OLD_PYTHONS[:1]])
def test_repro_reproduces_partial_workers_and_cleans_up(tmp_path: Path, python: str) -> None:
    # asked for 2 workers, the server runs 1: repro must say partial-workers 1/2
    folder = write_capsule(_record(tmp_path, ["--workers", "1"], 2), str(tmp_path), project_root=PROJECT_ROOT)
    code, out, server_pid = _run_repro(folder, python, deadline=3)
    assert "VERDICT: partial-workers: 1/2 worker pids answered" in out, out
    assert "REPRODUCED" in out
    assert code == 1
    assert _pids_in(out) == [server_pid]
    assert "port 0 is 0 (chosen by the server); using free port" in out
    # the run's private dirs are fresh ones; a missing dir outside the run is re-made too
    run_dir = re.search(r"fresh run dir \(.*\): (\S+)", out)
    assert run_dir, out
    home = re.search(r"serving home=(\S+) cache=(\S+)", out)
    assert home, out
    assert home.group(1) == os.path.join(run_dir.group(1), "home")
    assert "re-made" in out and home.group(2) != str(tmp_path / "gone" / "cache")
    assert _gone(server_pid)


@posix_only
def test_repro_passes_when_every_worker_answers_and_kills_the_tree(tmp_path: Path) -> None:
    rec = _record(tmp_path, ["--workers", "2"], 2)
    folder = write_capsule(rec, str(tmp_path), project_root=PROJECT_ROOT)
    code, out, server_pid = _run_repro(folder)
    assert "VERDICT: passed: all 2 worker pids answered" in out, out
    assert "DIFFERENT from the record" in out
    assert code == 0
    pids = _pids_in(out)
    assert len(pids) == 2 and server_pid in pids
    assert all(_gone(p) for p in pids), [p for p in pids if not _gone(p)]


@posix_only
def test_repro_reports_startup_failure_with_the_output(tmp_path: Path) -> None:
    rec = _record(tmp_path, ["--fail"], 2, failure_class="startup-failure", signature="OSError: [EINVAL] ...")
    folder = write_capsule(rec, str(tmp_path), project_root=PROJECT_ROOT)
    code, out, server_pid = _run_repro(folder)
    assert re.search(r"VERDICT: startup-failure: exited with code 1 before 2 worker pids answered", out), out
    assert "OSError: [Errno 22] Invalid argument" in out  # the server's own output, shown
    assert "REPRODUCED" in out and code == 1
    assert _gone(server_pid)


@posix_only
def test_repro_not_serving_when_nothing_listens(tmp_path: Path) -> None:
    # a "server" that stays alive but never listens: every probe is refused
    rec = _record(
        tmp_path,
        [],
        2,
        failure_class="not-serving",
        command=[sys.executable, "-c", "import time; time.sleep(60)", "--port", "0"],
    )
    folder = write_capsule(rec, str(tmp_path), project_root=PROJECT_ROOT)
    proc = subprocess.run(
        [sys.executable, os.path.join(folder, "repro.py"), "--deadline", "2", "--grace", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=60,
        check=False,
    )
    out = proc.stdout.decode()
    assert "VERDICT: not-serving: alive but no request was answered (ConnectionRefusedError)" in out, out
    assert proc.returncode == 1
    found = re.search(r"server pid (\d+)", out)
    assert found, out
    server_pid = int(found.group(1))
    assert _gone(server_pid)


@posix_only
@pytest.mark.parametrize("fd", ["3", "0"])
def test_repro_passes_an_inherited_socket_as_fd_n(tmp_path: Path, fd: str) -> None:
    rec = _record(tmp_path, [], 2)
    script = rec.command[1]
    rec = _record(tmp_path, [], 2, command=[sys.executable, script, "--fd", fd, "--workers", "2"])
    folder = write_capsule(rec, str(tmp_path), project_root=PROJECT_ROOT)
    code, out, _ = _run_repro(folder)
    assert "VERDICT: passed: all 2 worker pids answered" in out, out
    assert code == 0
    assert all(_gone(p) for p in _pids_in(out))
