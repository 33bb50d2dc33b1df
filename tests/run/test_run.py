"""run_scenario end to end: real interpreters, envs, server processes, sockets and HTTP on loopback.

Nothing here hard-codes a verdict the harness did not observe: each test builds a situation (an app whose
lifespan fails, a server that listens elsewhere, an app that cannot be imported) and checks the class the
harness reached and the evidence it kept.
"""

import collections
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any, List

import pytest

from harness.campaign.matrix import run_matrix
from harness.model.records import ResultRecord, Scenario, read_records
from harness.run.runner import lost_run_record, parse_bind, run_scenario, scaled_timeout, validate
from harness.run.serverwatch import NO_WORKER_GRACE_S, RESPAWN_GIVE_UP_FACTOR

#: servers.apps_broken cannot be imported (that is its point): its message, as the module states it
BROKEN_MESSAGE = "servers.apps_broken fails at import on purpose"

LIGHT = {"requests": 40, "concurrency": 8, "keepalive_requests": 10}


def _run(tmp_path: Any, **fields: Any) -> ResultRecord:
    results = os.path.join(str(tmp_path), "results.jsonl")
    fields = {**LIGHT, **fields}
    record = run_scenario(Scenario(**fields), results=results, work_dir=os.path.join(str(tmp_path), "work"))
    # the record is never lost: it is on disk too, byte-identical in meaning
    on_disk = list(read_records([results]))
    assert on_disk[-1].to_dict() == record.to_dict()
    return record


def test_parse_bind_and_scaled_timeout(monkeypatch: Any) -> None:
    assert parse_bind("tcp") == ("tcp", None)
    assert parse_bind("fd:0") == ("fd", 0)
    assert parse_bind("fd:7") == ("fd", 7)
    for bad in ("fd:", "fd:x", "fd:2", "udp", "fd:-1"):
        with pytest.raises(ValueError):
            parse_bind(bad)
    from harness.run import stages  # noqa: PLC0415

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(stages, "contention", lambda: 1.0)  # an idle machine
    one, four = scaled_timeout(10, 1), scaled_timeout(10, 4)
    assert (one, four) == (10, 25)
    monkeypatch.setattr(stages, "contention", lambda: 2.5)  # 5 busy processes on 2 cores
    assert scaled_timeout(10, 1) == 25
    monkeypatch.setenv("CI", "true")
    assert scaled_timeout(10, 1) == 30  # at least x3 on CI
    monkeypatch.setattr(stages, "contention", lambda: 4.0)
    assert scaled_timeout(10, 1) == 40  # beyond it when the runner is busier than that


def test_reference_passes_with_every_field_filled(tmp_path: Any) -> None:
    record = _run(tmp_path, server="reference", workers=2)
    assert record.failure_class == "passed", record.reason + "\n" + record.stderr_tail
    assert len(set(record.worker_pids)) >= 2
    assert record.python["version"] and record.python["executable"]
    assert record.platform["sys_platform"]
    assert "h11" in {k.lower() for k in record.installed}
    t = record.timings
    assert 0 < t["first_response"] <= t["all_workers"] <= t["load_done"] <= t["stop_sent"] <= t["stopped"]
    assert set(t["worker_ready"]) >= {str(p) for p in record.worker_pids}
    assert [s["phase"] for s in record.snapshots] == ["ready", "after-load", "after-stop"]
    assert {e["event"] for e in record.events} >= {"starting", "bound", "ready", "stopped"}
    assert record.load["requests"] == LIGHT["requests"]
    assert record.env["HOME"].startswith(os.path.join(str(tmp_path), "work"))
    assert "PATH" in record.env and "SHELL" not in record.env  # only what the harness set
    assert record.command[:3][1:] == ["-m", "servers"]
    assert record.exit_code == 0 and record.exit_name == "OK"
    assert record.started_at and record.run_id and record.harness_version
    assert not any(record.leaks.get(k) for k in ("processes", "listeners", "uds"))


@pytest.mark.parametrize("bind", ["uds", "fd:0", "fd:5"])
def test_reference_binds(tmp_path: Any, bind: str) -> None:
    record = _run(tmp_path, server="reference", workers=2, bind=bind)
    assert record.failure_class == "passed", record.reason + "\n" + record.stderr_tail
    bound = [e for e in record.events if e["event"] == "bound"]
    if bind == "uds":
        assert bound[0]["path"] and len(bound[0]["path"]) < 100
        assert not os.path.exists(bound[0]["path"])  # gone after the run
    else:
        assert bound[0]["fd"] == int(bind[3:])


