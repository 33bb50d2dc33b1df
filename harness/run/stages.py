"""The stages of one run, each a function with a typed result (harness.run.runner strings them together).

    launch -> readiness -> fault -> load -> stop -> observe

* Launched - the started server: its process, the watch that readiness asks, t0 (every time in the
  record's timings is seconds since t0)
* Trace - what the run accumulates for its record while the stages go: timings, snapshots, the pids
  ever seen in the tree
* Served - where readiness (and, after a worker fault, readiness again) left the server: ready, which
  pids answered, whether the master exited first or was still up at the deadline
* launch(...) -> Launched; readiness(...) -> (Served, ReadyResult); fault(...) -> (Served, outcome);
  load(...) -> (load dict, answered pids); stop(...) -> Stopped; observe(...) -> Observation
"""

import dataclasses
import json
import os
import socket
import sys
import time
from typing import Any, Dict, List, Optional, Set, Tuple

import psutil

from harness.adapters import LaunchContext, LaunchSpec
from harness.env import venvs
from harness.model.observation import Observation
from harness.model.records import Scenario
from harness.run import faults
from harness.run import inspection as hinspect
from harness.run.calibrate import contention
from harness.run.load import run_load
from harness.run.process import ServerProcess, StopResult
from harness.run.readiness import ReadyResult, Target, wait_ready
from harness.run.serverwatch import ServerWatch, psutil_workers

