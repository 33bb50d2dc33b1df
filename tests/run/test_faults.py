"""harness.run.faults against the real reference server: every fault, injected for real, and what the server
did.

The server runs under tests._refserver.RefServer (events on stdout, its own session); the fault gets a
FaultContext whose callables read that event stream. Negative controls (heartbeat off, exit 0 after a failed
lifespan) prove the verdicts can come out False.
"""

import os
import sys
import tempfile
from typing import Any, Dict, Optional, Set, Tuple

import psutil
import pytest

from harness.model.records import Scenario
from harness.run import faults
from harness.run.process import ServerProcess
from harness.run.readiness import Target
from tests import _mpserver, _paths
from tests._refserver import RefServer, assert_nothing_left, burst_until, stop_and_check

pytestmark = [pytest.mark.timeout(180), pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]


def _alive_workers(server: RefServer) -> Set[int]:
    server.pump(0)
    alive: Set[int] = set()
    for ev in server.events:
        pid = ev.get("worker_pid")
        if ev["event"] in ("worker-spawned", "worker-ready", "worker-restart") and isinstance(pid, int):
            alive.add(pid)
        elif ev["event"] == "worker-exit" and isinstance(pid, int):
            alive.discard(pid)
    return alive


def _ready(server: RefServer, workers: int) -> Target:
    bound = server.wait_for("bound")
    ready = server.wait_for("ready")
    target = Target(uds=bound["path"]) if bound.get("path") else Target(host="127.0.0.1", port=bound["port"])
    key = bound["path"] if bound.get("path") else ("127.0.0.1", bound["port"])
    seen = burst_until(key, ready["pids"])
    assert set(ready["pids"]) <= set(seen), (ready, seen)
    assert len(ready["pids"]) == workers
    return target


def _ctx(server: RefServer, target: Target, workers: int, recovery: Optional[float] = None) -> Any:
    return faults.FaultContext(
        master_pid=server.proc.pid,
        workers=workers,
        target=target,
        worker_pids=lambda: _alive_workers(server),
        alive=lambda: server.proc.poll() is None,
        exit_code=server.proc.poll,
        recovery_s=recovery,
    )


def _plan(name: str, tmp: str, app: str = "servers.apps:pid") -> faults.FaultPlan:
    return faults.plan(Scenario(fault=name, app=app), tmp)


class _IgnoreTermAdapter:
    """Test-only adapter (`tests.run.test_faults:IGNORE_TERM`): tests/_mpserver.py, master and workers
    ignoring
    SIGTERM, so the harness's stop has to escalate."""

    name = "ignore-term"
    distribution = ""
    default_requirements: Tuple[str, ...] = ()

    def build(self, ctx: Any) -> Any:
        from harness.adapters import LaunchSpec  # noqa: PLC0415

        script = os.path.join(_paths.TESTS, "_mpserver.py")
        argv = [ctx.python, script, "--workers", str(ctx.workers), "--ignore-term"]
        argv += ["--uds", ctx.uds] if ctx.uds else ["--host", ctx.host, "--port", str(ctx.port)]
        return LaunchSpec(argv=tuple(argv))


IGNORE_TERM = _IgnoreTermAdapter()


def test_server_ignoring_sigterm_is_escalated_and_recorded_shutdown_hang(tmp_path: Any) -> None:
    from harness.run.runner import run_scenario  # noqa: PLC0415

    sc = Scenario(server="tests.run.test_faults:IGNORE_TERM", workers=2, requests=10, keepalive_requests=0)
    record = run_scenario(sc, work_dir=str(tmp_path), base_timeout=4)
    assert record.failure_class == "shutdown-hang", (record.failure_class, record.reason)
    assert record.signature == "shutdown-hang" and "killed at the deadline" in record.reason
    assert record.exit_code == -9  # SIGKILLed by the escalation, not stopped
    assert not any(record.leaks.values()), record.leaks  # the escalation left nothing behind
    assert len(record.worker_pids) == 2


@pytest.fixture
def scratch() -> Any:
    with tempfile.TemporaryDirectory(prefix="awh-f-", dir="/tmp") as d:  # short: AF_UNIX path limit
        yield d