def test_failing_lifespan_is_a_startup_failure(tmp_path: Any) -> None:
    record = _run(tmp_path, server="reference", workers=2, app="servers.apps:failing_lifespan")
    assert record.failure_class == "startup-failure", record.reason
    assert record.signature
    assert record.worker_pids == []
    assert record.capsule == ""  # no capsule_dir given


def test_server_listening_elsewhere_is_a_wrong_listener(tmp_path: Any) -> None:
    record = _run(tmp_path, server="tests.servers.wrong_bind:ADAPTER", workers=1, bind="uds")
    assert record.failure_class == "wrong-listener", (record.reason, record.snapshots)
    listeners = [lst for snap in record.snapshots for lst in snap.get("listeners", [])]
    assert any(lst.get("port") for lst in listeners)  # it was on TCP, not on the asked path


def test_broken_app_module(tmp_path: Any) -> None:
    record = _run(tmp_path, server="reference", workers=2, app="servers.apps_broken:app")
    # whatever the harness observed, the decisive line must be the module's own error
    assert record.failure_class in ("startup-failure", "not-serving"), record.reason
    assert record.exit_name == "APP_LOAD_ERROR" or record.failure_class == "not-serving"
    assert BROKEN_MESSAGE in record.stderr_tail
    assert record.signature


def test_unavailable_strategy_is_unsupported_with_the_probe_reason(tmp_path: Any) -> None:
    record = _run(tmp_path, server="reference", strategy="share", start_method="spawn")
    assert record.failure_class == "unsupported"
    assert "share" in record.reason and "Windows" in record.reason


def test_missing_interpreter_is_an_env_error(tmp_path: Any) -> None:
    record = _run(tmp_path, server="reference", python="9.99")
    assert record.failure_class == "env-error"
    assert "9.99" in record.reason and "have:" in record.reason
    assert record.signature == "no Python 9.99 found"  # the same on every machine


def test_adapter_exception_becomes_a_harness_error_record(tmp_path: Any) -> None:
    record = _run(tmp_path, server="tests.servers.raising_adapter:ADAPTER")
    assert record.failure_class == "harness-error"
    assert "adapter exploded on purpose" in record.signature


@pytest.mark.slow
def test_fifty_scenarios_two_at_a_time_do_not_collide(tmp_path: Any) -> None:
    binds = ["tcp", "uds", "fd:0", "fd:4", "tcp"]
    scenarios = [
        Scenario(
            server="reference",
            workers=1 + i % 2,
            bind=binds[i % 5],
            requests=10,
            concurrency=4,
            keepalive_requests=0,
        )
        for i in range(50)
    ]
    results = os.path.join(str(tmp_path), "m.jsonl")
    records: List[ResultRecord] = run_matrix(
        scenarios, results=results, jobs=2, work_dir=os.path.join(str(tmp_path), "w")
    )
    classes = collections.Counter(r.failure_class for r in records)
    assert classes == {"passed": 50}, [
        (r.scenario_id, r.reason) for r in records if r.failure_class != "passed"
    ]
    assert len({r.env["HOME"] for r in records}) == 50
    uds = [e["path"] for r in records for e in r.events if e["event"] == "bound" and e.get("path")]
    assert len(uds) == len(set(uds)) == 10
    # resume: nothing left to do
    assert run_matrix(scenarios, results=results, jobs=2, resume=True) == []


def test_kill_worker_fault_is_survived_by_the_reference_server(tmp_path: Any) -> None:
    record = _run(tmp_path, server="reference", workers=2, fault="kill-worker")
    assert record.fault["handled"] is True, record.fault
    assert record.failure_class == "passed", record.reason
    victim = record.fault["victim_pid"]
    assert victim and victim not in record.worker_pids and record.fault["new_pids"]
    restarts = [e for e in record.events if e["event"] == "worker-restart"]
    assert restarts and restarts[0]["old_pid"] == victim
    assert [s["phase"] for s in record.snapshots] == ["ready", "after-fault", "after-load", "after-stop"]


