"""harness.verdict.classify: one test per RULES row (enforced), precedence, signatures and reasons."""

import dataclasses
import os
from typing import Any, Dict, List, Optional

import pytest

from harness.model.observation import Observation
from harness.model.records import FAILURE_CLASSES
from harness.verdict.classify import RULES, Verdict, classify, exit_text, wrong_listeners
from tests import _paths

FIXTURES = os.path.join(_paths.FIXTURES, "outputs")

TCP = {"kind": "tcp", "host": "127.0.0.1", "port": 0}
UDS = {"kind": "uds", "path": "/tmp/h-1/s.sock"}
GOOD_TCP = ({"pid": 10, "family": "AF_INET", "address": "127.0.0.1", "port": 40001, "path": ""},)


def _ok(**kw: Any) -> Observation:
    """A passing observation of a 2-worker TCP run, with `kw` changed."""
    base: Dict[str, Any] = dict(
        platform="linux",
        expected_workers=2,
        ready=True,
        answered_pids=(101, 102),
        any_response=True,
        asked=TCP,
        listeners=GOOD_TCP,
        load_requests=200,
    )
    base.update(kw)
    return Observation(**base)


def _fixture(name: str) -> str:
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as fh:
        return fh.read()


# rule name -> (observation, expected class); every row of RULES must appear here
CASES = {
    "unsupported": (_ok(unsupported="share: socket.share() is Windows-only"), "unsupported"),
    "env-error": (_ok(env_error="ERROR: No matching distribution found for uvicorn==0.10.8"), "env-error"),
    "harness-error": (_ok(harness_error="Traceback ...\nKeyError: 'port'"), "harness-error"),
    "wrong-listener": (
        _ok(
            asked=UDS,
            listeners=({"pid": 10, "family": "AF_INET", "address": "127.0.0.1", "port": 8000, "path": ""},),
        ),
        "wrong-listener",
    ),
    "crash-loop-exit": (
        _ok(
            ready=False,
            answered_pids=(),
            any_response=False,
            exited_before_ready=True,
            exit_code=7,
            worker_restarts=2,
            events=({"event": "stopping", "reason": "crash-loop"},),
        ),
        "respawn-loop",
    ),
    "respawn-before-ready": (
        _ok(ready=False, answered_pids=(), any_response=False, alive_at_deadline=True, worker_restarts=5),
        "respawn-loop",
    ),
    "master-exited-after-worker-fault": (
        _ok(
            ready=False,
            answered_pids=(102,),
            exited_before_ready=True,
            exit_code=0,
            fault="kill-worker",
            fault_outcome={"handled": False, "server_exited": True, "exit_code": 0},
        ),
        "startup-failure",
    ),
    "exited-before-ready": (
        _ok(ready=False, answered_pids=(), any_response=False, exited_before_ready=True, exit_code=3),
        "startup-failure",
    ),
    "all-workers-died": (
        _ok(ready=False, answered_pids=(), any_response=False, alive_at_deadline=True, worker_exits=2),
        "startup-failure",
    ),
    "no-response": (
        _ok(
            ready=False,
            answered_pids=(),
            any_response=False,
            alive_at_deadline=True,
            connect_errors=("ConnectError",),
        ),
        "not-serving",
    ),
    "fewer-pids": (_ok(ready=False, answered_pids=(101,), alive_at_deadline=True), "partial-workers"),
    "fault-hung-worker-kept": (
        _ok(fault="stop-worker", fault_outcome={"handled": False, "server_exited": False}),
        "partial-workers",
    ),
    "respawn-while-serving": (_ok(worker_restarts=4, worker_exits=4), "respawn-loop"),
    "load-errors": (_ok(load_errors=3), "request-errors"),
    "stop-escalated": (_ok(stop_escalated=True, stop_exit_code=-9), "shutdown-hang"),
    "launch-entry-point": (
        _ok(
            ready=False,
            any_response=False,
            answered_pids=(),
            exited_before_ready=True,
            exit_code=1,
            stderr="/venv/bin/python: No module named gunicorn.__main__; 'gunicorn' is a package and "
            "cannot be directly executed",
        ),
        "harness-error",
    ),
    "launch-flag": (
        _ok(
            ready=False,
            any_response=False,
            answered_pids=(),
            exited_before_ready=True,
            exit_code=2,
            stderr="Usage: python -m uvicorn [OPTIONS] APP\nTry 'python -m uvicorn --help' for help.\n\n"
            "Error: No such option: --uds",
        ),
        "unsupported",
    ),
    "fault-orphans": (
        _ok(fault="kill-master", fault_outcome={"handled": False, "workers_left": [101]}),
        "leak",
    ),
    "fault-contract": (
        _ok(
            fault="signal-master:USR1",
            fault_outcome={"handled": False, "violation": "USR1: 2 of 2 workers replaced; expected kept"},
        ),
        "contract-violation",
    ),
    "fault-excess-workers": (
        _ok(fault="kill-workers:all", fault_outcome={"workers_after": 3, "expected_after": 2}),
        "excess-workers",
    ),
    "fault-workers-lost": (
        _ok(fault="kill-workers:all", fault_outcome={"workers_after": 1, "expected_after": 2}),
        "partial-workers",
    ),
    "fault-resource-growth": (
        _ok(
            fault="signal-master:HUP",
            fault_outcome={
                "handled": False,
                "sent": 20,
                "contract": {"signal": "HUP"},
                "resources": {"growth": {"fds": [12, 64]}},
            },
        ),
        "leak",
    ),
    "leaked": (_ok(leaks={"processes": [{"pid": 102}], "listeners": [], "uds": []}), "leak"),
    "keepalive-stall": (
        _ok(keepalive_ok=50, keepalive_latency={"p10": 42.1, "p25": 43.6, "p50": 44.0, "p90": 44.7}),
        "degraded",
    ),
    "passed": (_ok(), "passed"),
}


