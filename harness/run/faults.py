"""Faults (`--fault NAME`): what the harness does to a running (or about to run) server, and what the
server did about it.

    plan = faults.plan(scenario, scratch_dir)   # FaultPlan; the no-op plan for fault ""
    ... launch with plan.app, plan.port, a UDS path when plan.needs_uds ...
    outcome = plan.inject(ctx)                  # runtime faults, after readiness; {} for the others
    ... stop, leaks ...
    outcome = plan.conclude(outcome, ready=..., exit_code=..., stderr=...)   # -> ResultRecord.fault
    plan.close()

FAULTS (name -> Fault), three kinds:

* runtime - injected once N workers answered, while a bounded fresh-connection load runs:
  kill-worker (SIGKILL one worker), stop-worker (SIGSTOP one worker: a hung worker; resumed afterwards),
  kill-master (SIGKILL the master), term-master-only (the graceful stop signal to the master alone)
* launch - the environment is spoiled before the launch: port-in-use (the harness holds a listening socket
  on the port the server is given), stale-uds (a socket file nobody listens on at the UDS path)
* app - the app is replaced: import-error (servers.apps_broken:app), lifespan-failure
  (servers.apps:failing_lifespan)

The outcome (plain JSON, ResultRecord.fault) always has `fault`, `kind`, `expected` (what a good supervisor
does), `handled` (True: it did; False: it did not; None: cannot tell) and `why` (one sentence), plus what
was measured: `victim_pid`, `worker_replaced`, `new_pids`, `recovery_s` (injection -> all N workers answer
again), `requests` / `failed_requests` (the load during the fault window), `probe_errors`,
`server_exited`, `exit_code`, `workers_left` (kill-master), `exit_s`.

Processes are signalled through psutil (kill / suspend / resume work on every OS) and the harness's
platform module (the graceful stop); every wait is bounded by a time.monotonic() deadline.
"""

import dataclasses
import os
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Set

import psutil

from harness import _platform
from harness.model.records import Scenario
from harness.run.calibrate import contention
from harness.run.load import run_load
from harness.run.readiness import Target, wait_ready

#: seconds a runtime fault waits for the server to come back (stop-worker: gunicorn's default --timeout
#: is 30 s, so it gets longer). The evidence waited for is a replacement worker's answer; the budget is
#: stretched by the CPU share this process gets now (harness.run.calibrate.contention), so a respawn that a
#: loaded runner slows is still seen, while a server that never replaces is given up on at the same point
#: of its own behaviour
RECOVERY_S = 20.0
STOP_WORKER_RECOVERY_S = 40.0
#: the fault-window load: fresh-connection batches of this size, this many in flight
BATCH = 40
CONCURRENCY = 8
REQUEST_TIMEOUT_S = 3.0

BROKEN_APP = "servers.apps_broken:app"
LIFESPAN_APP = "servers.apps:failing_lifespan"


class UnknownFault(ValueError):
    """`--fault` names no fault; str(exc) is one line."""


@dataclasses.dataclass
class FaultContext:
    """What a runtime fault needs from the runner (callables, so this module never holds a Popen).

    * master_pid - the server's master; workers - N asked for
    * target - where to send requests (loopback only)
    * worker_pids() - the server's current worker pids (events or psutil)
    * alive() - the master is still running; exit_code() - its code once exited (None while alive)
    * recovery_s - override of the fault's recovery deadline
    """

    master_pid: int
    workers: int
    target: Target
    worker_pids: Callable[[], Set[int]]
    alive: Callable[[], bool]
    exit_code: Callable[[], Optional[int]]
    recovery_s: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class Fault:
    name: str
    kind: str  # runtime | launch | app
    expected: str


FAULTS: Dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("kill-worker", "runtime", "the dead worker is replaced and all N workers answer again"),
        Fault(
            "stop-worker",
            "runtime",
            "the hung worker is detected (heartbeat/timeout), killed and replaced; all N answer again",
        ),
        Fault("kill-master", "runtime", "the workers notice the master is gone and exit"),
        Fault(
            "term-master-only",
            "runtime",
            "the master stops its workers gracefully and exits 0, leaving no worker behind",
        ),
        Fault("port-in-use", "launch", "exits non-zero at once, one line saying the bind failed"),
        Fault("stale-uds", "launch", "the stale socket file (nobody listening) is replaced and served"),
        Fault("import-error", "app", "exits non-zero with the import error; no hang, no respawn loop"),
        Fault("lifespan-failure", "app", "exits non-zero after the failed lifespan startup; no hang"),
    )
}