def test_app_fault_swaps_the_app_and_judges_the_ending(tmp_path: Any) -> None:
    record = _run(tmp_path, server="reference", workers=2, fault="import-error")
    assert record.failure_class == "startup-failure"
    assert record.fault["app"] == "servers.apps_broken:app" and record.fault["handled"] is True


def test_unknown_fault_is_refused(tmp_path: Any) -> None:
    record = _run(tmp_path, server="reference", fault="unplug-the-cable")
    assert record.failure_class == "harness-error" and "unknown fault" in record.signature


def test_master_left_without_workers_is_decided_before_the_deadline(tmp_path: Any) -> None:
    # every worker fails at startup, the master lingers forever: the harness stops waiting once no worker
    # has been alive and the master has been idle for NO_WORKER_GRACE_S, not at the readiness deadline
    record = _run(tmp_path, server="tests.servers.lost_workers:LINGER", workers=2)
    assert record.failure_class == "startup-failure", (record.reason, record.timings)
    assert "none was replaced; the master stayed up" in record.reason
    gave_up = record.timings["readiness_gave_up"]
    assert gave_up["why"] == f"no worker alive and the master idle for {NO_WORKER_GRACE_S:g} s"
    assert gave_up["t"] < record.timings["readiness_deadline"]
    assert record.exit_code == 0  # the master answered the harness's SIGTERM


def test_a_slow_respawner_is_a_respawn_loop_not_a_startup_failure(tmp_path: Any) -> None:
    """Regression for the under-load misreading (uvicorn 0.30 / 0.49 read startup-failure with 3 CPU hogs on
    2 cores): no worker is alive for longer than the old 3 s rule while the master, awake every 0.5 s, takes
    SLOW_RESPAWN_S to replace them. Its own activity says it is working: the wait goes on."""
    record = _run(tmp_path, server="tests.servers.lost_workers:SLOW_RESPAWN", workers=1)
    assert record.failure_class == "respawn-loop", (record.reason, record.timings)
    assert "idle" not in str(record.timings.get("readiness_gave_up", {}).get("why", ""))
    assert record.timings["worker_ready"] == {}


def test_respawn_loop_is_decided_before_the_deadline(tmp_path: Any) -> None:
    record = _run(tmp_path, server="tests.servers.lost_workers:RESPAWN", workers=2)
    assert record.failure_class == "respawn-loop", (record.reason, record.timings)
    gave_up = record.timings["readiness_gave_up"]
    dead = int(gave_up["why"].split()[0])
    assert gave_up["why"].endswith("workers died before readiness")
    assert dead >= RESPAWN_GIVE_UP_FACTOR * 2
    assert gave_up["t"] < record.timings["readiness_deadline"]


def test_early_ends_are_classified_with_a_signature(tmp_path: Any) -> None:
    """unsupported / env-error / harness-error come out of the classifier like every other verdict: a
    non-empty, machine-independent signature and a reason (the fuller text, this machine's included)."""
    share = _run(tmp_path, strategy="share")
    assert share.failure_class == "unsupported"
    assert "Windows-only" in share.signature and share.signature in share.reason
    missing = _run(tmp_path, python="3.99")
    assert (missing.failure_class, missing.signature) == ("env-error", "no Python 3.99 found")
    assert "have:" in missing.reason and "have:" not in missing.signature
    bad = _run(tmp_path, workers=0)
    assert (bad.failure_class, bad.signature) == ("harness-error", "workers must be >= 1, not 0")
    tagged = run_scenario(Scenario(strategy="share"), catalog={"id": "x-1", "role": "fixed"})
    assert tagged.catalog == {"id": "x-1", "role": "fixed"} and Scenario().options == ()


def test_a_run_lost_without_a_record_is_a_classified_harness_error() -> None:
    record = lost_run_record(Scenario(), "Traceback ...\nRuntimeError: the child died", 1.5)
    assert record.failure_class == "harness-error"
    assert record.signature == "RuntimeError: the child died"
    assert "died without a record" in record.reason and record.duration_s >= 1.5


