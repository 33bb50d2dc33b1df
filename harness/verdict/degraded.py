"""Performance judgements: the keep-alive stall a run shows by itself, and the twin comparison.

Pure functions (no I/O, no clock), shared by the classifier (harness.verdict.classify), the CLI summary
(harness.campaign.matrix.summary, `harness release`) and the HTML report (reports.merge.mark_degraded).

**The in-run judgement (what decides `degraded` for every record written since the harness records
p10/p25).** A keep-alive stall is a delayed-ACK stall: the server writes a response in two segments with
Nagle on, the second waits for the client's ACK of the first, and the client delays that ACK by its
stack's delayed-ACK timer (Linux: TCP_DELACK_MIN = 40 ms; macOS: 100 ms; Windows: 200 ms). The evidence
that decides, when the run measured it (harness.run.load `body_gap_ms`), is **the stall itself**: per
kept-connection response, the time from its head being parsed to its last body byte. A stalled response
has its body held for the timer; a response written at once arrives whole (gap ~0) however long a busy
machine took to produce it. CPU load moves latencies, not that gap: a matrix beside 3 CPU hogs with the
harness's own tests running read healthy reference servers at keep-alive p25 38-44 ms, p50 45-52 ms -
inside the latency band below - and 9 of 45 cells `degraded` by the latency rule (bench_contention,
2026-12-02), with no stall. keepalive_stall(latency, platform, samples, body_gap) -> Stall | None:

* at least STALL_MIN_SAMPLES keep-alive answers were measured (fewer is no evidence either way)
* with body_gap (new records): its p50 >= STALL_FLOOR x quantum and <= STALL_CEILING x quantum - at
  least half of the kept responses had their body held for the timer
* without it (records before body_gap_ms): p25 >= STALL_FLOOR x quantum (three quarters of the
  kept-connection requests waited the timer) and p50 <= STALL_CEILING x quantum (a band at the timer,
  not a generally slow server) - the latency band, which a heavily loaded machine can fake

A stall whose two segments split inside the head (status line, then headers) shows in the latency and
not in the gap; no server the harness runs writes its head in pieces.

**The twin comparison (legacy records, and context in the report).** Records written before p25 was
recorded carry only p50; for them a passed run with N > 1 workers is degraded when its keep-alive p50 is
>= DEGRADED_RATIO times the mean p50 of its passed single-worker twins (same scenario with workers=1,
same platform and python version - ResultRecord.key - and the same installed server version). The ratio
moves with load (the twin is measured at another moment), which is why it no longer decides new
records; degradations() still computes it for the report's performance table.

* keepalive_p50(record) -> ms or None; keepalive_stall(...) -> Stall or None (above)
* degradations(records) -> [Degradation or None] (twin ratio), aligned with `records`
* mark_degraded(records) -> records: legacy records judged by the twin ratio; the others as classified

Signatures are stable text (no measured figures), so that two runs of the same stall compare equal
(--confirm, bench_contention); the figures are in the reason and the record's load.
"""

import dataclasses
import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from harness.model.records import ResultRecord

__all__ = [
    "DEGRADED_RATIO",
    "DELAYED_ACK_MS",
    "STALL_CEILING",
    "STALL_FLOOR",
    "STALL_MIN_SAMPLES",
    "STALL_SIGNATURE",
    "Degradation",
    "Stall",
    "degradations",
    "keepalive_p50",
    "keepalive_stall",
    "mark_degraded",
    "twin_key",
]

#: a legacy passed multi-worker run whose keep-alive p50 is at least this many times its 1-worker twin's
DEGRADED_RATIO = 10.0

