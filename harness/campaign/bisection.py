"""`harness bisect`: binary search over released versions for where ONE failure starts or stops.

    harness bisect uvicorn --bad 0.11.0 --good 0.20.0 --bind uds          # a fix search (good is newer)
    harness bisect uvicorn --good 0.29.0 --bad 0.30.0 --app servers.apps:failing_lifespan   # a regression
    harness bisect gunicorn --requirement gunicorn==23.0.0 --requirement uvicorn==0.36.0 \\
        --dependency uvicorn-worker --bad 0.3.0 --good 0.4.0

"Bad" is the verdict of the --bad version: its failure class and its signature (or --bad-class, with an
optional --bad-signature regex), so the search finds where THAT failure starts/stops; another verdict is
"good" (said so in the step line when it is not `passed`). A version whose env cannot be built
(`env-error`), that the adapter cannot drive (`unsupported`), or where the harness failed
(`harness-error`) is a "skip": neither good nor bad; the search probes a neighbour instead. Versions
whose Requires-Python excludes the interpreter are skipped without building, and so are envs that the
--results file already records as env-error under the same Python (--retry-env-errors rebuilds them);
each skip is said so. Envs are cached (harness.env.venvs), so a second bisect over a range is mostly runs.

Old releases resolve their unpinned dependencies to today's versions: uvicorn 0.11.x on Python 3.8 gets
uvloop 0.23, whose get_event_loop() raises in a spawned worker, so every worker dies before the 2020
behaviour can show. Pin such dependencies with --requirement (uvloop==0.14.0); they stay pinned.

The search itself is pure and unit-tested with fake oracles:

* search(n, test) -> SearchResult - indices 0..n-1 ordered from the good end to the bad end;
  test(i) -> "good" | "bad" | "skip"; finds the boundary (last good, first bad in that order)
* orient(versions, good, bad) -> (ordered, direction) - the versions between good and bad, good end first

Running it (scenarios, printing) is the face: harness.cli.bisect_cmd drives search() with real runs.

* pinned_requirements, recorded_env_errors, record_line - what one step needs
"""

import dataclasses
import os
import re
import time
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

from harness.model.classes import INCONCLUSIVE
from harness.model.records import ResultRecord, Scenario
from harness.run.runner import BASE_TIMEOUT_S, run_scenario

GOOD = "good"
BAD = "bad"
SKIP = "skip"
OUTCOMES = (GOOD, BAD, SKIP)

#: verdicts that say nothing about the server's behaviour: the version is skipped, not judged
SKIP_CLASSES = INCONCLUSIVE


class BisectError(ValueError):
    """The search cannot give an answer (an end is not what it was said to be); str() is one line."""