@pytest.mark.skipif(sys.platform == "win32", reason="AF_UNIX test server")
def test_a_unix_listener_outside_the_run_is_wrong_whatever_was_asked(tmp_path: Any) -> None:
    """Asked TCP, it also listens on a unix socket outside the run's directories: wrong-listener, not
    passed (issue #16 item 4). The same socket under the run's private HOME is a control socket: passed."""
    elsewhere = tempfile.mkdtemp(prefix="awh-elsewhere-", dir="/tmp")
    try:
        extra = os.path.join(elsewhere, "x.sock")
        server = "tests.servers.extra_uds:ELSEWHERE"
        record = _run(tmp_path, server=server, workers=1, options=(("extra", extra),))
        assert record.failure_class == "wrong-listener", record.reason
        assert record.signature == "wrong-listener: unix socket (asked tcp)"
        assert extra in record.reason or "unix socket" in record.reason
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)
    record = _run(tmp_path, server="tests.servers.extra_uds:IN_HOME", workers=1)
    assert record.failure_class == "passed", record.reason


def test_no_option_may_say_where_to_listen() -> None:
    for key in ("host", "port", "uds", "fd", "bind", "--host", "unix_socket"):
        with pytest.raises(ValueError, match="would change where the server listens"):
            validate(Scenario(options=((key, "0.0.0.0"),)))
    validate(Scenario(options=(("log_level", "debug"), ("lifespan", "off"))))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper is Linux's")
@pytest.mark.parametrize("adapter", ["DETACH", "DETACH_KEEP_FDS"])
def test_a_process_that_detaches_is_found_counted_and_ended(tmp_path: Any, adapter: str) -> None:
    """setsid() + double fork (+ closing every fd) out of the run: still a leak, and gone afterwards."""
    import psutil  # noqa: PLC0415

    pidfile = str(tmp_path / "detached.pid")
    record = _run(
        tmp_path, server=f"tests.servers.detacher:{adapter}", workers=1, options=(("pidfile", pidfile),)
    )
    with open(pidfile) as fh:
        pid, port = (int(x) for x in fh.read().split())
    assert record.failure_class == "leak", record.reason
    leaked = {p["pid"]: p for p in record.leaks["processes"]}
    assert pid in leaked and leaked[pid]["killed"] is True
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    listening = {c.laddr.port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
    assert port not in listening  # it no longer listens after the harness is done


_ORPHAN = """
import os, sys
pid = os.fork()
if pid == 0:
    sys.stdin.read()  # until the test closes the pipe
    os._exit(0)
sys.stdout.write("%d\\n" % pid)
sys.stdout.flush()
os._exit(0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper is Linux's")
def test_between_runs_this_process_adopts_no_orphan(tmp_path: Any) -> None:
    """The subreaper lasts as long as a run: after it, an orphan of anything else this process started goes
    to init, not here (a pytest worker kept such orphans as zombies nobody waited for)."""
    import psutil  # noqa: PLC0415

    from harness import _platform  # noqa: PLC0415

    record = _run(tmp_path, workers=1)
    assert record.failure_class == "passed", record.reason
    assert not _platform.is_subreaper()
    proc = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        orphan = psutil.Process(int(proc.stdout.readline()))
        proc.wait(timeout=30)  # its parent has exited: the kernel reparented it in that exit
        adopter = orphan.ppid()
    finally:
        proc.stdin.close()
        proc.stdout.close()
        proc.wait(timeout=30)
    orphan.wait(timeout=30)
    assert adopter != os.getpid(), "the orphan was adopted by this process after the run ended"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX strategies")
@pytest.mark.parametrize(
    ("strategy", "method"), [("inherit", "fork"), ("reuseport", "fork"), ("reuseport", "spawn")]
)
def test_a_lifespan_failing_app_under_the_reference_server_is_its_startup_failure(
    tmp_path: Any, strategy: str, method: str
) -> None:
    """Issue #16 item 20: the app's lifespan failure decides - startup-failure with its LifespanFailure line,
    at once - never partial-workers at the deadline with the server's own closing error as signature."""
    record = _run(
        tmp_path, workers=2, strategy=strategy, start_method=method, app="servers.apps:failing_lifespan",
        options=(("lifespan", "on"),),
    )  # fmt: skip
    assert record.failure_class == "startup-failure", record.reason
    assert record.signature.startswith("servers._lifespan.LifespanFailure: failing_lifespan")
    assert "ASGI app raised" not in record.stderr_tail
    assert record.exit_code == 3  # STARTUP_FAILURE: the master ended it, not the harness's deadline
