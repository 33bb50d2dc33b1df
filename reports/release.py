"""Release diff: what a new server version broke or fixed, cell by cell, against the previous version.

Cells are matched by *scenario identity with the server version abstracted away*: the scenario with the
version specifiers of the released distribution (and of the scenario's own server) removed, its python
pin removed, plus platform (sys_platform) and python major.minor (+ implementation). So
`uvicorn==0.54.0 --workers 2 on win32 / 3.12` matches `uvicorn==0.55.0 --workers 2 on win32 / 3.12`.

Each side of a cell gets a state from all of its runs:

* ok - every run passed; broken - every run failed (`degraded` too: a keep-alive stall a release brings
  is a regression, and one it removes a fix); flaky - both
* inconclusive - no run could judge the server (unsupported, env-error, harness-error only)

Each matched cell also gets its outcome as rust-lang/crater names them (DiffEntry.outcome, OUTCOMES):
regressed (ok -> broken, confirmed by a re-run), spurious-regressed (ok -> a failure not confirmed: one
failing run, or runs that disagree), fixed (confirmed broken -> ok), spurious-fixed (a failure that was
never confirmed -> ok), still-broken, still-passing, inconclusive (a side could not judge, or only one
side ran the cell); with the signature diff (DiffEntry.signature_diff: the verdicts gone, the ones new).

`diff()` sorts cells into newly_broken (ok -> broken/flaky), newly_fixed (broken/flaky -> ok), unchanged
(same state; a failing cell whose classes changed is still unchanged, with both verdicts shown),
inconclusive (either side inconclusive), added / removed (only one side has the cell).
`render_release()` is a pure function of the diff -> one self-contained HTML page.
"""

import dataclasses
import re
import statistics
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from harness.model.classes import rank as class_rank
from harness.model.records import ResultRecord, Scenario
from harness.verdict.signature import distinguishing_line

from .merge import PLATFORM_NAMES, column_of, mark_degraded, row_of, version_key
from .perf import performance
from .render import INCONCLUSIVE, OK_CLASSES, _env

__all__ = [
    "OUTCOMES",
    "DiffEntry",
    "ReleaseDiff",
    "Side",
    "StartupChange",
    "diff",
    "identity",
    "render_release",
    "startup_changes",
]