def test_every_rule_has_a_test_case() -> None:
    names = [r.name for r in RULES]
    assert len(names) == len(set(names)), "rule names must be unique"
    assert set(names) == set(CASES), f"rules without a case: {set(names) - set(CASES)}"


def test_table_shape() -> None:
    assert all(r.failure_class in FAILURE_CLASSES for r in RULES)
    assert all(r.why and r.name == r.name.lower() for r in RULES)
    assert RULES[-1].name == "passed" and RULES[-1].predicate(Observation())
    # every class is some row's verdict: degraded too (a run's own keep-alive stall decides it)
    assert {r.failure_class for r in RULES} == set(FAILURE_CLASSES)


@pytest.mark.parametrize("rule_name", [r.name for r in RULES])
def test_rule(rule_name: str) -> None:
    obs, expected = CASES[rule_name]
    v = classify(obs)
    assert isinstance(v, Verdict)
    assert (v.rule, v.failure_class) == (rule_name, expected)
    if expected == "passed":
        assert v.signature == ""
    else:
        assert v.signature, "a non-passing verdict always has a signature"
    assert v.reason.endswith(".") and "\n" not in v.reason


@pytest.mark.parametrize("rule_name", [r.name for r in RULES if r.name != "passed"])
def test_rule_predicate_is_false_on_a_passing_run(rule_name: str) -> None:
    pred = next(r for r in RULES if r.name == rule_name).predicate
    assert not pred(_ok())


# --- precedence ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule_name", "signature"),
    [
        ("fault-contract", "USR1: 2 of 2 workers replaced; expected kept"),
        ("fault-excess-workers", "excess-workers: 3/2 workers after kill-workers:all"),
        ("fault-workers-lost", "partial-workers: 1/2 workers after kill-workers:all"),
        ("fault-resource-growth", "leak: master fds grew after 20 x HUP"),
    ],
)
def test_fault_signatures_are_exact_and_free_of_run_figures(rule_name: str, signature: str) -> None:
    v = classify(CASES[rule_name][0])
    assert v.signature == signature
    if rule_name == "fault-resource-growth":
        assert "fds 12 -> 64" in v.reason  # the figures live in the reason, not in the signature


@pytest.mark.parametrize("code", [0, 241, -15])
def test_a_master_that_exits_after_a_worker_fault_has_one_signature_whatever_its_exit_code(code: int) -> None:
    """hypercorn 0.18.0 -w 2 kill-worker exits 0 or 241 by a race inside it: one bug, one signature; the
    code is in the reason. Without a worker fault the exit code stays the signature."""
    obs = _ok(
        ready=False,
        answered_pids=(102,),
        exited_before_ready=True,
        exit_code=code,
        fault="kill-worker",
        fault_outcome={"handled": False, "server_exited": True, "exit_code": code},
    )
    v = classify(obs)
    assert (v.failure_class, v.rule) == ("startup-failure", "master-exited-after-worker-fault")
    assert v.signature == "startup-failure: the master exited after kill-worker"
    assert exit_text(code, False) in v.reason
    logged = classify(
        dataclasses.replace(obs, stderr="Traceback (most recent call last):\nRuntimeError: boom\n")
    )
    assert logged.signature == "RuntimeError: boom"  # the server's own words first, as for every class
    unfaulted = dataclasses.replace(obs, fault="", fault_outcome={})
    assert classify(unfaulted).rule == "exited-before-ready"
    assert classify(unfaulted).signature == exit_text(code, False)


def test_a_contract_violation_outranks_what_the_fault_left_behind() -> None:
    # after HUP killed every worker without replacing them nothing answers: the signal is the cause
    obs = _ok(
        ready=False,
        answered_pids=(),
        any_response=False,
        alive_at_deadline=True,
        fault="signal-master:HUP",
        fault_outcome={"handled": False, "violation": "HUP: 0 workers after 1 x HUP; expected 2"},
    )
    assert (classify(obs).failure_class, classify(obs).rule) == ("contract-violation", "fault-contract")


