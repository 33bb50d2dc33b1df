"""run_scenario: one Scenario in, one ResultRecord out. The harness's data flow, in order:

    resolve interpreter -> ensure env -> run dir (private HOME/XDG; TMP + UDS in a short scratch dir)
    -> fault plan (harness.run.faults) -> bind -> adapter.build -> ServerProcess.start
    -> readiness (N worker pids answer) -> snapshot "ready" -> [runtime fault + readiness again,
    snapshot "after-fault"] -> load -> snapshot "after-load" -> stop -> snapshot "after-stop" + leaks
    -> Observation -> classify -> ResultRecord -> capsule (non-passing) -> append_record

This function is a process boundary: whatever goes wrong inside becomes a record (`env-error`,
`unsupported` or `harness-error`), never an exception, so a matrix run never loses a cell.

* BASE_TIMEOUT_S - the one base timeout every deadline is derived from (scaled_timeout)
* scaled_timeout(base, workers) - readiness deadline: grows with N, x3 when CI=true (psutil's habit)
"""

import dataclasses
import datetime
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
import traceback
import uuid
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import psutil

import harness
from harness.adapters import LaunchContext, Unsupported, get_adapter
from harness.capsule import write_capsule
from harness.env import pythons
from harness.env import venvs as envs
from harness.model.observation import Observation
from harness.model.records import FAILURE_CLASSES, ResultRecord, Scenario, append_record
from harness.run import faults, reaper
from harness.run import inspection as hinspect
from harness.run.load import run_load
from harness.run.process import ServerProcess
from harness.run.readiness import Target, wait_ready
from harness.run.serverwatch import ServerWatch, psutil_workers, read_events
from harness.verdict.classify import classify
from servers import exitcodes

#: seconds; readiness for one worker on an idle machine takes well under a second (FACTS: 0.13 s)
BASE_TIMEOUT_S = 20.0



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

VALID_STDIN = ("inherit", "devnull", "closed")
VALID_STOP = ("group", "master")


def scaled_timeout(base: float, workers: int) -> float:
    """Readiness deadline in seconds: base for 1 worker, +50% per extra worker, x3 when CI=true."""
    seconds = base * (1.0 + 0.5 * max(0, workers - 1))
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        seconds *= 3
    return seconds


def parse_bind(bind: str) -> Tuple[str, Optional[int]]:
    """ "tcp" | "uds" | "fd:N" -> (kind, N). ValueError (one line) otherwise."""
    if bind in ("tcp", "uds"):
        return bind, None
    if bind.startswith("fd:"):
        try:
            n = int(bind[3:])
        except ValueError:
            raise ValueError(f"bad bind {bind!r}: fd:N needs a number") from None
        if n < 0 or n in (1, 2):
            raise ValueError(f"bad bind {bind!r}: N must be 0 (stdin) or >= 3")
        return "fd", n
    raise ValueError(f"bad bind {bind!r}: expected tcp, uds or fd:N")


def validate(scenario: Scenario) -> None:
    """Cheap checks of a scenario's own fields; ValueError with one line."""
    if scenario.workers < 1:
        raise ValueError(f"workers must be >= 1, not {scenario.workers}")
    parse_bind(scenario.bind)
    if scenario.stdin not in VALID_STDIN:
        raise ValueError(f"stdin must be one of {', '.join(VALID_STDIN)}, not {scenario.stdin!r}")
    if scenario.stop not in VALID_STOP:
        raise ValueError(f"stop must be one of {', '.join(VALID_STOP)}, not {scenario.stop!r}")
    if scenario.requests < 0 or scenario.concurrency < 1 or scenario.keepalive_requests < 0:
        raise ValueError("requests and keepalive_requests must be >= 0, concurrency >= 1")
    faults.check(scenario.fault)  # UnknownFault is a ValueError
    if ":" not in scenario.app:
        raise ValueError(f"app must be MODULE:ATTR, not {scenario.app!r}")


def _platform_info() -> Dict[str, Any]:
    return {
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "sys_platform": sys.platform,
    }


