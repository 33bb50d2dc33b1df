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
  kill-master (SIGKILL the master), term-master-only (the graceful stop signal to the master alone),
  kill-workers:K / kill-workers:all (SIGKILL K or every worker at the same instant),
  signal-master:SIG (SIG in harness.run.contracts.SIGNALS, sent to the master alone `fault_repeat` times,
  `fault_interval` s apart; checked against the contract the server's adapter declares)
* launch - the environment is spoiled before the launch: port-in-use (the harness holds a listening socket
  on the port the server is given), stale-uds (a socket file nobody listens on at the UDS path)
* app - the app is replaced: import-error (servers.apps_broken:app), lifespan-failure
  (servers.apps:failing_lifespan)

The outcome (plain JSON, ResultRecord.fault) always has `fault`, `kind`, `expected` (what a good supervisor
does), `handled` (True: it did; False: it did not; None: cannot tell) and `why` (one sentence), plus what
was measured: `victim_pid`, `worker_replaced`, `new_pids`, `recovery_s` (injection -> all N workers answer
again), `requests` / `failed_requests` (the load during the fault window), `probe_errors`,
`server_exited`, `exit_code`, `workers_left` (kill-master), `exit_s`, `orphans_answered_s` (kill-master:
the workers left still answered new connections ORPHAN_PROOF_S x contention after the master died).

After every runtime fault that leaves the master running, `workers_after` (the live workers once the count
settled) and `expected_after` (what the fault's contract leaves: N, N+k after TTIN...) are recorded: more
than expected is the class excess-workers, fewer after kill-workers is partial-workers. signal-master also
records `contract` {signal, expect, source}, `sent`, `steps` (per signal what was seen), `violation` (the
first breach of the contract, one line naming the signal, what was observed and what was expected) and
`resources` {before, after, growth}: the master's open fds / handles, threads and child processes sampled
before the first signal and after the count settled; growth beyond RESOURCE_SLACK is a `leak`.

Processes are signalled through psutil (kill / suspend / resume work on every OS) and the harness's
platform module (the graceful stop); every wait is bounded by a time.monotonic() deadline.
"""

import dataclasses
import os
import signal
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import psutil

from harness import _platform
from harness.model.records import Scenario
from harness.run import contracts
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

#: a signal whose contract keeps the workers is watched this long (x contention, at least the interval)
#: for a worker dying of it: the evidence is an original worker pid gone, and a signal's default action
#: (terminate) acts on delivery
KEEP_WATCH_S = 2.0
#: kill-master: a worker that still answers a new connection this long (x contention) after its master's
#: SIGKILL did not notice it and will not: the parent-death watchers in the servers' sources act at once
#: (EOF on a control pipe: this repository's server; PR_SET_PDEATHSIG) or check the parent on every pass
#: of a loop that wakes at least once a second while it serves (gunicorn's workers: is_parent_alive() per
#: accept pass / select(1.0)), and a worker that noticed leaves that loop and accepts nothing more. The
#: evidence is that answer (x-worker-pid on a fresh connection begun after this point); a worker that
#: neither answers nor exits is still waited for until the RECOVERY_S deadline
ORPHAN_PROOF_S = 3.0
#: kill-workers: no new worker pid this long (x contention) after the kill is a master not replacing
NO_REPLACEMENT_S = 6.0
#: a worker count that did not move for this long (x contention) has settled where it is: workers that
#: drain or start show up as pids appearing or going well within it
SETTLED_S = 3.0
#: ... and a count that reached what was expected is watched this long (x contention) for one more
#: change: two passes of a supervisor that checks its children every 0.5 s (uvicorn)
SETTLED_EQUAL_S = 1.2
#: growth of the master's resources over a signal sequence that is not a leak: fds / handles, threads,
#: child processes beyond what the contract changes (a worker's pipe or temp file per added worker is
#: allowed on top: PER_WORKER_FDS). Read: gunicorn 26.0.0 leaks 2 fds per worker per HUP (#3648), so 10
#: HUPs at 2 workers are ~40 fds; a correct master stays within a handful.
RESOURCE_SLACK = {"fds": 8, "threads": 2, "children": 1}
PER_WORKER_FDS = 4
#: the most signals one run may send (and kill-workers' K is at most --workers)
MAX_REPEAT = 1000
MAX_INTERVAL_S = 60.0

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
        Fault(
            "kill-workers",
            "runtime",
            "every killed worker is replaced and exactly N workers answer again",
        ),
        Fault(
            "signal-master",
            "runtime",
            "the master does what its server documents for the signal (harness.run.contracts)",
        ),
    )
}
#: faults that take an argument after a colon, and what it is
ARGUMENTS = {
    "kill-workers": "K (a worker count) or all",
    "signal-master": "SIG: " + " ".join(contracts.SIGNALS),
}


def split(name: str) -> Tuple[str, str]:
    """`signal-master:HUP` -> ("signal-master", "HUP"); `kill-worker` -> ("kill-worker", "")."""
    base, _, arg = str(name or "").partition(":")
    return base, arg


def check(name: str, workers: Optional[int] = None, repeat: int = 1, interval: float = 1.0) -> None:
    """UnknownFault (one line) unless `name` is "" or a fault with a valid argument (and, given, a
    worker count it fits, a repeat count and an interval in range)."""
    if not name:
        return
    base, arg = split(name)
    if base not in FAULTS:
        raise UnknownFault(f"unknown fault {name!r} (known: {', '.join(FAULTS)})")
    if base in ARGUMENTS and not arg:
        raise UnknownFault(f"fault {base!r} needs an argument: {base}:{ARGUMENTS[base]}")
    if base not in ARGUMENTS and arg:
        raise UnknownFault(f"fault {base!r} takes no argument (got {arg!r})")
    if base == "signal-master":
        sig = arg.upper()[3:] if arg.upper().startswith("SIG") else arg.upper()
        if sig not in contracts.SIGNALS:
            raise UnknownFault(
                f"signal-master: unknown signal {arg!r} (known: {' '.join(contracts.SIGNALS)})"
            )
    if base == "kill-workers" and arg != "all":
        if not arg.isdigit() or int(arg) < 1:
            raise UnknownFault(f"kill-workers: K must be a worker count >= 1 or 'all', not {arg!r}")
        if workers is not None and int(arg) > workers:
            raise UnknownFault(f"kill-workers:{arg} kills more workers than the {workers} asked for")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= MAX_REPEAT:
        raise UnknownFault(f"fault_repeat must be an integer in 1..{MAX_REPEAT}, not {repeat!r}")
    if not interval_ok(interval):
        raise UnknownFault(f"fault_interval must be seconds in 0..{MAX_INTERVAL_S:g}, not {interval!r}")


def interval_ok(interval: object) -> bool:
    """A fault interval in 0..MAX_INTERVAL_S seconds (NaN and infinities are not)."""
    return (
        isinstance(interval, (int, float))
        and not isinstance(interval, bool)
        and 0.0 <= interval <= MAX_INTERVAL_S
    )


def signal_of(name: str) -> str:
    """The bare signal name of a signal-master fault ("HUP"), else ""."""
    base, arg = split(name)
    if base != "signal-master":
        return ""
    up = arg.upper()
    return up[3:] if up.startswith("SIG") else up


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


#: the longest the master is held stopped while its workers are killed (the kills take microseconds)
PAUSE_LIMIT_S = 2.0


def _kill_at_once(master_pid: int, procs: List["psutil.Process"]) -> Optional[float]:
    """SIGKILL every victim so that the master sees them die together: the master is SIGSTOPped, the
    victims are killed and seen dead (zombies: their parent is stopped, so none is reaped yet), then the
    master is SIGCONTinued, and every worker is dead at its first look. Back-to-back kills alone are not
    that on a loaded machine: the harness can be preempted between two kills, and the master's check
    between them sees one death at a time (uvicorn 0.30.1's double-respawn of #2373 then did not show:
    `degraded` instead of `excess-workers`, once in a full suite beside 3 CPU hogs). Returns the seconds
    the master was held (None where there is no SIGSTOP: Windows, where the kills are back to back)."""
    stop: int = getattr(signal, "SIGSTOP", 0)  # 0: not on this OS
    cont: int = getattr(signal, "SIGCONT", 0)
    held = bool(stop and cont) and len(procs) > 1 and master_pid > 0
    t0 = time.monotonic()
    if held:
        try:
            os.kill(master_pid, stop)
        except OSError:
            held = False  # the master is gone: the kills below are what is left to do
    try:
        for p in procs:
            try:
                p.kill()
            except psutil.Error:
                pass
        if held:  # evidence, not a delay: each victim is a zombie or gone (bounded by PAUSE_LIMIT_S)
            _wait_gone([p.pid for p in procs], t0 + PAUSE_LIMIT_S)
    finally:
        if held:
            try:
                os.kill(master_pid, cont)
            except OSError:
                pass
    return round(time.monotonic() - t0, 4) if held else None


class _Load:
    """Fresh-connection load in batches on a thread until stop(); totals of the window."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.requests = 0
        self.errors = 0
        self.non_2xx = 0
        self.error_kinds: Dict[str, int] = {}
        #: worker pid -> monotonic start of the latest batch it answered in (x-worker-pid)
        self.answered: Dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-load", daemon=True)

    def start(self) -> "_Load":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
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
            for key, n in (res.get("per_worker") or {}).items():
                if str(key).isdigit() and int(n) > 0:
                    self.answered[int(key)] = began

    def answered_since(self, pids: List[int], since: float) -> bool:
        """Every pid answered a connection begun at or after `since` (monotonic)."""
        return bool(pids) and all(self.answered.get(pid, -1.0) >= since for pid in pids)

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


def _wait_gone(
    pids: List[int], deadline: float, proven: Optional[Callable[[List[int]], bool]] = None
) -> List[int]:
    """Pids still running (zombies count as gone: an orphan's zombie waits for init, which may be slow)
    at the deadline, or when `proven(left)` says the ones left will not go, or [] as soon as all are
    gone. Polled: these are not our children."""
    left = [pid for pid in pids if _running(pid)]
    delay = 0.005
    while left and time.monotonic() < deadline and not (proven is not None and proven(left)):
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))  # bounded poll, not synchronisation
        delay = min(delay * 2, 0.1)
        left = [pid for pid in left if _running(pid)]
    return sorted(left)


