"""Merge records from many machines and CI jobs into one matrix view.

A *cell* is one `ResultRecord.key` (scenario + platform + python version). Records of one cell are grouped
by *verdict* (failure class + signature):

* identical verdicts merge: one Verdict with its runs counted
* different verdicts are flaky: every verdict is kept and shown in the cell, none is dropped
* `degraded` is decided here (mark_degraded): passed, but keep-alive p50 >= 10x the single-worker twin's

The same record read twice (same key, run_id and started_at, e.g. one JSONL passed twice) counts once.

Rows and columns of the matrix:

* Row - `server@version` x strategy / start method (x bind mode when not tcp) x workers, plus whatever
  else makes the scenario distinct (fault, app, stop, stdin, options); python pins are column data
* Column - platform (sys_platform) x python major.minor (x implementation when not CPython)
"""

import dataclasses
import re
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from harness.model.classes import rank
from harness.model.records import FAILURE_CLASSES, ResultRecord, Scenario
from harness.verdict import agreement
from harness.verdict import degraded as _perf

__all__ = [
    "Cell",
    "Column",
    "MergedView",
    "Row",
    "Verdict",
    "column_of",
    "mark_degraded",
    "merge",
    "row_of",
    "version_key",
]

PLATFORM_ORDER = ("linux", "darwin", "win32")
PLATFORM_NAMES = {"linux": "Linux", "darwin": "macOS", "win32": "Windows"}
SERVER_ORDER = ("reference", "uvicorn", "hypercorn", "gunicorn", "granian", "daphne")
#: scenario options that describe a known-issue catalog entry rather than how the server runs
ISSUE_META_KEYS = ("known_issue", "title", "url", "link", "links", "trigger", "fixed_in", "expect", "role")


def version_key(version: str) -> Tuple[Any, ...]:
    """Sort key for version strings: numeric parts numerically ("0.9" < "0.10"), unknown text last."""
    parts: List[Tuple[int, Any]] = []
    for piece in re.findall(r"\d+|[A-Za-z]+", version or ""):
        parts.append((1, int(piece)) if piece.isdigit() else (0, piece))
    return (0 if parts else 1, tuple(parts), version or "")


def _class_rank(failure_class: str) -> int:
    return rank(failure_class)


@dataclasses.dataclass(frozen=True)
class Row:
    """One matrix row: a scenario with the python pin removed, at one server version."""

    id: str
    server: str
    version: str
    strategy: str
    start_method: str
    bind: str
    workers: int
    extras: Tuple[str, ...]
    issue: str = ""
    #: the version the scenario pinned the server to ("" = unpinned: the latest release that installed)
    pinned: str = ""

    @property
    def title(self) -> str:
        """`server==X` when the scenario pinned X (shown even when the env never built: env-error);
        `server@X` when it ran the latest release, which was X then; the bare name when neither is known."""
        if self.pinned:
            return f"{self.server}=={self.pinned}"
        return f"{self.server}@{self.version}" if self.version else self.server

    @property
    def group(self) -> str:
        """The matrix groups its rows by this: the server at one version (pinned and latest apart)."""
        return self.title

    @property
    def detail(self) -> str:
        """strategy / start method · bind · workers, the second line of the row header."""
        bits = [b for b in (self.strategy, self.start_method) if b]
        out = [" / ".join(bits) if bits else "default"]
        if self.bind != "tcp":
            out.append(self.bind)
        out.append(f"w{self.workers}")
        return " · ".join(out)

    @property
    def sort_key(self) -> Tuple[Any, ...]:
        srv = SERVER_ORDER.index(self.server) if self.server in SERVER_ORDER else len(SERVER_ORDER)
        return (
            srv,
            self.server,
            version_key(self.version),
            self.strategy,
            self.start_method,
            self.bind,
            self.workers,
            self.extras,
        )


@dataclasses.dataclass(frozen=True)
class Column:
    """One matrix column: a platform and a python minor version."""

    id: str
    platform: str
    python: str
    implementation: str

    @property
    def platform_name(self) -> str:
        return PLATFORM_NAMES.get(self.platform, self.platform or "?")

    @property
    def label(self) -> str:
        impl = "" if self.implementation.lower() in ("", "cpython") else f"{self.implementation} "
        return f"{impl}{self.python or '?'}"

    @property
    def sort_key(self) -> Tuple[Any, ...]:
        plat = PLATFORM_ORDER.index(self.platform) if self.platform in PLATFORM_ORDER else len(PLATFORM_ORDER)
        return (plat, self.platform, self.implementation.lower() != "cpython", version_key(self.python))