def _dist_name(requirement: str) -> Tuple[str, str]:
    """'uvicorn[standard]==0.30.0' -> ('uvicorn', 'uvicorn[standard]'): normalized name, name+extras."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?", requirement)
    if not m:
        return requirement.strip().lower(), requirement.strip()
    name = re.sub(r"[-_.]+", "-", m.group(1).lower())
    return name, m.group(1) + (m.group(2) or "")


def identity(record: ResultRecord, server: Optional[str] = None) -> Tuple[str, str, str]:
    """(abstract scenario id, sys_platform, python label) of a record, the server version taken out."""
    sc = Scenario.from_dict(record.scenario)
    released = {re.sub(r"[-_.]+", "-", sc.server.lower())}
    if server:
        released.add(re.sub(r"[-_.]+", "-", server.lower()))
    reqs: List[str] = []
    for req in sc.requirements:
        name, bare = _dist_name(req)
        if name in released:
            if bare.lower() != name and bare.lower() != sc.server.lower():
                reqs.append(bare)  # keep extras: uvicorn[standard] is not plain uvicorn
        else:
            reqs.append(req)
    abstract = dataclasses.replace(sc, requirements=tuple(reqs), python="")
    col = column_of(record)
    impl = "" if col.implementation.lower() == "cpython" else col.implementation + " "
    return abstract.scenario_id, col.platform, f"{impl}{col.python}"


#: the classes of a run that did what it should, for a release diff (degraded is a failure here)
PASSING = ("passed",)
#: rust-lang/crater's result names, worst first: what a cell did from the previous release to this one
OUTCOMES = (
    "regressed",
    "spurious-regressed",
    "still-broken",
    "inconclusive",
    "spurious-fixed",
    "fixed",
    "still-passing",
)


@dataclasses.dataclass(frozen=True)
class Side:
    """All runs of one cell at one version."""

    records: Tuple[ResultRecord, ...]

    @property
    def state(self) -> str:
        judged = [r for r in self.records if r.failure_class not in INCONCLUSIVE]
        if not judged:
            return "inconclusive"
        ok = [r for r in judged if r.failure_class in PASSING]
        if len(ok) == len(judged):
            return "ok"
        return "broken" if not ok else "flaky"

    @property
    def confirmed(self) -> bool:
        """Broken in at least two judged runs and ok in none: a verdict re-run before it was called
        (--confirm; a single failing run, or runs that disagree, are not)."""
        judged = [r for r in self.records if r.failure_class not in INCONCLUSIVE]
        return self.state == "broken" and len(judged) >= 2

    @property
    def verdicts(self) -> Tuple[str, ...]:
        """Distinct `class signature` verdicts, benign first."""
        seen: Dict[str, int] = {}
        for r in self.records:
            seen.setdefault(r.verdict, class_rank(r.failure_class))
        return tuple(sorted(seen, key=lambda v: (seen[v], v)))

    @property
    def worst(self) -> ResultRecord:
        return max(self.records, key=lambda r: (class_rank(r.failure_class), str(r.started_at or "")))

    @property
    def version(self) -> str:
        return "/".join(sorted({r.server_version for r in self.records}, key=version_key))


@dataclasses.dataclass(frozen=True)
class DiffEntry:
    """One matched cell: the scenario (version-free), where it ran, and both sides."""

    scenario: str
    label: str
    platform: str
    python: str
    previous: Optional[Side]
    current: Optional[Side]

    @property
    def platform_name(self) -> str:
        return PLATFORM_NAMES.get(self.platform, self.platform or "?")

    @property
    def outcome(self) -> str:
        """Its name among OUTCOMES (module doc)."""
        p, c = self.previous, self.current
        if p is None or c is None or "inconclusive" in (p.state, c.state):
            return "inconclusive"
        if p.state == "ok":
            if c.state == "ok":
                return "still-passing"
            return "regressed" if c.confirmed else "spurious-regressed"
        if c.state == "ok":
            return "fixed" if p.confirmed else "spurious-fixed"
        return "still-broken"

    @property
    def signature_diff(self) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
        """(verdicts the previous side had and this one does not, verdicts new in this one): the
        `class signature` lines of the runs, so a still-broken cell whose failure changed shows how."""
        before = self.previous.verdicts if self.previous is not None else ()
        after = self.current.verdicts if self.current is not None else ()
        return tuple(v for v in before if v not in after), tuple(v for v in after if v not in before)

    @property
    def decisive(self) -> str:
        """For a cell that failed at the new version and was ok before: the line of the failing run that
        the previous version's passing runs do not log (harness.verdict.signature.distinguishing_line);
        "" when there is no such pair or no such line."""
        if self.current is None or self.previous is None or self.current.state == "ok":
            return ""
        twins = [r for r in self.previous.records if r.failure_class in PASSING]
        if not twins:
            return ""
        failing = self.current.worst
        return distinguishing_line(
            failing.output, [r.output for r in twins], str(failing.platform.get("sys_platform") or "")
        )

    @property
    def shown(self) -> ResultRecord:
        """The run worth reading: the current side's worst run when it fails (or is the only side), else
        the previous side's worst (for a fixed cell: what it used to do)."""
        if self.current is not None and (self.current.state != "ok" or self.previous is None):
            return self.current.worst
        side = self.previous or self.current
        assert side is not None
        return side.worst


@dataclasses.dataclass(frozen=True)
class ReleaseDiff:
    newly_broken: Tuple[DiffEntry, ...]
    newly_fixed: Tuple[DiffEntry, ...]
    unchanged: Tuple[DiffEntry, ...]
    inconclusive: Tuple[DiffEntry, ...] = ()
    added: Tuple[DiffEntry, ...] = ()
    removed: Tuple[DiffEntry, ...] = ()
    #: ok at previous, failing at version, but not confirmed: one failing run, or runs that disagree
    unconfirmed: Tuple[DiffEntry, ...] = ()

    @property
    def entries(self) -> Tuple[DiffEntry, ...]:
        return (*self.newly_broken, *self.unconfirmed, *self.newly_fixed, *self.unchanged,
                *self.inconclusive, *self.added, *self.removed)  # fmt: skip

    def outcomes(self) -> Dict[str, List[DiffEntry]]:
        """{outcome: its cells} for every name of OUTCOMES (empty lists included), in that order."""
        out: Dict[str, List[DiffEntry]] = {name: [] for name in OUTCOMES}
        for e in self.entries:
            out[e.outcome].append(e)
        return out


def _group(
    records: Iterable[ResultRecord], server: Optional[str]
) -> Dict[Tuple[str, str, str], List[ResultRecord]]:
    out: Dict[Tuple[str, str, str], List[ResultRecord]] = {}
    for rec in records:
        out.setdefault(identity(rec, server), []).append(rec)
    return out


def _label(record: ResultRecord) -> str:
    row = row_of(record, version="")
    extras = f" [{', '.join(row.extras)}]" if row.extras else ""
    return f"{row.server} · {row.detail}{extras}"