def _short_scratch_dir() -> str:
    """A fresh directory with a SHORT path, ours to delete: the run's TMPDIR and UDS live here.

    AF_UNIX paths are limited to ~107 bytes, and servers put sockets under TMPDIR themselves
    (multiprocessing's forkserver: $TMPDIR/pymp-XXXXXXXX/listener-XXXXXXXX), so a TMPDIR under a deep
    work dir (pytest's tmp_path) would fail them with "AF_UNIX path too long" for the harness's sake."""
    base = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
    return tempfile.mkdtemp(prefix="awh-", dir=base)


def _count(events: List[Dict[str, Any]], name: str) -> int:
    return sum(1 for ev in events if ev.get("event") == name)


def _rel(t: Optional[float], t0: float) -> Optional[float]:
    return None if t is None else round(t - t0, 4)


def _tail_text(proc: Any) -> Tuple[str, str]:
    """(stderr tail, stdout tail) of a ServerProcess."""
    return str(proc.stderr_tail()), str(proc.stdout_tail())


@dataclasses.dataclass
class _RunState:
    """What one run accumulates; turned into an Observation and a ResultRecord at the end."""

    scenario: Scenario
    run_id: str
    started_at: str
    t_start: float
    requested_python: str = ""
    python: Dict[str, Any] = dataclasses.field(default_factory=dict)
    installed: Dict[str, str] = dataclasses.field(default_factory=dict)
    server_version: str = ""
    command: List[str] = dataclasses.field(default_factory=list)
    env_set: Dict[str, str] = dataclasses.field(default_factory=dict)
    timings: Dict[str, Any] = dataclasses.field(default_factory=dict)
    load: Dict[str, Any] = dataclasses.field(default_factory=dict)
    snapshots: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    leaks: Dict[str, Any] = dataclasses.field(default_factory=dict)
    worker_pids: List[int] = dataclasses.field(default_factory=list)
    events: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    stderr_tail: str = ""
    stdout_tail: str = ""
    exit_code: Optional[int] = None
    fault: Dict[str, Any] = dataclasses.field(default_factory=dict)
    obs: Dict[str, Any] = dataclasses.field(default_factory=dict)


def _observation(state: _RunState, **override: Any) -> Observation:
    fields = dict(state.obs)
    fields.update(override)
    fields.setdefault("platform", sys.platform)
    fields.setdefault("expected_workers", state.scenario.workers)
    # stderr first, then stdout: some servers (granian) log their fatal lines on stdout
    fields.setdefault("stderr", "\n".join(t for t in (state.stderr_tail, state.stdout_tail) if t))
    fields.setdefault("events", tuple(state.events))
    return Observation(**fields)


def _verdict(obs: Observation) -> Tuple[str, str, str]:
    v = classify(obs)
    return str(v.failure_class), str(v.signature or ""), str(v.reason or "")


def _record(state: _RunState, failure_class: str, signature: str, reason: str) -> ResultRecord:
    code = state.exit_code
    exit_name = ""
    if code is not None and state.scenario.server == "reference":
        exit_name = exitcodes.NAMES.get(code, "")
    if failure_class not in FAILURE_CLASSES:  # a classifier bug must not lose the record
        reason = f"classifier returned unknown class {failure_class!r}: {reason}"
        failure_class = "harness-error"
    return ResultRecord(
        scenario=state.scenario.to_dict(),
        failure_class=failure_class,
        signature=signature,
        reason=reason,
        exit_code=code,
        exit_name=exit_name,
        platform=_platform_info(),
        python=state.python or {"requested": state.requested_python},
        installed=dict(state.installed),
        server_version=state.server_version,
        timings=dict(state.timings),
        load=dict(state.load),
        snapshots=list(state.snapshots),
        leaks=dict(state.leaks),
        worker_pids=sorted(state.worker_pids),
        events=list(state.events),
        fault=dict(state.fault),
        command=list(state.command),
        env=dict(state.env_set),
        stderr_tail=state.stderr_tail,
        stdout_tail=state.stdout_tail,
        started_at=state.started_at,
        duration_s=round(time.monotonic() - state.t_start, 3),
        run_id=state.run_id,
        harness_version=harness.__version__,
    )


