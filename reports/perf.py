"""The performance section: pure functions of records (and optional bench results) -> plain data.

* performance(records, bench=()) -> {"plots", "startup", "cells", "bench", "n_degraded"}
  - startup: ready time (timings.all_workers: launch -> every worker answered) vs N workers, one table row
    per series (server@version x strategy x bind x extras x platform x python), median over passed runs
  - plots: one inline SVG per server and start method, a line per series (two releases of one server
    are two lines in one plot, so a startup regression shows as a gap between them)
  - cells: per cell (row x column): throughput (fresh connections, req/s), latency p50/p99, keep-alive
    p50/p99 and the per-worker keep-alive p50 range (load.keepalive.by_worker), fairness (max_share,
    Jain's index), and the `degraded` verdict (harness.verdict.degraded, the same function the CLI uses)
  - bench: bench/results/<name>.json files, figures flattened to rows (a summary leaf is {median, min,
    max, n}); {bench, settings, figures, machine_*} files show `figures`, other shapes every scalar;
    bench_startup.py's results also get a plot of ready time vs N, one line per contender

Only passed (and degraded) runs count: a failing run's timings measure the failure, not the server.
"""

import json
import os
import statistics
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from harness.model.records import ResultRecord
from harness.verdict.degraded import degradations

from . import svg
from .merge import PLATFORM_NAMES, column_of, row_of, version_key

__all__ = ["bench_tables", "performance", "read_bench"]

OK = ("passed", "degraded")
MAX_BENCH_ROWS = 300
#: keys of a bench file that are metadata or raw runs, not figures
_NOT_FIGURES = ("bench", "settings", "machine", "machine_before", "machine_after", "command", "runs", "env")


