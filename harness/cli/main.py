"""`harness`: the command line.

    harness run --server uvicorn --requirement uvicorn==0.30.0 --workers 2    -> "<failure-class> <signature>"
    harness run ... --json                                                     -> the whole record (JSON)
    harness matrix [--config FILE] [--results FILE] [--report FILE.html] [--bench F.json...] [-n JOBS] ...
    harness report RESULTS.jsonl|DIR... -o report.html [--bench bench/results/*.json]
    harness release uvicorn==0.55.0 [--previous 0.54.0] [-n 2] [-o release.html] -> the release diff page
    harness catalog [IDS...] [--run]                                           -> the known-issue catalog
    harness watch --state state.json [--json] [--advance D==V]                 -> new releases, what to run
    harness publish RESULTS... --site DIR [--issues F] [--published F]         -> release pages + index
    harness notify ISSUES.json --repo OWNER/NAME                               -> one issue per regression
    harness bisect uvicorn --bad 0.14.0 --good 0.15.0 [--dependency D]         -> first bad / last good
    harness pythons                                                            -> interpreters found here
    harness probe [--python V]                                                 -> reference strategies here

Exit codes (README "Exit codes" says the same):
  0 - done; `harness run`: the verdict is ok (passed, degraded) - every run's, with --confirm / --repeat
  1 - the harness could not do its job (a `harness-error` verdict, a crash)
  2 - bad usage (one line on stderr)
  3 - `harness release` only: a cell regressed: it passed at --previous and is broken at VERSION, confirmed
  4 - `harness run` only: the server failed (a failing class, or runs that disagree: flaky)
  5 - `harness run` only: inconclusive - the scenario could not run here (unsupported, env-error)
  130 - interrupted
`harness matrix` exits 0 when every cell has a verdict (failing ones included: they are the report's
content) and 1 when one is harness-error.
"""

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import harness
from harness import catalog
from harness.adapters import get_adapter
from harness.adapters.reference import ProbeFailed, combinations, probe
from harness.campaign.attempts import run_attempts
from harness.campaign.config import load_matrix_file, load_settings
from harness.campaign.matrix import DEFAULT_CONFIRM, default_matrix, done_ids, run_matrix, summary
from harness.cli import _output
from harness.cli import bisect_cmd as bisect
from harness.cli import catalog_cmd as catalog_cli
from harness.cli import notify_cmd as notify_cli
from harness.cli import publish_cmd as publish_cli
from harness.cli import watch_cmd as watch_cli
from harness.cli._args import (
    bounded_int,
    check_writable,
    duration,
    jsonl_inputs,
    non_negative_int,
    positive_int,
    scenario_from_args,
)
from harness.cli.release_cmd import parse_target, release
from harness.env import pythons
from harness.env import venvs as envs
from harness.env.index import index_url
from harness.model.classes import INCONCLUSIVE, OK_CLASSES
from harness.model.errors import HarnessError, UsageError
from harness.model.records import (
    RecordNotWritten,
    ResultRecord,
    Scenario,
    Skipped,
    append_record,
    load_records,
)
from harness.model.text import one_line
from harness.run.faults import ARGUMENTS, FAULTS, MAX_INTERVAL_S, interval_ok
from harness.run.faults import MAX_REPEAT as MAX_FAULT_REPEAT
from harness.run.faults import check as check_fault
from harness.run.faults import summary as fault_summary
from harness.run.runner import BASE_TIMEOUT_S, parse_bind, run_scenario, validate
from harness.verdict.agreement import FLAKY, Group, group_runs, rates
from reports import write_report
from reports.perf import read_bench

EXIT_OK = 0
EXIT_HARNESS = 1
EXIT_USAGE = 2
EXIT_FAILED = 4
EXIT_INCONCLUSIVE = 5
EXIT_INTERRUPTED = 130