# -- the pure search -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """The boundary, as indices into the good-to-bad ordering.

    * last_good / first_bad - adjacent once skipped indices between them are discounted
    * skipped - every index that was tested and skipped
    * untested_between - skipped indices strictly between last_good and first_bad: when non-empty the
      first bad is one of them or first_bad (the answer is a range, not a version)
    * tested - the indices in the order they were tested
    """

    last_good: int
    first_bad: int
    skipped: Tuple[int, ...]
    untested_between: Tuple[int, ...]
    tested: Tuple[int, ...]

    @property
    def exact(self) -> bool:
        return not self.untested_between


def search(n: int, test: Callable[[int], str]) -> SearchResult:
    """Find the boundary in indices 0..n-1, ordered from the good end (0) to the bad end (n-1).

    The bad end is tested first; when it is a skip, its neighbours toward the good end are tried
    until one is not (likewise the good end, toward the bad end). Then plain bisection between the
    known good and known bad index; a skip excludes that index and the candidate nearest the middle is
    tried next. Each index is tested at most once. Raises BisectError when the bad end is good, the
    good end is bad, or no index between them can be tested at all."""
    if n < 2:
        raise BisectError("need at least two versions (a good and a bad one)")
    results: Dict[int, str] = {}
    order: List[int] = []

    def probe(i: int) -> str:
        if i not in results:
            outcome = test(i)
            if outcome not in OUTCOMES:
                raise ValueError(f"test({i}) returned {outcome!r}, not one of {OUTCOMES}")
            results[i] = outcome
            order.append(i)
        return results[i]

    hi = n - 1
    while probe(hi) == SKIP:
        hi -= 1
        if hi < 0:
            raise BisectError("no version in the range could be tested (every one was a skip)")
    if results[hi] == GOOD:
        where = "the bad end" if hi == n - 1 else f"the nearest testable neighbour of the bad end (#{hi})"
        raise BisectError(f"{where} is not bad")
    lo = 0
    while lo < hi and probe(lo) == SKIP:
        lo += 1
    if lo == hi:
        raise BisectError("no version on the good side of the bad one could be tested")
    if results[lo] == BAD:
        where = "the good end" if lo == 0 else f"the nearest testable neighbour of the good end (#{lo})"
        raise BisectError(f"{where} is bad too")
    while True:
        candidates = [i for i in range(lo + 1, hi) if results.get(i) != SKIP]
        if not candidates:
            break
        middle = (lo + hi) / 2.0
        pick = min(candidates, key=lambda i: (abs(i - middle), i))
        outcome = probe(pick)
        if outcome == BAD:
            hi = pick
        elif outcome == GOOD:
            lo = pick
    skipped = tuple(sorted(i for i, r in results.items() if r == SKIP))
    return SearchResult(
        last_good=lo,
        first_bad=hi,
        skipped=skipped,
        untested_between=tuple(i for i in skipped if lo < i < hi),
        tested=tuple(order),
    )


def orient(versions: Sequence[str], good: str, bad: str) -> Tuple[List[str], str]:
    """The versions from `good` to `bad` inclusive, good end first, and the direction.

    `versions` is oldest first. direction: "regression" (good is older) or "fix" (good is newer).
    Raises BisectError when either is not in `versions` or they are the same."""
    missing = [v for v in (good, bad) if v not in versions]
    if missing:
        near = ", ".join(versions[-5:])
        raise BisectError(f"{missing[0]} is not a released version here (newest: {near})")
    g, b = versions.index(good), versions.index(bad)
    if g == b:
        raise BisectError("--good and --bad are the same version")
    if g < b:
        return list(versions[g : b + 1]), "regression"
    return list(reversed(versions[b : g + 1])), "fix"


# -- judging records ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Judge:
    """Turns a record's verdict into good / bad / skip.

    * bad_class / bad_signature - the failure looked for: class, and a regex on the signature ("" = any);
      both None until defined by the first testable record (the bad end) unless given up front
    * exact_signature - the signature of the bad end, compared for equality (when no regex was given)
    """

    bad_class: Optional[str] = None
    bad_signature: str = ""
    exact_signature: Optional[str] = None

    @property
    def defined(self) -> bool:
        return self.bad_class is not None

    def define(self, failure_class: str, signature: str) -> None:
        self.bad_class = failure_class
        self.exact_signature = signature

    def judge(self, failure_class: str, signature: str) -> Tuple[str, str]:
        """(outcome, why) for one verdict."""
        if failure_class in SKIP_CLASSES:
            return SKIP, failure_class
        if self.bad_class is None:
            raise RuntimeError("the bad verdict is not defined yet")
        if failure_class != self.bad_class:
            return GOOD, "" if failure_class == "passed" else "not the bad class"
        if self.bad_signature:
            if re.search(self.bad_signature, signature or ""):
                return BAD, ""
            return GOOD, "same class, signature does not match --bad-signature"
        if self.exact_signature is not None and signature != self.exact_signature:
            return GOOD, "same class, another signature"
        return BAD, ""

    def describe(self) -> str:
        if self.bad_signature:
            return f"{self.bad_class} /{self.bad_signature}/"
        if self.exact_signature:
            return f"{self.bad_class} {self.exact_signature}"
        return str(self.bad_class)


# -- what a campaign over versions needs ---------------------------------------------------------


def pinned_requirements(
    dist: str, pinned: Sequence[str], default: Sequence[str], version: str
) -> Tuple[str, ...]:
    """`pinned` (or the server's defaults) with every requirement naming `dist` replaced by dist==version."""
    from harness.env.venvs import canonical_name  # noqa: PLC0415

    def name(req: str) -> str:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        return canonical_name(m.group(1)) if m else ""

    base = list(pinned) if pinned else list(default)
    kept = [r for r in base if name(r) != canonical_name(dist)]
    return (*kept, f"{dist}=={version}")


#: env-errors that say nothing about the env itself: never reused, always retried
_TRANSIENT_ENV_ERRORS = ("could not reach PyPI", "another process is still building", "timed out", "HTTP")


def recorded_env_errors(path: str, python_version: str) -> "Dict[str, Any]":
    """{scenario id: the last env-error record} in `path` under this Python version, so a second
    bisect over the same range does not rebuild envs that cannot be built (a later record of another
    class for the same scenario clears it; transient errors are never reused)."""
    from harness.model.records import read_records  # noqa: PLC0415

    found: Dict[str, Any] = {}
    if not path or not os.path.exists(path):
        return found
    for record in read_records([path]):
        if str(record.python.get("version", "")) != python_version:
            continue
        if record.failure_class != "env-error":
            found.pop(record.scenario_id, None)
        elif not any(t in record.signature for t in _TRANSIENT_ENV_ERRORS):
            found[record.scenario_id] = record
    return found


def record_line(path: str, run_id: str) -> int:
    """1-based line of the record with `run_id` in `path` (0 when not found)."""
    if not run_id or not os.path.exists(path):
        return 0
    needle = f'"run_id": "{run_id}"'
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if needle in line:
                return number
    return 0


# -- the campaign: one real run per probed version ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BisectPlan:
    """What a bisection runs: the versions good end first, and how each one becomes a scenario.

    * dist - the distribution bisected; ordered - its versions between good and bad, good end first
    * installable - the versions whose files admit this Python (the others are skipped unbuilt)
    * base - the scenario; pinned / default_requirements - its requirement set (pinned_requirements)
    * python_version - the interpreter's version
    * results, work_dir, capsule_dir, base_timeout - as run_scenario takes them
    * failed_envs - {scenario id: env-error record} not to rebuild (recorded_env_errors)
    """

    dist: str
    ordered: Tuple[str, ...]
    installable: FrozenSet[str]
    base: Scenario
    pinned: Tuple[str, ...]
    default_requirements: Tuple[str, ...]
    python_version: str
    results: str
    work_dir: str = ""
    capsule_dir: str = ""
    base_timeout: float = BASE_TIMEOUT_S
    failed_envs: Dict[str, ResultRecord] = dataclasses.field(default_factory=dict)


class Bisection:
    """search() over a plan with real runs: step(i) runs version i and judges it; notify gets one line per
    step. After run(): records {i: record}, why_skipped {i: why}, steps, builds [(version, seconds)]."""

    def __init__(self, plan: BisectPlan, judge: Judge, notify: Callable[[str], None] = lambda line: None):
        self.plan = plan
        self.judge = judge
        self.notify = notify
        self.records: Dict[int, ResultRecord] = {}
        self.why_skipped: Dict[int, str] = {}
        self.steps = 0
        self.builds: List[Tuple[str, float]] = []

    def run(self) -> SearchResult:
        """The boundary; BisectError when an end is not what it was said to be."""
        return search(len(self.plan.ordered), self.step)

    def _skip(self, i: int, label: str, why: str) -> str:
        self.why_skipped[i] = why
        self.notify(f"{label} -> skip ({why})")
        return SKIP

    def step(self, i: int) -> str:
        plan, version = self.plan, self.plan.ordered[i]
        self.steps += 1
        label = f"[step {self.steps}] {plan.dist}=={version}"
        if version not in plan.installable:
            why = f"Requires-Python of every file excludes {plan.python_version} (not built)"
            return self._skip(i, label, why)
        reqs = pinned_requirements(plan.dist, plan.pinned, plan.default_requirements, version)
        sc = dataclasses.replace(plan.base, requirements=reqs)
        earlier = plan.failed_envs.get(sc.scenario_id)
        if earlier is not None:
            why = f"env-error: {earlier.signature} (recorded by run {earlier.run_id}; not rebuilt)"
            return self._skip(i, label, why)
        t = time.monotonic()
        record = run_scenario(
            sc,
            results=plan.results,
            work_dir=plan.work_dir or None,
            capsule_dir=plan.capsule_dir or None,
            base_timeout=plan.base_timeout,
        )
        self.records[i] = record
        if not record.timings.get("env_cached", True):
            self.builds.append((version, float(record.timings.get("env_build") or 0.0)))
        return self._judged(i, label, record, time.monotonic() - t)

    def _judged(self, i: int, label: str, record: ResultRecord, seconds: float) -> str:
        judge, version = self.judge, self.plan.ordered[i]
        if not judge.defined and record.failure_class not in SKIP_CLASSES:
            if record.failure_class == "passed":
                self.notify(f"{label} -> {record.verdict}  = good ({seconds:.1f}s)")
                return GOOD
            judge.define(record.failure_class, record.signature)
            self.notify(f"bad = {judge.describe()} (the verdict of {self.plan.dist}=={version})")
        outcome, why = judge.judge(record.failure_class, record.signature)
        if outcome == SKIP:
            self.why_skipped[i] = f"{record.failure_class}: {record.signature or record.reason}"
            self.notify(f"{label} -> skip ({self.why_skipped[i]})  ({seconds:.1f}s)")
            return SKIP
        env_note = "env cached" if record.timings.get("env_cached") else "env built"
        tail = f" [{why}]" if why else ""
        took = f"({seconds:.1f}s, {env_note}, run {record.run_id})"
        self.notify(f"{label} -> {record.verdict}  = {outcome}{tail}  {took}")
        return outcome


__all__ = [
    "BAD",
    "GOOD",
    "SKIP",
    "SKIP_CLASSES",
    "BisectError",
    "BisectPlan",
    "Bisection",
    "Judge",
    "SearchResult",
    "orient",
    "pinned_requirements",
    "record_line",
    "recorded_env_errors",
    "search",
]
