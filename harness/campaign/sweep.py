"""`harness catalog sweep ID`: one known-issue entry run at the releases of its distribution, from the
entry's floor to the latest, so its page can show a version table that was measured, not copied.

Which releases (plan_sweep):

* up to MAX_EVERY (60) releases between the floor and the latest: every one of them;
* more than that: the known points - the floor, the entry's own affected and fixed releases, the newest
  release of every minor series (x.y) and the latest - and then, between two neighbouring known points
  whose outcomes differ, a bisection (harness.campaign.bisection.search) down to the two adjacent
  releases where the outcome changes. So the table spans the whole range and every change in it is
  pinned to a pair of neighbouring releases.

The floor is the entry's `sweep_from`, else the adapter's MIN_VERSION (the oldest release the harness can
drive). The swept distribution is the entry's `sweep` distribution, else its server. Each release runs the
entry's newest requirement set (its fixed case, else its last affected one) with that distribution
re-pinned, under each --python. Outcome per run (outcome_of): `reproduced` (the entry's expectation
met: class and signature), `passed` (passed or degraded), `fixed` (what the entry's fixed release is
expected to do, when its fix changed the failure rather than removing it), `other` (another failure),
`inconclusive` (env-error, unsupported, harness-error: neither; never a boundary).

Runs in parallel (-n 2) can disturb each other where a server binds a fixed address of its own: uvicorn
<= 0.14 with --fd or --uds opens 127.0.0.1:8000 whatever it is asked (the bug of uvicorn-1009-*), so two
such releases run side by side get EADDRINUSE instead of the entry's failure. So every release whose
outcome is `other` is run again alone before it is called: a run alone carries the role `sweep-alone`
and supersedes the parallel one (`sweep`) of the same scenario, here and on the page.

Results are cached: the records go to one JSONL per job (--results), and a release whose scenario already
has a conclusive record there is not run again; CI jobs' files are merged by the page that reads them.
Every record carries ResultRecord.catalog = {"id": ENTRY, "role": "sweep" | "sweep-alone"}.
"""

import dataclasses
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from harness import catalog
from harness.campaign.bisection import BAD, GOOD, SKIP, BisectError, search
from harness.campaign.matrix import run_matrix
from harness.campaign.release import _dist_of, _pinned
from harness.model.classes import INCONCLUSIVE
from harness.model.records import ResultRecord, Scenario, read_records
from harness.run.runner import BASE_TIMEOUT_S
from harness.verdict import versions as versions_

#: every release is run when the range holds at most this many; beyond it, known points + bisection
MAX_EVERY = 60

REPRODUCED, PASSED, FIXED = versions_.REPRODUCED, versions_.PASSED, versions_.FIXED
OTHER, INCONCLUSIVE_OUTCOME = versions_.OTHER, versions_.INCONCLUSIVE_OUTCOME
ROLE = "sweep"
ROLE_ALONE = "sweep-alone"


def _vkey(version: str) -> Any:
    from packaging.version import InvalidVersion, Version  # noqa: PLC0415 - only here

    try:
        return Version(version)
    except InvalidVersion:
        return Version("0")


def outcome_of(entry: catalog.Entry, record: ResultRecord) -> str:
    """What one run says about the entry's bug (harness.verdict.versions.outcome, as its page reads it)."""
    return versions_.outcome(entry.page(), record)


def swept_distribution(entry: catalog.Entry) -> str:
    """The distribution whose releases the sweep walks: `sweep` of the entry, else its server."""
    return entry.distribution


def base_requirements(entry: catalog.Entry) -> Tuple[Tuple[str, ...], str]:
    """The entry's newest requirement set (fixed case, else the last affected) and that case's python."""
    fixed = [c for c in entry.cases if c.expectation.role == "fixed"]
    affected = [c for c in entry.cases if c.expectation.role == "affected"]
    case = fixed[0] if fixed else affected[-1]
    return case.requirements, case.python


def known_versions(entry: catalog.Entry) -> List[str]:
    """The releases of the swept distribution the entry names in its cases."""
    dist = swept_distribution(entry)
    out = []
    for case in entry.cases:
        for req in case.requirements:
            m = re.match(r"\s*[A-Za-z0-9][A-Za-z0-9._-]*(?:\[[^\]]*\])?\s*==\s*([^\s;,]+)\s*$", req)
            if m and _dist_of(req) == dist and m.group(1) not in out:
                out.append(m.group(1))
    return out