# --- the plan ------------------------------------------------------------------------------------------


class FaultPlan:
    """One run's fault: the launch overrides it needs, its injection and its verdict. See module doc."""

    def __init__(
        self, name: str, app: str, scratch: str, *, workers: int = 2, repeat: int = 1, interval: float = 1.0
    ) -> None:
        check(name, workers, repeat, interval)
        self.name = name
        self.base_name, self.arg = split(name)
        self.fault: Optional[Fault] = FAULTS.get(self.base_name)
        self.kind = self.fault.kind if self.fault else ""
        self.repeat = int(repeat)
        self.interval = float(interval)
        self.signal = signal_of(name)
        #: signal-master: the contract the adapter declares (set_contract), None until then
        self.contract: Optional[contracts.Contract] = None
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
        elif self.signal and _platform.signal_unavailable(self.signal):
            self.unsupported = _platform.signal_unavailable(self.signal)
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

    def set_contract(self, adapter: object, version: str) -> None:
        """signal-master: look up what the server documents for the signal at this version; none
        documented makes the run `unsupported` (nothing is sent that nobody promised anything about)."""
        if not self.signal or self.unsupported:
            return
        found = contracts.contract_for(adapter, version, self.signal)
        if isinstance(found, str):
            self.unsupported = found
        else:
            self.contract = found

    @property
    def reproves(self) -> bool:
        """After this fault, readiness is proven again (the master should still be serving)."""
        if self.base_name in ("kill-worker", "stop-worker", "kill-workers"):
            return True
        return self.contract is not None and self.contract.expect not in contracts.STOPPING

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
        if self.contract is not None:
            c = self.contract
            out["contract"] = {"signal": c.signal, "expect": c.expect, "text": c.text, "source": c.source}
            out["expected"] = f"SIG{c.signal}: {c.text}"
        if self.signal:
            out["repeat"] = 1 if self.contract and self.contract.expect in contracts.STOPPING else self.repeat
            out["interval_s"] = self.interval
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
        if self.base_name in ("kill-worker", "stop-worker", "kill-workers", "signal-master") and not victims:
            out.update(handled=None, why="no worker pid known: nothing to inject into")
            return out
        if self.signal and self.contract is None:
            out.update(handled=None, why="no contract was looked up for the signal: nothing sent")
            return out
        load = _Load(ctx.target).start()
        t0 = time.monotonic()
        deadline = t0 + budget
        try:
            if self.name in ("kill-worker", "stop-worker"):
                out.update(self._worker_fault(ctx, victims[0], before, t0, deadline))
            elif self.base_name == "kill-workers":
                out.update(self._kill_workers(ctx, before, t0, deadline))
            elif self.base_name == "signal-master":
                out.update(self._signal_master(ctx, before, t0, budget))
            else:
                out.update(self._master_fault(ctx, victims, t0, deadline, load))
            if self.reproves and not out.get("server_exited"):
                # the upper bound after every fault that leaves the master up: settle to the count the
                # fault leaves (evidence: the live worker count reaching it), then compare; a signal
                # sequence has settled it already (before sampling the master's resources)
                expected = int(out.get("expected_after") or ctx.workers)
                out["expected_after"] = expected
                if "workers_after" not in out:
                    out["workers_after"] = _settle_count(ctx, expected, time.monotonic() + budget / 2)
                if out["workers_after"] != expected and out.get("handled"):
                    why = f"{out['workers_after']} workers ran after the fault settled; expected {expected}"
                    out.update(handled=False, why=why)
        finally:
            load.stop(time.monotonic() + 2 * REQUEST_TIMEOUT_S + 5)
        out.update(load.result())
        if self.base_name == "signal-master":
            self._judge_signal(out)
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

    def _kill_workers(
        self, ctx: FaultContext, before: Set[int], t0: float, deadline: float
    ) -> Dict[str, Any]:
        """SIGKILL K (or all) workers at once, as the master sees it, then wait for N workers from new pids
        to answer."""
        victims = sorted(before) if self.arg == "all" else sorted(before)[: int(self.arg)]
        procs = [p for p in (_proc(pid) for pid in victims) if p is not None]
        paused = _kill_at_once(ctx.master_pid, procs)
        gone = set(victims)
        # the evidence waited for is a replacement: a new worker pid. A master that starts none within
        # NO_REPLACEMENT_S (x contention) of the kill - or of the last new pid - is not replacing them
        # (uvicorn < 0.30 never does), so the wait ends there rather than at the recovery deadline
        grace = NO_REPLACEMENT_S * contention()
        last_new = [time.monotonic(), 0]

        def still_hopeful() -> bool:
            if not ctx.alive():
                return False
            new_count = len(set(ctx.worker_pids()) - before)
            if new_count != last_new[1]:
                last_new[:] = [time.monotonic(), new_count]
            return new_count >= len(victims) or time.monotonic() - last_new[0] < grace

        rr = wait_ready(
            lambda: ctx.target,
            ctx.workers,
            deadline,
            alive=still_hopeful,
            worker_pids=lambda: set(ctx.worker_pids()) - gone,
        )
        now_workers = set(ctx.worker_pids()) - gone
        new = sorted(now_workers - before)
        out: Dict[str, Any] = {
            "victims": victims,
            "killed": len(victims),
            "master_paused_s": paused,
            "worker_replaced": len(new) >= len(victims),
            "new_pids": new,
            "recovery_s": round(rr.all_workers - t0, 3) if rr.ready and rr.all_workers else None,
            "probe_errors": dict(sorted((rr.errors or {}).items())),
            "server_exited": not ctx.alive(),
            "exit_code": ctx.exit_code(),
            "expected_after": ctx.workers,
        }
        if out["server_exited"]:
            out.update(
                handled=False,
                why=f"the server exited (code {out['exit_code']}) after {len(victims)} workers died",
            )
        elif rr.ready:
            out.update(handled=True, why=f"all {ctx.workers} answered again after {out['recovery_s']} s")
        else:
            waited = round(time.monotonic() - t0, 1)
            why = f"{len(new)} of {len(victims)} killed workers replaced; gave up after {waited:g} s"
            out.update(handled=False, why=why)
        return out

    def _signal_master(self, ctx: FaultContext, before: Set[int], t0: float, budget: float) -> Dict[str, Any]:
        """Send the signal `repeat` times, `interval` s apart, each time waiting for the evidence the
        contract names (below), and sample the master's resources before the first and after the last."""
        contract = self.contract
        assert contract is not None
        expect = contract.expect
        repeat = 1 if expect in contracts.STOPPING else self.repeat
        out: Dict[str, Any] = {"victim_pid": ctx.master_pid, "sent": 0, "steps": []}
        resources_before = _resources(ctx.master_pid)
        current = set(before)
        seen_new: Set[int] = set()
        for i in range(repeat):
            if i:
                _pace(ctx, self.interval)
            if not ctx.alive():
                break
            try:
                if not _platform.send_signal(ctx.master_pid, self.signal):
                    break
            except OSError as exc:
                out.update(handled=None, why=f"SIG{self.signal} could not be sent: {exc}")
                return out
            out["sent"] += 1
            step = self._settle_step(ctx, expect, current, time.monotonic() + budget)
            out["steps"].append(step)
            seen_new |= set(step.get("new", ()))
            if step.get("master_exited") or expect in contracts.STOPPING:
                break
            current = set(ctx.worker_pids()) or current
        out["new_pids"] = sorted(seen_new)
        out["server_exited"] = not ctx.alive()
        out["exit_code"] = ctx.exit_code()
        out["sequence_s"] = round(time.monotonic() - t0, 3)
        if expect in contracts.STOPPING:
            step = out["steps"][0] if out["steps"] else {}
            out["exit_s"] = step.get("exit_s")
            out["workers_left"] = step.get("workers_left", [])
            return out
        out["expected_after"] = contracts.expected_workers(expect, len(before), out["sent"])
        if not out["server_exited"]:
            # the resources after: once the count settled (old workers reaped), so a drained worker's fds
            # are not taken for growth
            out["workers_after"] = _settle_count(
                ctx, int(out["expected_after"]), time.monotonic() + budget / 2
            )
            after = _resources(ctx.master_pid)
            out["resources"] = _growth(resources_before, after, int(out["expected_after"]) - len(before))
        recovered = [s.get("recovery_s") for s in out["steps"] if s.get("recovery_s") is not None]
        out["recovery_s"] = max(recovered) if recovered else None
        return out

    def _settle_step(
        self, ctx: FaultContext, expect: str, current: Set[int], deadline: float
    ) -> Dict[str, Any]:
        """What one signal did, waited for as the contract says:

        * reload - every worker of `current` gone and N workers from new pids answering
        * add / remove - the live count at len(current) +1 / -1 (never below 1), the new one answering
        * keep - KEEP_WATCH_S (x contention, at least the interval) of watching for an original pid to die;
          if one did, the wait goes on until N answer again (the recovery time is measured)
        * stop / quick-stop - the master's exit, then its workers gone
        """
        t0 = time.monotonic()
        n = len(current)
        step: Dict[str, Any] = {}
        if expect in contracts.STOPPING:
            exit_s = _wait_exit(ctx, deadline)
            step["exit_s"] = exit_s
            step["master_exited"] = exit_s is not None
            step["workers_left"] = _wait_gone(sorted(current), deadline)
            return step
        if expect == "keep":
            watch_until = t0 + max(self.interval, KEEP_WATCH_S * contention())
            while time.monotonic() < watch_until and ctx.alive():
                if current - set(ctx.worker_pids()):
                    break
                _pace(ctx, 0.05)
            want = n
        elif expect == "add":
            want = n + 1
        elif expect == "remove":
            want = max(1, n - 1)
        else:
            want = n
        exclude = set(current) if expect == "reload" else set()
        rr = wait_ready(
            lambda: ctx.target,
            want,
            deadline,
            alive=ctx.alive,
            worker_pids=lambda: set(ctx.worker_pids()) - exclude,
        )
        if expect == "reload" and ctx.alive():
            # the old ones drain after the new ones answer: wait until the server's view of its workers
            # (psutil's live children, or the reference server's events, which trail its reaping) has
            # none of them left - the evidence of a completed reload - bounded by the same deadline (a
            # dead master's orphans are not waited for)
            delay = 0.005
            while set(ctx.worker_pids()) & current and ctx.alive() and time.monotonic() < deadline:
                time.sleep(delay)  # bounded poll of the server's view, not synchronisation
                delay = min(delay * 2, 0.1)
        elif expect in ("add", "remove"):
            _settle_count(ctx, want, deadline)  # the removed one drained (or the added one counted)
        live = set(ctx.worker_pids())
        step["kept"] = len(current & live)
        step["replaced"] = len(current - live)
        step["new"] = sorted(live - current)
        step["workers"] = len(live)
        step["wanted"] = want
        step["recovery_s"] = (
            round(rr.all_workers - t0, 3)
            if rr.ready and rr.all_workers and (expect != "keep" or step["replaced"])
            else None
        )
        step["master_exited"] = not ctx.alive()
        return step

    def _judge_signal(self, out: Dict[str, Any]) -> None:
        """The contract's verdict: `violation` (one line, stable across runs: counts of workers, never of
        requests or seconds) or none, and `handled`."""
        contract = self.contract
        if contract is None or "sent" not in out or (out.get("handled") is None and out.get("why")):
            return
        sig, expect = contract.signal, contract.expect
        steps: List[Dict[str, Any]] = list(out.get("steps") or [])
        violation = ""
        if not out.get("sent"):
            violation = f"{sig}: the signal could not be sent (the master was gone)"
        elif expect in contracts.STOPPING:
            left = out.get("workers_left") or []
            if not out.get("server_exited"):
                violation = f"{sig}: the master kept running; expected {expect}"
            elif left:
                violation = f"{sig}: {len(left)} worker(s) outlived the master; expected none"
            elif expect == "stop" and out.get("exit_code") != 0:
                violation = f"{sig}: the master exited {out.get('exit_code')}; expected exit 0"
        elif out.get("server_exited"):
            violation = f"{sig}: the master exited (code {out.get('exit_code')}); expected it to stay"
        else:
            for step in steps:
                kept, replaced = int(step.get("kept", 0)), int(step.get("replaced", 0))
                total = kept + replaced
                if expect == "reload" and kept:
                    violation = f"{sig}: {kept} of {total} workers kept; expected all replaced"
                elif expect == "keep" and replaced:
                    violation = f"{sig}: {replaced} of {total} workers replaced; expected kept"
                elif expect in ("add", "remove") and replaced > (1 if expect == "remove" else 0):
                    violation = f"{sig}: {replaced} of {total} workers replaced; expected the others kept"
                if violation:
                    break
            after, wanted = out.get("workers_after"), out.get("expected_after")
            if not violation and after is not None and wanted is not None and after != wanted:
                violation = f"{sig}: {after} workers after {out['sent']} x {sig}; expected {wanted}"
            # a drop is a connection the server refused, reset or closed unanswered, or a non-2xx; a
            # timeout is not judged (on a starved machine it is the client's 3 s, not the server's doing)
            timeouts = sum(
                int(n) for k, n in (out.get("request_errors") or {}).items() if "timeout" in k.lower()
            )
            out["dropped_requests"] = max(0, int(out.get("failed_requests") or 0) - timeouts)
            if not violation and out["dropped_requests"]:
                violation = f"{sig}: requests failed while it was handled; expected none dropped"
        growth = (out.get("resources") or {}).get("growth") or {}
        out["violation"] = violation
        if violation:
            out.update(handled=False, why=violation)
        elif growth:
            what, (a, b) = next(iter(sorted(growth.items())))
            out.update(handled=False, why=f"the master's {what} grew {a} -> {b} after {out['sent']} x {sig}")
        else:
            rec = out.get("recovery_s")
            tail = f", recovered in {rec} s" if rec is not None else ""
            out.update(handled=True, why=f"{sig} x {out['sent']}: contract kept ({expect}{tail})")

    def _master_fault(
        self, ctx: FaultContext, workers: List[int], t0: float, deadline: float, load: _Load
    ) -> Dict[str, Any]:
        out: Dict[str, Any] = {"victim_pid": ctx.master_pid}
        proven: Optional[Callable[[List[int]], bool]] = None
        if self.name == "kill-master":
            p = _proc(ctx.master_pid)
            if p is not None:
                p.kill()
            proof = time.monotonic() + ORPHAN_PROOF_S * contention()
            proven = lambda left: load.answered_since(left, proof)  # noqa: E731
        else:
            out["signal"] = _platform.send_stop(ctx.master_pid, "master")
        exit_s = _wait_exit(ctx, deadline)
        left = _wait_gone(workers, deadline, proven)
        out["server_exited"] = exit_s is not None
        out["exit_s"] = exit_s
        out["exit_code"] = ctx.exit_code()
        out["workers_left"] = left
        out["workers_gone_s"] = round(time.monotonic() - t0, 3) if not left else None
        if self.name == "kill-master":
            if left and proven is not None and proven(left):
                out["orphans_answered_s"] = round(time.monotonic() - t0, 3)
                why = (
                    f"{len(left)} worker(s) still answered new connections "
                    f"{out['orphans_answered_s']:g} s after the master died"
                )
                out.update(handled=False, why=why)
            elif left:
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


