"""`harness catalog`: the known-issue catalog, with the last verdict per platform, and running it.

    harness catalog [IDS...] [--results FILE.jsonl]          # id, title, platforms, cases, last verdicts
    harness catalog --run [IDS...] [--results FILE.jsonl]    # run the cases runnable here, append records
    harness catalog sweep ID [--python 3.8,3.11] [-n 2] [--from V] [--results FILE.jsonl]
                                     # the entry at every release from its floor (harness.campaign.sweep)
    harness catalog pages [IDS...] --results FILE.jsonl... [--out DIR]   # one page per entry + index

IDS are entry ids or shell-style patterns (`uvicorn-1009-*`); none = every entry. A record belongs to a
case when its scenario id is the case's scenario id; "last" is the last such line of the results file,
per `platform.sys_platform`. Each verdict is followed by `ok` or what differs from the expectation
(harness.catalog.Expectation.mismatch). Running skips what the pytest collector skips (case_skip).

* add_parser(subparsers) / run(args, out=None) -> exit code: 0 - done (whatever the verdicts);
  1 - a `harness-error` record (the harness failed, not the server)
* list_catalog(chosen, records, out) - the listing
"""

import argparse
import json
import os
import sys
import time
from typing import IO, Any, Dict, List, Optional, Sequence, Tuple

from harness.campaign.catalog_runs import mismatch, run_catalog
from harness.catalog import Entry, Expectation, entries, last_verdicts, select
from harness.cli._args import bounded_int, check_writable, duration, jsonl_inputs, positive_int
from harness.model.records import ResultRecord, Scenario
from harness.verdict.agreement import Group
from harness.verdict.signature import distinguishing_line

DEFAULT_RESULTS = os.path.join("results", "catalog.jsonl")
SWEEP_RESULTS = os.path.join("results", "sweep.jsonl")


def _expect_text(expectation: Expectation) -> str:
    text = expectation.failure_class
    if expectation.signature:
        text += f" /{expectation.signature}/"
    if expectation.exit_code is not None:
        text += f" exit {expectation.exit_code}"
    return text


def _verdict_text(record: ResultRecord, expectation: Expectation) -> str:
    problem = expectation.mismatch(record.failure_class, record.signature, record.exit_code)
    verdict = record.verdict if len(record.verdict) <= 90 else record.verdict[:87] + "..."
    when = record.started_at[:16] if record.started_at else "?"
    return f"{verdict} ({'ok' if not problem else 'MISMATCH: ' + problem}; {when})"


def _listing_json(chosen: Sequence[Entry], records: Sequence[ResultRecord]) -> List[Dict[str, Any]]:
    last = last_verdicts(records)
    out = []
    for entry in chosen:
        cases = []
        for scenario, expectation in entry.scenarios():
            seen = last.get(scenario.scenario_id, {})
            cases.append(
                {
                    "role": expectation.role,
                    "requirements": list(scenario.requirements),
                    "python": scenario.python,
                    "expect": _expect_text(expectation),
                    "last": {
                        plat: {
                            "verdict": r.verdict,
                            "ok": not expectation.mismatch(r.failure_class, r.signature, r.exit_code),
                        }
                        for plat, r in sorted(seen.items())
                    },
                }
            )
        out.append({"id": entry.id, "title": entry.title, "platforms": list(entry.platforms), "cases": cases})
    return out


def _group_text(group: Group, expectation: Expectation) -> str:
    problem = mismatch(expectation, group)
    verdict = group.verdict if len(group.verdict) <= 90 else group.verdict[:87] + "..."
    if group.status == "confirmed" and group.first.failure_class != "passed":
        verdict += " (confirmed)"
    return f"{verdict} ({'ok' if not problem else 'MISMATCH: ' + problem})"


def _case_label(scenario: Scenario, expectation: Expectation) -> str:
    label = "+".join(scenario.requirements)
    if scenario.python:
        label += f" (py{scenario.python})"
    return label