def in_range(versions: Sequence[str], floor: str) -> List[str]:
    """`versions` (oldest first) from `floor` on."""
    low = _vkey(floor) if floor else None
    return [v for v in versions if low is None or _vkey(v) >= low]


def known_points(versions: Sequence[str], known: Sequence[str]) -> List[str]:
    """The first and the latest release, the entry's own, and the newest of every minor series."""
    picked = {versions[0], versions[-1], *(v for v in known if v in versions)}
    newest: Dict[str, str] = {}
    for v in versions:
        m = re.match(r"(\d+)\.(\d+)", v)
        newest[m.group(0) if m else v] = v
    picked.update(newest.values())
    return [v for v in versions if v in picked]


@dataclasses.dataclass
class SweepResult:
    """{version: outcome} under one python, and the records; `full`: every release in range was run."""

    entry: catalog.Entry
    distribution: str
    python: str
    versions: List[str]
    full: bool
    outcomes: Dict[str, str]
    records: List[ResultRecord]


def scenario_at(entry: catalog.Entry, version: str, python: str) -> Scenario:
    reqs, case_python = base_requirements(entry)
    return dataclasses.replace(
        entry.scenario,
        requirements=_pinned(reqs, swept_distribution(entry), version),
        python=python or case_python or entry.scenario.python,
    )


def _cached(entry: catalog.Entry, results: str) -> Dict[str, ResultRecord]:
    """{scenario id: its last conclusive sweep record} already in `results` (a run alone supersedes the
    parallel ones)."""
    import os  # noqa: PLC0415

    out: Dict[str, ResultRecord] = {}
    if not os.path.exists(results):
        return out
    for rec in read_records([results]):
        tag = rec.catalog or {}
        if tag.get("id") != entry.id or rec.failure_class in INCONCLUSIVE:
            continue
        earlier = out.get(rec.scenario_id)
        if (
            earlier is None
            or tag.get("role") == ROLE_ALONE
            or (earlier.catalog or {}).get("role") != ROLE_ALONE
        ):
            out[rec.scenario_id] = rec
    return out