def _median(values: Iterable[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _mapping(value: Any) -> Mapping[str, Any]:
    """`value` when it is a mapping, else an empty one (records read back may hold anything)."""
    return value if isinstance(value, Mapping) else {}


def _get(data: Any, *path: str) -> Optional[float]:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return svg.number(data)


def _series_key(record: ResultRecord) -> Tuple[Any, ...]:
    row = row_of(record)
    col = column_of(record)
    return (row.server, row.start_method, row.version, row.strategy, row.bind, row.extras, col.platform,
            col.implementation, col.python)  # fmt: skip


def _series_label(key: Tuple[Any, ...]) -> str:
    server, _method, version, strategy, bind, extras, plat, impl, python = key
    bits = [f"{server}@{version}" if version else server]
    if strategy:
        bits.append(strategy)
    if bind != "tcp":
        bits.append(bind)
    bits.extend(extras)
    impl = "" if str(impl).lower() in ("", "cpython") else f"{impl} "
    return " · ".join(bits) + f" · {PLATFORM_NAMES.get(plat, plat or '?')} {impl}{python}"


def _sort_key(key: Tuple[Any, ...]) -> Tuple[Any, ...]:
    server, method, version, strategy, bind, extras, plat, impl, python = key
    return (server, method, strategy, bind, extras, plat, impl, version_key(python), version_key(version))


def _startup(records: Sequence[ResultRecord]) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    values: Dict[Tuple[Any, ...], Dict[int, List[float]]] = {}
    for rec in records:
        t = _get(rec.timings, "all_workers")
        workers = rec.scenario.get("workers")
        if rec.failure_class not in OK or t is None or not isinstance(workers, int):
            continue
        values.setdefault(_series_key(rec), {}).setdefault(workers, []).append(t)
    rows: List[Dict[str, Any]] = []
    plots: Dict[Tuple[str, str], List[Tuple[str, List[Tuple[float, float]]]]] = {}
    for key in sorted(values, key=_sort_key):
        by_n = {n: (statistics.median(v), len(v)) for n, v in sorted(values[key].items())}
        label = _series_label(key)
        rows.append(
            {
                "server": key[0],
                "start_method": key[1] or "default",
                "label": label,
                "by_n": by_n,
            }
        )
        if len(by_n) >= 2:  # a line needs two worker counts
            plots.setdefault((key[0], key[1]), []).append(
                (label, [(float(n), med) for n, (med, _) in by_n.items()])
            )
    out_plots = []
    for (server, method), series in sorted(plots.items()):
        title = f"{server} · {method or 'default'} start: ready time vs N workers"
        out_plots.append(
            {
                "server": server,
                "start_method": method or "default",
                "svg": svg.line_plot(series, title=title, x_label="workers", y_label="seconds"),
            }
        )
    return rows, out_plots


def _cells(records: Sequence[ResultRecord]) -> List[Dict[str, Any]]:
    groups: Dict[Tuple[Any, ...], List[Tuple[ResultRecord, Any]]] = {}
    for rec, deg in zip(records, degradations(records)):
        if rec.failure_class not in OK:
            continue
        row, col = row_of(rec), column_of(rec)
        groups.setdefault((row.sort_key, col.sort_key, row, col), []).append((rec, deg))
    out = []
    for (_, _, row, col), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        recs = [r for r, _ in runs]

        def med(*path: str, recs: List[ResultRecord] = recs) -> Optional[float]:
            return _median(_get(r.load, *path) for r in recs)

        worker_p50s = [
            v
            for r in recs
            for w in _mapping(_mapping(r.load.get("keepalive")).get("by_worker")).values()
            if isinstance(w, Mapping)
            for v in [svg.number(w.get("p50"))]
            if v is not None
        ]
        degs = [d for _, d in runs if d is not None]
        out.append(
            {
                "row": row,
                "column": col,
                "runs": len(recs),
                "rate": med("rate"),
                "p50": med("latency_ms", "p50"),
                "p99": med("latency_ms", "p99"),
                "ka_p50": med("keepalive", "latency_ms", "p50"),
                "ka_p99": med("keepalive", "latency_ms", "p99"),
                # the in-run evidence of a delayed-ACK stall (harness.verdict.degraded): head -> last byte
                "gap_p50": med("keepalive", "body_gap_ms", "p50"),
                "stalled": any(r.failure_class == "degraded" for r in recs),
                "ka_worker_min": min(worker_p50s) if worker_p50s else None,
                "ka_worker_max": max(worker_p50s) if worker_p50s else None,
                "max_share": med("max_share"),
                "jain": med("jain"),
                "degraded": max(degs, key=lambda d: d.ratio) if degs else None,
            }
        )
    return out


def _flatten(data: Any, path: Tuple[str, ...], out: List[Dict[str, Any]]) -> None:
    if len(out) >= MAX_BENCH_ROWS:
        return
    if isinstance(data, Mapping):
        if "median" in data and all(not isinstance(v, Mapping) for v in data.values()):
            out.append(
                {
                    "name": " / ".join(path),
                    "median": svg.number(data.get("median")),
                    "min": svg.number(data.get("min")),
                    "max": svg.number(data.get("max")),
                    "n": data.get("n"),
                    "value": None,
                }
            )
            return
        for k in sorted(data, key=str):
            _flatten(data[k], (*path, str(k)), out)
    elif svg.number(data) is not None:
        out.append({"name": " / ".join(path), "value": svg.number(data), "median": None})
    elif isinstance(data, str) and path:
        out.append({"name": " / ".join(path), "value": data, "median": None})


def _bench_startup_plot(data: Mapping[str, Any]) -> Any:
    """bench/bench_startup.py results ({figures: {N: {contender: {all_workers: {median}}}}}) -> one line
    per contender, ready time vs N; empty Markup for any other shape or fewer than two N."""
    figures = data.get("figures")
    series: Dict[str, List[Tuple[float, Any]]] = {}
    if data.get("bench") == "startup" and isinstance(figures, Mapping):
        for n, contenders in figures.items():
            if not str(n).isdigit() or not isinstance(contenders, Mapping):
                continue
            for name, figs in contenders.items():
                med = _get(figs, "all_workers", "median") if isinstance(figs, Mapping) else None
                if med is not None:
                    series.setdefault(str(name), []).append((float(n), med))
    lines = [(name, pts) for name, pts in sorted(series.items()) if len(pts) >= 2]
    title = "bench startup: time until all N workers answered (median)"
    return svg.line_plot(lines, title=title, x_label="workers", y_label="seconds")


def bench_tables(bench: Sequence[Tuple[str, Any]]) -> List[Dict[str, Any]]:
    """(source name, decoded bench JSON) pairs -> one table each; malformed files become a note."""
    tables = []
    for source, data in bench:
        table: Dict[str, Any]
        if not isinstance(data, Mapping):
            error = data if isinstance(data, str) else "not a JSON object"
            table = {"name": str(source), "source": str(source), "error": error, "rows": []}
            table.update(settings=[], machine=[], truncated=False, svg="")
            tables.append(table)
            continue
        rows: List[Dict[str, Any]] = []
        if isinstance(data.get("figures"), Mapping):
            _flatten(data["figures"], (), rows)
        else:  # another shape (e.g. bench/flaky.py): every scalar, raw per-run data left out
            _flatten({k: v for k, v in data.items() if k not in _NOT_FIGURES}, (), rows)
        settings = data.get("settings")
        machine = data.get("machine_before") or data.get("machine")
        table = {
            "name": str(data.get("bench") or source),
            "source": str(source),
            "error": "" if rows else "no figures",
            "settings": sorted(
                (str(k), str(v)) for k, v in (settings.items() if isinstance(settings, Mapping) else ())
            ),
            "machine": sorted(
                (str(k), str(v)) for k, v in (machine.items() if isinstance(machine, Mapping) else ())
            ),
            "rows": rows,
            "truncated": len(rows) >= MAX_BENCH_ROWS,
            "svg": _bench_startup_plot(data),
        }
        tables.append(table)
    return tables


def performance(records: Sequence[ResultRecord], bench: Sequence[Tuple[str, Any]] = ()) -> Dict[str, Any]:
    """Everything the performance section shows, as plain data (SVG plots as escaped Markup)."""
    records = list(records)
    startup, plots = _startup(records)
    cells = _cells(records)
    ns = sorted({n for row in startup for n in row["by_n"]})
    return {
        "startup": startup,
        "startup_ns": ns,
        "plots": plots,
        "cells": cells,
        "bench": bench_tables(bench),
        "n_degraded": sum(1 for c in cells if c["degraded"] is not None),
        "empty": not (startup or cells or bench),
    }


def read_bench(paths: Sequence[str]) -> List[Tuple[str, Any]]:
    """I/O helper for the CLI (not part of the pure rendering): (file name, decoded JSON) per bench
    results file; a file that is not JSON is kept as an error note rather than failing the report."""
    out: List[Tuple[str, Any]] = []
    for path in paths:
        name = os.path.basename(path)
        try:
            with open(path, encoding="utf-8") as fh:
                out.append((name, json.load(fh)))
        except ValueError as exc:
            out.append((name, f"not JSON: {exc}"))
    return out