def diff(
    previous: Sequence[ResultRecord], current: Sequence[ResultRecord], *, server: Optional[str] = None
) -> ReleaseDiff:
    """Compare two runs of the matrix. `server`: the released distribution whose version to abstract away
    in every scenario (default: each scenario's own server), e.g. "uvicorn" for gunicorn+uvicorn-worker
    cells."""
    prev = _group(mark_degraded(previous), server)
    cur = _group(mark_degraded(current), server)
    buckets: Dict[str, List[DiffEntry]] = {
        k: []
        for k in (
            "newly_broken",
            "unconfirmed",
            "newly_fixed",
            "unchanged",
            "inconclusive",
            "added",
            "removed",
        )
    }
    for ident in sorted(set(prev) | set(cur)):
        p = Side(tuple(prev[ident])) if ident in prev else None
        c = Side(tuple(cur[ident])) if ident in cur else None
        rec = (c or p).records[0]  # type: ignore[union-attr]
        entry = DiffEntry(
            scenario=ident[0], label=_label(rec), platform=ident[1], python=ident[2], previous=p, current=c
        )
        if p is None:
            buckets["added"].append(entry)
        elif c is None:
            buckets["removed"].append(entry)
        elif "inconclusive" in (p.state, c.state):
            buckets["inconclusive"].append(entry)
        elif p.state == "ok" and c.state != "ok":
            buckets["newly_broken" if c.confirmed else "unconfirmed"].append(entry)
        elif p.state != "ok" and c.state == "ok":
            buckets["newly_fixed"].append(entry)
        else:
            buckets["unchanged"].append(entry)
    order = {name: i for i, name in enumerate(("linux", "darwin", "win32"))}

    def key(e: DiffEntry) -> Tuple[object, ...]:
        return (e.label, order.get(e.platform, 9), e.platform, version_key(e.python))

    return ReleaseDiff(**{k: tuple(sorted(v, key=key)) for k, v in buckets.items()})


#: a cell's ready time counts as a startup regression from this ratio on (and at least SLOWER_MIN_S slower)
SLOWER_RATIO = 1.5
SLOWER_MIN_S = 0.05


def _ready_median(side: Optional[Side]) -> Optional[float]:
    if side is None:
        return None
    values = []
    for r in side.records:
        t = r.timings.get("all_workers") if isinstance(r.timings, dict) else None
        if r.failure_class in OK_CLASSES and isinstance(t, (int, float)) and not isinstance(t, bool):
            values.append(float(t))
    return statistics.median(values) if values else None


@dataclasses.dataclass(frozen=True)
class StartupChange:
    """One matched cell's median ready time before and after; `slower` past both thresholds."""

    entry: DiffEntry
    before: float
    after: float

    @property
    def ratio(self) -> float:
        return self.after / self.before

    @property
    def slower(self) -> bool:
        return self.ratio >= SLOWER_RATIO and self.after - self.before >= SLOWER_MIN_S


def startup_changes(release_diff: ReleaseDiff) -> List[StartupChange]:
    """Per matched cell that served on both sides: median ready time (launch -> every worker answered)
    before and after. Biggest slow-downs first."""
    rows: List[StartupChange] = []
    for bucket in (
        release_diff.unchanged,
        release_diff.newly_broken,
        release_diff.unconfirmed,
        release_diff.newly_fixed,
    ):
        for e in bucket:
            before, after = _ready_median(e.previous), _ready_median(e.current)
            if before is not None and after is not None and before > 0:
                rows.append(StartupChange(e, before, after))
    rows.sort(key=lambda r: (-r.ratio, r.entry.label))
    return rows


HEADINGS = {
    "regressed": "Regressed (passed at {previous}, fails at {version}, confirmed)",
    "spurious-regressed": "Spurious regressions (failed once at {version}, or its runs disagree)",
    "still-broken": "Still broken",
    "inconclusive": "Inconclusive (a side could not be judged, or ran at one version only)",
    "spurious-fixed": "Spuriously fixed (its failure at {previous} was never confirmed)",
    "fixed": "Fixed (failed at {previous}, confirmed; passes at {version})",
    "still-passing": "Still passing",
}
#: sections whose cells carry the run's detail and reproduction
EXPANDED = ("regressed", "spurious-regressed", "still-broken", "inconclusive", "spurious-fixed", "fixed")


def render_release(
    release_diff: ReleaseDiff,
    server: str,
    version: str,
    previous: str,
    *,
    generated_at: str = "",
    records: Sequence[ResultRecord] = (),
) -> str:
    """The release page: one section per outcome (OUTCOMES), regressed first, each failing cell with its
    signature and reproduction, a still-broken one with its signature diff.

    `records` (optional, both sides' runs): adds the performance comparison - ready time vs N per version."""
    template = _env().get_template("release.html")
    return template.render(
        perf=performance(records) if records else None,
        startup=startup_changes(release_diff),
        d=release_diff,
        server=server,
        version=version,
        previous=previous,
        generated_at=generated_at,
        sections=[
            (name, HEADINGS[name].format(version=version, previous=previous), cells, name in EXPANDED)
            for name, cells in release_diff.outcomes().items()
        ],
    )