def run_scenario(
    scenario: Scenario,
    *,
    results: Optional[str] = None,
    work_dir: Optional[str] = None,
    capsule_dir: Optional[str] = None,
    base_timeout: float = BASE_TIMEOUT_S,
    env_cache_dir: Optional[str] = None,
    keep_run_dir: bool = False,
) -> ResultRecord:
    """Run one scenario end to end and return its record (appended to `results` when given).

    * work_dir - where the run's private directory is created (default: a temp dir); each run gets
      a fresh, unique subdirectory, so parallel runs never share HOME, TMP or event files
    * capsule_dir - where reproduction capsules of non-passing runs go (default: none written)
    * base_timeout - the one base timeout (seconds) every deadline is scaled from
    * env_cache_dir - where environments are cached (default: harness.env.venvs's own default)
    * keep_run_dir - keep the run directory (server output, events) instead of deleting it on pass
    """
    run_id = uuid.uuid4().hex[:12]
    state = _RunState(
        scenario=scenario,
        run_id=run_id,
        started_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        t_start=time.monotonic(),
        requested_python=scenario.python,
    )
    run_dir = ""
    try:
        base = work_dir or os.path.join(tempfile.gettempdir(), "asgi-workers-harness", "runs")
        os.makedirs(base, exist_ok=True)
        run_dir = tempfile.mkdtemp(prefix=f"{scenario.server}-{run_id}-", dir=base)
        reaper.register_dir(run_dir)  # a run that dies before its record (SIGINT, SIGKILL) leaves no dir
        record = _run(state, run_dir, base_timeout, env_cache_dir)
    except Exception as exc:  # process boundary: a harness failure becomes a record
        tb = traceback.format_exc()
        state.stderr_tail = state.stderr_tail or tb[-4000:]
        line = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
        record = _record(state, "harness-error", line, f"the harness failed: {line}")
        record = dataclasses.replace(record, stdout_tail=(record.stdout_tail + "\n" + tb)[-8000:])
    if record.failure_class != "passed" and capsule_dir and record.command:
        record = _with_capsule(record, capsule_dir)
    if results:
        append_record(results, record)
    if run_dir:
        reaper.unregister_dir(run_dir)  # it has a record now: kept as evidence unless it passed
    if run_dir and record.failure_class == "passed" and not keep_run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)
    return record


def _with_capsule(record: ResultRecord, capsule_dir: str) -> ResultRecord:
    try:
        path = write_capsule(record, capsule_dir, project_root=harness.PROJECT_ROOT)
    except Exception as exc:  # a capsule is a bonus: never lose the record for it
        note = f"\n[harness] capsule not written: {type(exc).__name__}: {exc}"
        return dataclasses.replace(record, stdout_tail=(record.stdout_tail + note)[-8000:])
    return dataclasses.replace(record, capsule=str(path))


