"""Matrix execution: many Scenarios, N at a time, each in its own harness subprocess.

* default_matrix(pythons, servers, requirements, probe_fn) - the README matrix: the reference server x every
  strategy available here x its start methods x workers {1, 2, 4}, + the latest uvicorn, hypercorn,
  gunicorn (+ uvicorn-worker) and granian with 1, 2 and 4 workers (1 is the twin that `degraded` compares to)
* run_matrix(scenarios, *, results, jobs, resume, confirm, repeat, ...) -> [ResultRecord] - runs them; every
  record is appended to `results` by this (the parent) process, the only writer. confirm (default 1): a
  failing or degraded verdict is re-run that many times before it is called (harness.campaign.attempts);
  repeat: every scenario runs that many times (a failure rate). progress(done, total, Group) per scenario
* summary(records) -> str - class counts per scenario (runs that disagree count as flaky) + the non-passing
  rows with their signatures

Isolation: each scenario runs in `python -m harness.campaign.matrix RUN-SPEC.json` (a fresh interpreter with
its own
reaper), so a crash, a hang past its deadline or a leaked fd in one cell cannot touch another; a child
that dies without a record becomes a `harness-error` record here (pytest-xdist's handle_crashitem habit).
Resumable: with resume=True, scenario ids already present in `results` are skipped.
"""

import concurrent.futures
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set

from harness.adapters import get_adapter
from harness.campaign.attempts import run_attempts
from harness.campaign.config import ProbeFn, expand
from harness.env.venvs import canonical_name
from harness.model.records import (
    FAILURE_CLASSES,
    RecordNotWritten,
    ResultRecord,
    Scenario,
    append_record,
    read_records,
)
from harness.run.runner import BASE_TIMEOUT_S, lost_run_record, run_scenario, scaled_timeout
from harness.verdict.agreement import FLAKY, Group, group_runs
from harness.verdict.degraded import mark_degraded

#: progress(scenarios done, total, the finished scenario's runs)
Progress = Callable[[int, int, Group], None]
#: a failing or degraded verdict is re-run this many times before a matrix calls it
DEFAULT_CONFIRM = 1

DEFAULT_WORKERS = (1, 2, 4)
#: upstream servers in the default matrix, each at its latest release that installs here
UPSTREAM_SERVERS = ("uvicorn", "hypercorn", "gunicorn", "granian")
#: 1 worker is the single-worker twin a multi-worker cell's keep-alive latency is judged against (degraded)
UPSTREAM_WORKERS = (1, 2, 4)


def default_matrix(
    pythons: Sequence[str] = ("",),
    servers: Optional[Sequence[str]] = None,
    requirements: Sequence[str] = (),
    probe_fn: Optional[ProbeFn] = None,
) -> List[Scenario]:
    """The README's matrix. `servers` filters it; `requirements` replaces the upstream requirement set."""
    entries: List[Dict[str, Any]] = []
    want = set(servers) if servers else {"reference", *UPSTREAM_SERVERS}
    if "reference" in want:
        entries.append(
            {"server": "reference", "strategy": "*", "start_method": "*", "workers": list(DEFAULT_WORKERS)}
        )
    for server in sorted(want - {"reference"}):
        entry: Dict[str, Any] = {"server": server, "workers": list(UPSTREAM_WORKERS)}
        if requirements:
            entry["requirements"] = merge_requirements(get_adapter(server).default_requirements, requirements)
        entries.append(entry)
    return expand(entries, {"python": list(pythons) or [""]}, probe_fn)


def _req_name(req: str) -> str:
    from packaging.requirements import InvalidRequirement, Requirement  # noqa: PLC0415 - only here

    try:
        return canonical_name(Requirement(req).name)
    except InvalidRequirement:
        return canonical_name(req.split("==", maxsplit=1)[0].split("[", maxsplit=1)[0].strip())