def _pace(ctx: FaultContext, seconds: float) -> None:
    """Wait `seconds` between two signals (the asked-for pacing, not a synchronisation), ending early when
    the master is gone."""
    end = time.monotonic() + seconds
    while ctx.alive():
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(0.05, left))  # the pacing the scenario asked for, polled for the master's exit


def _settle_count(ctx: FaultContext, expected: int, deadline: float) -> int:
    """The live worker count once it settled: equal to `expected` and unchanged for SETTLED_EQUAL_S (a
    supervisor that over-spawns does it on its next pass: uvicorn 0.30.0-0.30.1 starts a third worker
    0.5 s after the two replacements of kill-workers:all), or different and unchanged for SETTLED_S - a
    server that overshot or fell short and stays there - both x the CPU share this process gets now; or
    whatever it is at the deadline."""
    delay = 0.01
    pids = set(ctx.worker_pids())
    changed = time.monotonic()
    factor = contention()
    quiet_s, equal_s = SETTLED_S * factor, SETTLED_EQUAL_S * factor
    while ctx.alive():
        now = time.monotonic()
        if now >= deadline or now - changed >= (equal_s if len(pids) == expected else quiet_s):
            break
        time.sleep(min(delay, max(0.0, deadline - now)))  # bounded poll, not synchronisation
        delay = min(delay * 2, 0.2)
        current = set(ctx.worker_pids())
        if current != pids:
            pids, changed = current, time.monotonic()
    return len(pids)