def _run(state: _RunState, run_dir: str, base_timeout: float, env_cache_dir: Optional[str]) -> ResultRecord:
    sc = state.scenario
    try:
        validate(sc)
    except ValueError as exc:
        return _record(state, "harness-error", str(exc), f"invalid scenario: {exc}")
    adapter = get_adapter(sc.server)

    # 1. interpreter + env
    try:
        interp = pythons.resolve(sc.python)
    except pythons.InterpreterNotFound as exc:
        return _record(state, "env-error", exc.signature, f"interpreter: {exc}")
    state.python = {
        "requested": sc.python,
        "executable": interp.path,
        "version": interp.version,
        "implementation": interp.implementation,
    }
    requirements = tuple(sc.requirements) or tuple(adapter.default_requirements)
    try:
        kwargs: Dict[str, Any] = {}
        if env_cache_dir:
            kwargs["cache_dir"] = env_cache_dir
        env = envs.ensure_env(interp, requirements, **kwargs)
    except envs.EnvError as exc:
        line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _record(state, "env-error", line, f"the environment could not be built: {line}")
    state.installed = dict(env.installed)
    state.timings["env_build"] = round(float(env.build_seconds), 3)
    state.timings["env_cached"] = bool(env.cached)
    if adapter.distribution:
        state.server_version = _installed_version(state.installed, adapter.distribution)
    else:
        state.server_version = harness.__version__
    state.python["executable"] = env.python

    # 2. run dir with a private HOME / XDG, and a private TMP in a short scratch dir (+ the UDS path)
    scratch = _short_scratch_dir()
    reaper.register_dir(scratch)  # removed by the reaper if the harness dies mid-run
    try:
        return _prepared(
            state,
            adapter=adapter,
            env=env,
            interp=interp,
            run_dir=run_dir,
            scratch=scratch,
            base_timeout=base_timeout,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        reaper.unregister_dir(scratch)


def _prepared(
    state: _RunState, *, adapter: Any, env: Any, interp: Any, run_dir: str, scratch: str, base_timeout: float
) -> ResultRecord:
    sc = state.scenario
    home = os.path.join(run_dir, "home")
    tmp = os.path.join(scratch, "tmp")
    for d in (
        home,
        tmp,
        *(os.path.join(home, x) for x in (".cache", ".config", ".local/share", ".local/state")),
    ):
        os.makedirs(d, exist_ok=True)
    env_set: Dict[str, str] = {
        "HOME": home,
        "USERPROFILE": home,
        "TMP": tmp,
        "TEMP": tmp,
        "TMPDIR": tmp,
        "XDG_CACHE_HOME": os.path.join(home, ".cache"),
        "XDG_CONFIG_HOME": os.path.join(home, ".config"),
        "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
        "XDG_STATE_HOME": os.path.join(home, ".local", "state"),
        "XDG_RUNTIME_DIR": tmp,
        "PYTHONUNBUFFERED": "1",
    }
    env_set.update({str(k): str(v) for k, v in envs.env_vars_for_server(env).items()})

    # 3. fault plan (launch faults spoil the port / UDS path; app faults swap the app), then bind
    plan = faults.plan(sc, scratch)
    if plan.unsupported:  # e.g. stale-uds where Python has no AF_UNIX
        plan.close()
        return _record(state, "unsupported", "", plan.unsupported)
    kind, fd_n = parse_bind(sc.bind)
    if plan.needs_uds:
        kind, fd_n = "uds", None
    uds_path = ""
    harness_sock: Optional[socket.socket] = None
    asked: Dict[str, Any] = {"kind": kind, "host": "127.0.0.1", "port": plan.port}
    if kind == "uds":
        uds_path = plan.uds_path or os.path.join(scratch, "s.sock")
        asked = {"kind": "uds", "path": uds_path}
    elif kind == "fd" and os.name != "posix":
        # Windows has no fd numbers for sockets to hand over: a SOCKET is a handle (FACTS: inheritance
        # there goes through STARTUPINFO handle lists, which `--fd N` cannot express).
        return _record(state, "unsupported", "", "bind=fd:N needs POSIX file descriptors")
    elif kind == "fd":
        # The harness owns the socket: bind port 0 and keep it (never "bind, close, hand the number over").
        harness_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        harness_sock.bind(("127.0.0.1", 0))
        harness_sock.listen(128)
        harness_sock.set_inheritable(True)
        asked = {"kind": "fd", "fd": fd_n, "host": "127.0.0.1", "port": harness_sock.getsockname()[1]}

    try:
        return _serve(
            state,
            adapter,
            env,
            interp,
            run_dir=run_dir,
            env_set=env_set,
            asked=asked,
            uds_path=uds_path,
            harness_sock=harness_sock,
            base_timeout=base_timeout,
            plan=plan,
        )
    finally:
        plan.close()
        if harness_sock is not None:
            harness_sock.close()


def _installed_version(installed: Dict[str, str], dist: str) -> str:
    norm = dist.lower().replace("_", "-")
    for name, version in installed.items():
        if name.lower().replace("_", "-") == norm:
            return str(version)
    return ""


def _serve(
    state: _RunState,
    adapter: Any,
    env: Any,
    interp: Any,
    *,
    run_dir: str,
    env_set: Dict[str, str],
    asked: Dict[str, Any],
    uds_path: str,
    harness_sock: Optional[socket.socket],
    base_timeout: float,
    plan: faults.FaultPlan,
) -> ResultRecord:

    sc = state.scenario
    events_path = os.path.join(run_dir, "events.jsonl")
    fd_n = asked.get("fd")
    ctx = LaunchContext(
        python=env.python,
        python_version=interp.version,
        server_version=state.server_version if adapter.distribution else "",
        installed=dict(state.installed),
        app=plan.app,
        workers=sc.workers,
        host="127.0.0.1",
        port=plan.port,
        uds=uds_path,
        fd=fd_n,
        strategy=sc.strategy,
        start_method=sc.start_method,
        events_path=events_path,
        run_dir=run_dir,
        options=tuple(sc.options),
    )
    try:
        spec = adapter.build(ctx)
    except Unsupported as exc:
        return _record(state, "unsupported", "", str(exc) or "unsupported here")
    env_set.update({str(k): str(v) for k, v in spec.env.items()})
    state.env_set = dict(env_set)
    argv = [str(a) for a in spec.argv]
    state.command = list(argv)
    events_file = spec.events_path or ""

    # fd:N - the socket reaches the server as fd N (0 = stdin) through an exec shim that keeps the pid.
    # The harness closes its own copy once the server has started.
    stdin = sc.stdin
    pass_fds: Tuple[int, ...] = ()
    if harness_sock is not None and fd_n is not None:
        src = harness_sock.fileno()
        pass_fds = (src,)
        if src != fd_n:
            argv = [argv[0], "-c", _FD_SHIM, str(src), str(fd_n), *argv]

    full_env = {k: v for k, v in os.environ.items() if k not in getattr(envs, "ENV_VARS_TO_UNSET", ())}
    full_env.update(env_set)
    proc = ServerProcess(argv, env=full_env, cwd=run_dir, run_dir=run_dir, stdin=stdin, pass_fds=pass_fds)
    t0 = time.monotonic()
    proc.start()
    root_pid = int(proc.pid)
    if harness_sock is not None:
        harness_sock.close()  # the server owns it now; our copy would keep a dead server's port "open"
    stopped = False
    try:
        deadline_s = scaled_timeout(base_timeout, sc.workers)
        asked_target = Target(uds=uds_path) if uds_path else Target(host="127.0.0.1", port=0)
        watch = ServerWatch(
            root_pid,
            proc.poll,
            workers=sc.workers,
            events_file=events_file,
            asked=asked_target,
            fd_port=int(asked["port"]) if asked["kind"] == "fd" else None,
        )
        events, target_fn, alive, worker_pids = watch.events, watch.target, watch.alive, watch.worker_pids
        ever_workers, gave_up = watch.ever_workers, watch.gave_up

        rr = wait_ready(
            target_fn,
            sc.workers,
            time.monotonic() + deadline_s,
            alive=watch.alive_until_hopeless,
            worker_pids=worker_pids,
            ready_event=watch.ready_event,
        )
        st = state.timings
        st["readiness_deadline"] = round(deadline_s, 2)
        st["first_response"] = _rel(rr.first_response, t0)
        st["all_workers"] = _rel(rr.all_workers, t0)
        st["worker_ready"] = {str(pid): _rel(t, t0) for pid, t in sorted((rr.pid_first_seen or {}).items())}
        evs = events()
        ready_t = next((float(e["t"]) for e in evs if e.get("event") == "ready" and "t" in e), None)
        st["ready_event"] = _rel(ready_t, t0)
        answered: Set[int] = set(int(p) for p in (rr.pid_first_seen or {}))
        if gave_up:
            st["readiness_gave_up"] = {"t": _rel(gave_up[0][0], t0), "why": gave_up[0][1]}
        exited_before_ready = (bool(rr.exited) and not gave_up) or (not rr.ready and proc.poll() is not None)
        alive_at_deadline = not rr.ready and proc.poll() is None
        state.snapshots.append(_snapshot(hinspect, root_pid, "ready"))
        seen_pids: Set[int] = set(hinspect.tree_pids(root_pid)) | {root_pid}
        worker_pids()
        ready = bool(rr.ready)

        # runtime fault (faults.py): injected once N workers answered, with its own load window (kept out
        # of the load totals). Worker faults: readiness is proven again right after, so `ready` and
        # `answered` describe the server as the fault left it (replaced? partial? gone?).
        outcome: Dict[str, Any] = {}
        fault_target = target_fn() if plan.runtime and ready else None
        if fault_target is not None:
            st["fault_sent"] = _rel(time.monotonic(), t0)
            outcome = plan.inject(
                faults.FaultContext(
                    master_pid=root_pid,
                    workers=sc.workers,
                    target=fault_target,
                    worker_pids=worker_pids,
                    alive=alive,
                    exit_code=proc.poll,
                )
            )
            st["fault_done"] = _rel(time.monotonic(), t0)
            state.snapshots.append(_snapshot(hinspect, root_pid, "after-fault"))
            seen_pids |= set(hinspect.tree_pids(root_pid))
            if plan.name in ("kill-worker", "stop-worker"):
                victim = int(outcome.get("victim_pid") or 0)
                again = wait_ready(
                    target_fn,
                    sc.workers,
                    # handled: it answers at once; not handled: a short look at who still answers
                    time.monotonic() + (deadline_s if outcome.get("handled") else min(5.0, deadline_s)),
                    alive=alive,
                    worker_pids=lambda: worker_pids() - {victim},
                )
                ready = bool(again.ready)
                answered = {int(p) for p in (again.pid_first_seen or {})} - {victim}
                exited_before_ready = bool(again.exited) or (not ready and proc.poll() is not None)
                alive_at_deadline = not ready and proc.poll() is None

        # load: only against a server that proved readiness or at least answered once
        target = target_fn() if (ready or answered) and proc.poll() is None else None
        if target is not None:
            timeout_s = max(5.0, scaled_timeout(base_timeout, 1) / 2)  # each phase's bound, x3 on CI too
            state.load = dict(
                run_load(
                    target,
                    requests=sc.requests,
                    concurrency=sc.concurrency,
                    timeout_s=timeout_s,
                    keepalive_requests=sc.keepalive_requests,
                    expected_pids=sorted(answered),
                    expected_workers=sc.workers,
                )
            )
            st["load_done"] = _rel(time.monotonic(), t0)
            for per_worker in (
                state.load.get("per_worker") or {},
                (state.load.get("keepalive") or {}).get("per_worker") or {},
            ):
                answered |= {int(pid) for pid in per_worker if str(pid).isdigit()}
            state.snapshots.append(_snapshot(hinspect, root_pid, "after-load"))
            seen_pids |= set(hinspect.tree_pids(root_pid))
        worker_pids()
        still_workers = psutil_workers(root_pid) if not events_file else set()

        # stop
        t_stop = time.monotonic()
        st["stop_sent"] = _rel(t_stop, t0)
        stop = proc.stop(sc.stop, timeout=max(10.0, base_timeout / 2))
        stopped = True
        st["stopped"] = _rel(time.monotonic(), t0)
        state.snapshots.append(_snapshot(hinspect, root_pid, "after-stop"))
        ports = [int(lst["port"]) for lst in _listeners(state.snapshots) if lst.get("port")]
        if asked.get("port"):
            ports.append(int(asked["port"]))
        leaks = hinspect.find_leaks(sorted(seen_pids), [uds_path] if uds_path else [], ports=ports)
        state.leaks = _settle_zombies(dict(leaks), seen_pids)

        state.events = events()
        if st.get("ready_event") is None:
            # the harness can prove readiness before the server has written its `ready` line
            late = next((float(e["t"]) for e in state.events if e.get("event") == "ready" and "t" in e), None)
            st["ready_event"] = _rel(late, t0)
        state.stderr_tail, state.stdout_tail = _tail_text(proc)
        state.fault = plan.conclude(outcome, ready=ready, exit_code=stop.exit_code, stderr=state.stderr_tail)
        state.worker_pids = sorted(p for p in answered if p != root_pid) if answered else []
        state.exit_code = stop.exit_code
        load = state.load
        errors = load.get("errors") or {}
        status = load.get("status") or {}
        non_2xx = sum(int(n) for code, n in status.items() if not str(code).startswith("2"))
        if state.events:
            # only what happened while the server was meant to run: the stop makes every worker exit
            running = [ev for ev in state.events if float(ev.get("t", 0.0)) < t_stop]
            worker_exits = _count(running, "worker-exit")
            restarts = _count(running, "worker-restart")
        else:
            # beyond the N asked for, every new worker pid replaced one that died
            restarts = max(0, len(ever_workers) - sc.workers) if ever_workers else 0
            worker_exits = len(ever_workers - still_workers) if ever_workers else 0
        state.obs = {
            "ready": ready,
            "answered_pids": tuple(sorted(answered)),
            "any_response": bool(answered) or rr.first_response is not None,
            "exited_before_ready": exited_before_ready,
            "exit_code": stop.exit_code if exited_before_ready else None,
            "alive_at_deadline": alive_at_deadline,
            "connect_errors": tuple(sorted(str(e) for e in (rr.errors or {}))),
            "asked": dict(asked),
            "listeners": tuple(_listeners(state.snapshots)),
            "worker_exits": worker_exits,
            "worker_restarts": restarts,
            "load_requests": int(load.get("requests", 0) or 0),
            "load_errors": sum(int(n) for n in errors.values())
            if isinstance(errors, dict)
            else int(errors or 0),
            "load_non_2xx": non_2xx,
            "stop_escalated": bool(stop.escalated),
            "stop_exit_code": stop.exit_code,
            "leaks": {k: list(v) for k, v in state.leaks.items()},
            "fault": sc.fault,
            "fault_outcome": dict(state.fault),
        }
        cls, sig, reason = _verdict(_observation(state))
        return _record(state, cls, sig, reason)
    finally:
        if not stopped:
            try:
                proc.stop("group", timeout=5.0)
            except Exception:  # already failing; the reaper is the last line
                pass
            if not state.stderr_tail:
                state.stderr_tail, state.stdout_tail = _tail_text(proc)


def _settle_zombies(leaks: Dict[str, Any], run_pids: Set[int]) -> Dict[str, Any]:
    """Drop leaked 'processes' that are zombies adopted by init (or another reaper outside the run).

    After the master exits, a helper that exits a moment later (multiprocessing's resource_tracker under
    spawn) is reparented to init and stays a zombie until init gets round to reaping it, which on some
    machines takes seconds: it has exited and holds nothing. A zombie whose parent is still one of the
    run's processes is kept: that parent is alive and failing to reap it (and is a leak itself)."""
    procs = list(leaks.get("processes") or [])
    kept = []
    for p in procs:
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


def _snapshot(hinspect: Any, root_pid: int, phase: str) -> Dict[str, Any]:
    snap = hinspect.snapshot(root_pid, phase)
    if dataclasses.is_dataclass(snap) and not isinstance(snap, type):
        return dataclasses.asdict(snap)
    to_dict: Optional[Callable[[], Dict[str, Any]]] = getattr(snap, "to_dict", None)
    if to_dict is not None:
        return to_dict()
    return dict(snap)


def _listeners(snapshots: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Distinct listeners seen in the 'ready' and 'after-load' snapshots."""
    seen: Dict[str, Dict[str, Any]] = {}
    for snap in snapshots:
        if snap.get("phase") == "after-stop":
            continue
        for lst in snap.get("listeners", []) or []:
            key = json.dumps({k: lst.get(k) for k in ("family", "address", "port", "path")}, sort_keys=True)
            seen.setdefault(key, dict(lst))
    return list(seen.values())


__all__ = ["BASE_TIMEOUT_S", "parse_bind", "read_events", "run_scenario", "scaled_timeout", "validate"]
