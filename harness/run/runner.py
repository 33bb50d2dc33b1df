"""run_scenario: one Scenario in, one ResultRecord out. The data flow, in order:

    resolve interpreter -> ensure env -> run dir (private HOME/XDG; TMP + UDS in a short scratch dir)
    -> fault plan (harness.run.faults) -> bind -> adapter.build -> stages.launch -> stages.readiness
    -> stages.fault -> stages.load -> stages.stop -> stages.observe -> classify -> ResultRecord
    -> capsule (non-passing) -> append_record

This function is a process boundary: whatever goes wrong inside becomes a record, never an exception, so a
matrix run never loses a cell. The one exception is the record's own file: when `results` cannot take the
record whole (disk full), RecordNotWritten reaches the caller, which must say that the record was lost.
Every record's verdict, the early ends included (an interpreter that is missing: env-error; a scenario
this server or OS cannot express: unsupported; the harness's own failure: harness-error), comes from
harness.verdict.classify.

* BASE_TIMEOUT_S - the one base timeout every deadline is derived from (scaled_timeout)
* scaled_timeout(base, workers) - readiness deadline: grows with N, stretched by the CPU share this process
  gets now (harness.run.calibrate), at least x3 when CI=true (psutil's habit)
* lost_run_record(scenario, text, duration_s) - the record of a run that died without one (its process was
  killed, it crashed): harness-error, through the classifier too
"""

import dataclasses
import datetime
import os
import platform
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
from typing import Any, Dict, Optional, Tuple

import harness
from harness import _platform
from harness.adapters import Adapter, Unsupported, get_adapter
from harness.capsule import write_capsule
from harness.env import pythons
from harness.env import venvs as envs
from harness.model.observation import Observation
from harness.model.records import ResultRecord, Scenario, append_record
from harness.run import BASE_TIMEOUT_S, check_timeout, faults, reaper, stages
from harness.run.calibrate import contention
from harness.run.serverwatch import read_events
from harness.run.stages import Trace, scaled_timeout
from harness.verdict.classify import classify
from servers import exitcodes

VALID_STDIN = ("inherit", "devnull", "closed")
#: adapter options that would say where the server listens: only `bind` (tcp on 127.0.0.1, a fresh UDS,
#: an fd the harness bound on loopback) may, so a bind can never widen beyond loopback or move elsewhere
BIND_OPTIONS = frozenset({"host", "port", "uds", "fd", "bind", "b", "socket", "unix-socket", "unix", "h"})
VALID_STOP = ("group", "master")


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


def check_server_args(args: Tuple[str, ...]) -> None:
    """`--server-arg` values: argv items (never a shell string), so no NUL byte (an argv item cannot hold
    one) and nothing that says where to listen (loopback only: --bind is the harness's)."""
    for arg in args:
        if not isinstance(arg, str):
            raise ValueError(f"server argument {arg!r} is not a string")
        if "\x00" in arg:
            raise ValueError(f"server argument {arg!r} holds a NUL byte (an argv item cannot)")
        if arg.startswith("-"):
            _refuse_listen_option(arg.partition("=")[0], f"server argument {arg!r}")


def _refuse_listen_option(name: str, what: str) -> None:
    """ValueError when option `name` (`--host`, `bind`, `unix_socket`...) would say where to listen."""
    if name.strip().lstrip("-").replace("_", "-").lower() in BIND_OPTIONS:
        raise ValueError(
            f"{what} would change where the server listens: use --bind tcp|uds|fd:N (loopback only)"
        )


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
    # UnknownFault is a ValueError
    faults.check(scenario.fault, scenario.workers, scenario.fault_repeat, scenario.fault_interval)
    for key, _ in scenario.options:
        _refuse_listen_option(key, f"option {key!r}")
    check_server_args(scenario.server_args)
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


