"""run_load against a real multi-process server (tests/_mpserver.py), plus the pure statistics."""

import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.run.load import jain, percentiles, run_load
from harness.run.process import ServerProcess
from harness.run.readiness import NonLoopbackTarget, Target, wait_ready
from tests import _mpserver
from tests._mpserver import TIMEOUT


def _serve(tmp_path, *options: str):
    server = ServerProcess(
        _mpserver.argv("--info", str(tmp_path / "info.json"), *options),
        env=dict(os.environ),
        cwd=str(tmp_path),
        run_dir=str(tmp_path / "run"),
    ).start()
    info = _mpserver.read_info(str(tmp_path / "info.json"))
    return server, info


def _check_invariants(load, requests):
    non_2xx = sum(n for code, n in load["status"].items() if not code.startswith("2"))
    assert load["ok"] + non_2xx + sum(load["errors"].values()) == requests
    assert sum(load["per_worker"].values()) == load["ok"]
    assert json.loads(json.dumps(load)) == load  # plain JSON, string keys


def test_jain_and_percentiles():
    assert jain([5, 5, 5, 5]) == 1.0
    assert jain([10, 0, 0, 0]) == pytest.approx(0.25)
    assert jain([0, 0]) == 0.0 and jain([]) == 0.0
    p = percentiles(range(1, 101))
    got = tuple(p[k] for k in ("min", "p10", "p25", "p50", "p90", "p99", "max"))
    assert got == (1, 10, 25, 50, 90, 99, 100)
    assert set(percentiles([])) == {"min", "p10", "p25", "p50", "p90", "p99", "max"}
    assert set(percentiles([]).values()) == {0.0}


def test_load_stats_on_a_real_server(tmp_path):
    server, info = _serve(tmp_path, "--workers", "2")
    with server:
        target = Target("127.0.0.1", info["port"])
        ready = wait_ready(lambda: target, 2, time.monotonic() + TIMEOUT, alive=server.alive, worker_pids=set)
        assert ready.ready
        load = run_load(
            target,
            requests=120,
            concurrency=8,
            timeout_s=TIMEOUT,
            keepalive_requests=40,
            expected_pids=info["workers"],
        )
    _check_invariants(load, 120)
    assert load["ok"] == 120 and load["errors"] == {}
    assert set(load["per_worker"]) <= {str(p) for p in info["workers"]}
    assert 0 < load["jain"] <= 1 and 0.5 <= load["max_share"] <= 1
    assert 0 < load["latency_ms"]["p50"] <= load["latency_ms"]["p90"] <= load["latency_ms"]["max"]
    assert load["rate"] > 0 and load["duration_s"] > 0
    kept = load["keepalive"]
    _check_invariants(kept, 40)
    assert kept["ok"] == 40 and kept["connections"] == 4
    assert set(kept["by_worker"]) == set(kept["per_worker"])
    # the reference server writes each response at once: its body follows its head at once, well under
    # the 40 ms delayed-ACK timer (the stall's own evidence, harness.verdict.degraded)
    gap = kept["body_gap_ms"]
    assert 0 <= gap["min"] <= gap["p50"] <= gap["max"] and gap["p50"] < 36
    assert "body_gap_ms" not in load  # fresh connections are not timed that way


def test_missing_workers_count_zero_in_jain(tmp_path):
    server, info = _serve(tmp_path, "--workers", "1")
    with server:
        target = Target("127.0.0.1", info["port"])
        load = run_load(
            target,
            requests=20,
            concurrency=4,
            timeout_s=TIMEOUT,
            keepalive_requests=0,
            expected_pids=[*info["workers"], 999999],
        )
    assert load["ok"] == 20 and load["max_share"] == 1.0
    assert load["jain"] == pytest.approx(0.5)  # one of two expected workers took everything
    assert load["keepalive"]["requests"] == 0 and load["keepalive"]["ok"] == 0