# --- runtime faults --------------------------------------------------------------------------------------


def test_kill_worker_is_replaced_and_all_answer_again(scratch: str) -> None:
    with RefServer(["servers.apps:pid", "--workers", "2"]) as server:
        target = _ready(server, 2)
        out = _plan("kill-worker", scratch).inject(_ctx(server, target, 2))
        assert out["handled"] is True, out
        assert out["worker_replaced"] and out["new_pids"] and out["recovery_s"] is not None
        assert out["server_exited"] is False and out["requests"] > 0
        assert out["victim_pid"] not in _alive_workers(server)
        assert server.named("worker-restart")[0]["old_pid"] == out["victim_pid"]
        assert stop_and_check(server, port=target.port) == 0


def test_stop_worker_is_timed_out_killed_and_replaced(scratch: str) -> None:
    with RefServer(["servers.apps:pid", "--workers", "2", "--timeout", "1"]) as server:
        target = _ready(server, 2)
        out = _plan("stop-worker", scratch).inject(_ctx(server, target, 2))
        assert out["handled"] is True, out
        timeouts = server.named("worker-timeout")
        assert [e["worker_pid"] for e in timeouts] == [out["victim_pid"]]
        assert out["victim_alive"] is False
        assert stop_and_check(server, port=target.port) == 0


def test_stop_worker_without_heartbeat_is_not_handled(scratch: str) -> None:
    # negative control: --timeout 0 turns the heartbeat check off, so nobody replaces the hung worker
    with RefServer(["servers.apps:pid", "--workers", "2", "--timeout", "0"]) as server:
        target = _ready(server, 2)
        out = _plan("stop-worker", scratch).inject(_ctx(server, target, 2, recovery=2.0))
        assert out["handled"] is False and out["worker_replaced"] is False, out
        assert "not replaced" in out["why"]
        assert out["victim_alive"] is True  # resumed, so the stop below can end it normally
        assert not server.named("worker-timeout")
        assert stop_and_check(server, port=target.port) == 0


def test_kill_master_takes_the_workers_with_it(scratch: str) -> None:
    with RefServer(["servers.apps:pid", "--workers", "2"]) as server:
        target = _ready(server, 2)
        server.tree()
        out = _plan("kill-master", scratch).inject(_ctx(server, target, 2))
        assert out["handled"] is True, out
        assert out["workers_left"] == [] and out["server_exited"] is True and out["exit_code"] == -9
        assert_nothing_left(server, port=target.port)


def _mp_ctx(server: Any, info: Dict[str, Any]) -> Any:
    workers = list(info["workers"])
    return faults.FaultContext(
        master_pid=server.pid,
        workers=len(workers),
        target=Target(host="127.0.0.1", port=int(info["port"])),
        worker_pids=lambda: {pid for pid in workers if psutil.pid_exists(pid)},
        alive=server.alive,
        exit_code=server.poll,
    )


@pytest.mark.parametrize("poll", [None, 1.0], ids=["no-watch", "parent-poll-1s"])
def test_kill_master_orphans_are_proven_by_their_answers(scratch: str, poll: Optional[float]) -> None:
    """tests/_mpserver.py's workers do not watch their master: after its SIGKILL they go on answering,
    and the fault calls them orphans from those answers (ORPHAN_PROOF_S x contention after the death),
    long before the RECOVERY_S deadline; with a 1 s parent poll (gunicorn's kind of watcher) they exit
    within the proof window and the fault is handled."""
    options = ["--parent-poll", str(poll)] if poll else []
    info_path = os.path.join(scratch, "info.json")
    server = ServerProcess(
        _mpserver.argv("--workers", "2", "--info", info_path, *options),
        env=dict(os.environ),
        cwd=scratch,
        run_dir=os.path.join(scratch, "run"),
    ).start()
    with server:
        info = _mpserver.read_info(info_path)
        ctx = _mp_ctx(server, info)
        burst_until(("127.0.0.1", int(info["port"])), info["workers"])
        out = _plan("kill-master", scratch).inject(ctx)
        assert out["server_exited"] is True and out["exit_code"] == -9, out
        if poll is None:
            assert out["handled"] is False, out
            assert out["workers_left"] == sorted(info["workers"]), out
            # proven by answers, not by the deadline: between the proof point and the budget
            assert faults.ORPHAN_PROOF_S <= out["orphans_answered_s"] < faults.RECOVERY_S, out
            assert "still answered new connections" in out["why"], out
        else:
            assert out["handled"] is True, out
            assert out["workers_left"] == [] and "orphans_answered_s" not in out, out
    # the stop reaps the orphans too (same session): nothing of the server is left
    assert not [pid for pid in info["workers"] if psutil.pid_exists(pid) and _running(pid)]


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_term_master_only_stops_cleanly(scratch: str) -> None:
    with RefServer(["servers.apps:pid", "--workers", "2"]) as server:
        target = _ready(server, 2)
        server.tree()
        out = _plan("term-master-only", scratch).inject(_ctx(server, target, 2))
        assert out["handled"] is True, out
        assert out["exit_code"] == 0 and out["workers_left"] == []
        assert server.wait_exit() == 0
        assert_nothing_left(server, port=target.port)