@dataclasses.dataclass
class _Run:
    """One run's identity and what is known about its environment (the record's non-verdict fields)."""

    scenario: Scenario
    run_id: str
    started_at: str
    t_start: float
    python: Dict[str, Any] = dataclasses.field(default_factory=dict)
    installed: Dict[str, str] = dataclasses.field(default_factory=dict)
    builder: str = ""
    server_version: str = ""
    command: Tuple[str, ...] = ()
    env_set: Dict[str, str] = dataclasses.field(default_factory=dict)
    trace: Trace = dataclasses.field(default_factory=Trace)


def _record(run: _Run, obs: Observation, **fields: Any) -> ResultRecord:
    """The record of `run`, its verdict classified from `obs`; `fields` are the record's server evidence."""
    verdict = classify(obs)
    code = fields.pop("exit_code", None)
    named = code is not None and run.scenario.server == "reference"
    exit_name = exitcodes.NAMES.get(code, "") if named else ""
    return ResultRecord(
        scenario=run.scenario.to_dict(),
        failure_class=verdict.failure_class,
        signature=verdict.signature,
        reason=verdict.reason,
        exit_code=code,
        exit_name=exit_name,
        platform=_platform_info(),
        python=run.python or {"requested": run.scenario.python},
        installed=dict(run.installed),
        builder=run.builder,
        server_version=run.server_version,
        timings=dict(run.trace.timings),
        snapshots=list(run.trace.snapshots),
        command=list(run.command),
        env=dict(run.env_set),
        started_at=run.started_at,
        duration_s=round(time.monotonic() - run.t_start, 3),
        run_id=run.run_id,
        harness_version=harness.__version__,
        **fields,
    )


def _early(
    run: _Run, *, unsupported: str = "", env_error: str = "", harness_error: str = "", detail: str = ""
) -> ResultRecord:
    """A run that ended before the server could be judged (the classifier's first rows decide it)."""
    obs = Observation(
        platform=sys.platform,
        expected_workers=run.scenario.workers,
        unsupported=unsupported,
        env_error=env_error,
        harness_error=harness_error,
        detail=detail,
    )
    return _record(run, obs)


def lost_run_record(scenario: Scenario, text: str, duration_s: float) -> ResultRecord:
    """harness-error for a run whose process died without writing its record (killed, crashed)."""
    run = _Run(scenario, "", "", time.monotonic() - duration_s)
    line = text.strip().splitlines()[-1] if text.strip() else "the harness child exited without a record"
    record = _early(
        run, harness_error=line[:200], detail="the harness subprocess for this scenario died without a record"
    )
    return dataclasses.replace(record, stderr_tail=text, platform={}, harness_version="")


def run_scenario(
    scenario: Scenario,
    *,
    results: Optional[str] = None,
    work_dir: Optional[str] = None,
    capsule_dir: Optional[str] = None,
    base_timeout: float = BASE_TIMEOUT_S,
    env_cache_dir: Optional[str] = None,
    keep_run_dir: bool = False,
    catalog: Optional[Dict[str, str]] = None,
    attempt: Optional[Dict[str, Any]] = None,
) -> ResultRecord:
    """Run one scenario end to end and return its record (appended to `results` when given).

    * work_dir - where the run's private directory is created (default: a temp dir); each run gets
      a fresh, unique subdirectory, so parallel runs never share HOME, TMP or event files
    * capsule_dir - where reproduction capsules of non-passing runs go (default: none written)
    * base_timeout - the one base timeout (seconds) every deadline is scaled from
    * env_cache_dir - where environments are cached (default: harness.env.venvs's own default)
    * keep_run_dir - keep the run directory (server output, events) instead of deleting it on pass
    * catalog - {"id", "role"} of the known-issue case this run is (ResultRecord.catalog)
    * attempt - which of several runs of this scenario this is (ResultRecord.attempt)
    """
    run = _Run(
        scenario=scenario,
        run_id=uuid.uuid4().hex[:12],
        started_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        t_start=time.monotonic(),
    )
    run_dir = ""
    try:
        check_timeout(base_timeout)
    except ValueError as exc:
        return _early(run, harness_error=f"base timeout {exc}", detail=f"invalid base timeout: {exc}")
    try:
        base = work_dir or os.path.join(tempfile.gettempdir(), "asgi-workers-harness", "runs")
        os.makedirs(base, exist_ok=True)
        run_dir = tempfile.mkdtemp(prefix=f"{scenario.server}-{run.run_id}-", dir=base)
        reaper.register_dir(run_dir)  # a run that dies before its record (SIGINT, SIGKILL) leaves no dir
        with _ADOPTING:  # from the env build to the leak sweep: what detaches is adopted, then ended
            record = _in_env(run, run_dir, base_timeout, env_cache_dir)
    except Exception as exc:  # process boundary: a harness failure becomes a record
        tb = traceback.format_exc()
        line = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
        record = _early(run, harness_error=line, detail=f"the harness failed: {line}")
        record = dataclasses.replace(record, stderr_tail=tb[-4000:], stdout_tail=tb[-8000:])
    if catalog:
        record = dataclasses.replace(record, catalog={str(k): str(v) for k, v in catalog.items()})
    if attempt:
        record = dataclasses.replace(record, attempt=dict(attempt))
    if record.failure_class != "passed" and capsule_dir and record.command:
        record = _with_capsule(record, capsule_dir)
    try:
        if results:
            append_record(results, record)  # RecordNotWritten goes to the caller: it must say so
    finally:
        if run_dir:
            reaper.unregister_dir(run_dir)  # it has a record now: kept as evidence unless it passed
        if run_dir and record.failure_class == "passed" and not keep_run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
        elif run_dir:
            cap_outputs(run_dir)
    return record


