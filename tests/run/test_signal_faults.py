"""signal-master:SIG, kill-workers:K and resource growth, through the whole runner against real servers.

The reference server keeps every contract it declares (passed); tests/servers/bad_signals.py's `good` mode
keeps them too through the psutil path (no event stream); each broken mode of it gives one violation kind,
asserted with its exact class and signature. Real processes, real signals, real HTTP on loopback.
"""

import os
import sys
from typing import Any, Dict

import pytest

from harness.model.records import ResultRecord, Scenario, read_records
from harness.run.runner import run_scenario

pytestmark = [pytest.mark.timeout(600), pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]

LIGHT = {"requests": 40, "concurrency": 8, "keepalive_requests": 10}
BAD = "tests.servers.bad_signals:"


def _run(tmp_path: Any, **fields: Any) -> ResultRecord:
    results = os.path.join(str(tmp_path), "results.jsonl")
    record = run_scenario(
        Scenario(**{**LIGHT, **fields}), results=results, work_dir=os.path.join(str(tmp_path), "work")
    )
    assert list(read_records([results]))[-1].to_dict() == record.to_dict()
    assert not any(record.leaks.get(k) for k in ("processes", "listeners", "uds")), record.leaks
    return record


def _fault(record: ResultRecord) -> Dict[str, Any]:
    return dict(record.fault or {})


@pytest.mark.parametrize(
    ("fault", "repeat", "workers_after"),
    [
        ("signal-master:HUP", 3, 2),
        ("signal-master:USR1", 1, 2),
        ("signal-master:TTIN", 2, 4),
        ("signal-master:TTOU", 1, 1),
        ("signal-master:WINCH", 1, 2),
        ("kill-workers:all", 1, 2),
        ("kill-workers:1", 1, 2),
    ],
)
def test_the_reference_server_keeps_its_contract(
    tmp_path: Any, fault: str, repeat: int, workers_after: int
) -> None:
    record = _run(tmp_path, fault=fault, fault_repeat=repeat, fault_interval=0.2)
    out = _fault(record)
    assert (record.failure_class, record.signature) in (("passed", ""), ("degraded", record.signature)), (
        record.failure_class,
        record.signature,
        out.get("why"),
        out.get("request_errors"),
        record.events[-12:],
    )
    assert out["handled"] is True, out
    assert out["workers_after"] == workers_after == out["expected_after"]
    assert out["requests"] > 0
    if fault.startswith("signal-master"):  # a SIGKILLed worker takes its requests in flight with it
        assert out["failed_requests"] == 0, out["request_errors"]
    if fault == "signal-master:HUP":
        # every signal replaced both workers: 6 new pids, none kept, the listener held throughout
        assert out["sent"] == 3 and len(out["new_pids"]) == 6
        assert all(step["kept"] == 0 and step["replaced"] == 2 for step in out["steps"])
        assert not out["resources"]["growth"], out["resources"]
        reloads = [e for e in record.events if e["event"] == "signal" and e.get("name") == "HUP"]
        assert len(reloads) == 3
    if fault == "signal-master:USR1":
        assert out["steps"][0] == {**out["steps"][0], "kept": 2, "replaced": 0}
        assert any(e["event"] == "signal" and e.get("action") == "reopen" for e in record.events)


@pytest.mark.parametrize("sig", ["TERM", "QUIT", "INT"])
def test_the_reference_server_stops_as_documented(tmp_path: Any, sig: str) -> None:
    record = _run(tmp_path, fault=f"signal-master:{sig}")
    out = _fault(record)
    assert record.failure_class == "passed", (record.signature, out.get("why"))
    assert out["handled"] is True and out["server_exited"] is True and out["workers_left"] == []
    assert out["contract"]["expect"] == ("stop" if sig == "TERM" else "quick-stop")
    stopping = [e for e in record.events if e["event"] == "stopping"]
    assert stopping and stopping[0]["quick"] is (sig != "TERM")