def list_catalog(chosen: Sequence[Entry], records: Sequence[ResultRecord], out: IO[str]) -> None:
    """Print every entry with its cases and the last verdict per platform."""
    last = last_verdicts(records)
    for entry in chosen:
        plats = ", ".join(entry.platforms) or "any"
        flag = f"  [skip: {entry.skip}]" if entry.skip else ""
        out.write(f"{entry.id}  ({plats})  {entry.title}{flag}\n")
        cases = entry.scenarios()
        width = max(len(_case_label(s, e)) for s, e in cases)
        for scenario, expectation in cases:
            head = f"  {expectation.role:<10} {_case_label(scenario, expectation):<{width}}"
            out.write(f"{head}  expect {_expect_text(expectation)}\n")
            seen = last.get(scenario.scenario_id, {})
            if not seen:
                out.write(f"  {'':<10} {'':<{width}}    (no record)\n")
            for plat, record in sorted(seen.items()):
                out.write(f"  {'':<10} {'':<{width}}    {plat}: {_verdict_text(record, expectation)}\n")


def add_parser(subparsers: "argparse._SubParsersAction[Any]") -> None:
    """Register `harness catalog`."""
    p = subparsers.add_parser(
        "catalog", help="list the known-issue catalog with last verdicts; --run runs it"
    )
    p.add_argument(
        "ids",
        nargs="*",
        metavar="ID",
        help="entry ids or patterns (default: all); `sweep ID` sweeps releases, `pages [IDS]` writes pages",
    )
    p.add_argument("--run", action="store_true", help="run the cases runnable here, append the records")
    p.add_argument(
        "--results",
        action="append",
        default=[],
        metavar="FILE.jsonl",
        help=f"read / append records (default {DEFAULT_RESULTS}; sweep: {SWEEP_RESULTS}); pages: repeatable",
    )
    p.add_argument("--python", default="", metavar="LIST", help='sweep: interpreters, "3.8,3.11"')
    p.add_argument("-n", "--jobs", type=positive_int, default=1, help="sweep: releases run in parallel")
    p.add_argument("--from", dest="floor", default="", metavar="VERSION", help="sweep: start here")
    p.add_argument("--out", default="known-issues", metavar="DIR", help="pages: where to write them")
    p.add_argument(
        "--dir", default="", metavar="DIR", help="catalog directory (default: the packaged catalog)"
    )
    p.add_argument("--capsule-dir", default="", help="reproduction capsules of non-passing runs")
    p.add_argument("--work-dir", default="")
    p.add_argument("--timeout", type=duration, default=None, help="base timeout in seconds")
    p.add_argument("--json", action="store_true", help="print the listing (or the run's results) as JSON")
    p.add_argument(
        "--confirm",
        type=bounded_int(0, 20),
        default=1,
        metavar="N",
        help="re-run a case whose verdict is not passed N times before calling it (default 1)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: Optional[IO[str]] = None) -> int:
    """`harness catalog`; see the module docstring for exit codes."""
    from harness.catalog import CatalogError  # noqa: PLC0415
    from harness.model.errors import UsageError  # noqa: PLC0415
    from harness.model.records import read_records  # noqa: PLC0415

    stream = out or sys.stdout
    mode = args.ids[0] if args.ids and args.ids[0] in ("sweep", "pages") else ""
    ids = args.ids[1:] if mode else args.ids
    if mode == "sweep":
        return sweep(args, ids, stream)
    if mode == "pages":
        return pages(args, ids, stream)
    if len(args.results) > 1:
        raise UsageError("--results is given once here (several only with `pages`)")
    args.results = args.results[0] if args.results else DEFAULT_RESULTS
    try:
        chosen = select(entries(args.dir or None), ids)
    except (CatalogError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if not args.run:
        records = list(read_records([args.results])) if os.path.exists(args.results) else []
        if args.json:
            stream.write(json.dumps(_listing_json(chosen, records), indent=2, sort_keys=True) + "\n")
            return 0
        stream.write(f"{len(chosen)} entries; verdicts from {args.results} ({len(records)} records)\n\n")
        list_catalog(chosen, records, stream)
        return 0
    json_out: Optional[IO[str]] = None
    if args.json:
        stream, json_out = sys.stderr, stream  # progress to stderr, the one JSON object to stdout
    check_writable(args.results, "--results")
    t0 = time.monotonic()
    stream.write(f"running {len(chosen)} entries on {sys.platform} -> {args.results}\n")
    stream.flush()

    def progress(entry: Entry, expectation: Expectation, scenario: Scenario, outcome: Any) -> None:
        label = f"{entry.id} {expectation.role} {_case_label(scenario, expectation)}"
        if isinstance(outcome, str):
            stream.write(f"skip  {label}: {outcome}\n")
        else:
            first = outcome.first
            build = ""
            if "env_cached" in first.timings:
                cached = first.timings.get("env_cached")
                built = first.timings.get("env_build", 0)
                build = ", env cached" if cached else f", env built {built:.1f}s"
            runs = len(outcome.records)
            took = sum(r.duration_s for r in outcome.records)
            text = _group_text(outcome, expectation)
            stream.write(f"run   {label}: {text} [{runs} run(s), {took:.1f}s{build}]\n")
        stream.flush()

    done, skipped = run_catalog(
        chosen,
        results=args.results,
        progress=progress,
        work_dir=args.work_dir,
        capsule_dir=args.capsule_dir,
        base_timeout=args.timeout,
        confirm=args.confirm,
    )
    bad = [(e, x, g) for e, x, g in done if mismatch(x, g)]
    firsts = [g.first for _, _, g in done]
    builds = [r.timings.get("env_build", 0.0) for r in firsts if r.timings.get("env_cached") is False]
    stream.write(
        f"\n{len(done)} run, {len(done) - len(bad)} as expected, {len(bad)} not, {skipped} skipped; "
        f"{time.monotonic() - t0:.1f}s wall; {len(builds)} env(s) built"
        + (f" ({sum(builds):.1f}s in all)" if builds else "")
        + "\n"
    )
    for entry, expectation, group in bad:
        reqs = "+".join(group.first.scenario["requirements"])
        stream.write(
            f"  not as expected: {entry.id} {expectation.role} {reqs}: {mismatch(expectation, group)}\n"
        )
    if json_out is not None:
        runs = [
            {"id": e.id, "role": x.role, "requirements": list(g.first.scenario.get("requirements") or []),
             "verdict": g.verdict, "status": g.status, "runs": len(g.records), "mismatch": mismatch(x, g)}
            for e, x, g in done
        ]  # fmt: skip
        payload = {"runs": runs, "as_expected": len(done) - len(bad), "not": len(bad), "skipped": skipped,
                   "decisive": dict(_decisive_lines(done))}  # fmt: skip
        json_out.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    for entry_id, line in _decisive_lines(done):
        stream.write(
            f"  decisive line of {entry_id} (logged by its affected case, not by its fixed one): {line}\n"
        )
    return 1 if any(r.failure_class == "harness-error" for _, _, g in done for r in g.records) else 0


def _decisive_lines(done: Sequence[Any]) -> List[Tuple[str, str]]:
    """Per entry whose affected case failed while its fixed case passed in this run: the failing line
    the passing twin does not log (harness.verdict.signature.distinguishing_line)."""
    out = []
    by_entry: Dict[str, List[Tuple[str, Group]]] = {}
    for entry, expectation, group in done:
        by_entry.setdefault(entry.id, []).append((expectation.role, group))
    for entry_id, cases in by_entry.items():
        failing = [g.first for role, g in cases if role == "affected" and g.first.failure_class != "passed"]
        passing = [
            r for role, g in cases if role == "fixed" for r in g.records if r.failure_class == "passed"
        ]
        if failing and passing:
            plat = str(failing[0].platform.get("sys_platform") or "")
            line = distinguishing_line(failing[0].output, [r.output for r in passing], plat)
            if line:
                out.append((entry_id, line))
    return out


def _one_entry(args: argparse.Namespace, ids: Sequence[str]) -> Entry:
    from harness.catalog import CatalogError  # noqa: PLC0415
    from harness.model.errors import UsageError  # noqa: PLC0415

    if len(ids) != 1:
        raise UsageError("catalog sweep takes one entry id")
    try:
        chosen = select(entries(args.dir or None), ids)
    except (CatalogError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if len(chosen) != 1:
        raise UsageError(f"{ids[0]!r} matches {len(chosen)} entries; name one")
    return chosen[0]


def sweep(args: argparse.Namespace, ids: Sequence[str], stream: IO[str]) -> int:
    """`harness catalog sweep ID`: 0 - swept (whatever the outcomes); 1 - a harness-error run."""
    from harness.adapters import get_adapter  # noqa: PLC0415
    from harness.campaign import sweep as sw  # noqa: PLC0415
    from harness.env import pythons, venvs  # noqa: PLC0415
    from harness.model.errors import UsageError  # noqa: PLC0415
    from harness.run.runner import BASE_TIMEOUT_S  # noqa: PLC0415

    entry = _one_entry(args, ids)
    if len(args.results) > 1:
        raise UsageError("--results is given once for a sweep")
    results = args.results[0] if args.results else SWEEP_RESULTS
    if entry.skip:
        raise UsageError(f"{entry.id} is not run: {entry.skip}")
    if entry.platform_skip(sys.platform):
        stream.write(f"unsupported: {entry.platform_skip(sys.platform)} (it waits for a runner of that OS)\n")
        return 0
    dist = sw.swept_distribution(entry)
    floor = args.floor or entry.sweep_from
    if not floor:
        adapter = get_adapter(entry.scenario.server)
        floor = getattr(adapter, "min_version", "") if dist == adapter.distribution else ""
    check_writable(results, "--results")
    asked = [p.strip() for p in args.python.split(",") if p.strip()] or [entry.scenario.python]
    t0 = time.monotonic()
    bad = 0
    for python in asked:
        if python and python[0].isdigit() and entry.python_skip(python):
            stream.write(f"skip py{python}: {entry.python_skip(python)}\n")
            continue
        try:
            interp = pythons.resolve(python)
        except pythons.InterpreterNotFound as exc:
            raise UsageError(str(exc)) from None
        try:
            every = venvs.list_versions(dist, interp, python_compatible=True)
        except venvs.EnvError as exc:
            raise UsageError(f"{dist}: {exc}") from None
        versions = sw.in_range(every, floor)
        if not versions:
            raise UsageError(f"no release of {dist} from {floor} on admits Python {interp.version}")
        how = "every one" if len(versions) <= sw.MAX_EVERY else "known points + bisection"
        stream.write(
            f"sweep {entry.id}: {dist} {versions[0]} .. {versions[-1]} ({len(versions)} releases, {how}) "
            f"on {sys.platform} Python {interp.version} -> {results}\n"
        )
        stream.flush()

        def say(line: str) -> None:
            stream.write("  " + line + "\n")
            stream.flush()

        result = sw.run_sweep(
            entry, versions, python=python, results=results, jobs=args.jobs, work_dir=args.work_dir,
            capsule_dir=args.capsule_dir, base_timeout=args.timeout or BASE_TIMEOUT_S, notify=say,
        )  # fmt: skip
        first_bad, first_fixed = sw.measured_boundaries(result.outcomes, versions)
        counts: Dict[str, int] = {}
        for outcome in result.outcomes.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        stream.write(
            f"{entry.id} py{interp.version}: {len(result.outcomes)} releases measured ("
            + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
            + f"); first reproducing {first_bad or '-'}, first fixed after it {first_fixed or '-'}\n"
        )
        bad += sum(1 for r in result.records if r.failure_class == "harness-error")
    stream.write(f"{time.monotonic() - t0:.1f}s wall\n")
    return 1 if bad else 0


def app_sources() -> Dict[str, str]:
    """{module: source} of the test apps a known-issue page shows as its app file (servers.apps)."""
    import servers.apps  # noqa: PLC0415

    with open(servers.apps.__file__, encoding="utf-8") as fh:
        return {"servers.apps": fh.read()}


def pages(args: argparse.Namespace, ids: Sequence[str], stream: IO[str]) -> int:
    """`harness catalog pages`: one known-issue page per entry from the records given, and an index."""
    from harness.catalog import CatalogError  # noqa: PLC0415
    from harness.model.errors import UsageError  # noqa: PLC0415
    from harness.model.records import load_records  # noqa: PLC0415
    from reports.render import write_issue_pages  # noqa: PLC0415

    try:
        chosen = select(entries(args.dir or None), ids)
    except (CatalogError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    defaults = [p for p in (DEFAULT_RESULTS, SWEEP_RESULTS) if os.path.exists(p)]
    records, _ = load_records(jsonl_inputs(args.results or defaults or [DEFAULT_RESULTS]))
    from datetime import datetime, timezone  # noqa: PLC0415

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    written = write_issue_pages(
        [e.page() for e in chosen], records, args.out, app_sources=app_sources(), generated_at=stamp
    )
    stream.write(f"{len(written)} known-issue page(s) from {len(records)} records -> {args.out}\n")
    return 0


__all__ = ["DEFAULT_RESULTS", "SWEEP_RESULTS", "add_parser", "list_catalog", "pages", "run", "sweep"]