#: re-runs bounds: enough for a 1% flake (about 300 starts for a 95% interval), not a runaway
MAX_REPEAT = 10000
MAX_CONFIRM = 20


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit 2."""

    def error(self, message: str) -> "Any":
        raise UsageError(f"{self.prog}: {message}")


def _add_scenario_args(p: argparse.ArgumentParser) -> None:
    d = Scenario()
    p.add_argument(
        "--server", default="reference", help="reference | uvicorn | hypercorn | gunicorn | granian"
    )
    p.add_argument(
        "--requirement",
        action="append",
        default=[],
        metavar="SPEC",
        help="requirement for the server's env, repeatable (default: the server's latest)",
    )
    p.add_argument("--python", default="", help='interpreter for the server: "3.10", a path ("" = this one)')
    p.add_argument("--workers", type=positive_int, default=d.workers)
    p.add_argument("--strategy", default="", help="reference server socket strategy (see `harness probe`)")
    p.add_argument("--start-method", default="", help="fork | spawn | forkserver")
    p.add_argument("--app", default=d.app, metavar="MOD:ATTR")
    p.add_argument("--bind", default=d.bind, help="tcp | uds | fd:N")
    p.add_argument("--stdin", default=d.stdin, choices=("inherit", "devnull", "closed"))
    p.add_argument("--stop", default=d.stop, choices=("group", "master"))
    p.add_argument("--requests", type=non_negative_int, default=d.requests)
    p.add_argument("--concurrency", type=positive_int, default=d.concurrency)
    p.add_argument("--keepalive-requests", type=non_negative_int, default=d.keepalive_requests)
    p.add_argument(
        "--fault",
        default="",
        type=_fault_name,
        metavar="FAULT",
        help=f"inject a fault: {', '.join(_fault_choices())} (see harness.run.faults)",
    )
    p.add_argument(
        "--fault-repeat",
        type=bounded_int(1, MAX_FAULT_REPEAT),
        default=d.fault_repeat,
        metavar="N",
        help="signal-master: send the signal N times (default 1)",
    )
    p.add_argument(
        "--fault-interval",
        type=_interval,
        default=d.fault_interval,
        metavar="S",
        help="signal-master: seconds between two signals (default 1.0)",
    )
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="adapter option")
    p.add_argument(
        "--server-arg",
        dest="server_args",
        action="append",
        default=[],
        metavar="ARG",
        help="append ARG verbatim to the server's command line (repeatable; --server-arg=--flag for dashes)",
    )


def _fault_choices() -> List[str]:
    return [f"{name}:{ARGUMENTS[name].split(' ')[0]}" if name in ARGUMENTS else name for name in FAULTS]


def _fault_name(text: str) -> str:
    try:
        check_fault(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not interval_ok(value):
        raise argparse.ArgumentTypeError(f"must be seconds in 0..{MAX_INTERVAL_S:g}, got {text!r}")
    return value


def _common_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--capsule-dir", default="", help="write reproduction capsules of non-passing runs here")
    p.add_argument("--work-dir", default="", help="run directories go here (default: a temp dir)")
    p.add_argument("--timeout", type=duration, default=BASE_TIMEOUT_S, help="base timeout in seconds")


def _attempt_args(p: argparse.ArgumentParser, *, confirm_default: int) -> None:
    p.add_argument(
        "--confirm",
        type=bounded_int(0, MAX_CONFIRM),
        default=None,
        metavar="N",
        help=f"re-run a failing or degraded verdict N times before calling it; runs that disagree are "
        f"flaky (default {confirm_default})",
    )
    p.add_argument(
        "--repeat",
        type=bounded_int(1, MAX_REPEAT),
        default=None,
        metavar="N",
        help="run each scenario N times and report each class's rate with its 95%% Wilson interval",
    )
    p.set_defaults(confirm_default=confirm_default)


def _attempts(args: argparse.Namespace, settings: Optional[Dict[str, int]] = None) -> Tuple[int, int]:
    """(confirm, repeat): the flags, else the matrix file's settings, else the command's defaults."""
    settings = settings or {}
    confirm = args.confirm if args.confirm is not None else settings.get("confirm", args.confirm_default)
    repeat = args.repeat if args.repeat is not None else settings.get("repeat", 1)
    return int(confirm), int(repeat)


def _bench_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bench",
        nargs="*",
        default=[],
        metavar="FILE.json",
        help="bench results (bench/results/*.json) for the report's performance section",
    )


def _bench_files(paths: Sequence[str]) -> List[Tuple[str, Any]]:
    for item in paths:
        if not os.path.isfile(item):
            raise UsageError(f"no such bench results file: {item}")
    return read_bench(paths)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="harness",
        description="multi-worker socket sharing harness for ASGI servers",
        epilog="exit codes: 0 done (run: the verdict is ok), 1 the harness failed, 2 bad usage, "
        "3 release: a cell regressed (confirmed), 4 run: the server failed or flaky, 5 run: inconclusive, "
        "130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"harness {harness.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("run", help="run one scenario, print `<failure-class> <signature>`")
    _add_scenario_args(p)
    _common_run_args(p)
    p.add_argument("--results", default="", metavar="FILE.jsonl", help="append the record here")
    p.add_argument("--json", action="store_true", help="print the whole record as JSON")
    _attempt_args(p, confirm_default=0)

    p = sub.add_parser("matrix", help="run a matrix of scenarios, print a summary, write the HTML report")
    p.add_argument(
        "--config", default="", metavar="FILE", help="matrix file (TOML or JSON); default: built-in"
    )
    p.add_argument("--results", default=os.path.join("results", "matrix.jsonl"), metavar="FILE.jsonl")
    p.add_argument("--report", default="", metavar="FILE.html", help="write the HTML report here")
    p.add_argument("-n", "--jobs", type=positive_int, default=1, help="scenarios run in parallel")
    p.add_argument("--python", default="", metavar="LIST", help='comma-separated interpreters ("3.8,3.12")')
    p.add_argument("--server", action="append", default=[], help="restrict the default matrix (repeatable)")
    p.add_argument(
        "--requirement",
        action="append",
        default=[],
        metavar="SPEC",
        help="requirement set for the upstream servers of the default matrix",
    )
    p.add_argument("--resume", action="store_true", help="skip scenarios already in --results")
    p.add_argument("--json", action="store_true", help="print the summary as JSON (one object) at the end")
    _attempt_args(p, confirm_default=DEFAULT_CONFIRM)
    _bench_arg(p)
    _common_run_args(p)

    p = sub.add_parser("report", help="write the HTML report of JSONL results")
    p.add_argument("inputs", nargs="+", metavar="RESULTS", help="JSONL files or directories of them")
    p.add_argument("-o", "--output", default="report.html", metavar="FILE.html")
    _bench_arg(p)

    p = sub.add_parser("release", help="run a release's scenarios at it and the one before, write the diff")
    p.add_argument(
        "target", metavar="DIST==VERSION|SERVER", help="a plan item (uvicorn==0.55.0, h11==0.16.0), or SERVER"
    )
    p.add_argument("version", nargs="?", default="", help="with SERVER: the new version, e.g. 0.55.0")
    p.add_argument("--previous", default="", metavar="VERSION", help="default: the release before VERSION")
    p.add_argument("--python", default="", metavar="LIST", help='comma-separated interpreters ("3.8,3.12")')
    p.add_argument("--workers", default="1,2,4", metavar="LIST", help="worker counts (default 1,2,4)")
    p.add_argument("--bind", default="tcp", metavar="LIST", help="binds, comma-separated (default tcp)")
    p.add_argument("--no-catalog", action="store_true", help="leave out the known-issue catalog entries")
    p.add_argument(
        "--no-downstream", action="store_true", help="leave out the servers that run with the release"
    )
    p.add_argument(
        "--json", action="store_true", help="print the diff as one JSON object (progress on stderr)"
    )
    p.add_argument("--results-dir", default="results", metavar="DIR", help="JSONL per version goes here")
    p.add_argument("--index-url", default="", metavar="URL", help="the package index (default: pip's)")
    p.add_argument("-o", "--output", default="release.html", metavar="FILE.html")
    p.add_argument("-n", "--jobs", type=positive_int, default=1)
    p.add_argument(
        "--confirm",
        type=bounded_int(0, MAX_CONFIRM),
        default=DEFAULT_CONFIRM,
        metavar="N",
        help="re-run a failing cell N times; only a confirmed failure counts as regressed "
        f"(default {DEFAULT_CONFIRM})",
    )
    _common_run_args(p)

    catalog_cli.add_parser(sub)  # type: ignore[arg-type]  # our _Parser is an ArgumentParser
    bisect.add_parser(sub)
    watch_cli.add_parser(sub)  # type: ignore[arg-type]
    publish_cli.add_parser(sub)
    notify_cli.add_parser(sub)

    p = sub.add_parser("pythons", help="list the interpreters found here")
    p.add_argument("--json", action="store_true", help="a JSON list: path, version, source, note, ...")

    p = sub.add_parser("probe", help="the reference server's strategies and start methods here")
    p.add_argument("--python", default="")
    p.add_argument("--json", action="store_true")
    return parser


# -- validation --------------------------------------------------------------------------------------


def _validate_scenario(sc: Scenario) -> None:
    try:
        validate(sc)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    get_adapter(sc.server)  # UnknownServer is a UsageError
    if sc.server == "reference" and (sc.strategy or sc.start_method):
        _validate_reference_names(sc.python, sc.strategy, sc.start_method)


def _validate_reference_names(python: str, strategy: str, start_method: str) -> None:
    """Unknown names are usage errors; known-but-unavailable ones run and are recorded `unsupported`."""
    try:
        data = probe(_python_path(python))
    except ProbeFailed:
        return  # the run will record why
    strategies = data.get("strategies") or {}
    if strategy and strategy not in strategies:
        raise UsageError(f"unknown strategy {strategy!r}; known: {', '.join(strategies)}")
    methods = set()
    for info in strategies.values():
        methods |= set(info.get("start_methods") or {})
    if start_method and methods and start_method not in methods:
        raise UsageError(f"unknown start method {start_method!r}; known: {', '.join(sorted(methods))}")


def _python_path(spec: str) -> str:
    try:
        return pythons.resolve(spec).path
    except pythons.InterpreterNotFound as exc:
        raise UsageError(str(exc)) from None


# -- commands ------------------------------------------------------------------------------------------


def _run_exit(group: Group) -> int:
    classes = {r.failure_class for r in group.records}
    if "harness-error" in classes:
        return EXIT_HARNESS
    if classes <= set(OK_CLASSES):
        return EXIT_OK
    if classes <= set(INCONCLUSIVE):
        return EXIT_INCONCLUSIVE
    return EXIT_FAILED


def _group_json(group: Group) -> Dict[str, Any]:
    first = group.first
    return {
        "scenario_id": first.scenario_id,
        "runs": len(group.records),
        "status": group.status,
        "failure_class": group.failure_class,
        "verdict": group.verdict,
        "rates": {c: rate.to_dict() for c, rate in rates(group.records).items()},
        "records": [r.to_dict() for r in group.records],
    }


def cmd_run(args: argparse.Namespace) -> int:
    sc = scenario_from_args(args, args.requirement)
    _validate_scenario(sc)
    check_writable(args.results, "--results")
    confirm, repeat = _attempts(args)
    # a non-passing run always gets its reproduction capsule: beside --results, else in the user cache
    capsule_dir = args.capsule_dir or (
        os.path.join(os.path.dirname(os.path.abspath(args.results)), "capsules")
        if args.results
        else os.path.join(os.path.dirname(envs.default_cache_dir()), "capsules")
    )

    lost: List[str] = []

    def once(attempt: Dict[str, Any]) -> ResultRecord:
        record = run_scenario(
            sc, work_dir=args.work_dir or None, capsule_dir=capsule_dir, base_timeout=args.timeout,
            attempt=attempt,
        )  # fmt: skip
        if args.results:
            try:
                append_record(args.results, record)
            except RecordNotWritten as exc:
                lost.append(str(exc))
        if repeat > 1 and not args.json:
            print(f"  [{attempt.get('index')}/{repeat}] {record.verdict}", file=sys.stderr, flush=True)
        return record

    group = Group(tuple(run_attempts(once, confirm=confirm, repeat=repeat)))
    code = _print_run(args, sc, group, repeat)
    for line in lost:
        print(f"harness: {line} (the verdict above was printed, its record is lost)", file=sys.stderr)
    return EXIT_HARNESS if lost else code


def _print_run(args: argparse.Namespace, sc: Scenario, group: Group, repeat: int) -> int:
    record = group.first
    if args.json:
        payload = record.to_dict() if len(group.records) == 1 else _group_json(group)
        print(json.dumps(payload, indent=2, sort_keys=True, default=str))
        return _run_exit(group)
    if repeat > 1:
        print(f"{sc.scenario_id}: {len(group.records)} runs")
        for rate in rates(group.records).values():
            print(f"  {rate.describe()}")
        return _run_exit(group)
    print(group.verdict)
    if group.status == "confirmed" and record.failure_class != "passed":
        print(f"  confirmed: {len(group.records)} runs gave the same verdict", file=sys.stderr)
    elif group.status == FLAKY:
        for (cls, sig), n in group.verdicts:
            print(f"  {n} run(s): {cls} {sig}".rstrip(), file=sys.stderr)
    if record.failure_class != "passed" and record.reason:
        print(f"  {record.reason}", file=sys.stderr)
    if record.fault:
        print(f"  fault {fault_summary(record.fault)}", file=sys.stderr)
    for r in group.records:
        if r.capsule:
            print(f"  capsule: {r.capsule}", file=sys.stderr)
        kept = _run_dir_of(r)
        if kept and os.path.isdir(kept):
            print(f"  run dir (server output, capped at 1 MiB per file): {kept}", file=sys.stderr)
    return _run_exit(group)


def _run_dir_of(record: ResultRecord) -> str:
    home = str(record.env.get("HOME", "")) if isinstance(record.env, dict) else ""
    return os.path.dirname(home.rstrip("/\\")) if home.rstrip("/\\").endswith("home") else ""


class _ProgressPrinter:
    """A line per finished scenario. On a terminal, a rich progress bar (count, elapsed, classes so far)
    stays under the lines; piped or redirected, plain lines only (CI logs, `| tee`)."""

    def __init__(self, total: int, stream: Any = None) -> None:
        self.total = total
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.counts: Dict[str, int] = {}
        self._progress: Any = None
        self._task: Any = None
        if self.tty and total:
            self._start()

    def _start(self) -> None:
        from rich.console import Console  # noqa: PLC0415 - only on a terminal
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        # the harness's own bar goes to the stream under the cleaning wrapper; every line it prints is
        # cleaned first (below) and printed without markup
        console = Console(file=getattr(self.stream, "raw", self.stream), highlight=False)
        self._progress = Progress(
            TextColumn("matrix"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[counts]}"), console=console, transient=True,
        )  # fmt: skip
        self._task = self._progress.add_task("matrix", total=self.total, counts="")
        self._progress.start()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __call__(self, done: int, total: int, group: Group) -> None:
        record = group.first
        cls = group.failure_class
        self.counts[cls] = self.counts.get(cls, 0) + 1
        width = len(str(total))
        line = f"[{done:>{width}}/{total}] {cls:<16} {record.scenario_id}"
        line += f"  {sum(r.duration_s for r in group.records):.1f}s"
        if len(group.records) > 1:
            line += f" ({len(group.records)} runs{', confirmed' if group.status == 'confirmed' else ''})"
        if cls != "passed" and (group.signature or record.reason):
            line += f"  {(group.signature or record.reason)[:120]}"
        if self._progress is not None:
            from rich.text import Text  # noqa: PLC0415

            self._progress.console.print(Text(one_line(line)))
            counts = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
            self._progress.update(self._task, completed=done, counts=counts)
            if done >= total:
                self.close()
        else:
            self.stream.write(line + "\n")
            self.stream.flush()


def _matrix_scenarios(args: argparse.Namespace) -> List[Scenario]:
    missing: Dict[str, str] = {}

    def probe_fn(python: str) -> Dict[str, Any]:
        if python in missing:
            return {}
        try:
            return probe(_python_path(python))
        except ProbeFailed as exc:
            raise HarnessError(str(exc)) from exc

    pythons = [p.strip() for p in args.python.split(",")] if args.python else [""]
    for p in pythons:
        if p:
            try:
                _python_path(p)
            except UsageError as exc:
                # a cell per server that records env-error with this reason: the matrix still runs the rest
                missing[p] = str(exc)
                print(f"harness matrix: {exc}: its cells will be env-error", file=sys.stderr)
    if args.config:
        scenarios = load_matrix_file(args.config, probe_fn)
        if args.python:
            scenarios = [dataclasses.replace(s, python=p) for s in scenarios for p in pythons]
        if args.server:
            scenarios = [s for s in scenarios if s.server in args.server]
    else:
        scenarios = default_matrix(pythons, args.server or None, args.requirement, probe_fn)
    for sc in scenarios:
        _validate_scenario(sc)
    return scenarios


def cmd_matrix(args: argparse.Namespace) -> int:
    check_writable(args.results, "--results")
    check_writable(args.report, "--report")
    bench = _bench_files(args.bench)  # a bad path fails before the matrix runs, not after
    scenarios = _matrix_scenarios(args)
    if not scenarios:
        raise UsageError("the matrix is empty (check --server / --config)")
    capsule_dir = args.capsule_dir or os.path.join(os.path.dirname(os.path.abspath(args.results)), "capsules")
    t0 = time.monotonic()
    out = sys.stderr if args.json else sys.stdout  # with --json, stdout holds the JSON object only
    if args.resume:
        done = done_ids(args.results)
        already = [s for s in scenarios if s.scenario_id in done]
        scenarios = [s for s in scenarios if s.scenario_id not in done]
        print(
            f"harness matrix: --resume: {len(already)} scenario(s) already in {args.results}, skipped",
            file=out,
        )
        if os.path.exists(args.results):
            _say_skipped(load_records([args.results])[1], "matrix --resume")
    print(
        f"harness matrix: {len(scenarios)} scenario(s), {args.jobs} at a time -> {args.results}",
        file=out,
        flush=True,
    )
    progress = _ProgressPrinter(len(scenarios), stream=out)
    confirm, repeat = _attempts(args, load_settings(args.config) if args.config else None)
    lost = ""
    try:
        records = run_matrix(
            scenarios,
            results=args.results,
            jobs=args.jobs,
            resume=args.resume,
            work_dir=args.work_dir,
            capsule_dir=capsule_dir,
            base_timeout=args.timeout,
            progress=progress,
            confirm=confirm,
            repeat=repeat,
        )
    except RecordNotWritten as exc:
        records, lost = list(getattr(exc, "records", [])), str(exc)
    except KeyboardInterrupt:
        progress.close()
        print(
            f"\nharness matrix: interrupted; the finished cells are in {args.results} "
            "(an interrupted cell has no record: --resume runs it again)",
            file=sys.stderr,
        )
        raise
    if args.json:
        groups = group_runs(records)
        counts: Dict[str, int] = {}
        for g in groups:
            counts[g.failure_class] = counts.get(g.failure_class, 0) + 1
        payload = {
            "scenarios": len(groups),
            "runs": len(records),
            "classes": counts,
            "cells": [
                {"scenario_id": g.first.scenario_id, "failure_class": g.failure_class,
                 "signature": g.signature, "status": g.status, "runs": len(g.records)}
                for g in groups
            ],
            "results": os.path.abspath(args.results),
            "wall_s": round(time.monotonic() - t0, 1),
        }  # fmt: skip
        print(json.dumps(payload, indent=2, sort_keys=True))
    else:
        print()
        print(summary(records))
        print(f"\nwall time {time.monotonic() - t0:.1f}s; results: {os.path.abspath(args.results)}")
    runs_dir = args.work_dir or os.path.join(os.path.dirname(os.path.abspath(args.results)), "runs")
    if any(r.failure_class != "passed" for r in records) and os.path.isdir(runs_dir):
        print(f"run dirs of non-passing runs (server output capped at 1 MiB per file): {runs_dir}", file=out)
    if args.report:
        all_records, skipped = (
            (records, []) if not os.path.exists(args.results) else load_records([args.results])
        )
        cards = catalog.cards()
        path = str(
            write_report(
                all_records, args.report, bench=bench, cards=cards, pages=catalog.pages(), skipped=skipped
            )
        )
        print(f"report: {path}", file=out)
        _say_skipped(skipped, "matrix")
    if lost:
        print(f"harness matrix: {lost}", file=sys.stderr)
        return EXIT_HARNESS
    return EXIT_HARNESS if any(r.failure_class == "harness-error" for r in records) else EXIT_OK


def _say_skipped(skipped: Sequence[Skipped], what: str) -> None:
    if not skipped:
        return
    kept = sum(1 for s in skipped if s.repaired)
    print(
        f"harness {what}: {len(skipped) - kept} line(s) not records, {kept} shown without a bad field "
        f"(listed in the report): first {skipped[0]}",
        file=sys.stderr,
    )


def cmd_report(args: argparse.Namespace) -> int:
    check_writable(args.output, "--output")
    records, skipped = load_records(jsonl_inputs(args.inputs))
    bench = _bench_files(args.bench)
    path = str(
        write_report(
            records, args.output, bench=bench, cards=catalog.cards(), pages=catalog.pages(), skipped=skipped
        )
    )
    print(f"{len(records)} record(s) -> {path}")
    _say_skipped(skipped, "report")
    return EXIT_OK


def _int_list(text: str, what: str) -> List[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{what} expects a comma-separated list of integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UsageError(f"{what}: every value must be >= 1, got {text!r}")
    return values


def cmd_release(args: argparse.Namespace) -> int:
    """Delegates to harness.cli.release_cmd.release (exit 3 when a cell newly broke)."""
    binds = [b.strip() for b in args.bind.split(",") if b.strip()]
    for bind in binds:
        try:
            parse_bind(bind)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    pythons_ = [p.strip() for p in args.python.split(",")] if args.python else [""]
    for p in pythons_:
        if p:
            _python_path(p)
    check_writable(args.output, "--output")
    check_writable(os.path.join(args.results_dir, "x.jsonl"), "--results-dir")
    name, version = parse_target(args.target, args.version)
    if args.index_url:  # the index the lookups and every env build use (harness.env.index.index_url)
        os.environ["PIP_INDEX_URL"] = index_url(args.index_url)
    return release(
        name,
        version,
        args.previous,
        pythons=pythons_,
        workers=_int_list(args.workers, "--workers"),
        binds=binds,
        with_catalog=not args.no_catalog,
        with_downstream=not args.no_downstream,
        results_dir=args.results_dir,
        output=args.output,
        jobs=args.jobs,
        work_dir=args.work_dir,
        capsule_dir=args.capsule_dir,
        base_timeout=args.timeout,
        progress=(lambda n: _ProgressPrinter(n, stream=sys.stderr)) if args.json else _ProgressPrinter,
        confirm=args.confirm,
        as_json=args.json,
    )


def cmd_pythons(args: argparse.Namespace) -> int:
    found = pythons.discover()
    if args.json:
        rows = [{**dataclasses.asdict(i), "note": pythons.usable(i)} for i in found]
        print(json.dumps(rows, indent=2, sort_keys=True))
    else:
        print(pythons.format_table(found))
    return EXIT_OK


def cmd_probe(args: argparse.Namespace) -> int:
    try:
        data = probe(_python_path(args.python))
    except ProbeFailed as exc:
        raise HarnessError(str(exc)) from exc
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return EXIT_OK
    rows = combinations(data)
    w1 = max([len("strategy"), *(len(r[0]) for r in rows)])
    w2 = max([len("start method"), *(len(r[1]) for r in rows)])
    print(f"{'strategy':<{w1}}  {'start method':<{w2}}  available  reason")
    for strategy, method, ok, reason in rows:
        print(f"{strategy:<{w1}}  {method or '-':<{w2}}  {'yes' if ok else 'no':<9}  {reason}")
    print(f"default: {data.get('default_strategy', '')} / {data.get('default_start_method', '')}")
    return EXIT_OK


COMMANDS = {
    "run": cmd_run,
    "matrix": cmd_matrix,
    "report": cmd_report,
    "release": cmd_release,
    "pythons": cmd_pythons,
    "probe": cmd_probe,
}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: Optional[Sequence[str]] = None) -> int:
    undo = _output.install()  # every line printed is cleaned of escape sequences (harness.cli._output)
    try:
        return _main(argv)
    finally:
        undo()


def _sigterm_is_ctrl_c() -> None:
    """SIGTERM to the harness behaves like Ctrl-C: the command unwinds (a matrix ends its cells' children,
    keeps the records it has, removes its temp dir) and exits 130. SIGINT gets Python's own handler
    explicitly: a process started in the background of a non-interactive shell inherits SIGINT *ignored*
    (POSIX), and Python then never installs its handler, so `kill -INT` would do nothing."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _main(argv: Optional[Sequence[str]]) -> int:
    _sigterm_is_ctrl_c()
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        func = getattr(args, "func", None)  # sub-commands registered by their own module (catalog)
        return int(func(args)) if func is not None else COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"harness: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except (HarnessError, RecordNotWritten) as exc:
        print(f"harness: {_one_line(exc)}", file=sys.stderr)
        return EXIT_HARNESS
    except BrokenPipeError:  # `harness catalog | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