#: a kept run dir holds at most this much of each server output file: its first HEAD_BYTES and its
#: last CAP_BYTES - HEAD_BYTES, with a line saying how much was cut (a chatty failing server wrote 66 MB
#: over 48 runs before)
CAP_BYTES = 1 << 20
HEAD_BYTES = 64 << 10


def cap_outputs(run_dir: str) -> None:
    for name in ("server.stdout", "server.stderr"):
        path = os.path.join(run_dir, name)
        try:
            size = os.path.getsize(path)
            if size <= CAP_BYTES:
                continue
            with open(path, "rb") as fh:
                head = fh.read(HEAD_BYTES)
                fh.seek(size - (CAP_BYTES - HEAD_BYTES))
                tail = fh.read()
            cut = size - len(head) - len(tail)
            note = f"\n[harness] {cut} bytes cut here: the file kept its first and last bytes only\n"
            with open(path, "wb") as fh:
                fh.write(head + note.encode() + tail)
        except OSError:
            continue


class _Adopting:
    """While a run is under way (any thread of this process), this process is the reaper of its orphaned
    descendants (Linux), so a server process that detaches with setsid() and a double fork is still the
    run's to find and end (stages.stop: end_leaked kills and reaps what it adopted). Between runs it is
    not: an orphan of anything else this process started (a pytest worker's other tests, a killed
    `harness matrix` subprocess's cells) goes to init as usual, instead of staying here a zombie that
    nobody waits for. Why not a cgroup: a cgroup needs a delegated, writable cgroup v2 subtree (root or
    systemd), which CI containers and user shells often lack; a subreaper needs nothing and catches exactly
    the reparenting a detach relies on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs = 0

    def __enter__(self) -> "_Adopting":
        with self._lock:
            self._runs += 1
            if self._runs == 1:
                _platform.set_subreaper(True)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._runs -= 1
            if self._runs == 0:
                _platform.set_subreaper(False)


_ADOPTING = _Adopting()


def _with_capsule(record: ResultRecord, capsule_dir: str) -> ResultRecord:
    try:
        path = write_capsule(record, capsule_dir, project_root=harness.PROJECT_ROOT)
    except Exception as exc:  # a capsule is a bonus: never lose the record for it
        note = f"\n[harness] capsule not written: {type(exc).__name__}: {exc}"
        return dataclasses.replace(record, stdout_tail=(record.stdout_tail + note)[-8000:])
    return dataclasses.replace(record, capsule=str(path))


def _in_env(run: _Run, run_dir: str, base_timeout: float, env_cache_dir: Optional[str]) -> ResultRecord:
    """Stage 1: the interpreter and the env; then a short scratch dir for TMP and UDS paths."""
    sc = run.scenario
    try:
        validate(sc)
    except ValueError as exc:
        return _early(run, harness_error=str(exc), detail=f"invalid scenario: {exc}")
    adapter = get_adapter(sc.server)
    try:
        interp = pythons.resolve(sc.python)
    except pythons.InterpreterNotFound as exc:
        return _early(run, env_error=exc.signature, detail=f"interpreter: {exc}")
    run.python = {
        "requested": sc.python,
        "executable": interp.path,
        "version": interp.version,
        "implementation": interp.implementation,
    }
    requirements = tuple(sc.requirements) or tuple(adapter.default_requirements)
    if requirements and os.environ.get("ASGI_HARNESS_OFFLINE", "") != "1":
        # "uvicorn" means the latest release when this scenario runs, not when its env was first built
        requirements, unpinned = envs.pin_unpinned(requirements, interp, cache_dir=env_cache_dir)
        if unpinned:
            run.trace.timings["unpinned"] = dict(unpinned)
    try:
        kwargs: Dict[str, Any] = {"cache_dir": env_cache_dir} if env_cache_dir else {}
        env = envs.ensure_env(interp, requirements, **kwargs)
    except envs.EnvError as exc:
        line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _early(run, env_error=line, detail=f"the environment could not be built: {line}")
    run.installed = dict(env.installed)
    run.builder = env.builder
    run.trace.timings["env_build"] = round(float(env.build_seconds), 3)
    run.trace.timings["env_cached"] = bool(env.cached)
    dist = adapter.distribution
    run.server_version = _installed_version(run.installed, dist) if dist else harness.__version__
    run.python["executable"] = env.python
    scratch = _short_scratch_dir()
    reaper.register_dir(scratch)  # removed by the reaper if the harness dies mid-run
    try:
        return _bound(
            run, adapter, env, py_version=interp.version, run_dir=run_dir, scratch=scratch,
            base_timeout=base_timeout,
        )  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        reaper.unregister_dir(scratch)


def _private_env(run_dir: str, scratch: str, env: envs.Env) -> Dict[str, str]:
    """HOME / XDG under the run dir, TMP in the short scratch dir, plus what the env needs."""
    home = os.path.join(run_dir, "home")
    tmp = os.path.join(scratch, "tmp")
    subdirs = (".cache", ".config", ".local/share", ".local/state")
    for d in (home, tmp, *(os.path.join(home, x) for x in subdirs)):
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
    return env_set


def _bound(
    run: _Run,
    adapter: Adapter,
    env: envs.Env,
    *,
    py_version: str,
    run_dir: str,
    scratch: str,
    base_timeout: float,
) -> ResultRecord:
    """Stage 2: the fault plan (launch faults spoil the port or UDS path, app faults swap the app), bind."""
    sc = run.scenario
    env_set = _private_env(run_dir, scratch, env)
    plan = faults.plan(sc, scratch)
    harness_sock: Optional[socket.socket] = None
    try:
        plan.set_contract(adapter, run.server_version)  # signal-master: what the server documents
        if plan.unsupported:  # e.g. stale-uds where Python has no AF_UNIX, a signal nobody documents
            return _early(run, unsupported=plan.unsupported)
        kind, fd_n = ("uds", None) if plan.needs_uds else parse_bind(sc.bind)
        asked: Dict[str, Any] = {"kind": kind, "host": "127.0.0.1", "port": plan.port}
        if kind == "uds":
            asked = {"kind": "uds", "path": plan.uds_path or os.path.join(scratch, "s.sock")}
        elif kind == "fd" and not _platform.FD_PASSING:  # Windows: a SOCKET is a handle, not an fd
            return _early(run, unsupported="bind=fd:N needs POSIX file descriptors")
        elif kind == "fd":
            # The harness owns the socket: bind port 0 and keep it (never "bind, close, pass the number").
            harness_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            harness_sock.bind(("127.0.0.1", 0))
            harness_sock.listen(128)
            harness_sock.set_inheritable(True)
            asked = {"kind": "fd", "fd": fd_n, "host": "127.0.0.1", "port": harness_sock.getsockname()[1]}
        # the run's own directories (HOME, XDG_RUNTIME_DIR, TMPDIR live there): a server's control socket
        # in them is its business; a unix socket anywhere else is a listener the scenario did not ask for
        asked["private"] = [os.path.realpath(run_dir), os.path.realpath(scratch)]
        ctx = stages.launch_context(
            sc,
            python=env.python,
            python_version=py_version,
            server_version=run.server_version if adapter.distribution else "",
            installed=run.installed,
            app=plan.app,
            port=plan.port,
            asked=asked,
            run_dir=run_dir,
        )
        try:
            spec = adapter.build(ctx)
        except Unsupported as exc:
            return _early(run, unsupported=str(exc) or "unsupported here")
        env_set.update({str(k): str(v) for k, v in spec.env.items()})
        run.env_set = dict(env_set)
        # --server-arg: verbatim, after the adapter's own flags, as argv items (no shell)
        run.command = tuple(str(a) for a in spec.argv) + tuple(sc.server_args)
        spec = dataclasses.replace(spec, argv=run.command)
        launched = stages.launch(
            sc, spec, env_set, run_dir=run_dir, asked=asked, harness_sock=harness_sock, trace=run.trace
        )
        return _served(run, launched, plan, asked, base_timeout)
    finally:
        plan.close()
        if harness_sock is not None:
            harness_sock.close()


def _served(
    run: _Run, launched: stages.Launched, plan: faults.FaultPlan, asked: Dict[str, Any], base_timeout: float
) -> ResultRecord:
    """Stages 3-7: readiness, fault, load, stop, observe; the server is stopped whatever happens."""
    sc, trace = run.scenario, run.trace
    stopped: Optional[stages.Stopped] = None
    try:
        deadline_s = scaled_timeout(base_timeout, sc.workers)
        trace.timings["contention"] = contention()  # the CPU-share factor the deadlines were stretched by
        trace.timings["readiness_deadline_s"] = round(deadline_s, 2)
        served, rr = stages.readiness(sc, launched, deadline_s, trace)
        served, outcome = stages.fault(sc, plan, launched, served, deadline_s=deadline_s, trace=trace)
        load_result = stages.load(sc, launched, served, base_timeout, trace)
        served = dataclasses.replace(served, answered=served.answered | stages.answered_by_load(load_result))
        stopped = stages.stop(sc, launched, asked, base_timeout, trace)
    finally:
        if stopped is None:
            try:
                launched.proc.stop("group", timeout=5.0)
            except Exception:  # already failing; the reaper is the last line
                pass
    assert stopped is not None  # the try above either stopped the server or raised
    fault_record = plan.conclude(
        outcome, ready=served.ready, exit_code=stopped.result.exit_code, stderr=stopped.stderr_tail
    )
    obs = stages.observe(
        sc, served, rr, load_result, stopped,
        asked=asked, snapshots=trace.snapshots, fault_outcome=fault_record,
    )  # fmt: skip
    root = launched.root_pid
    return _record(
        run,
        obs,
        exit_code=stopped.result.exit_code,
        load=dict(load_result),
        leaks=dict(stopped.leaks),
        worker_pids=sorted(p for p in served.answered if p != root),
        events=list(stopped.events),
        fault=dict(fault_record),
        stderr_tail=stopped.stderr_tail,
        stdout_tail=stopped.stdout_tail,
    )


def _installed_version(installed: Dict[str, str], dist: str) -> str:
    norm = dist.lower().replace("_", "-")
    for name, version in installed.items():
        if name.lower().replace("_", "-") == norm:
            return str(version)
    return ""


__all__ = [
    "BASE_TIMEOUT_S",
    "lost_run_record",
    "parse_bind",
    "read_events",
    "run_scenario",
    "scaled_timeout",
    "validate",
]