# --- launch and app faults -------------------------------------------------------------------------------


def _conclude(plan: faults.FaultPlan, server: RefServer) -> Dict[str, Any]:
    code = server.wait_exit()
    ready = bool(server.named("ready"))
    return plan.conclude(
        plan.inject(_ctx(server, Target(port=1), 1)), ready=ready, exit_code=code, stderr=server.stderr()
    )


def test_port_in_use_is_one_line_bind_failure(scratch: str) -> None:
    with _plan("port-in-use", scratch) as plan, RefServer(
        ["servers.apps:pid", "--workers", "2", "--port", str(plan.port)]
    ) as server:
        out = _conclude(plan, server)
        assert out["handled"] is True, out
        assert out["exit_code"] == 6 and out["stderr_lines"] == 1, server.stderr()
        assert out["last_line"].startswith("servers: error:") and "Traceback" not in server.stderr()
        assert server.named("error")[0]["kind"] == "bind-failure"
    # the harness's own socket is released by close()
    assert plan._holder is None


def test_stale_uds_is_replaced_and_served(scratch: str) -> None:
    plan = _plan("stale-uds", scratch)
    assert plan.needs_uds and os.path.exists(plan.uds_path)  # the stale file is there before launch
    with RefServer(["servers.apps:pid", "--workers", "2", "--uds", plan.uds_path]) as server:
        target = _ready(server, 2)
        assert target.uds == plan.uds_path
        assert stop_and_check(server, uds=plan.uds_path) == 0
        out = plan.conclude({}, ready=True, exit_code=0, stderr=server.stderr())
        assert out["handled"] is True, out


@pytest.mark.parametrize(("name", "code"), [("import-error", 4), ("lifespan-failure", 3)])
def test_app_faults_exit_with_their_code(scratch: str, name: str, code: int) -> None:
    plan = _plan(name, scratch)
    with RefServer([plan.app, "--workers", "2"]) as server:
        out = _conclude(plan, server)
        assert out["handled"] is True and out["exit_code"] == code, (out, server.stderr())
        assert not server.named("worker-restart")
        assert_nothing_left(server)


# --- verdict table (pure) --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        ("lifespan-failure", False, 0, "startup failed\n", False),  # uvicorn 0.50: stops but exits 0
        ("lifespan-failure", False, None, "", False),  # hangs
        ("lifespan-failure", True, None, "", False),  # served although startup failed
        ("import-error", False, 1, "ModuleNotFoundError: x\n", True),
        ("port-in-use", False, 1, "ERROR: [Errno 98] address already in use\n", True),
        ("port-in-use", False, 1, "Traceback (most recent call last):\nOSError: [Errno 98] in use\n", False),
        ("port-in-use", False, 1, "something else\n", False),
        ("stale-uds", False, 6, "servers: error: in use\n", False),
    ],
)
def test_conclude_table(scratch: str, case: Tuple[str, bool, Optional[int], str, bool]) -> None:
    name, ready, code, stderr, handled = case
    with _plan(name, scratch) as plan:
        out = plan.conclude({}, ready=ready, exit_code=code, stderr=stderr)
    assert out["handled"] is handled, out
    assert out["fault"] == name and out["expected"] and out["why"]