@pytest.mark.skipif(sys.platform == "win32", reason="AF_UNIX")
def test_load_over_uds(tmp_path):
    path = str(tmp_path / "s.sock")
    server, _ = _serve(tmp_path, "--workers", "2", "--uds", path)
    with server:
        load = run_load(
            Target(uds=path), requests=20, concurrency=4, timeout_s=TIMEOUT, keepalive_requests=10
        )
    _check_invariants(load, 20)
    assert load["ok"] == 20


def test_refused_target_is_bounded_and_counted():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
    try:
        load = run_load(
            Target("127.0.0.1", sock.getsockname()[1]),
            requests=10,
            concurrency=2,
            timeout_s=TIMEOUT,
            keepalive_requests=5,
        )
    finally:
        sock.close()
    _check_invariants(load, 10)
    assert load["ok"] == 0 and load["errors"] == {"ConnectError": 10} and load["jain"] == 0.0


def test_hanging_server_hits_the_deadline():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # nobody accepts: requests hang until cut
    try:
        t0 = time.monotonic()
        load = run_load(
            Target("127.0.0.1", sock.getsockname()[1]),
            requests=50,
            concurrency=4,
            timeout_s=0.5,
            keepalive_requests=0,
        )
        elapsed = time.monotonic() - t0
    finally:
        sock.close()
    _check_invariants(load, 50)
    assert load["ok"] == 0
    assert load["errors"].get("RequestDeadline", 0) + load["errors"].get("ReadTimeout", 0) >= 4
    assert load["errors"].get("NotSent", 0) > 0
    assert elapsed < TIMEOUT


def test_non_loopback_is_refused():
    with pytest.raises(NonLoopbackTarget):
        run_load(Target("192.0.2.1", 80), requests=1, concurrency=1, timeout_s=1, keepalive_requests=0)


class _Interrupted(BaseException):
    """What a signal handler raises: like KeyboardInterrupt or pytest-timeout's Failed, not an Exception."""


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
@pytest.mark.parametrize("keepalive", [False, True])
def test_an_interruption_ends_the_load_wherever_it_lands(keepalive):
    # A signal handler raises wherever the main thread is. Against a fast server the event loop runs
    # Python code most of the time, so the exception lands in transport callbacks, worker tasks and
    # anyio's bookkeeping; before harness.run.load deferred it, 30 of 30 were lost (the load ran on to its
    # deadline) and 1 in about 300 left a task that never woke. Here the server itself signals us after
    # its k-th request, k varying, so the interruption comes mid-load at many different points.
    served = {"n": 0, "trigger": 0, "at_signal": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            with lock:
                served["n"] += 1
                fire = served["n"] == served["trigger"]
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            if fire:
                served["at_signal"] = served["n"]
                os.kill(os.getpid(), signal.SIGUSR1)

        def log_message(self, *args):
            pass

        def handle(self):
            try:
                super().handle()
            except OSError:  # the interrupted client cut the connection
                pass

    def interrupt(signum, frame):
        raise _Interrupted()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    previous = signal.signal(signal.SIGUSR1, interrupt)
    lost = []
    try:
        for trial in range(40):
            with lock:
                served["n"] = 0
                served["trigger"] = 2 + 3 * trial
            requests = 4000
            try:
                run_load(
                    Target("127.0.0.1", server.server_address[1]),
                    requests=0 if keepalive else requests,
                    concurrency=4,
                    timeout_s=TIMEOUT,
                    keepalive_requests=requests if keepalive else 0,
                )
            except _Interrupted:
                # it ended the load at once: a few requests in flight may still finish, not thousands
                with lock:
                    assert served["n"] - served["at_signal"] < 200, (trial, served)
                assert signal.getsignal(signal.SIGUSR1) is interrupt  # its own handler is back
            else:
                lost.append((trial, served["trigger"]))
    finally:
        signal.signal(signal.SIGUSR1, previous)
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)
    assert not lost, f"the interruption was lost (the load ran to its end) in trials {lost}"