def run_sweep(
    entry: catalog.Entry,
    versions: Sequence[str],
    *,
    python: str,
    results: str,
    jobs: int = 1,
    work_dir: str = "",
    capsule_dir: str = "",
    base_timeout: float = BASE_TIMEOUT_S,
    confirm: int = 0,
    notify: Callable[[str], None] = lambda line: None,
) -> SweepResult:
    """Run the entry at `versions` (its range, oldest first) under `python` (module doc)."""
    dist = swept_distribution(entry)
    full = len(versions) <= MAX_EVERY
    outcomes: Dict[str, str] = {}
    records: List[ResultRecord] = []
    where = f"py{python or 'default'}"
    alone: Dict[str, bool] = {}  # version -> its outcome comes from a run alone
    page = entry.page()  # what outcome() reads of the entry, built once, not per record

    def run(batch: Sequence[str], pool: int = jobs, again: bool = False) -> None:
        cached = {} if again else _cached(entry, results)
        todo: Dict[str, str] = {}  # scenario id -> version
        scenarios: List[Scenario] = []
        for v in batch:
            if v in outcomes and not again:
                continue
            sc = scenario_at(entry, v, python)
            if sc.scenario_id in cached:
                rec = cached[sc.scenario_id]
                outcomes[v] = versions_.outcome(page, rec)
                alone[v] = (rec.catalog or {}).get("role") == ROLE_ALONE
                records.append(rec)
                notify(f"{dist}=={v} {where}: {outcomes[v]} (cached: run {rec.run_id})")
            else:
                todo[sc.scenario_id] = v
                scenarios.append(sc)
        if not scenarios:
            return
        tag = {"id": entry.id, "role": ROLE_ALONE if pool == 1 else ROLE}
        done = run_matrix(
            scenarios,
            results=results,
            jobs=pool,
            work_dir=work_dir,
            capsule_dir=capsule_dir,
            base_timeout=base_timeout,
            catalog={sc.scenario_id: tag for sc in scenarios},
            confirm=confirm,
        )
        fresh: Dict[str, str] = {}
        for rec in done:  # in finish order: a confirmation run agrees, or the release reads `other`
            v = todo.get(rec.scenario_id, "")
            if v:
                seen = versions_.outcome(page, rec)
                fresh[v] = seen if fresh.get(v, seen) == seen else OTHER
                records.append(rec)
        for v in sorted(todo.values(), key=_vkey):
            outcomes[v] = fresh.get(v, INCONCLUSIVE_OUTCOME)
            alone[v] = pool == 1
            notify(f"{dist}=={v} {where}: {outcomes[v]}" + (" (run alone)" if again else ""))

    def settle() -> None:
        """Every `other` outcome that did not come from a run alone is run again alone (module doc)."""
        again = [v for v in versions if outcomes.get(v) == OTHER and not alone.get(v)]
        if again:
            notify(f"run alone before they are called: {', '.join(again)}")
            run(again, pool=1, again=True)

    if full:
        run(versions)
        settle()
        return SweepResult(entry, dist, python, list(versions), full, outcomes, records)
    points = known_points(versions, known_versions(entry))
    notify(f"{len(versions)} releases in range: {len(points)} known points, then bisection between changes")
    run(points)
    settle()
    # the oldest (newest) known point that was measured may have unmeasurable points before (after) it -
    # old releases whose envs do not build: the releases between are run, so the first reproducing
    # release is not a known point's by default (uvicorn 0.11.8 env-error, 0.12.0-0.12.2 run, 0.12.3 known)
    measurable = [v for v in points if outcomes.get(v, INCONCLUSIVE_OUTCOME) != INCONCLUSIVE_OUTCOME]
    gaps: List[str] = []
    if measurable:
        i, j = points.index(measurable[0]), points.index(measurable[-1])
        if i > 0:
            gaps += versions[versions.index(points[i - 1]) + 1 : versions.index(points[i])]
        if j < len(points) - 1:
            gaps += versions[versions.index(points[j]) + 1 : versions.index(points[j + 1])]
    if gaps:
        notify(f"beside the releases that could not be measured: {', '.join(gaps)}")
        run(gaps)
        settle()
    measured = [v for v in versions if v in outcomes]
    conclusive = [v for v in measured if outcomes.get(v, INCONCLUSIVE_OUTCOME) != INCONCLUSIVE_OUTCOME]
    for lo, hi in zip(conclusive, conclusive[1:]):
        inner = versions[versions.index(lo) : versions.index(hi) + 1]
        if outcomes[lo] == outcomes[hi] or len(inner) <= 2:
            continue

        def probe(i: int, inner: Sequence[str] = inner, hi: str = hi) -> str:
            run([inner[i]])
            settle()
            got = outcomes.get(inner[i], INCONCLUSIVE_OUTCOME)
            if got == INCONCLUSIVE_OUTCOME:
                return SKIP
            return BAD if got == outcomes[hi] else GOOD

        try:
            search(len(inner), probe)
        except BisectError as exc:  # every release between them inconclusive: the table says so
            notify(f"between {lo} and {hi}: {exc}")
    return SweepResult(entry, dist, python, list(versions), full, outcomes, records)


def _version_of(scenario: Scenario, dist: str) -> str:
    for req in scenario.requirements:
        if _dist_of(req) == dist and "==" in req:
            return req.split("==", 1)[1].strip()
    return ""


def measured_boundaries(outcomes: Dict[str, str], order: Optional[Sequence[str]] = None) -> Tuple[str, str]:
    """(first reproducing release, first passing release after the last reproducing one) of one
    python's outcomes; "" where none was seen (harness.verdict.versions.boundaries)."""
    found = versions_.boundaries(sorted(outcomes, key=_vkey) if order is None else order, outcomes)
    return found.first_bad, found.first_fixed


__all__ = [
    "FIXED",
    "MAX_EVERY",
    "OTHER",
    "PASSED",
    "REPRODUCED",
    "ROLE",
    "ROLE_ALONE",
    "SweepResult",
    "base_requirements",
    "in_range",
    "known_points",
    "known_versions",
    "measured_boundaries",
    "outcome_of",
    "run_sweep",
    "scenario_at",
    "swept_distribution",
]