def _minor(version: str) -> str:
    m = re.match(r"(\d+)\.(\d+)", version or "")
    return f"{m.group(1)}.{m.group(2)}" if m else (version or "")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:120] or "_"


def row_of(record: ResultRecord, version: Optional[str] = None) -> Row:
    """The row a record belongs to (the python pin moves to the column)."""
    sc = Scenario.from_dict(record.scenario)
    base = dataclasses.replace(sc, python="")
    extras: List[str] = []
    if sc.app != Scenario.app:
        extras.append(f"app={sc.app}")
    if sc.fault:
        extras.append(f"fault={sc.fault}")
    if sc.stop != "group":
        extras.append(f"stop={sc.stop}")
    if sc.stdin != "devnull":
        extras.append(f"stdin={sc.stdin}")
    own = re.sub(r"[-_.]+", "-", sc.server.lower())
    pinned = ""
    for req in sc.requirements:
        name = re.sub(r"[-_.]+", "-", re.split(r"[\s\[<>=!~;@]", req, maxsplit=1)[0].lower())
        if name != own:
            extras.append(req)
            continue
        m = re.match(r"[^=<>!~]*==\s*([^\s;,]+)\s*$", req)
        if m:
            pinned = m.group(1)
        elif req.strip() != sc.server:
            extras.append(req)  # a range (uvicorn<0.30): shown, the row title says which version ran
    opts = dict(sc.options)
    tag = record.catalog if isinstance(record.catalog, dict) else {}
    issue = str(tag.get("id") or "") or opts.get("known_issue", "")
    extras.extend(f"{k}={v}" for k, v in sc.options if not (issue and k in ISSUE_META_KEYS))
    ver = record.server_version if version is None else version
    return Row(
        id="r-" + _slug(f"{base.scenario_id}@{ver}"),
        server=sc.server,
        version=ver,
        strategy=sc.strategy,
        start_method=sc.start_method,
        bind=sc.bind,
        workers=sc.workers,
        extras=tuple(extras),
        issue=issue,
        pinned=pinned,
    )


def column_of(record: ResultRecord) -> Column:
    plat = str(record.platform.get("sys_platform", "") or "")
    py = _minor(str(record.python.get("version", "") or ""))
    impl = str(record.python.get("implementation", "") or "CPython")
    return Column(id="c-" + _slug(f"{plat}-{impl}-{py}"), platform=plat, python=py, implementation=impl)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """All runs of one cell that agree on failure class and signature."""

    failure_class: str
    signature: str
    records: Tuple[ResultRecord, ...]

    @property
    def runs(self) -> int:
        return len(self.records)

    @property
    def latest(self) -> ResultRecord:
        """The most recent run (by started_at; ties: the last one read)."""
        best = self.records[0]
        for rec in self.records[1:]:
            if str(rec.started_at or "") >= str(best.started_at or ""):
                best = rec
        return best

    @property
    def text(self) -> str:
        return f"{self.failure_class} {self.signature}".rstrip()


@dataclasses.dataclass(frozen=True)
class Cell:
    """One matrix cell: every run of one ResultRecord.key, grouped by verdict (benign first)."""

    key: str
    row: Row
    column: Column
    verdicts: Tuple[Verdict, ...]

    @property
    def conflict(self) -> bool:
        return len(self.verdicts) > 1

    @property
    def runs(self) -> int:
        return sum(v.runs for v in self.verdicts)

    @property
    def records(self) -> Tuple[ResultRecord, ...]:
        return tuple(r for v in self.verdicts for r in v.records)

    @property
    def css_class(self) -> str:
        """The failure class, or "flaky" when the runs disagree."""
        return "flaky" if self.conflict else self.verdicts[0].failure_class

    @property
    def worst(self) -> Verdict:
        return max(self.verdicts, key=lambda v: _class_rank(v.failure_class))

    @property
    def python_version(self) -> str:
        return str(self.verdicts[0].latest.python.get("version", ""))

    @property
    def anchor(self) -> str:
        return f"cell-{self.key}"

    @property
    def rates(self) -> List[Dict[str, Any]]:
        """Per class over this cell's runs: count, runs, rate and 95% Wilson interval (as fractions), most
        benign first - what `harness run --repeat N` measured, shown wherever a cell ran more than once."""
        out = []
        for cls, rate in agreement.rates(self.records).items():
            low, high = rate.interval
            out.append({"class": cls, "count": rate.count, "runs": rate.runs, "rate": rate.rate,
                        "low": low, "high": high})  # fmt: skip
        return out


