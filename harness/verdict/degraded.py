"""Performance judgements of records: keep-alive latency and the `degraded` annotation.

Pure functions of ResultRecords (no I/O, no clock), shared by the CLI summary
(harness.campaign.matrix.summary,
`harness release`) and the HTML report (reports.merge.mark_degraded), so both say the same thing.

* keepalive_p50(record) -> ms or None - load["keepalive"]["latency_ms"]["p50"]
* degradations(records) -> [Degradation or None], aligned with `records`
* mark_degraded(records) -> records - copies of the degraded ones with failure_class "degraded"

A passed run with N > 1 workers is *degraded* when its keep-alive p50 is >= DEGRADED_RATIO times the
mean p50 of its passed single-worker twins: the same scenario with workers=1 (so the same server,
requirements, strategy, start method, bind, app, python spec), on the same platform and python version
(ResultRecord.key), at the same installed server version.

Why an annotation and not a field written into the record: records are appended once to JSONL and never
rewritten (several writers, O_APPEND lines), and the verdict depends on *another* run - the twin - which
may finish later, in another job, on another machine, or in another file. So `degraded` is derived where
records are read together, always by this one function; the record keeps the measured figures
(load["keepalive"]["latency_ms"] and ["by_worker"]) that make the judgement reproducible.
"""

import dataclasses
import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from harness.model.records import ResultRecord

__all__ = [
    "DEGRADED_RATIO",
    "Degradation",
    "degradations",
    "keepalive_p50",
    "mark_degraded",
    "twin_key",
]

#: a passed multi-worker run whose keep-alive p50 is at least this many times its 1-worker twin's is degraded
DEGRADED_RATIO = 10.0


def _positive(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    out = float(value)
    return out if math.isfinite(out) and out > 0 else None


def keepalive_p50(record: ResultRecord) -> Optional[float]:
    """The keep-alive phase's p50 latency in ms, or None when the record has none (or garbage)."""
    load = record.load if isinstance(record.load, dict) else {}
    ka = load.get("keepalive")
    lat = ka.get("latency_ms") if isinstance(ka, dict) else None
    return _positive(lat.get("p50")) if isinstance(lat, dict) else None


def twin_key(record: ResultRecord) -> Tuple[str, str]:
    """(cell key of the same scenario with workers=1, installed server version)."""
    twin = dataclasses.replace(record, scenario={**record.scenario, "workers": 1})
    return twin.key, str(record.server_version or "")


@dataclasses.dataclass(frozen=True)
class Degradation:
    """Why one run is degraded: its keep-alive p50 against its single-worker twin's (mean over runs)."""

    p50_ms: float
    twin_p50_ms: float
    twin_runs: int

    @property
    def ratio(self) -> float:
        return self.p50_ms / self.twin_p50_ms

    @property
    def signature(self) -> str:
        return (
            f"keep-alive p50 {self.p50_ms:.1f} ms = {self.ratio:.0f}x the 1-worker {self.twin_p50_ms:.1f} ms"
        )

    @property
    def reason(self) -> str:
        return (
            f"passed, but keep-alive p50 is {self.ratio:.0f}x its single-worker twin's "
            f"(threshold {DEGRADED_RATIO:.0f}x)"
        )


def degradations(records: Sequence[ResultRecord]) -> List[Optional[Degradation]]:
    """One entry per record, in order: a Degradation for a degraded run, else None."""
    twins: Dict[Tuple[str, str], List[float]] = {}
    for rec in records:
        p50 = keepalive_p50(rec)
        if rec.failure_class == "passed" and p50 is not None and rec.scenario.get("workers") == 1:
            twins.setdefault((rec.key, str(rec.server_version or "")), []).append(p50)
    out: List[Optional[Degradation]] = []
    for rec in records:
        found: Optional[Degradation] = None
        p50 = keepalive_p50(rec)
        workers = rec.scenario.get("workers")
        multi = isinstance(workers, int) and not isinstance(workers, bool) and workers > 1
        if twins and rec.failure_class == "passed" and p50 is not None and multi:
            base = twins.get(twin_key(rec))
            if base:
                ref = sum(base) / len(base)
                if p50 >= DEGRADED_RATIO * ref:
                    found = Degradation(p50_ms=p50, twin_p50_ms=ref, twin_runs=len(base))
        out.append(found)
    return out


def mark_degraded(records: Iterable[ResultRecord]) -> List[ResultRecord]:
    """The records, with every degraded run replaced by a copy whose failure_class is "degraded" (and
    whose signature / reason give the figures). The input records are not changed."""
    records = list(records)
    return [
        rec
        if deg is None
        else dataclasses.replace(rec, failure_class="degraded", signature=deg.signature, reason=deg.reason)
        for rec, deg in zip(records, degradations(records))
    ]