#: the client stack's delayed-ACK timer per sys.platform (ms): the quantum a stalled response waits for
DELAYED_ACK_MS: Dict[str, float] = {"linux": 40.0, "darwin": 100.0, "win32": 200.0}
#: p25 at or above this fraction of the quantum: the timer, give or take clock granularity
STALL_FLOOR = 0.9
#: p50 at or below this multiple of the quantum: a band at the timer, not a server slow at everything
STALL_CEILING = 3.0
#: fewer keep-alive answers than this are no evidence of a stall (nor of its absence)
STALL_MIN_SAMPLES = 8
STALL_SIGNATURE = "degraded: keep-alive delayed-ACK stall"


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
class Stall:
    """A keep-alive stall seen in one run: its kept-connection quartiles against the delayed-ACK quantum."""

    p25_ms: float
    p50_ms: float
    quantum_ms: float
    platform: str
    #: the kept responses' median head-to-body gap (ms), when the run measured it
    gap_p50_ms: Optional[float] = None

    signature = STALL_SIGNATURE

    @property
    def reason(self) -> str:
        gap = ""
        if self.gap_p50_ms is not None:
            gap = f"; the body came {self.gap_p50_ms:.1f} ms after the head (p50)"
        return (
            f"Passed, but kept connections stall on the {self.quantum_ms:.0f} ms delayed-ACK timer "
            f"({self.platform}): keep-alive p25 {self.p25_ms:.1f} ms, p50 {self.p50_ms:.1f} ms{gap}."
        )

    def to_dict(self) -> Dict[str, Any]:
        return {
            "p25_ms": self.p25_ms,
            "p50_ms": self.p50_ms,
            "quantum_ms": self.quantum_ms,
            "platform": self.platform,
            "gap_p50_ms": self.gap_p50_ms,
        }


def keepalive_stall(latency: Any, platform: str, samples: int, body_gap: Any = None) -> Optional[Stall]:
    """The stall one run's keep-alive phase shows (module doc), or None.

    `latency` is load["keepalive"]["latency_ms"] ({p25, p50, ...}), `samples` its 2xx answer count,
    `body_gap` load["keepalive"]["body_gap_ms"] ({p50, ...}; None or {} for a run that did not measure
    it): when present, it decides."""
    quantum = DELAYED_ACK_MS.get(platform)
    if quantum is None or not isinstance(latency, dict) or samples < STALL_MIN_SAMPLES:
        return None
    p25, p50 = _positive(latency.get("p25")), _positive(latency.get("p50"))
    if p25 is None or p50 is None:
        return None
    if isinstance(body_gap, dict) and body_gap:
        gap = body_gap.get("p50")
        gap = float(gap) if isinstance(gap, (int, float)) and not isinstance(gap, bool) else None
        if gap is not None and STALL_FLOOR * quantum <= gap <= STALL_CEILING * quantum:
            return Stall(p25_ms=p25, p50_ms=p50, quantum_ms=quantum, platform=platform, gap_p50_ms=gap)
        return None
    if p25 >= STALL_FLOOR * quantum and p50 <= STALL_CEILING * quantum:
        return Stall(p25_ms=p25, p50_ms=p50, quantum_ms=quantum, platform=platform)
    return None


def _judged_in_run(record: ResultRecord) -> bool:
    """Whether the run recorded what the in-run stall judgement needs (p25): then its class stands."""
    load = record.load if isinstance(record.load, dict) else {}
    ka = load.get("keepalive")
    lat = ka.get("latency_ms") if isinstance(ka, dict) else None
    return isinstance(lat, dict) and "p25" in lat


@dataclasses.dataclass(frozen=True)
class Degradation:
    """Why one run is degraded: its keep-alive p50 against its single-worker twin's (mean over runs)."""

    p50_ms: float
    twin_p50_ms: float
    twin_runs: int

    @property
    def ratio(self) -> float:
        return self.p50_ms / self.twin_p50_ms

    signature = "degraded: keep-alive p50 >= 10x the 1-worker twin"

    @property
    def reason(self) -> str:
        return (
            f"Passed, but keep-alive p50 {self.p50_ms:.1f} ms is {self.ratio:.0f}x its single-worker twin's "
            f"{self.twin_p50_ms:.1f} ms (threshold {DEGRADED_RATIO:.0f}x; a record without p25, judged by "
            "its twin)."
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
    """The records, with every legacy record (no p25: not judged in its run) that its twin shows degraded
    replaced by a copy whose failure_class is "degraded". A record judged in its run keeps its class.
    The input records are not changed."""
    records = list(records)
    return [
        rec
        if deg is None or _judged_in_run(rec)
        else dataclasses.replace(rec, failure_class="degraded", signature=deg.signature, reason=deg.reason)
        for rec, deg in zip(records, degradations(records))
    ]
