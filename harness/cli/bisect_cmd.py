"""`harness bisect`: the face of harness.campaign.bisection - parse the flags, run one scenario per probed
version, print every step and the answer."""

import argparse
import json
import os
import re
import sys
import time
from typing import IO, Any, Callable, Dict, List, Optional

from harness.adapters import get_adapter
from harness.campaign.bisection import (
    BisectError,
    Bisection,
    BisectPlan,
    Judge,
    SearchResult,
    orient,
    record_line,
    recorded_env_errors,
)
from harness.cli._args import check_writable, duration, non_negative_int, positive_int, scenario_from_args
from harness.env import pythons
from harness.env import venvs as envs
from harness.model.classes import FAILURE_CLASSES
from harness.model.errors import UsageError
from harness.model.records import ResultRecord, Scenario
from harness.run.runner import BASE_TIMEOUT_S, validate
from harness.verdict.signature import distinguishing_line


def add_parser(subparsers: "argparse._SubParsersAction[Any]") -> None:
    """Register `harness bisect`."""
    d = Scenario()
    p = subparsers.add_parser(
        "bisect", help="binary search over released versions for where one failure starts/stops"
    )
    p.add_argument("server", help="uvicorn | hypercorn | gunicorn | granian | daphne")
    p.add_argument("--good", required=True, metavar="VERSION", help="a version without the failure")
    p.add_argument("--bad", required=True, metavar="VERSION", help="a version with the failure")
    p.add_argument("--dependency", default="", metavar="NAME", help="bisect this distribution instead")
    p.add_argument("--json", action="store_true", help="the answer as one JSON object (steps go to stderr)")
    p.add_argument("--requirement", action="append", default=[], metavar="SPEC", help="pinned, repeatable")
    p.add_argument(
        "--bad-class",
        default="",
        choices=[c for c in FAILURE_CLASSES if c != "passed"],
        metavar="CLASS",
        help="bad = this failure class (default: the --bad version's class + signature)",
    )
    p.add_argument("--bad-signature", default="", metavar="REGEX", help="bad = class and signature match")
    p.add_argument("--python", default="", help='interpreter for the server: "3.10", a path')
    p.add_argument("--workers", type=positive_int, default=d.workers)
    p.add_argument("--bind", default=d.bind, help="tcp | uds | fd:N")
    p.add_argument("--app", default=d.app, metavar="MOD:ATTR")
    p.add_argument("--start-method", default="")
    p.add_argument("--stdin", default=d.stdin, choices=("inherit", "devnull", "closed"))
    p.add_argument("--stop", default=d.stop, choices=("group", "master"))
    p.add_argument("--requests", type=non_negative_int, default=d.requests)
    p.add_argument("--concurrency", type=positive_int, default=d.concurrency)
    p.add_argument("--keepalive-requests", type=non_negative_int, default=d.keepalive_requests)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="adapter option")
    p.add_argument("--results", default=os.path.join("results", "bisect.jsonl"), metavar="FILE.jsonl")
    p.add_argument("--capsule-dir", default="", help="reproduction capsules of non-passing runs")
    p.add_argument("--work-dir", default="")
    p.add_argument("--timeout", type=duration, default=BASE_TIMEOUT_S, help="base timeout in seconds")
    p.add_argument(
        "--retry-env-errors",
        action="store_true",
        help="rebuild envs that --results already records as env-error (default: skip them again)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: Optional[IO[str]] = None) -> int:
    """`harness bisect`: 0 - an answer (exact or a range); 1 - no answer (an end is not what it was said
    to be, or nothing could be tested)."""
    json_out = (out or sys.stdout) if getattr(args, "json", False) else None
    stream = sys.stderr if json_out is not None else (out or sys.stdout)  # --json: steps to stderr

    def say(text: str) -> None:
        stream.write(text + "\n")
        stream.flush()

    adapter = get_adapter(args.server)
    dist = args.dependency or adapter.distribution
    if not dist:
        raise UsageError(f"server {args.server!r} has no released versions; name one with --dependency")
    if args.bad_signature:
        try:
            re.compile(args.bad_signature)
        except re.error as exc:
            raise UsageError(f"--bad-signature is not a valid regex: {exc}") from None
        if not args.bad_class:
            raise UsageError("--bad-signature needs --bad-class")
    try:
        interp = pythons.resolve(args.python)
    except pythons.InterpreterNotFound as exc:
        raise UsageError(str(exc)) from None
    base = scenario_from_args(args)
    try:
        validate(base)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_writable(args.results, "--results")

    t0 = time.monotonic()
    try:
        every = envs.list_versions(dist, interp)
        fits = set(envs.list_versions(dist, interp, python_compatible=True))
        ordered, direction = orient(every, args.good, args.bad)
    except (envs.EnvError, BisectError) as exc:
        raise UsageError(f"{dist}: {exc}") from None
    say(
        f"bisect {dist}: {len(ordered)} released versions from {args.good} (good) to {args.bad} (bad), "
        f"a {'fix search: good is newer' if direction == 'fix' else 'regression search: good is older'}; "
        f"Python {interp.version}; results -> {args.results}"
    )
    judge = Judge(bad_class=args.bad_class or None, bad_signature=args.bad_signature)
    if judge.defined:
        say(f"bad = {judge.describe()}")
    plan = BisectPlan(
        dist=dist,
        ordered=tuple(ordered),
        installable=frozenset(fits),
        base=base,
        pinned=tuple(args.requirement),
        default_requirements=tuple(adapter.default_requirements),
        python_version=interp.version,
        results=args.results,
        work_dir=args.work_dir,
        capsule_dir=args.capsule_dir,
        base_timeout=args.timeout,
        failed_envs={} if args.retry_env_errors else recorded_env_errors(args.results, interp.version),
    )
    bisection = Bisection(plan, judge, notify=say)
    try:
        result = bisection.run()
    except BisectError as exc:
        say(f"no answer: {exc}")
        for i, why in sorted(bisection.why_skipped.items()):
            say(f"  skipped {dist}=={ordered[i]}: {why}")
        say(f"{bisection.steps} step(s), {time.monotonic() - t0:.1f}s")
        if json_out is not None:
            json_out.write(json.dumps({"answer": None, "error": str(exc), "steps": bisection.steps}) + "\n")
        return 1
    records, why_skipped = bisection.records, bisection.why_skipped
    _answer(say, args.results, plan, result, records, why_skipped, every, direction)
    build_note = ""
    if bisection.builds:
        build_note = "; envs built: " + ", ".join(f"{v} {s:.1f}s" for v, s in bisection.builds)
    say(f"{bisection.steps} step(s), {time.monotonic() - t0:.1f}s wall{build_note}")
    if json_out is not None:
        good_v, bad_v = ordered[result.last_good], ordered[result.first_bad]
        payload = {
            "distribution": dist,
            "direction": direction,
            "good": good_v,
            "bad": bad_v,
            "exact": result.exact,
            "untested_between": [ordered[i] for i in result.untested_between],
            "skipped": {ordered[i]: why for i, why in sorted(why_skipped.items())},
            "records": {ordered[i]: r.run_id for i, r in sorted(records.items())},
            "steps": bisection.steps,
            "wall_s": round(time.monotonic() - t0, 1),
        }
        json_out.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return 0


def _answer(  # noqa: PLR0917 - the pieces of one answer, printed together
    say: Callable[[str], None],
    results: str,
    plan: BisectPlan,
    result: SearchResult,
    records: Dict[int, ResultRecord],
    why_skipped: Dict[int, str],
    every: List[str],
    direction: str,
) -> None:
    """Print the boundary, each end's record (file:line, run id, capsule) and what was skipped."""
    dist, ordered = plan.dist, plan.ordered

    def where(i: int) -> str:
        rec = records.get(i)
        if rec is None:
            return "(no record)"
        line = record_line(results, rec.run_id)
        loc = f"{results}:{line}" if line else results
        extra = f", capsule {rec.capsule}" if rec.capsule else ""
        return f"{rec.verdict}  [{loc}, run_id {rec.run_id}{extra}]"

    say("")
    for i in sorted(result.skipped, key=lambda k: every.index(ordered[k])):
        say(f"skipped {dist}=={ordered[i]}: {why_skipped.get(i, '')}")
    good_v, bad_v = ordered[result.last_good], ordered[result.first_bad]
    if direction == "regression":
        say(f"first bad:  {dist}=={bad_v}  {where(result.first_bad)}")
        say(f"last good:  {dist}=={good_v}  {where(result.last_good)}")
    else:
        say(f"first good (first fixed release): {dist}=={good_v}  {where(result.last_good)}")
        say(f"last bad:   {dist}=={bad_v}  {where(result.first_bad)}")
    good_rec = records.get(result.last_good)
    bad_rec = records.get(result.first_bad)
    if good_rec is not None and bad_rec is not None and good_rec.failure_class == "passed":
        line = distinguishing_line(
            bad_rec.output, [good_rec.output], str(bad_rec.platform.get("sys_platform") or "")
        )
        if line:
            say(f"decisive line: {line}  (logged at {dist}=={bad_v}, not at {dist}=={good_v})")
    if good_rec is not None and good_rec.failure_class != "passed":
        say(
            f"note: {dist}=={good_v} is good only in that it lacks the bad verdict; it fails otherwise "
            f"({good_rec.failure_class}): bisect that failure with --bad {good_v} if it matters"
        )
    if not result.exact:
        between = ", ".join(ordered[i] for i in result.untested_between)
        say(f"not exact: {between} could not be tested; the change is in one of them or at the ends above")


__all__ = ["add_parser", "run"]