def test_reload_replacements_are_not_a_respawn_loop() -> None:
    # 10 x HUP at 2 workers: 20 new pids, each caused by the signal
    new = list(range(200, 220))
    obs = _ok(worker_restarts=20, fault="signal-master:HUP", fault_outcome={"handled": True, "new_pids": new})
    assert classify(obs).failure_class == "passed"
    assert classify(_ok(worker_restarts=20, fault="kill-worker", fault_outcome={})).failure_class == (
        "respawn-loop"
    )


def test_startup_failure_before_leak_and_leak_is_named_in_reason() -> None:
    obs = _ok(
        ready=False,
        answered_pids=(),
        any_response=False,
        exited_before_ready=True,
        exit_code=3,
        leaks={"processes": [{"pid": 7}]},
    )
    v = classify(obs)
    assert v.failure_class == "startup-failure"
    assert "leaked (process)" in v.reason


def test_wrong_listener_before_not_serving() -> None:
    # uvicorn <=0.14 `--workers 2 --uds`: binds 127.0.0.1:8000; the harness probes the UDS and gets nothing
    obs = _ok(
        ready=False,
        answered_pids=(),
        any_response=False,
        alive_at_deadline=True,
        asked=UDS,
        listeners=({"pid": 9, "family": "AF_INET", "address": "127.0.0.1", "port": 8000},),
    )
    v = classify(obs)
    assert v.failure_class == "wrong-listener"
    assert v.signature == "wrong-listener: tcp 127.0.0.1:8000 (asked uds)"


def test_env_error_wins_over_everything_else() -> None:
    v = classify(_ok(env_error="x", stop_escalated=True, leaks={"uds": ["/tmp/a"]}))
    assert v.failure_class == "env-error"


def test_request_errors_before_shutdown_hang_and_leak() -> None:
    v = classify(_ok(load_non_2xx=5, stop_escalated=True, leaks={"uds": ["/tmp/x.sock"]}))
    assert v.failure_class == "request-errors"
    assert "leaked (uds)" in v.reason


def test_shutdown_hang_before_leak() -> None:
    assert classify(_ok(stop_escalated=True, leaks={"processes": [1]})).failure_class == "shutdown-hang"


def test_one_restart_after_a_kill_fault_is_not_a_loop() -> None:
    assert classify(_ok(fault="kill-worker", worker_restarts=1, worker_exits=1)).failure_class == "passed"
    assert classify(_ok(fault="kill-worker", worker_restarts=4)).failure_class == "respawn-loop"


def test_restarts_below_threshold_before_ready_is_not_a_loop() -> None:
    obs = _ok(ready=False, answered_pids=(101,), alive_at_deadline=True, worker_restarts=2)
    assert classify(obs).failure_class == "partial-workers"


# --- signatures ----------------------------------------------------------------------------------------


def test_signature_from_stderr_when_decisive() -> None:
    # uvicorn #514 shape: one worker died with WSAEINVAL, the other serves
    obs = _ok(
        platform="win32",
        ready=False,
        answered_pids=(101,),
        alive_at_deadline=True,
        stderr=_fixture("win_sanic_1545_winerror10022_py36.txt"),
    )
    v = classify(obs)
    assert v.failure_class == "partial-workers"
    assert v.signature == "OSError: [WSAEINVAL] An invalid argument was supplied"


def test_uvicorn_054_lifespan_failure_exits_0_but_is_a_startup_failure() -> None:
    # measured here: uvicorn 0.54.0 --workers 2, lifespan startup raises; the parent exits 0
    obs = _ok(
        ready=False,
        answered_pids=(),
        any_response=False,
        exited_before_ready=True,
        exit_code=0,
        stderr=_fixture("linux_uvicorn054_workers2_lifespan_fails.txt"),
    )
    v = classify(obs)
    assert (v.failure_class, v.signature) == ("startup-failure", "RuntimeError: database unreachable")
    assert "exit 0" in v.reason


def test_startup_failure_signature_from_real_gunicorn_text() -> None:
    obs = _ok(
        ready=False,
        answered_pids=(),
        any_response=False,
        exited_before_ready=True,
        exit_code=3,
        stderr=_fixture("linux_uvicorn_worker_35_setup_event_loop.txt"),
    )
    v = classify(obs)
    assert v.failure_class == "startup-failure"
    assert v.signature.startswith("AttributeError: The `setup_event_loop` method was replaced")