def merge_requirements(defaults: Sequence[str], given: Sequence[str]) -> List[str]:
    """The server's default requirement set with each given requirement in place of the default of the
    same distribution, and given ones for other distributions added: `--server gunicorn --requirement
    gunicorn==23.0.0` keeps uvicorn-worker (it used to replace the whole set: every cell unsupported)."""
    by_name = {_req_name(r): r for r in given}
    out = [by_name.pop(_req_name(d), d) for d in defaults]
    return out + [r for r in given if _req_name(r) in by_name]


def done_ids(results: str) -> Set[str]:
    """Scenario ids that already have a record in `results` (for --resume)."""
    if not results or not os.path.exists(results):
        return set()
    return {r.scenario_id for r in read_records([results])}


class _Interrupted(Exception):
    """The matrix was interrupted while (or before) this cell ran: it gets no record."""


class _Children:
    """The harness children running now; interrupt() ends them all (SIGTERM: each child's reaper stops its
    server and exits; SIGKILL after INTERRUPT_GRACE_S; its guardian still kills the server then)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: Set["subprocess.Popen[bytes]"] = set()  # noqa: UP037 - 3.8: Popen[...] at runtime
        self.interrupted = False

    def add(self, proc: "subprocess.Popen[bytes]") -> None:
        with self._lock:
            self._procs.add(proc)
        if self.interrupted:
            self.interrupt()

    def discard(self, proc: "subprocess.Popen[bytes]") -> None:
        with self._lock:
            self._procs.discard(proc)

    def interrupt(self) -> None:
        self.interrupted = True
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            try:
                proc.terminate()
            except OSError:
                pass
        deadline = time.monotonic() + INTERRUPT_GRACE_S
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


#: seconds an interrupted harness child gets to stop its server before it is SIGKILLed
INTERRUPT_GRACE_S = 3.0
#: the longest the main thread blocks at once while cells run: the most a signal's handler waits to run
SIGNAL_POLL_S = 0.2


def _wait_interruptibly(futures: Sequence["concurrent.futures.Future[None]"]) -> None:
    """Wait for every future, raising the first one's exception, in waits of SIGNAL_POLL_S.

    A process-directed SIGINT/SIGTERM may be delivered by the kernel to any thread. When a pool thread
    takes it (blocked in select() under communicate()), CPython only flags it for the main thread, and a
    main thread blocked in an untimed lock acquire (Future.result()) is not woken: the handler, and so the
    KeyboardInterrupt, waited until some cell finished (12 s for a lingering cell, 3 in 25 tries). A
    timed wait returns to the interpreter, which runs the pending handler."""
    pending = set(futures)
    while pending:
        done, pending = concurrent.futures.wait(
            pending, timeout=SIGNAL_POLL_S, return_when=concurrent.futures.FIRST_EXCEPTION
        )
        for fut in done:
            fut.result()


def _child_argv(spec_path: str) -> List[str]:
    return [sys.executable, "-m", "harness.campaign.matrix", spec_path]


def _run_one_in_child(
    scenario: Scenario,
    *,
    tmp: str,
    index: int,
    work_dir: str,
    capsule_dir: str,
    base_timeout: float,
    catalog: Optional[Dict[str, str]] = None,
    attempt: Optional[Dict[str, Any]] = None,
    children: Optional["_Children"] = None,
) -> ResultRecord:
    tag = f"{index}.{(attempt or {}).get('index', 1)}"
    spec_path = os.path.join(tmp, f"{tag}.spec.json")
    out_path = os.path.join(tmp, f"{tag}.record.json")
    spec = {
        "scenario": scenario.to_dict(),
        "out": out_path,
        "work_dir": work_dir,
        "capsule_dir": capsule_dir,
        "base_timeout": base_timeout,
        "catalog": dict(catalog or {}),
        "attempt": dict(attempt or {}),
    }
    with open(spec_path, "w", encoding="utf-8") as fh:
        json.dump(spec, fh)
    # readiness + load + stop, each bounded; generous outer bound for env builds
    limit = 600.0 + 4 * scaled_timeout(base_timeout, scenario.workers)
    t0 = time.monotonic()
    err = ""
    code: Optional[int] = None
    if children is not None and children.interrupted:
        raise _Interrupted()
    proc = subprocess.Popen(
        _child_argv(spec_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    if children is not None:
        children.add(proc)
    try:
        out, _ = proc.communicate(timeout=limit)
        err = out.decode("utf-8", "replace")[-4000:]
        code = proc.returncode
    except subprocess.TimeoutExpired:  # the child's own reaper kills its server on SIGKILL's EOF
        proc.kill()
        out, _ = proc.communicate()
        err = f"harness child exceeded {limit:.0f}s\n" + (out or b"").decode("utf-8", "replace")[-4000:]
    finally:
        if children is not None:
            children.discard(proc)
    if children is not None and children.interrupted:
        raise _Interrupted()  # an interrupted cell has no verdict: not recorded, --resume runs it again
    if os.path.exists(out_path):
        with open(out_path, encoding="utf-8") as fh:
            return ResultRecord.from_dict(json.load(fh))
    text = err if err.strip() else f"harness child exited {code}"
    lost = lost_run_record(scenario, text, time.monotonic() - t0)
    return dataclasses.replace(lost, attempt=dict(attempt or {}), catalog=dict(catalog or {}))


def run_matrix(
    scenarios: Sequence[Scenario],
    *,
    results: str,
    jobs: int = 1,
    resume: bool = False,
    work_dir: str = "",
    capsule_dir: str = "",
    base_timeout: float = BASE_TIMEOUT_S,
    progress: Optional[Progress] = None,
    catalog: Optional[Mapping[str, Dict[str, str]]] = None,
    confirm: int = DEFAULT_CONFIRM,
    repeat: int = 1,
    route: Optional[Mapping[str, str]] = None,
) -> List[ResultRecord]:
    """Run every scenario (jobs at a time), append each record to `results`, return them in finish order
    (every attempt's record: confirmation and repeat runs included).

    `route` maps a scenario id to another JSONL file for its records (harness release runs both sides of
    an item in one pool, each side's records in its own file); ids not in it go to `results`.

    With resume=True, scenarios whose id already has a record in `results` are skipped (not returned).
    When a record could not be appended (disk full), every scenario still runs; then RecordNotWritten is
    raised with `.records` (all of them) so that the caller reports the verdicts and the loss.
    `catalog` maps a scenario id to the known-issue case it is ({"id", "role"}: ResultRecord.catalog)."""
    todo = list(scenarios)
    route = dict(route or {})
    if resume:
        skip = done_ids(results).union(*(done_ids(f) for f in set(route.values())))
        todo = [s for s in todo if s.scenario_id not in skip]
    records: List[ResultRecord] = []
    lost: List[str] = []  # records that could not be appended (disk full): the caller is told
    finished = 0
    lock = threading.Lock()
    total = len(todo)
    tmp = tempfile.mkdtemp(prefix="awh-matrix-")
    # the evidence of non-passing runs is kept beside the results (never in a temp dir that is left behind)
    work_dir = work_dir or os.path.join(os.path.dirname(os.path.abspath(results)), "runs")
    children = _Children()

    def keep(record: ResultRecord) -> None:
        with lock:
            try:
                append_record(route.get(record.scenario_id, results), record)
            except RecordNotWritten as exc:
                lost.append(f"{record.scenario_id}: {exc}")
            records.append(record)

    def one(index: int, scenario: Scenario) -> None:
        nonlocal finished

        def attempt_once(attempt: Dict[str, Any]) -> ResultRecord:
            return _run_one_in_child(
                scenario,
                tmp=tmp,
                index=index,
                work_dir=work_dir,
                capsule_dir=capsule_dir,
                base_timeout=base_timeout,
                catalog=(catalog or {}).get(scenario.scenario_id),
                attempt=attempt,
                children=children,
            )

        try:
            runs = run_attempts(attempt_once, confirm=confirm, repeat=repeat, on_record=keep)
        except _Interrupted:
            return
        with lock:
            finished += 1
            if progress is not None:
                progress(finished, total, Group(tuple(runs)))

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs))
    futures: List[concurrent.futures.Future[None]] = []
    try:
        futures.extend(pool.submit(one, i, s) for i, s in enumerate(todo))
        _wait_interruptibly(futures)
    except BaseException:  # Ctrl-C, SIGTERM (the CLI makes it a KeyboardInterrupt), a crash
        children.interrupt()  # every running cell's harness child ends within INTERRUPT_GRACE_S
        for fut in futures:
            fut.cancel()
        raise
    finally:
        pool.shutdown(wait=True)
        shutil.rmtree(tmp, ignore_errors=True)  # specs and records only: the evidence is under work_dir
        if os.path.isdir(work_dir) and not os.listdir(work_dir):
            os.rmdir(work_dir)
    if lost:
        exc = RecordNotWritten(f"{len(lost)} record(s) not written: {lost[0]}")
        exc.records = records  # type: ignore[attr-defined]  # every verdict, for the caller's summary
        raise exc
    return records


def _order(failure_class: str) -> int:
    return FAILURE_CLASSES.index(failure_class) if failure_class in FAILURE_CLASSES else len(FAILURE_CLASSES)


def summary(records: Sequence[ResultRecord]) -> str:
    """Class counts per scenario (the runs of one group count once: their shared class, or flaky when
    they disagree), then one row per non-passing scenario: class, id, signature, and "(confirmed, N
    runs)" when re-runs agreed. `degraded` of legacy records is judged as the report judges it
    (harness.verdict.degraded.mark_degraded; the JSONL records are never rewritten)."""
    groups = group_runs(mark_degraded(records))
    counts: Dict[str, int] = {}
    for g in groups:
        counts[g.failure_class] = counts.get(g.failure_class, 0) + 1
    names = [*FAILURE_CLASSES, FLAKY]
    lines = [f"{len(groups)} scenario(s): " + ", ".join(f"{counts[c]} {c}" for c in names if c in counts)]
    if len(groups) != len(records):
        lines[0] += f" ({len(records)} runs)"
    bad = [g for g in groups if g.failure_class != "passed"]
    if bad:
        width_c = max(len(g.failure_class) for g in bad)
        width_i = max(len(g.first.scenario_id) for g in bad)
        lines.append("")
        lines.append(f"{'class':<{width_c}}  {'scenario':<{width_i}}  signature / reason")
        for g in sorted(bad, key=lambda g: (_order(g.failure_class), g.first.scenario_id)):
            tail = g.signature or g.first.reason
            if g.status == "confirmed":
                tail += f"  (confirmed, {len(g.records)} runs)"
            lines.append(f"{g.failure_class:<{width_c}}  {g.first.scenario_id:<{width_i}}  {tail}")
    return "\n".join(lines)


def _child_main(spec_path: str) -> int:
    """`python -m harness.campaign.matrix SPEC.json`: run one scenario, write its record to spec["out"]."""
    with open(spec_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    record = run_scenario(
        Scenario.from_dict(spec["scenario"]),
        results=None,
        work_dir=spec.get("work_dir") or None,
        capsule_dir=spec.get("capsule_dir") or None,
        base_timeout=float(spec.get("base_timeout", BASE_TIMEOUT_S)),
        catalog=spec.get("catalog") or None,
        attempt=spec.get("attempt") or None,
    )
    tmp_out = spec["out"] + ".tmp"
    with open(tmp_out, "w", encoding="utf-8") as fh:
        fh.write(record.to_json())
    os.replace(tmp_out, spec["out"])
    return 0


__all__ = [
    "DEFAULT_CONFIRM",
    "Progress",
    "default_matrix",
    "done_ids",
    "merge_requirements",
    "run_matrix",
    "summary",
]

if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
