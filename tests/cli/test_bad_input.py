"""Bad input, kind by kind: each ends as ONE line that says what was wrong (no traceback), or as a recorded
result whose reason says it - and bad bytes on the wire never crash a reference-server worker.

* the harness CLI (`python -m harness.cli`): usage errors are exactly one stderr line `harness: error: ...`
  and exit 2, before anything runs
* the API (run_scenario): what cannot run here becomes a record (unsupported / env-error / harness-error)
  with a one-line signature and reason
* the reference server's CLI (`python -m servers`): one line `servers: error: ...` / `servers: unsupported:`
* the reference server's HTTP core: malformed request lines, bad chunked bodies, oversized headers, a
  slowloris client, and a hypothesis fuzz run (small by default; 10,000 requests under `-m slow`)
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set, Tuple

import hypothesis
import pytest
from hypothesis import strategies as st

from harness.model.records import ResultRecord, Scenario
from harness.run.runner import run_scenario
from tests import _paths
from tests._refserver import RefServer, burst_until

pytestmark = pytest.mark.timeout(300)

ROOT = Path(_paths.ROOT)


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _one_line(text: str, prefix: str) -> str:
    """The exact shape: one non-empty line, with the prefix, no traceback."""
    lines = text.splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{text}"
    assert lines[0].startswith(prefix), lines[0]
    assert "Traceback" not in text and 'File "' not in text
    return lines[0]


def _harness(*args: str, cwd: str = "") -> Tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=cwd or str(ROOT),
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


# --- the harness CLI: usage errors ---------------------------------------------------------------------


def _matrix_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


USAGE_CASES = {
    "unknown-server": (["run", "--server", "nginx"], "unknown server 'nginx'"),
    "unknown-strategy": (["run", "--strategy", "teleport"], "unknown strategy 'teleport'"),
    "unknown-start-method": (["run", "--start-method", "vfork"], "unknown start method 'vfork'"),
    "workers-zero": (["run", "--workers", "0"], "must be >= 1, got 0"),
    "workers-negative": (["run", "--workers", "-3"], "must be >= 1, got -3"),
    "unknown-fault": (["run", "--fault", "unplug-the-cable"], "unplug-the-cable"),
    "bad-bind": (["run", "--bind", "fd:2"], "bad bind 'fd:2'"),
    "app-without-attr": (["run", "--app", "servers.apps"], "MODULE:ATTR"),
    "bad-option": (["run", "--option", "=x"], "KEY=VALUE"),
    "concurrency-zero": (["run", "--concurrency", "0"], "concurrency"),
    "matrix-file-missing": (["matrix", "--config", "{tmp}/nope.toml"], "not found"),
    "matrix-toml-malformed": (["matrix", "--config", "{m1}"], "m1.toml"),
    "matrix-unknown-field": (["matrix", "--config", "{m2}"], "unknown field(s) workerz"),
    "matrix-wrong-type": (["matrix", "--config", "{m3}"], "workers"),
    "matrix-workers-negative": (["matrix", "--config", "{m4}"], "workers"),
    "results-under-a-file": (["run", "--results", "{tmp}/afile/r.jsonl"], "--results"),
    "results-is-a-directory": (["run", "--results", "{tmp}"], "is a directory"),
    "catalog-entry-malformed": (["catalog", "--dir", "{cat}"], "bad.toml"),
}


@pytest.mark.parametrize("case", sorted(USAGE_CASES))
def test_harness_cli_usage_error_is_one_line(tmp_path: Path, case: str) -> None:
    args, needle = USAGE_CASES[case]
    (tmp_path / "afile").write_text("a regular file, not a directory\n")
    cat = tmp_path / "catalog"
    cat.mkdir()
    (cat / "bad.toml").write_text('id = "bad"\ntitle = 3\n[scenario]\nserver = "reference"\n')
    paths = {
        "tmp": str(tmp_path),
        "cat": str(cat),
        "m1": _matrix_file(tmp_path, "m1.toml", '[[scenario]\nserver = "reference"\n'),
        "m2": _matrix_file(tmp_path, "m2.json", '{"scenario": [{"server": "reference", "workerz": 2}]}'),
        "m3": _matrix_file(tmp_path, "m3.json", '{"scenario": [{"server": "reference", "workers": "many"}]}'),
        "m4": _matrix_file(tmp_path, "m4.json", '{"scenario": [{"server": "reference", "workers": -1}]}'),
    }
    argv = [a.format(**paths) for a in args]
    if argv[0] == "run":
        argv += ["--requests", "1", "--keepalive-requests", "0", "--work-dir", str(tmp_path / "w")]
    elif argv[0] == "matrix":
        argv += ["--results", str(tmp_path / "m.jsonl")]
    code, out, err = _harness(*argv, cwd=str(tmp_path))
    line = _one_line(err, "harness: error: " if argv[0] != "catalog" else "harness")
    assert needle in line, line
    assert code == 2, (code, out, err)
    assert not (tmp_path / "m.jsonl").exists() and not (tmp_path / "w").exists()  # nothing ran


# --- the API: recorded results ---------------------------------------------------------------------------


def _record(tmp_path: Path, **fields: Any) -> ResultRecord:
    sc = Scenario(requests=5, keepalive_requests=0, **fields)
    return run_scenario(sc, work_dir=str(tmp_path), base_timeout=20)


def _check_record(record: ResultRecord, cls: str, needle: str) -> None:
    assert record.failure_class == cls, (record.failure_class, record.reason)
    for text in (record.signature, record.reason):
        assert "\n" not in text and "Traceback" not in text, text
    assert needle in record.signature or needle in record.reason, (record.signature, record.reason)


@pytest.mark.skipif(sys.platform == "win32", reason="share exists on Windows")
def test_strategy_unavailable_on_this_os_is_recorded_unsupported(tmp_path: Path) -> None:
    _check_record(_record(tmp_path, strategy="share"), "unsupported", "Windows-only")


def test_nonsense_strategy_start_method_pair_is_recorded_unsupported(tmp_path: Path) -> None:
    _check_record(_record(tmp_path, strategy="pickle", start_method="exec"), "unsupported", "exec")


def test_missing_interpreter_is_an_env_error(tmp_path: Path) -> None:
    _check_record(_record(tmp_path, python=str(tmp_path / "no-python")), "env-error", "no such file")


def test_interpreter_too_old_is_an_env_error(tmp_path: Path) -> None:
    from harness.env import pythons  # noqa: PLC0415

    old = [i for i in pythons.discover() if i.version_tuple[:2] < (3, 6)]
    if not old:
        pytest.skip("no Python older than 3.6 on this machine")
    _check_record(_record(tmp_path, python=old[0].path), "env-error", "too old")


def test_reference_server_on_a_python_it_does_not_support_is_unsupported(tmp_path: Path) -> None:
    from harness.env import pythons  # noqa: PLC0415

    old = [i for i in pythons.discover() if (3, 6) <= i.version_tuple[:2] < (3, 8)]
    if not old:
        pytest.skip("no Python 3.6/3.7 on this machine")
    _check_record(_record(tmp_path, python=old[0].path), "unsupported", "needs Python >= 3.8")


@pytest.mark.parametrize(
    ("requirement", "needle"),
    [
        ("asgi-workers-harness-no-such-package-q7==1.0", "no-such-package"),  # does not exist
        ("uvicorn==0.0.0.1", "uvicorn"),  # exists, that version does not: does not install
        ("uvicorn[standard]>>>1", "uvicorn"),  # not a requirement at all
    ],
)
def test_requirement_that_does_not_install_is_an_env_error(
    tmp_path: Path, requirement: str, needle: str
) -> None:
    record = _record(tmp_path, server="uvicorn", requirements=(requirement,))
    if record.failure_class == "env-error" and "network" in record.reason.lower():
        pytest.skip("no package index reachable")
    _check_record(record, "env-error", needle)


@pytest.mark.parametrize(
    ("fields", "cls", "needle"),
    [
        ({"server": "nginx"}, "harness-error", "unknown server 'nginx'"),
        ({"strategy": "teleport"}, "unsupported", "no strategy 'teleport'"),
        ({"start_method": "vfork"}, "unsupported", "no start method 'vfork'"),
    ],
    ids=["server", "strategy", "start-method"],
)
def test_unknown_names_via_the_api_are_recorded_in_one_line(
    tmp_path: Path, fields: Dict[str, str], cls: str, needle: str
) -> None:
    _check_record(_record(tmp_path, **fields), cls, needle)


def test_unknown_fault_via_the_api_is_a_one_line_harness_error(tmp_path: Path) -> None:
    _check_record(_record(tmp_path, fault="unplug-the-cable"), "harness-error", "unknown fault")


def test_workers_zero_via_the_api_is_a_one_line_harness_error(tmp_path: Path) -> None:
    _check_record(_record(tmp_path, workers=0), "harness-error", "workers must be >= 1")


# --- the reference server's CLI --------------------------------------------------------------------------

SERVER_CASES = {
    "port-out-of-range": (["--port", "70000"], 2, "--port must be 0-65535"),
    "port-negative": (["--port", "-1"], 2, "--port must be 0-65535"),
    "workers-zero": (["--workers", "0"], 2, "--workers must be at least 1"),
    "unknown-strategy": (["--strategy", "teleport"], 2, "teleport"),
    "unknown-start-method": (["--start-method", "vfork"], 2, "vfork"),
    "nonsense-pair": (["--strategy", "pickle", "--start-method", "exec"], 2, "exec"),
    "negative-timeout": (["--timeout", "-1"], 2, "--timeout"),
    "nan-timeout": (["--timeout", "nan"], 2, "--timeout"),
    "unavailable-here": (["--strategy", "share"], 5, "Windows"),
}


@pytest.mark.parametrize("case", sorted(SERVER_CASES))
def test_reference_server_cli_error_is_one_line(case: str) -> None:
    args, code, needle = SERVER_CASES[case]
    if case == "unavailable-here" and sys.platform == "win32":
        pytest.skip("share is available on Windows")
    proc = subprocess.run(
        [sys.executable, "-m", "servers", "servers.apps:pid", *args],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    line = _one_line(proc.stderr, "servers: ")
    assert needle in line and proc.returncode == code, (proc.returncode, line)
    assert proc.stdout == ""  # nothing started: not even a `starting` event


# --- the reference server's HTTP core ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[Tuple[RefServer, Tuple[str, int], List[int]]]:
    with RefServer(["servers.apps:echo", "--workers", "2"]) as srv:
        bound = srv.wait_for("bound")
        ready = srv.wait_for("ready")
        yield srv, ("127.0.0.1", int(bound["port"])), list(ready["pids"])


def _exchange(addr: Tuple[str, int], data: bytes, timeout: float = 10.0, half_close: bool = True) -> bytes:
    """Send `data` on a fresh connection, (half-)close, read until the server closes or the deadline."""
    with socket.create_connection(addr, timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def _status(raw: bytes) -> int:
    assert raw.startswith(b"HTTP/1.1 "), raw[:200]
    return int(raw.split(b" ", 2)[1])


def _still_healthy(srv: RefServer, addr: Tuple[str, int], pids: List[int]) -> None:
    srv.pump(0)
    assert not srv.named("worker-exit"), srv.named("worker-exit")
    seen = burst_until(addr, pids, timeout=30)
    assert set(pids) <= set(seen), (pids, seen)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),  # no method / target / version
        (b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),  # trailing junk on the request line
        (b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # NUL in the target
        (b"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400),  # header without a colon
        (b"G\xffT / HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # non-token method
    ],
    ids=["garbage", "junk", "nul", "no-colon", "bad-method"],
)
def test_malformed_request_line_gets_a_4xx_and_the_worker_lives(
    server: Any, request_bytes: bytes, status: int
) -> None:
    srv, addr, pids = server
    raw = _exchange(addr, request_bytes)
    got = _status(raw)
    assert got == status, raw[:200]
    _still_healthy(srv, addr, pids)


@pytest.mark.parametrize(
    "body",
    [b"zz\r\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n", b"-1\r\n\r\n", b"5\r\nhel"],
    ids=["non-hex-size", "missing-crlf", "negative-size", "truncated"],
)
def test_bad_chunked_encoding_is_refused(server: Any, body: bytes) -> None:
    srv, addr, pids = server
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    raw = _exchange(addr, head + body)
    # a 4xx, or (truncated: the body simply ends) the connection closes without an answer
    assert raw == b"" or 400 <= _status(raw) < 500, raw[:200]
    _still_healthy(srv, addr, pids)


def test_oversized_headers_get_431(server: Any) -> None:
    srv, addr, pids = server
    raw = _exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
    assert _status(raw) == 431, raw[:200]
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(3000))
    raw = _exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert _status(raw) == 431, raw[:200]
    _still_healthy(srv, addr, pids)


def test_slowloris_is_dropped_after_the_header_timeout_while_others_are_served(server: Any) -> None:
    srv, addr, pids = server
    slow = [socket.create_connection(addr, timeout=30) for _ in range(8)]  # more than the workers
    try:
        for s in slow:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        dropped: Set[int] = set()
        deadline = t0 + 30  # the header timeout is 5 s (Limits.keepalive_timeout); generous bound
        served_meanwhile = 0
        while len(dropped) < len(slow) and time.monotonic() < deadline:
            # others are served while the slow ones hold their connections
            status, _pid, _body = _request_ok(addr)
            served_meanwhile += status == 200
            for i, s in enumerate(slow):
                if i in dropped:
                    continue
                try:
                    s.sendall(b"X-Trickle: 1\r\n")  # keep trickling: must not extend the deadline
                    s.settimeout(0.05)
                    if s.recv(1) == b"":
                        dropped.add(i)
                except (socket.timeout, BlockingIOError):
                    continue
                except OSError:
                    dropped.add(i)
        assert len(dropped) == len(slow), f"{len(slow) - len(dropped)} slow clients still connected"
        assert served_meanwhile > 0
    finally:
        for s in slow:
            s.close()
    _still_healthy(srv, addr, pids)


def _request_ok(addr: Tuple[str, int]) -> Tuple[int, int, bytes]:
    from tests._refserver import request  # noqa: PLC0415

    return request(addr, "/", timeout=10.0)


# --- fuzz ----------------------------------------------------------------------------------------------


def _fuzz(server: Any, examples: int) -> int:
    srv, addr, pids = server
    token = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=0, max_size=12)
    raw_bytes = st.binary(max_size=64)
    header = st.tuples(
        st.one_of(token, raw_bytes.map(lambda b: b.decode("latin-1"))),
        st.one_of(token, raw_bytes.map(lambda b: b.decode("latin-1"))),
    )
    methods = st.one_of(st.sampled_from(["GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE"]), token)
    versions = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1", "", "http/1.1"])
    special = st.sampled_from(
        [
            ("Content-Length", "5"),
            ("Content-Length", "-1"),
            ("Content-Length", "99999999999999999999"),
            ("Transfer-Encoding", "chunked"),
            ("Transfer-Encoding", "gzip, chunked"),
            ("Expect", "100-continue"),
            ("Connection", "close"),
            ("Host", ""),
        ]
    )
    sent = [0]

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(
        st.tuples(
            methods,
            st.one_of(st.just("/"), token, raw_bytes.map(lambda b: "/" + b.decode("latin-1"))),
            versions,
            st.lists(st.one_of(header, special), max_size=8),
            raw_bytes,
            st.booleans(),
        )
    )
    def one(case: Tuple[str, str, str, List[Tuple[str, str]], bytes, bool]) -> None:
        method, target, version, headers, body, terminate = case
        lines = [f"{method} {target} {version}".encode("latin-1")]
        lines += [f"{k}: {v}".encode("latin-1") for k, v in headers]
        data = b"\r\n".join(lines) + (b"\r\n\r\n" if terminate else b"\r\n") + body
        raw = _exchange(addr, data, timeout=10.0)
        sent[0] += 1
        if raw:
            assert raw.startswith(b"HTTP/1.1 ") and b"\r\n\r\n" in raw, raw[:200]

    one()
    _still_healthy(srv, addr, pids)
    return sent[0]


def test_fuzz_small(server: Any) -> None:
    assert _fuzz(server, 200) >= 200


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_fuzz_10000(server: Any, request: Any) -> None:
    markexpr = str(request.config.option.markexpr or "")
    if "slow" not in markexpr or "not slow" in markexpr:
        pytest.skip("10,000 requests: run with -m slow")
    count = _fuzz(server, 10000)
    print(f"fuzz: {count} generated requests, no worker exit")
    assert count >= 10000


# --- security --------------------------------------------------------------------------------------------


def test_no_shell_with_strings_anywhere() -> None:
    """No subprocess with shell=True, os.system or os.popen: user-supplied strings (requirements, apps,
    paths) only ever reach an argv list."""
    import re  # noqa: PLC0415

    pattern = re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\(")
    offenders = []
    for top in ("harness", "servers", "reports", "bench", "scenarios", "tests"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if path.name == "test_bad_input.py":
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_reference_server_binds_loopback_by_default() -> None:
    from servers._cli import parse  # noqa: PLC0415

    assert parse(["servers.apps:pid"]).bind.host == "127.0.0.1"