def test_unknown_fault_is_one_line(scratch: str) -> None:
    with pytest.raises(faults.UnknownFault) as info:
        _plan("kill-everything", scratch)
    text = str(info.value)
    assert "\n" not in text and "kill-everything" in text and "kill-worker" in text


def test_no_fault_is_a_no_op(scratch: str) -> None:
    plan = _plan("", scratch)
    assert plan.app == "servers.apps:pid" and plan.port == 0 and not plan.needs_uds and not plan.runtime
    assert plan.conclude({}, ready=True, exit_code=0, stderr="") == {}
    assert faults.summary({}) == ""


# --- the report's faults table (pure) ----------------------------------------------------------------


def _fault_record(server: str, fault: str, handled: Any, why: str, **extra: Any) -> Any:
    from harness.model.records import ResultRecord  # noqa: PLC0415

    outcome = {
        "fault": fault,
        "handled": handled,
        "why": why,
        "expected": "a good supervisor does X",
        **extra,
    }
    return ResultRecord(
        scenario=Scenario(server=server, fault=fault).to_dict(),
        failure_class="passed" if handled else "leak",
        server_version="" if server == "reference" else "1.0",
        fault=outcome,
        platform={"sys_platform": "linux"},
        python={"version": "3.11.7"},
        started_at="2026-11-24T06:00:00+00:00",
    )


def test_fault_table_puts_servers_side_by_side_and_escapes() -> None:
    from reports.faults import fault_table  # noqa: PLC0415
    from reports.render import render  # noqa: PLC0415

    records = [
        _fault_record("reference", "kill-master", True, "all workers exited 0.01 s after the master"),
        _fault_record("uvicorn", "kill-master", False, "<script>alert(1)</script> 2 worker(s) still ran"),
        _fault_record("reference", "kill-worker", True, "replaced", recovery_s=0.2, failed_requests=3),
        _fault_record("reference", "kill-worker", False, "not replaced", failed_requests=4),
    ]
    table = fault_table(records)
    assert table["faults"] == ["kill-worker", "kill-master"]
    assert table["columns"] == ["reference", "uvicorn 1.0"]
    cell = table["cells"][("kill-worker", "reference")]
    assert (cell["runs"], cell["handled"], cell["css"], cell["failed_requests"]) == (2, 1, "mixed", 7)
    assert cell["recovery_s"] == 0.2
    assert table["cells"][("kill-master", "uvicorn 1.0")]["css"] == "not-handled"
    assert ("kill-worker", "uvicorn 1.0") not in table["cells"]
    html = render(records)
    assert 'id="faults"' in html and "NOT handled" in html
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert fault_table([_fault_record("reference", "", None, "")]) == {}


def test_fault_table_has_a_row_per_signal_saying_contract_kept_or_violated() -> None:
    from reports.faults import fault_table  # noqa: PLC0415
    from reports.render import render  # noqa: PLC0415

    keep = {"contract": {"signal": "USR1", "expect": "keep"}}
    reload = {"contract": {"signal": "HUP", "expect": "reload"}}
    records = [
        _fault_record(
            "reference", "signal-master:HUP", True, "HUP x 3: contract kept", recovery_s=0.12, **reload
        ),
        _fault_record(
            "gunicorn", "signal-master:HUP", True, "HUP x 3: contract kept", recovery_s=1.4, **reload
        ),
        _fault_record(
            "gunicorn", "signal-master:USR1", False, "USR1: 2 of 2 workers replaced; expected kept", **keep
        ),
    ]
    table = fault_table(records)
    assert table["faults"] == ["signal-master:HUP", "signal-master:USR1"]
    hup = table["cells"][("signal-master:HUP", "gunicorn 1.0")]
    assert (hup["word"], hup["contract"], hup["recovery_s"]) == ("contract kept", "reload", 1.4)
    usr1 = table["cells"][("signal-master:USR1", "gunicorn 1.0")]
    assert (usr1["word"], usr1["contract"]) == ("contract violated", "keep")
    html = render(records)
    assert "contract violated" in html and "USR1: 2 of 2 workers replaced; expected kept" in html
    assert "recovery 1.4 s" in html