def check(name: str) -> None:
    """UnknownFault (one line) unless `name` is "" or a fault."""
    if name and name not in FAULTS:
        raise UnknownFault(f"unknown fault {name!r} (known: {', '.join(FAULTS)})")


# --- helpers -------------------------------------------------------------------------------------------


def _proc(pid: int) -> Optional[psutil.Process]:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _running(pid: int) -> bool:
    p = _proc(pid)
    try:
        return p is not None and p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class _Load:
    """Fresh-connection load in batches on a thread until stop(); totals of the window."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.requests = 0
        self.errors = 0
        self.non_2xx = 0
        self.error_kinds: Dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-load", daemon=True)

    def start(self) -> "_Load":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                res = run_load(
                    self.target,
                    requests=BATCH,
                    concurrency=CONCURRENCY,
                    timeout_s=REQUEST_TIMEOUT_S * 2,
                    keepalive_requests=0,
                    request_timeout_s=REQUEST_TIMEOUT_S,
                )
            except Exception as exc:  # a thread boundary: count it, never lose the fault's outcome
                self.errors += 1
                key = type(exc).__name__
                self.error_kinds[key] = self.error_kinds.get(key, 0) + 1
                return
            self.requests += int(res.get("requests", 0) or 0)
            errs = res.get("errors") or {}
            for key, n in errs.items() if isinstance(errs, dict) else ():
                self.errors += int(n)
                self.error_kinds[str(key)] = self.error_kinds.get(str(key), 0) + int(n)
            for code, n in (res.get("status") or {}).items():
                if not str(code).startswith("2"):
                    self.non_2xx += int(n)

    def stop(self, deadline: float) -> None:
        self._stop.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))

    def result(self) -> Dict[str, Any]:
        return {
            "requests": self.requests,
            "failed_requests": self.errors + self.non_2xx,
            "request_errors": dict(sorted(self.error_kinds.items())),
        }


def _wait_exit(ctx: FaultContext, deadline: float) -> Optional[float]:
    """Seconds until the master exited, None if it did not by the deadline (polled: an exit has no
    event we can select on from here)."""
    t0 = time.monotonic()
    delay = 0.005
    while time.monotonic() < deadline:
        if not ctx.alive():
            return round(time.monotonic() - t0, 3)
        time.sleep(delay)  # polling interval of a bounded wait, not synchronisation
        delay = min(delay * 2, 0.1)
    return None


def _wait_gone(pids: List[int], deadline: float) -> List[int]:
    """Pids still running (zombies count as gone: an orphan's zombie waits for init, which may be slow)
    at the deadline, or [] as soon as all are gone. Polled: these are not our children."""
    left = [pid for pid in pids if _running(pid)]
    delay = 0.005
    while left and time.monotonic() < deadline:
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))  # bounded poll, not synchronisation
        delay = min(delay * 2, 0.1)
        left = [pid for pid in left if _running(pid)]
    return sorted(left)


# --- the plan ------------------------------------------------------------------------------------------


class FaultPlan:
    """One run's fault: the launch overrides it needs, its injection and its verdict. See module doc."""

    def __init__(self, name: str, app: str, scratch: str) -> None:
        check(name)
        self.name = name
        self.fault: Optional[Fault] = FAULTS.get(name)
        self.kind = self.fault.kind if self.fault else ""
        self.app = app
        self.port = 0
        self.needs_uds = name == "stale-uds"
        self.uds_path = os.path.join(scratch, "s.sock") if self.needs_uds else ""
        self._holder: Optional[socket.socket] = None
        #: non-empty: this fault cannot be expressed here (the runner records `unsupported` with it)
        self.unsupported = ""
        if name == "import-error":
            self.app = BROKEN_APP
        elif name == "lifespan-failure":
            self.app = LIFESPAN_APP
        elif name == "port-in-use":
            # The address is taken by a socket the harness keeps listening until close().
            self._holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._holder.bind(("127.0.0.1", 0))
            self._holder.listen(1)
            self.port = int(self._holder.getsockname()[1])
        elif name == "stale-uds" and not hasattr(socket, "AF_UNIX"):
            self.unsupported = "stale-uds needs AF_UNIX sockets, which this Python has not"
        elif name == "stale-uds":
            # A socket file whose socket is gone: bound, never listening, closed without unlink.
            stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # type: ignore[attr-defined,unused-ignore]
            try:
                stale.bind(self.uds_path)
            finally:
                stale.close()

    @property
    def runtime(self) -> bool:
        return self.kind == "runtime"

    def close(self) -> None:
        if self._holder is not None:
            self._holder.close()
            self._holder = None

    def __enter__(self) -> "FaultPlan":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def base(self) -> Dict[str, Any]:
        if self.fault is None:
            return {}
        out: Dict[str, Any] = {"fault": self.name, "kind": self.kind, "expected": self.fault.expected}
        if self.port:
            out["port"] = self.port
        if self.uds_path:
            out["uds_path"] = self.uds_path
        if self.app != "" and self.kind == "app":
            out["app"] = self.app
        return out

    # -- runtime ------------------------------------------------------------------------------------

    def inject(self, ctx: FaultContext) -> Dict[str, Any]:
        """Inject a runtime fault and measure the server's answer; {} for other kinds."""
        if not self.runtime:
            return self.base()
        out = self.base()
        before = set(ctx.worker_pids())
        victims = sorted(before)
        budget = ctx.recovery_s or (STOP_WORKER_RECOVERY_S if self.name == "stop-worker" else RECOVERY_S)
        budget *= contention()
        if self.name in ("kill-worker", "stop-worker") and not victims:
            out.update(handled=None, why="no worker pid known: nothing to inject into")
            return out
        load = _Load(ctx.target).start()
        t0 = time.monotonic()
        deadline = t0 + budget
        try:
            if self.name in ("kill-worker", "stop-worker"):
                out.update(self._worker_fault(ctx, victims[0], before, t0, deadline))
            else:
                out.update(self._master_fault(ctx, victims, t0, deadline))
        finally:
            load.stop(time.monotonic() + 2 * REQUEST_TIMEOUT_S + 5)
        out.update(load.result())
        return out

    def _worker_fault(
        self, ctx: FaultContext, victim: int, before: Set[int], t0: float, deadline: float
    ) -> Dict[str, Any]:
        out: Dict[str, Any] = {"victim_pid": victim}
        proc = _proc(victim)
        try:
            if proc is not None:
                if self.name == "kill-worker":
                    proc.kill()
                else:
                    proc.suspend()  # SIGSTOP on POSIX, NtSuspendProcess on Windows
            rr = wait_ready(
                lambda: ctx.target,
                ctx.workers,
                deadline,
                alive=ctx.alive,
                worker_pids=lambda: set(ctx.worker_pids()) - {victim},
            )
        finally:
            if self.name == "stop-worker" and proc is not None:
                try:
                    proc.resume()  # never leave our SIGSTOP for the server's stop to trip over
                except psutil.Error:
                    pass
        now_workers = set(ctx.worker_pids()) - {victim}
        new = sorted(now_workers - before)
        out["worker_replaced"] = bool(new)
        out["new_pids"] = new
        out["recovery_s"] = round(rr.all_workers - t0, 3) if rr.ready and rr.all_workers else None
        out["probe_errors"] = dict(sorted((rr.errors or {}).items()))
        out["server_exited"] = not ctx.alive()
        out["exit_code"] = ctx.exit_code()
        out["victim_alive"] = _running(victim)
        if out["server_exited"]:
            out.update(handled=False, why=f"the server exited (code {out['exit_code']}) after a worker fault")
        elif rr.ready and new:
            out.update(handled=True, why=f"replaced; all {ctx.workers} answered after {out['recovery_s']} s")
        elif not new:
            out.update(handled=False, why=f"the worker was not replaced within {deadline - t0:g} s")
        else:
            out.update(handled=False, why=f"replaced, but not all {ctx.workers} workers answered in time")
        return out

    def _master_fault(
        self, ctx: FaultContext, workers: List[int], t0: float, deadline: float
    ) -> Dict[str, Any]:
        out: Dict[str, Any] = {"victim_pid": ctx.master_pid}
        if self.name == "kill-master":
            p = _proc(ctx.master_pid)
            if p is not None:
                p.kill()
        else:
            out["signal"] = _platform.send_stop(ctx.master_pid, "master")
        exit_s = _wait_exit(ctx, deadline)
        left = _wait_gone(workers, deadline)
        out["server_exited"] = exit_s is not None
        out["exit_s"] = exit_s
        out["exit_code"] = ctx.exit_code()
        out["workers_left"] = left
        out["workers_gone_s"] = round(time.monotonic() - t0, 3) if not left else None
        if self.name == "kill-master":
            if left:
                why = f"{len(left)} worker(s) still ran {deadline - t0:g} s after the master died"
                out.update(handled=False, why=why)
            else:
                out.update(handled=True, why=f"all workers exited {out['workers_gone_s']} s after the master")
        elif exit_s is None:
            out.update(handled=False, why=f"the master did not exit within {deadline - t0:g} s")
        elif left:
            out.update(handled=False, why=f"the master exited but {len(left)} worker(s) were left running")
        elif out["exit_code"] != 0:
            out.update(handled=False, why=f"stopped, but exited {out['exit_code']} instead of 0")
        else:
            out.update(handled=True, why=f"stopped cleanly (exit 0) {exit_s} s after the signal")
        return out

    # -- verdict --------------------------------------------------------------------------------------

    def conclude(
        self, outcome: Dict[str, Any], *, ready: bool, exit_code: Optional[int], stderr: str
    ) -> Dict[str, Any]:
        """The final outcome: for launch/app faults the verdict is read from how the run ended."""
        if self.fault is None:
            return {}
        out = dict(outcome) if outcome else self.base()
        if self.runtime:
            out.setdefault("final_exit_code", exit_code)
            if "handled" not in out:
                out.update(handled=None, why="the fault was not injected (the server never became ready)")
            return out
        lines = [ln.strip() for ln in (stderr or "").splitlines() if ln.strip()]
        out["ready"] = ready
        out["server_exited"] = not ready
        out["exit_code"] = exit_code
        out["stderr_lines"] = len(lines)
        out["last_line"] = lines[-1][:300] if lines else ""
        traceback = any(ln.startswith("Traceback") for ln in lines)
        if self.name == "stale-uds":
            ok = ready
            why = "served on the UDS path despite the stale file" if ok else "did not serve on the UDS path"
        elif ready:
            ok, why = False, "the server became ready although it should have failed"
        elif exit_code is None:
            ok, why = False, "the server did not exit (hung or kept respawning)"
        elif exit_code == 0:
            ok, why = False, "the server failed but exited 0"
        elif self.name == "port-in-use" and (traceback or not any(_in_use(ln) for ln in lines)):
            ok = False
            why = f"exited {exit_code}, but " + ("with a traceback" if traceback else "no line says: in use")
        else:
            ok, why = True, f"exited {exit_code}: {out['last_line'][:160]}"
        out["handled"] = ok
        out["why"] = why
        return out


def _in_use(line: str) -> bool:
    low = line.lower()
    return "in use" in low or "eaddrinuse" in low or "errno 98" in low or "10048" in low


def plan(scenario: Scenario, scratch: str) -> FaultPlan:
    """The FaultPlan of `scenario.fault` (a no-op plan for ""); UnknownFault for an unknown name.
    Needs the run's private scratch directory (the stale-uds socket file goes there)."""
    return FaultPlan(str(scenario.fault or ""), str(scenario.app), scratch)


def summary(outcome: Dict[str, Any]) -> str:
    """One line for reports and the CLI: `kill-worker: handled (replaced; ...)`."""
    if not outcome:
        return ""
    handled = outcome.get("handled")
    word = {True: "handled", False: "NOT handled", None: "unknown"}.get(handled, "unknown")
    return f"{outcome.get('fault', '?')}: {word} ({outcome.get('why', '')})"


__all__ = [
    "FAULTS",
    "Fault",
    "FaultContext",
    "FaultPlan",
    "UnknownFault",
    "check",
    "plan",
    "summary",
]