@pytest.mark.parametrize(
    "fault",
    [
        "signal-master:HUP",
        "signal-master:USR1",
        "signal-master:TTIN",
        "signal-master:TTOU",
        "kill-workers:all",
    ],
)
def test_a_correct_upstream_style_server_passes_through_psutil(tmp_path: Any, fault: str) -> None:
    record = _run(tmp_path, server=BAD + "GOOD", fault=fault, fault_repeat=2, fault_interval=0.2)
    assert record.failure_class == "passed", (record.signature, _fault(record).get("why"))
    assert not record.events  # judged from the process tree, not from an event stream


CV = "contract-violation"
BROKEN = [
    ("USR1_RESTARTS", "signal-master:USR1", 1, (CV, "USR1: 2 of 2 workers replaced; expected kept")),
    ("HUP_IGNORED", "signal-master:HUP", 1, (CV, "HUP: 2 of 2 workers kept; expected all replaced")),
    (
        "HUP_DROPS",
        "signal-master:HUP",
        1,
        (CV, "HUP: requests failed while it was handled; expected none dropped"),
    ),
    ("HUP_EXITS", "signal-master:HUP", 1, (CV, "HUP: the master exited (code -1); expected it to stay")),
    ("TTIN_TWO", "signal-master:TTIN", 1, (CV, "TTIN: 4 workers after 1 x TTIN; expected 3")),
    ("TERM_EXIT_1", "signal-master:TERM", 1, (CV, "TERM: the master exited 1; expected exit 0")),
    (
        "DOUBLE_RESPAWN",
        "kill-workers:all",
        1,
        ("excess-workers", "excess-workers: 4/2 workers after kill-workers:all"),
    ),
    (
        "NO_RESPAWN",
        "kill-workers:all",
        1,
        ("partial-workers", "partial-workers: 0/2 workers after kill-workers:all"),
    ),
    ("HUP_LEAKS_FDS", "signal-master:HUP", 3, ("leak", "leak: master fds grew after 3 x HUP")),
]


@pytest.mark.parametrize(("mode", "fault", "repeat", "expected"), BROKEN)
def test_each_broken_server_gets_its_class_and_signature(
    tmp_path: Any, mode: str, fault: str, repeat: int, expected: "tuple[str, str]"
) -> None:
    record = _run(tmp_path, server=BAD + mode, fault=fault, fault_repeat=repeat, fault_interval=0.3)
    assert (record.failure_class, record.signature) == expected, _fault(record).get("why")
    assert _fault(record)["handled"] is False


def test_a_signal_nobody_documents_is_unsupported_and_nothing_is_sent(tmp_path: Any) -> None:
    record = _run(tmp_path, fault="signal-master:USR2")
    assert record.failure_class == "unsupported"
    assert (
        record.signature.startswith("reference ") and "documents no behaviour for SIGUSR2" in record.signature
    )
    assert not record.command  # nothing was launched


def test_server_args_reach_the_command_line_verbatim(tmp_path: Any) -> None:
    record = _run(tmp_path, server_args=("--graceful-timeout", "3"))
    assert record.failure_class in ("passed", "degraded")
    assert list(record.command[-2:]) == ["--graceful-timeout", "3"]
    assert record.scenario["server_args"] == ["--graceful-timeout", "3"]
    assert "args=--graceful-timeout,3" in record.scenario_id


def test_a_server_arg_the_server_rejects_is_its_own_answer(tmp_path: Any) -> None:
    # the reference server's argparse refuses an unknown flag: a launch refusal (harness.verdict's
    # launch-flag rule), not a server that failed to start
    record = _run(tmp_path, server_args=("--no-such-flag",))
    assert (record.failure_class, record.signature) == (
        "unsupported",
        "servers: error: unrecognized arguments: --no-such-flag",
    )
    assert record.command[-1] == "--no-such-flag"