@dataclasses.dataclass(frozen=True)
class MergedView:
    """The merged matrix. `cells` is sorted by row then column; `grid[(row.id, column.id)]` lists the cells
    at one matrix position (usually one; several when patch-level python versions differ)."""

    cells: Tuple[Cell, ...]
    rows: Tuple[Row, ...]
    columns: Tuple[Column, ...]
    grid: Dict[Tuple[str, str], Tuple[Cell, ...]]

    @property
    def conflicts(self) -> Tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.conflict)

    @property
    def records(self) -> Tuple[ResultRecord, ...]:
        return tuple(r for c in self.cells for r in c.records)

    def class_counts(self) -> Dict[str, int]:
        """Cells per class (conflicting cells counted under "flaky"), in FAILURE_CLASSES order."""
        counts: Dict[str, int] = {name: 0 for name in FAILURE_CLASSES}
        counts["flaky"] = 0
        for cell in self.cells:
            counts[cell.css_class] = counts.get(cell.css_class, 0) + 1
        return counts


#: a passed multi-worker run whose keep-alive p50 is at least this many times its 1-worker twin's is degraded
#: (decided by harness.verdict.degraded, shared with the CLI summary; see its docstring for why it is not a
# record field)
DEGRADED_RATIO = _perf.DEGRADED_RATIO


def mark_degraded(records: Iterable[ResultRecord]) -> List[ResultRecord]:
    """The "degraded" class, decided from the records themselves by harness.verdict.degraded.mark_degraded: a
    passed
    run with N > 1 workers whose keep-alive p50 is >= DEGRADED_RATIO x the mean p50 of its passed
    single-worker twins (same scenario with workers=1, platform, python version and server version)
    becomes `degraded`, with the figures as signature. Other records are returned unchanged."""
    return _perf.mark_degraded(records)


def merge(record_lists: Iterable[Iterable[ResultRecord]]) -> MergedView:
    """Merge record lists (one per machine / CI job / JSONL file) into one MergedView.

    Passed runs are first checked against their single-worker twins (`mark_degraded`)."""
    by_key: Dict[str, List[ResultRecord]] = {}
    seen: Set[Tuple[str, ...]] = set()
    for rec in mark_degraded(r for records in record_lists for r in records):
        if rec.run_id:
            # the same run read twice counts once; a line that claims the same run with another verdict
            # (an edited or corrupted file) is not silently dropped: it shows as a disagreement
            ident = (rec.key, rec.run_id, rec.started_at, rec.failure_class, rec.signature)
            if ident in seen:
                continue
            seen.add(ident)
        by_key.setdefault(rec.key, []).append(rec)

    cells: List[Cell] = []
    for key, recs in by_key.items():
        recs.sort(
            key=lambda r: (str(r.started_at or ""), str(r.run_id or ""), r.to_json())
        )  # input order must not matter
        groups: Dict[Tuple[str, str], List[ResultRecord]] = {}
        for rec in recs:
            groups.setdefault((rec.failure_class, rec.signature), []).append(rec)
        verdicts = tuple(
            sorted(
                (Verdict(fc, sig, tuple(rs)) for (fc, sig), rs in groups.items()),
                key=lambda v: (_class_rank(v.failure_class), v.signature),
            )
        )
        versions = sorted({str(r.server_version or "") for r in recs}, key=version_key)
        row = row_of(recs[0], version="/".join(versions))
        cells.append(Cell(key=key, row=row, column=column_of(recs[0]), verdicts=verdicts))

    rows = {c.row.id: c.row for c in cells}
    cols = {c.column.id: c.column for c in cells}
    row_order = sorted(rows.values(), key=lambda r: r.sort_key)
    col_order = sorted(cols.values(), key=lambda c: c.sort_key)
    row_index = {r.id: i for i, r in enumerate(row_order)}
    col_index = {c.id: i for i, c in enumerate(col_order)}
    cells.sort(key=lambda c: (row_index[c.row.id], col_index[c.column.id], version_key(c.python_version)))
    grid: Dict[Tuple[str, str], List[Cell]] = {}
    for cell in cells:
        grid.setdefault((cell.row.id, cell.column.id), []).append(cell)
    return MergedView(
        cells=tuple(cells),
        rows=tuple(row_order),
        columns=tuple(col_order),
        grid={k: tuple(v) for k, v in grid.items()},
    )
