"""`harness watch [--state FILE] [--index-url URL] [--pre] [--json] [--distribution D ...]`: the plan of
what to test for every new release of the watched distributions (harness.campaign.watch).

    harness watch --state state.json                     -> one line per new release, then its scenarios
    harness watch --state state.json --json              -> {"index", "items": [{distribution, version,
                                                            previous, counts, scenarios}], "seeded", ...}
    harness watch --state state.json --advance uvicorn==0.55.1   -> the state after a publish

A watch writes the state file only to seed distributions it does not name yet (their latest release: a
first watch plans nothing for them); it never advances one. `--advance D==V` (the workflow's step after
a successful publish) is the only thing that does. Bad input - an index that is down, answers 404 or an
unreadable page, a corrupt state file - is one line on stderr (exit 1, usage errors exit 2) and the state
file is left as it was.

* add_parser(subparsers) / run(args, out=None) -> exit code
"""

import argparse
import json
import sys
from typing import IO, Any, List, Optional

from harness.campaign import watch
from harness.model.errors import UsageError


def _advance_arg(text: str) -> str:
    if "==" not in text:
        raise argparse.ArgumentTypeError(f"expected DISTRIBUTION==VERSION, got {text!r}")
    return text


def add_parser(subparsers: "argparse._SubParsersAction[Any]") -> None:
    """Register `harness watch`."""
    p = subparsers.add_parser(
        "watch", help="list the new releases of the watched distributions and what to run for each"
    )
    p.add_argument(
        "--state",
        default="",
        metavar="FILE.json",
        help="the last tested version per distribution (a JSON object); one it lacks is seeded at its latest",
    )
    p.add_argument("--index-url", default="", metavar="URL", help="default: pip's configuration, else PyPI")
    p.add_argument("--pre", action="store_true", help="plan pre-releases too")
    p.add_argument(
        "--distribution",
        action="append",
        default=[],
        metavar="NAME",
        help=f"watch these instead (repeatable; default: {', '.join(watch.WATCHED)})",
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument(
        "--advance",
        action="append",
        default=[],
        type=_advance_arg,
        metavar="DIST==VERSION",
        help="record a tested and published release in --state (nothing is fetched)",
    )
    p.add_argument("--timeout", type=float, default=watch.TIMEOUT_S, help="seconds per index request")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: Optional[IO[str]] = None) -> int:
    """`harness watch`: 0 when the plan (or the advance) is done; HarnessError / UsageError propagate to
    the CLI's one-line handler."""
    out = out if out is not None else sys.stdout
    if args.advance:
        if not args.state:
            raise UsageError("--advance needs --state FILE")
        state = watch.load_state(args.state)
        for text in args.advance:
            name, _, version = text.partition("==")
            state = watch.advance(state, name, version)
        watch.save_state(args.state, state)
        out.write(json.dumps(state, sort_keys=True) + "\n" if args.json else "".join(
            f"{n} {v}\n" for n, v in sorted(state.items())))  # fmt: skip
        return 0
    if not args.timeout > 0:
        raise UsageError("--timeout must be > 0")
    names: List[str] = [watch.check_distribution(n) for n in (args.distribution or watch.WATCHED)]
    index = watch.index_url(args.index_url)
    state = watch.load_state(args.state) if args.state else {}
    projects = watch.fetch_all(index, names, timeout=args.timeout)
    plan = watch.make_plan(state, projects, include_pre=args.pre)
    if args.state and plan.seeded:
        watch.save_state(args.state, {**state, **plan.seeded})
    if args.json:
        out.write(json.dumps(plan.to_dict(), indent=2, sort_keys=True) + "\n")
        return 0
    out.write(f"index {plan.to_dict()['index']}: {len(plan.items)} new release(s)\n")
    for item in plan.items:
        counts = item.to_dict()["counts"]
        parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing to run here"
        out.write(f"  {item.distribution} {item.version} (previous {item.previous}): {parts}\n")
        for s in item.scenarios:
            tag = f"  [{s.catalog_id}]" if s.catalog_id else ""
            out.write(f"      {s.role:<11} {s.scenario_id}{tag}\n")
    for name, version in sorted(plan.seeded.items()):
        out.write(f"  seeded {name} at {version} (first watch: nothing planned)\n")
    for name, version in plan.waiting:
        out.write(f"  waiting {name} {version}: listed without files yet; the next watch looks again\n")
    for name, version in plan.yanked:
        out.write(f"  skipped {name} {version}: yanked\n")
    return 0


__all__ = ["add_parser", "run"]