def _resources(pid: int) -> Dict[str, int]:
    """The master's open fds (handles on Windows), threads and direct children; {} when unreadable."""
    p = _proc(pid)
    if p is None:
        return {}
    try:
        with p.oneshot():
            return {
                "fds": _platform.open_handles(p),
                "threads": int(p.num_threads()),
                "children": len(p.children()),
            }
    except psutil.Error:
        return {}


def _growth(before: Dict[str, int], after: Dict[str, int], worker_delta: int) -> Dict[str, Any]:
    """{before, after, growth: {what: [before, after]}} - growth beyond RESOURCE_SLACK (plus what the
    contract's change of worker count explains)."""
    growth: Dict[str, List[int]] = {}
    for key, slack in RESOURCE_SLACK.items():
        if key not in before or key not in after:
            continue
        allowed = slack + max(0, worker_delta) * (
            PER_WORKER_FDS if key == "fds" else 1 if key == "children" else 0
        )
        if after[key] - before[key] > allowed:
            growth[key] = [before[key], after[key]]
    return {"before": before, "after": after, "growth": growth}


def _in_use(line: str) -> bool:
    low = line.lower()
    return "in use" in low or "eaddrinuse" in low or "errno 98" in low or "10048" in low


def plan(scenario: Scenario, scratch: str) -> FaultPlan:
    """The FaultPlan of `scenario.fault` (a no-op plan for ""); UnknownFault for an unknown name.
    Needs the run's private scratch directory (the stale-uds socket file goes there)."""
    return FaultPlan(
        str(scenario.fault or ""),
        str(scenario.app),
        scratch,
        workers=int(scenario.workers),
        repeat=scenario.fault_repeat,
        interval=scenario.fault_interval,
    )


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