#: exec shim that moves an inherited fd to the number the scenario asked for (`bind = "fd:N"`), then
#: becomes the server (same pid). Runs in the server's interpreter: keep it Python 3.6-compatible.
_FD_SHIM = (
    "import os, sys\n"
    "src, dst = int(sys.argv[1]), int(sys.argv[2])\n"
    "if src != dst:\n"
    "    os.dup2(src, dst)\n"
    "    os.close(src)\n"
    "os.set_inheritable(dst, True)\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


def scaled_timeout(base: float, workers: int) -> float:
    """Readiness deadline in seconds: base for 1 worker, +50% per extra worker, stretched by how much CPU
    this process gets right now (harness.run.calibrate.contention: wall / cpu of a short spin, 1.0 idle,
    ~2.5 beside three CPU hogs on two cores), and by at least x3 when CI=true (psutil's habit: a runner
    may be slow at more than CPU). The bound only limits how long the stages wait for their evidence."""
    seconds = base * (1.0 + 0.5 * max(0, workers - 1))
    factor = contention()
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        factor = max(factor, 3.0)
    return seconds * factor


def _rel(t: Optional[float], t0: float) -> Optional[float]:
    return None if t is None else round(t - t0, 4)


@dataclasses.dataclass
class Trace:
    """What the stages record as they go (the record's timings and snapshots)."""

    t0: float = 0.0
    timings: Dict[str, Any] = dataclasses.field(default_factory=dict)
    snapshots: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    seen_pids: Set[int] = dataclasses.field(default_factory=set)
    #: this process's children before the launch: anything that is our child after the stop and not in
    #: here was started by the run (directly, or adopted: harness._platform.set_subreaper)
    children_before: Set[int] = dataclasses.field(default_factory=set)

    def mark(self, name: str, t: Optional[float] = None) -> None:
        self.timings[name] = _rel(time.monotonic() if t is None else t, self.t0)

    def snapshot(self, root_pid: int, phase: str, *, track: bool = True) -> None:
        """Inspect the tree; with track, its pids join the ones the leak check looks for afterwards."""
        self.snapshots.append(dict(hinspect.snapshot(root_pid, phase)))
        if track:
            self.seen_pids |= set(hinspect.tree_pids(root_pid)) | {root_pid}


@dataclasses.dataclass
class Launched:
    proc: ServerProcess
    watch: ServerWatch
    root_pid: int
    events_file: str


@dataclasses.dataclass(frozen=True)
class Served:
    ready: bool
    answered: Set[int]
    exited_before_ready: bool
    alive_at_deadline: bool


@dataclasses.dataclass(frozen=True)
class Stopped:
    result: StopResult
    leaks: Dict[str, Any]
    events: List[Dict[str, Any]]
    stderr_tail: str
    stdout_tail: str
    worker_exits: int
    worker_restarts: int


def launch_context(
    sc: Scenario, *, python: str, python_version: str, server_version: str, installed: Dict[str, str],
    app: str, port: int, asked: Dict[str, Any], run_dir: str,
) -> LaunchContext:  # fmt: skip
    return LaunchContext(
        python=python,
        python_version=python_version,
        server_version=server_version,
        installed=dict(installed),
        app=app,
        workers=sc.workers,
        host="127.0.0.1",
        port=port,
        uds=str(asked.get("path") or ""),
        fd=asked.get("fd"),
        strategy=sc.strategy,
        start_method=sc.start_method,
        events_path=os.path.join(run_dir, "events.jsonl"),
        run_dir=run_dir,
        options=tuple(sc.options),
    )


def launch(
    sc: Scenario,
    spec: LaunchSpec,
    env_set: Dict[str, str],
    *,
    run_dir: str,
    asked: Dict[str, Any],
    harness_sock: Optional[socket.socket],
    trace: Trace,
) -> Launched:
    """Start the server (fd:N through the exec shim that keeps the pid) and the watch readiness asks."""
    argv = [str(a) for a in spec.argv]
    fd_n = asked.get("fd")
    pass_fds: Tuple[int, ...] = ()
    if harness_sock is not None and fd_n is not None:
        src = harness_sock.fileno()
        pass_fds = (src,)
        if src != fd_n:
            argv = [argv[0], "-c", _FD_SHIM, str(src), str(fd_n), *argv]
    full_env = {k: v for k, v in os.environ.items() if k not in venvs.ENV_VARS_TO_UNSET}
    full_env.update(env_set)
    proc = ServerProcess(argv, env=full_env, cwd=run_dir, run_dir=run_dir, stdin=sc.stdin, pass_fds=pass_fds)
    trace.children_before = _children()
    trace.t0 = time.monotonic()
    proc.start()
    if harness_sock is not None:
        harness_sock.close()  # the server owns it now; our copy would keep a dead server's port "open"
    uds = str(asked.get("path") or "")
    watch = ServerWatch(
        int(proc.pid),
        proc.poll,
        workers=sc.workers,
        events_file=spec.events_path or "",
        asked=Target(uds=uds) if uds else Target(host="127.0.0.1", port=0),
        fd_port=int(asked["port"]) if asked["kind"] == "fd" else None,
    )
    return Launched(proc, watch, int(proc.pid), spec.events_path or "")


def readiness(sc: Scenario, run: Launched, deadline_s: float, trace: Trace) -> Tuple[Served, ReadyResult]:
    """The first readiness wait: N distinct worker pids answer, the master exits, or the deadline passes.

    An upstream master with no worker alive, or in a respawn loop, ends it early (ServerWatch's
    alive_until_hopeless: the evidence is the worker processes themselves, sampled every SAMPLE_S)."""
    watch, proc = run.watch, run.proc
    rr = wait_ready(
        watch.target,
        sc.workers,
        time.monotonic() + deadline_s,
        alive=watch.alive_until_hopeless,
        worker_pids=watch.worker_pids,
        ready_event=watch.ready_event,
    )
    st, t0 = trace.timings, trace.t0
    st["readiness_deadline"] = round(deadline_s, 2)
    st["first_response"] = _rel(rr.first_response, t0)
    st["all_workers"] = _rel(rr.all_workers, t0)
    st["worker_ready"] = {str(pid): _rel(t, t0) for pid, t in sorted((rr.pid_first_seen or {}).items())}
    ready_t = next((float(e["t"]) for e in watch.events() if e.get("event") == "ready" and "t" in e), None)
    st["ready_event"] = _rel(ready_t, t0)
    if watch.gave_up:
        st["readiness_gave_up"] = {"t": _rel(watch.gave_up[0][0], t0), "why": watch.gave_up[0][1]}
    trace.snapshot(run.root_pid, "ready")
    watch.worker_pids()
    served = Served(
        ready=bool(rr.ready),
        answered={int(p) for p in (rr.pid_first_seen or {})},
        exited_before_ready=(bool(rr.exited) and not watch.gave_up)
        or (not rr.ready and proc.poll() is not None),
        alive_at_deadline=not rr.ready and proc.poll() is None,
    )
    return served, rr


def fault(
    sc: Scenario, plan: faults.FaultPlan, run: Launched, served: Served, *, deadline_s: float, trace: Trace
) -> Tuple[Served, Dict[str, Any]]:
    """The runtime fault, once N workers answered, with its own load window (kept out of the load totals).

    After a worker fault readiness is proven again (the whole deadline when the server says it handled the
    fault, else a short look at who still answers), so `served` describes the server as the fault left it."""
    watch = run.watch
    target = watch.target() if plan.runtime and served.ready else None
    if target is None:
        return served, {}
    trace.mark("fault_sent")
    ctx = faults.FaultContext(
        master_pid=run.root_pid,
        workers=sc.workers,
        target=target,
        worker_pids=watch.worker_pids,
        alive=watch.alive,
        exit_code=run.proc.poll,
    )
    outcome = plan.inject(ctx)
    trace.mark("fault_done")
    trace.snapshot(run.root_pid, "after-fault")
    if not plan.reproves or "handled" not in outcome:
        return served, outcome
    # gone for good: the killed workers and, after a reload, every worker from before it
    gone = {int(outcome.get("victim_pid") or 0)} | {int(p) for p in outcome.get("victims") or ()}
    if plan.contract is not None and plan.contract.expect == "reload":
        gone |= set(served.answered)
    expected = int(outcome.get("expected_after") or sc.workers)
    again = wait_ready(
        watch.target,
        expected,
        time.monotonic() + (deadline_s if outcome.get("handled") else min(5.0, deadline_s)),
        alive=watch.alive,
        worker_pids=lambda: watch.worker_pids() - gone,
    )
    ready = bool(again.ready)
    return Served(
        ready=ready,
        answered={int(p) for p in (again.pid_first_seen or {})} - gone,
        exited_before_ready=bool(again.exited) or (not ready and run.proc.poll() is not None),
        alive_at_deadline=not ready and run.proc.poll() is None,
    ), outcome


def load(sc: Scenario, run: Launched, served: Served, base_timeout: float, trace: Trace) -> Dict[str, Any]:
    """The load phases, only against a server that proved readiness or at least answered once."""
    target = run.watch.target() if (served.ready or served.answered) and run.proc.poll() is None else None
    if target is None:
        return {}
    timeout_s = max(5.0, scaled_timeout(base_timeout, 1) / 2)  # each phase's bound, x3 on CI too
    result = dict(
        run_load(
            target,
            requests=sc.requests,
            concurrency=sc.concurrency,
            timeout_s=timeout_s,
            keepalive_requests=sc.keepalive_requests,
            expected_pids=sorted(served.answered),
            expected_workers=sc.workers,
        )
    )
    trace.mark("load_done")
    trace.snapshot(run.root_pid, "after-load")
    return result


def answered_by_load(load_result: Dict[str, Any]) -> Set[int]:
    """Worker pids that answered the fresh-connection or keep-alive phase."""
    pids: Set[int] = set()
    for per_worker in (
        load_result.get("per_worker") or {},
        (load_result.get("keepalive") or {}).get("per_worker") or {},
    ):
        pids |= {int(pid) for pid in per_worker if str(pid).isdigit()}
    return pids


def stop(sc: Scenario, run: Launched, asked: Dict[str, Any], base_timeout: float, trace: Trace) -> Stopped:
    """Stop the server, look for what survived it, and count worker exits and restarts while it ran."""
    run.watch.worker_pids()
    still_workers = psutil_workers(run.root_pid) if not run.events_file else set()
    t_stop = time.monotonic()
    trace.mark("stop_sent", t_stop)
    # the evidence a stop waits for is every process of the tree exiting; past this bound a tree still
    # making progress gets more (harness.run.process._wait_gone), an idle one is a shutdown-hang
    result = run.proc.stop(sc.stop, timeout=max(10.0, base_timeout / 2))
    trace.mark("stopped")
    trace.snapshot(run.root_pid, "after-stop", track=False)
    ports = [int(lst["port"]) for lst in listeners(trace.snapshots) if lst.get("port")]
    if asked.get("port"):
        ports.append(int(asked["port"]))
    uds = str(asked.get("path") or "")
    # the run's processes: every pid seen in its tree, and every descendant of ours that appeared since the
    # launch - a process that setsid()+double-forked out of the tree is reparented to us on Linux (the
    # harness is a child subreaper during a run: harness.run.runner._Adopting), so it is found here too
    adopted = _children() - trace.children_before - {run.root_pid}
    leaks = hinspect.find_leaks(sorted(trace.seen_pids | adopted), [uds] if uds else [], ports=ports)
    leaks = settle_zombies(dict(leaks), trace.seen_pids | adopted)
    end_leaked(leaks, adopted)
    events = run.watch.events()
    if trace.timings.get("ready_event") is None:
        # the harness can prove readiness before the server has written its `ready` line
        late = next((float(e["t"]) for e in events if e.get("event") == "ready" and "t" in e), None)
        trace.timings["ready_event"] = _rel(late, trace.t0)
    exits, restarts = _worker_churn(sc, events, t_stop, run.watch.ever_workers, still_workers)
    return Stopped(
        result=result,
        leaks=leaks,
        events=events,
        stderr_tail=str(run.proc.stderr_tail()),
        stdout_tail=str(run.proc.stdout_tail()),
        worker_exits=exits,
        worker_restarts=restarts,
    )


def _worker_churn(
    sc: Scenario, events: List[Dict[str, Any]], t_stop: float, ever: Set[int], still: Set[int]
) -> Tuple[int, int]:
    """(worker exits, restarts) while the server was meant to run: from its events, else from psutil."""
    if events:
        # only what happened while the server was meant to run: the stop makes every worker exit
        running = [ev for ev in events if float(ev.get("t", 0.0)) < t_stop]
        return _count(running, "worker-exit"), _count(running, "worker-restart")
    # beyond the N asked for, every new worker pid replaced one that died
    restarts = max(0, len(ever) - sc.workers) if ever else 0
    return (len(ever - still) if ever else 0), restarts


def _count(events: List[Dict[str, Any]], name: str) -> int:
    return sum(1 for ev in events if ev.get("event") == name)


def observe(
    sc: Scenario,
    served: Served,
    rr: ReadyResult,
    load_result: Dict[str, Any],
    stopped: Stopped,
    *,
    asked: Dict[str, Any],
    snapshots: List[Dict[str, Any]],
    fault_outcome: Dict[str, Any],
) -> Observation:
    """Everything the classifier judges, from the stages' results."""
    errors = load_result.get("errors") or {}
    status = load_result.get("status") or {}
    kept_raw = load_result.get("keepalive")
    kept: Dict[str, Any] = kept_raw if isinstance(kept_raw, dict) else {}
    code = stopped.result.exit_code
    return Observation(
        platform=sys.platform,
        expected_workers=sc.workers,
        ready=served.ready,
        answered_pids=tuple(sorted(served.answered)),
        any_response=bool(served.answered) or rr.first_response is not None,
        exited_before_ready=served.exited_before_ready,
        exit_code=code if served.exited_before_ready else None,
        alive_at_deadline=served.alive_at_deadline,
        connect_errors=tuple(sorted(str(e) for e in (rr.errors or {}))),
        asked=dict(asked),
        listeners=tuple(listeners(snapshots)),
        worker_exits=stopped.worker_exits,
        worker_restarts=stopped.worker_restarts,
        load_requests=int(load_result.get("requests", 0) or 0),
        load_errors=sum(int(n) for n in errors.values()) if isinstance(errors, dict) else int(errors or 0),
        load_non_2xx=sum(int(n) for c, n in status.items() if not str(c).startswith("2")),
        stop_escalated=bool(stopped.result.escalated),
        stop_exit_code=code,
        leaks={k: list(v) for k, v in stopped.leaks.items()},
        # stderr first, then stdout: some servers (granian) log their fatal lines on stdout
        stderr="\n".join(t for t in (stopped.stderr_tail, stopped.stdout_tail) if t),
        events=tuple(stopped.events),
        fault=sc.fault,
        fault_outcome=dict(fault_outcome),
        keepalive_latency=dict(kept.get("latency_ms") or {}),
        keepalive_ok=int(kept.get("ok", 0) or 0),
        keepalive_body_gap=dict(kept.get("body_gap_ms") or {}),
    )


def _children() -> Set[int]:
    try:
        return {p.pid for p in psutil.Process().children(recursive=True)}
    except psutil.Error:
        return set()


def end_leaked(leaks: Dict[str, Any], adopted: Set[int]) -> None:
    """SIGKILL every process the leak check found (it is recorded first: the verdict keeps the leak), and
    reap the ones that became our children, so nothing of the run outlives its record. Each entry gets
    `killed`: True when it is gone now."""
    procs: List[psutil.Process] = []
    for entry in leaks.get("processes") or []:
        try:
            p = psutil.Process(int(entry["pid"]))
            for child in p.children(recursive=True):
                child.kill()
            p.kill()
            procs.append(p)
        except (psutil.Error, KeyError, TypeError, ValueError):
            pass
    gone, _ = psutil.wait_procs(procs, timeout=5.0)
    dead = {p.pid for p in gone}
    for entry in leaks.get("processes") or []:
        if isinstance(entry, dict):
            entry["killed"] = entry.get("pid") in dead or not psutil.pid_exists(int(entry.get("pid") or 0))
    if sys.platform != "win32":  # zombies of detached processes now ours (Linux subreaper): reap them
        for pid in adopted:
            try:
                os.waitpid(pid, os.WNOHANG)
            except (ChildProcessError, OSError):
                pass


def settle_zombies(leaks: Dict[str, Any], run_pids: Set[int]) -> Dict[str, Any]:
    """Drop leaked 'processes' that are zombies adopted by init (or another reaper outside the run).

    After the master exits, a helper that exits a moment later (multiprocessing's resource_tracker under
    spawn) is reparented to init and stays a zombie until init gets round to reaping it, which on some
    machines takes seconds: it has exited and holds nothing. A zombie whose parent is still one of the
    run's processes is kept: that parent is alive and failing to reap it (and is a leak itself)."""
    kept = []
    for p in list(leaks.get("processes") or []):
        if isinstance(p, dict) and p.get("status") == psutil.STATUS_ZOMBIE:
            try:
                ppid = psutil.Process(int(p["pid"])).ppid()
            except psutil.Error:
                continue  # reaped meanwhile
            if ppid not in run_pids:
                continue
        kept.append(p)
    out = dict(leaks)
    out["processes"] = kept
    return out


def listeners(snapshots: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Distinct listeners seen in the snapshots taken while the server ran (not after the stop)."""
    seen: Dict[str, Dict[str, Any]] = {}
    for snap in snapshots:
        if snap.get("phase") == "after-stop":
            continue
        for lst in snap.get("listeners", []) or []:
            key = json.dumps({k: lst.get(k) for k in ("family", "address", "port", "path")}, sort_keys=True)
            seen.setdefault(key, dict(lst))
    return list(seen.values())


__all__ = [
    "Launched",
    "Served",
    "Stopped",
    "Trace",
    "answered_by_load",
    "fault",
    "launch",
    "launch_context",
    "listeners",
    "load",
    "observe",
    "readiness",
    "scaled_timeout",
    "settle_zombies",
    "stop",
]