@pytest.mark.parametrize(
    "obs, signature",
    [
        (
            _ok(ready=False, answered_pids=(), any_response=False, connect_errors=("ConnectError",)),
            "not-serving: ECONNREFUSED",
        ),
        (
            _ok(ready=False, answered_pids=(), any_response=False, connect_errors=("ReadTimeout",)),
            "not-serving: timeout",
        ),
        (_ok(ready=False, answered_pids=(), any_response=False), "not-serving: no response"),
        (_ok(ready=False, answered_pids=(7,)), "partial-workers: 1/2"),
        (
            _ok(
                ready=False,
                answered_pids=(),
                any_response=False,
                exited_before_ready=True,
                exit_code=3,
                events=({"event": "starting"},),
            ),
            "exit 3 STARTUP_FAILURE",
        ),
        (
            _ok(ready=False, answered_pids=(), any_response=False, exited_before_ready=True, exit_code=3),
            "exit 3",
        ),
        (
            _ok(ready=False, answered_pids=(), any_response=False, exited_before_ready=True, exit_code=-9),
            "killed by SIGKILL",
        ),
        (_ok(stop_escalated=True), "shutdown-hang"),
        (_ok(leaks={"processes": [1], "uds": ["/tmp/s"], "listeners": []}), "leak: process+uds"),
        (_ok(load_errors=2, load_non_2xx=1), "request-errors: 2 errors, 1 non-2xx"),
        (_ok(worker_restarts=9), "respawn-loop: 9 restarts"),
    ],
)
def test_synthetic_signatures(obs: Observation, signature: str) -> None:
    assert classify(obs).signature == signature


def test_shutdown_noise_in_stderr_does_not_become_the_signature() -> None:
    stderr = 'Traceback (most recent call last):\n  File "x.py", line 1, in run\nKeyboardInterrupt\n'
    assert classify(_ok(stop_escalated=True, stderr=stderr)).signature == "shutdown-hang"


def test_env_error_signature_is_normalized() -> None:
    v = classify(_ok(env_error="Could not find /root/.pyenv/versions/3.7.16/bin/python"))
    assert v.signature == "Could not find <path>"


def test_exit_text() -> None:
    assert exit_text(None, True) == "exit ?"
    assert exit_text(0, False) == "exit 0"
    assert exit_text(7, True) == "exit 7 WORKER_CRASH_LOOP"
    assert exit_text(-15, False) == "killed by SIGTERM"


# --- listeners -------------------------------------------------------------------------------------------


def _listener(
    family: str, address: str = "127.0.0.1", port: Optional[int] = 40001, path: str = ""
) -> Dict[str, Any]:
    return {"pid": 1, "family": family, "address": address, "port": port, "path": path}


@pytest.mark.parametrize(
    "asked, listeners, wrong",
    [
        (TCP, [_listener("AF_INET")], 0),
        (TCP, [_listener("AF_INET"), _listener("AF_INET")], 0),  # reuseport: one endpoint, many sockets
        (TCP, [_listener("AF_INET", "0.0.0.0")], 1),  # all interfaces when loopback was asked
        (TCP, [_listener("AF_INET6", "::1")], 1),
        (TCP, [_listener("AF_INET"), _listener("AF_INET", port=40002)], 2),  # a worker's own ephemeral port
        (TCP, [_listener("AF_INET"), _listener("AF_UNIX", "", None, "/root/.gunicorn/ctl.sock")], 0),
        (UDS, [_listener("AF_UNIX", "", None, UDS["path"])], 0),
        (UDS, [_listener("AF_UNIX", "", None, UDS["path"]), _listener("AF_UNIX", "", None, "/h/ctl")], 0),
        (UDS, [_listener("AF_UNIX", "", None, "/elsewhere.sock")], 1),
        (UDS, [_listener("AF_INET", "127.0.0.1", 8000)], 1),
        ({"kind": "fd", "fd": 3, "host": "127.0.0.1", "port": 40001}, [_listener("AF_INET")], 0),
        ({"kind": "fd", "fd": 3, "host": "127.0.0.1", "port": 40001}, [_listener("AF_INET", port=8000)], 1),
        (TCP, [], 0),
    ],
)
def test_wrong_listeners(asked: Dict[str, Any], listeners: List[Dict[str, Any]], wrong: int) -> None:
    assert len(wrong_listeners(Observation(asked=asked, listeners=tuple(listeners)))) == wrong


def test_kill_master_leaves_a_socket_file_that_is_not_the_servers_leak() -> None:
    uds_left = {"processes": [], "listeners": [], "uds": ["/tmp/x/s.sock"]}
    assert classify(_ok(fault="kill-master", leaks=uds_left)).failure_class == "passed"
    assert classify(_ok(leaks=uds_left)).failure_class == "leak"
    procs_left = {"processes": [{"pid": 7}], "listeners": [], "uds": ["/tmp/x/s.sock"]}
    assert classify(_ok(fault="kill-master", leaks=procs_left)).signature == "leak: process"
