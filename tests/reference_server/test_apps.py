"""The test apps (servers.apps, servers.apps_broken): old interpreters, and answers over real sockets."""

import asyncio
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, List

import pytest

from servers import apps
from servers._lifespan import Lifespan
from tests import _paths
from tests.reference_server.test_http import (
    TIMEOUT,
    ServerThread,
    connect,
    exchange,
    parse_all,
    read_response,
    serve,
)

__all__ = ["serve"]  # the fixture, re-used from test_http

ROOT = Path(_paths.ROOT)
PYENV = Path("/root/.pyenv/versions")

# Runs under the old interpreter with nothing but the stdlib: drives each app once in memory and
# prints what it sent, so "imports on 3.7" also means "works on 3.7".
_DRIVER = r"""
import asyncio, json, sys
import servers.apps as apps

async def drive(app, path="/", body=b"", query=b""):
    scope = {"type": "http", "method": "GET", "path": path, "query_string": query, "headers": []}
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []
    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}
    async def send(message):
        sent.append(message)
    await app(scope, receive, send)
    status = sent[0]["status"]
    headers = {bytes(k).decode(): bytes(v).decode() for k, v in sent[0]["headers"]}
    return [status, headers.get("x-worker-pid"), b"".join(m.get("body", b"") for m in sent[1:]).decode()]

async def main():
    out = {
        "pid": await drive(apps.pid),
        "seed": await drive(apps.seed),
        "echo": await drive(apps.echo, body=b"hi"),
        "slow": await drive(apps.slow, query=b"delay=0"),
        "crash": await drive(apps.crash, path="/fine"),
        "failing_lifespan": await drive(apps.failing_lifespan),
    }
    print(json.dumps({"pid": __import__("os").getpid(), "version": list(sys.version_info[:2]), "out": out}))

asyncio.get_event_loop().run_until_complete(main())
"""


def _interpreters() -> List[Path]:
    found = sorted(PYENV.glob("3.*/bin/python")) if PYENV.is_dir() else []
    return [p for p in found if p.parent.parent.name.split(".")[1] in ("7", "8")] or [Path(sys.executable)]


def _run(python: Path, *args: str) -> "subprocess.CompletedProcess[str]":
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [str(python), *args], cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("python", _interpreters(), ids=lambda p: p.parent.parent.name)
def test_apps_import_and_run_on_old_pythons(python: Path) -> None:
    result = _run(python, "-c", _DRIVER)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    pid = str(report["pid"])
    out = report["out"]
    assert out["pid"] == [200, pid, pid]
    assert out["seed"] == [200, pid, "Uvicorn is the best!"]
    assert out["echo"] == [200, pid, "hi"]
    assert out["slow"] == [200, pid, pid]
    assert out["crash"] == [200, pid, pid]
    assert out["failing_lifespan"] == [200, pid, pid]


@pytest.mark.parametrize("python", _interpreters(), ids=lambda p: p.parent.parent.name)
def test_apps_broken_fails_at_import_with_a_clear_message(python: Path) -> None:
    result = _run(python, "-c", "import servers.apps_broken")
    assert result.returncode == 1
    assert "RuntimeError: servers.apps_broken fails at import on purpose" in result.stderr


def test_old_interpreters_are_really_tested() -> None:
    # On this machine the 3.7 and 3.8 interpreters exist: the tests above must not fall back silently.
    if PYENV.is_dir():
        names = {p.parent.parent.name.rsplit(".", 1)[0] for p in _interpreters()}
        assert {"3.7", "3.8"} <= names, names


def _served(server: ServerThread, path: str) -> Any:
    (response,) = parse_all(exchange(server.port, f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()))
    return response


def test_pid_reports_the_serving_process_and_lifespan(serve: Any) -> None:
    lifespan = Lifespan(apps.pid, "on")
    asyncio.run(lifespan.startup())
    server = serve(apps.pid, state=lifespan.state)
    response = _served(server, "/")
    assert response.status == 200
    assert response.body == str(os.getpid()).encode()
    assert response.header(b"x-worker-pid") == response.body
    assert response.header(b"content-type") == b"text/plain"
    assert response.header(b"x-lifespan") == b"started"
    plain = serve(apps.pid)  # no lifespan state: no claim that startup ran
    assert _served(plain, "/").header(b"x-lifespan") is None


def test_seed_is_the_uvicorn_514_app(serve: Any) -> None:
    server = serve(apps.seed)
    response = _served(server, "/")
    assert response.status == 200
    assert response.body == b"Uvicorn is the best!"
    assert response.header(b"content-type") == b"text/plain"
    assert response.header(b"x-worker-pid") == str(os.getpid()).encode()


def test_failing_lifespan_still_answers_http(serve: Any) -> None:
    server = serve(apps.failing_lifespan)
    response = _served(server, "/")
    assert response.status == 200 and response.header(b"x-worker-pid") == str(os.getpid()).encode()


def test_slow_waits_and_validates(serve: Any) -> None:
    server = serve(apps.slow)
    ok = _served(server, "/?delay=0.01")
    assert ok.status == 200 and ok.body == str(os.getpid()).encode()
    for bad in ("abc", "nan", "inf"):
        response = _served(server, "/?delay=" + bad)
        assert response.status == 400, bad
        assert response.header(b"x-worker-pid") is not None


@pytest.mark.parametrize(
    ("query", "delay"),
    [
        (b"", apps.SLOW_DEFAULT_DELAY),
        (b"delay=2.5", 2.5),
        (b"delay=-3", 0.0),
        (b"delay=1e9", 30.0),
        (b"x=1", 1.0),
    ],
)
def test_slow_delay_parsing(query: bytes, delay: float) -> None:
    parsed = apps._parse_delay(query)
    assert parsed is not None and math.isclose(parsed, delay)


def test_echo_returns_the_body(serve: Any) -> None:
    server = serve(apps.echo)
    body = b"0123456789" * 1000
    with connect(server.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        response = read_response(sock)
    assert response.body == body
    assert response.header(b"x-worker-pid") == str(os.getpid()).encode()


def test_crash_ends_the_process_with_its_exit_code(tmp_path: Path) -> None:
    """GET /crash really ends the serving process with CRASH_EXIT_CODE (and other paths answer)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    script = (
        "import asyncio, socket, sys\n"
        "from servers import apps\n"
        "from servers._http import HttpService\n"
        "async def main():\n"
        "    sock = socket.socket(fileno=int(sys.argv[1]))\n"
        "    server = await asyncio.get_running_loop().create_server(\n"
        "        HttpService(apps.crash).protocol_factory, sock=sock)\n"
        "    await asyncio.sleep(60)\n"  # a bound on the child's life, not synchronisation
        "asyncio.run(main())\n"
    )
    stderr_path = tmp_path / "stderr"
    with open(stderr_path, "w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", script, str(listener.fileno())],
            cwd=str(ROOT),
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            pass_fds=[listener.fileno()],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        listener.close()  # the child holds it now; queued connections wait for its accept()
        (first,) = parse_all(exchange(port, b"GET /fine HTTP/1.1\r\nHost: t\r\n\r\n"))
        assert first.status == 200
        assert first.body == str(child.pid).encode()
        with connect(port) as sock:
            sock.sendall(b"GET /crash HTTP/1.1\r\nHost: t\r\n\r\n")
            sock.settimeout(TIMEOUT)
            try:
                assert sock.recv(100) == b""
            except ConnectionResetError:
                pass
        assert child.wait(TIMEOUT) == apps.CRASH_EXIT_CODE, stderr_path.read_text()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(TIMEOUT)
