"""Several runs of one scenario: do they agree (confirmation), and how often does each class occur (rates).

Pure functions of ResultRecords, shared by `harness run`, the matrix summary, the release diff and the
report. A run that is one of several carries ResultRecord.attempt = {"group", "index", "purpose"}: the
runs of one group are the same scenario run back to back by one harness invocation; purpose is
"confirm" (a failing or degraded first verdict re-run before it is called, rust-lang/crater's habit with
its spurious results) or "repeat" (N runs asked for, to measure a failure rate). Every run's record is
kept; nothing here picks one run's verdict and drops the others.

* verdict_key(record) -> (failure class, signature): what two runs must share to agree
* needs_confirmation(record) - every class but passed, unsupported and env-error (those two are decided
  before the server runs: re-running them measures nothing)
* Group(records): status "single" (one run), "confirmed" (every run the same verdict), "flaky" (they
  disagree); failure_class is the shared class, or "flaky"; verdicts - each distinct verdict with its count
* group_runs(records) -> [Group], in first-seen order; a record without an attempt is a group of its own
* wilson(k, n) -> (low, high): the 95% Wilson score interval of k successes in n trials
* rates(records) -> {class: Rate(count, runs, rate, low, high)} over the judged runs
"""

import dataclasses
import math
from typing import Dict, Iterable, List, Sequence, Tuple

from harness.model.classes import FAILURE_CLASSES
from harness.model.records import ResultRecord

__all__ = [
    "FLAKY",
    "Z95",
    "Group",
    "Rate",
    "group_runs",
    "needs_confirmation",
    "rates",
    "verdict_key",
    "wilson",
]

#: the aggregate verdict of runs that disagree (never a record's own class: each run keeps its own)
FLAKY = "flaky"
#: the standard normal quantile of a two-sided 95% interval
Z95 = 1.959963984540054

_NOT_RERUN = ("passed", "unsupported", "env-error")


def verdict_key(record: ResultRecord) -> Tuple[str, str]:
    return record.failure_class, record.signature


def needs_confirmation(record: ResultRecord) -> bool:
    """A verdict that is re-run before it is called (--confirm): anything but passed / unsupported /
    env-error. harness-error is re-run too: the harness's own trouble can be transient."""
    return record.failure_class not in _NOT_RERUN


def _rank(failure_class: str) -> int:
    return FAILURE_CLASSES.index(failure_class) if failure_class in FAILURE_CLASSES else len(FAILURE_CLASSES)


@dataclasses.dataclass(frozen=True)
class Group:
    """The runs of one scenario by one invocation (one record when it was not re-run)."""

    records: Tuple[ResultRecord, ...]

    @property
    def first(self) -> ResultRecord:
        return self.records[0]

    @property
    def verdicts(self) -> Tuple[Tuple[Tuple[str, str], int], ...]:
        """Each distinct (class, signature) with how many runs had it, most benign class first."""
        counts: Dict[Tuple[str, str], int] = {}
        for r in self.records:
            counts[verdict_key(r)] = counts.get(verdict_key(r), 0) + 1
        return tuple(sorted(counts.items(), key=lambda kv: (_rank(kv[0][0]), kv[0][1])))

    @property
    def status(self) -> str:
        if len(self.records) == 1:
            return "single"
        return "confirmed" if len(self.verdicts) == 1 else FLAKY

    @property
    def failure_class(self) -> str:
        return FLAKY if self.status == FLAKY else self.first.failure_class

    @property
    def signature(self) -> str:
        if self.status == FLAKY:
            return " | ".join(f"{c} {s}".rstrip() + f" x{n}" for (c, s), n in self.verdicts)
        return self.first.signature

    @property
    def verdict(self) -> str:
        """`class signature` (one run, or all agree) or `flaky passed x1 | request-errors ... x1`."""
        return f"{self.failure_class} {self.signature}".rstrip()


def group_runs(records: Iterable[ResultRecord]) -> List[Group]:
    """Records grouped by their attempt group, in first-seen order; a lone record is its own group."""
    order: List[str] = []
    by_group: Dict[str, List[ResultRecord]] = {}
    for i, rec in enumerate(records):
        attempt = rec.attempt if isinstance(rec.attempt, dict) else {}
        gid = str(attempt.get("group") or "") or f"\0{i}"
        if gid not in by_group:
            order.append(gid)
            by_group[gid] = []
        by_group[gid].append(rec)
    return [Group(tuple(by_group[g])) for g in order]


def wilson(k: int, n: int, z: float = Z95) -> Tuple[float, float]:
    """The Wilson score interval for k of n (E. B. Wilson, 1927): unlike the normal approximation it
    stays inside [0, 1] and is usable at k = 0 and k = n, where an intermittent failure's counts live."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low = 0.0 if k == 0 else max(0.0, centre - half)  # exact at the ends (no rounding below 1.0)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


@dataclasses.dataclass(frozen=True)
class Rate:
    """How often one class occurred over `runs` runs, with its 95% Wilson interval."""

    failure_class: str
    count: int
    runs: int

    @property
    def rate(self) -> float:
        return self.count / self.runs if self.runs else 0.0

    @property
    def interval(self) -> Tuple[float, float]:
        return wilson(self.count, self.runs)

    def to_dict(self) -> Dict[str, object]:
        low, high = self.interval
        return {
            "count": self.count,
            "runs": self.runs,
            "rate": round(self.rate, 6),
            "ci95": [round(low, 6), round(high, 6)],
        }

    def describe(self) -> str:
        low, high = self.interval
        return (
            f"{self.failure_class}: {self.count}/{self.runs} = {100 * self.rate:.1f}% "
            f"(95% CI {100 * low:.1f}-{100 * high:.1f}%)"
        )


def rates(records: Sequence[ResultRecord]) -> Dict[str, Rate]:
    """Per failure class: its count over all the runs given, most benign class first."""
    counts: Dict[str, int] = {}
    for r in records:
        counts[r.failure_class] = counts.get(r.failure_class, 0) + 1
    n = len(records)
    return {c: Rate(c, counts[c], n) for c in sorted(counts, key=_rank)}
