"""`harness bisect`: binary search over released versions for where ONE failure starts or stops.

    harness bisect uvicorn --bad 0.11.0 --good 0.20.0 --bind uds          # a fix search (good is newer)
    harness bisect uvicorn --good 0.29.0 --bad 0.30.0 --app servers.apps:failing_lifespan   # a regression
    harness bisect gunicorn --requirement gunicorn==23.0.0 --requirement uvicorn==0.36.0 \\
        --dependency uvicorn-worker --bad 0.3.0 --good 0.4.0

"Bad" is the verdict of the --bad version: its failure class and its signature (or --bad-class, with an
optional --bad-signature regex), so the search finds where THAT failure starts/stops; another verdict is
"good" (said so in the step line when it is not `passed`). A version whose env cannot be built
(`env-error`), that the adapter cannot drive (`unsupported`), or where the harness failed
(`harness-error`) is a "skip": neither good nor bad; the search probes a neighbour instead. Versions
whose Requires-Python excludes the interpreter are skipped without building, and so are envs that the
--results file already records as env-error under the same Python (--retry-env-errors rebuilds them);
each skip is said so. Envs are cached (harness.envs), so a second bisect over a range is mostly runs.

Old releases resolve their unpinned dependencies to today's versions: uvicorn 0.11.x on Python 3.8 gets
uvloop 0.23, whose get_event_loop() raises in a spawned worker, so every worker dies before the 2020
behaviour can show. Pin such dependencies with --requirement (uvloop==0.14.0); they stay pinned.

The search itself is pure and unit-tested with fake oracles:

* search(n, test) -> SearchResult - indices 0..n-1 ordered from the good end to the bad end;
  test(i) -> "good" | "bad" | "skip"; finds the boundary (last good, first bad in that order)
* orient(versions, good, bad) -> (ordered, direction) - the versions between good and bad, good end first

Everything else (running scenarios, printing) is the CLI layer: add_parser(subparsers), run(args).
"""

import argparse
import dataclasses
import os
import re
import sys
import time
from typing import IO, Any, Callable, Dict, List, Optional, Sequence, Tuple

GOOD = "good"
BAD = "bad"
SKIP = "skip"
OUTCOMES = (GOOD, BAD, SKIP)

#: verdicts that say nothing about the server's behaviour: the version is skipped, not judged
SKIP_CLASSES = ("env-error", "unsupported", "harness-error")


class BisectError(ValueError):
    """The search cannot give an answer (an end is not what it was said to be); str() is one line."""


# -- the pure search -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """The boundary, as indices into the good-to-bad ordering.

    * last_good / first_bad - adjacent once skipped indices between them are discounted
    * skipped - every index that was tested and skipped
    * untested_between - skipped indices strictly between last_good and first_bad: when non-empty the
      first bad is one of them or first_bad (the answer is a range, not a version)
    * tested - the indices in the order they were tested
    """

    last_good: int
    first_bad: int
    skipped: Tuple[int, ...]
    untested_between: Tuple[int, ...]
    tested: Tuple[int, ...]

    @property
    def exact(self) -> bool:
        return not self.untested_between


def search(n: int, test: Callable[[int], str]) -> SearchResult:
    """Find the boundary in indices 0..n-1, ordered from the good end (0) to the bad end (n-1).

    The bad end is tested first; when it is a skip, its neighbours toward the good end are tried
    until one is not (likewise the good end, toward the bad end). Then plain bisection between the
    known good and known bad index; a skip excludes that index and the candidate nearest the middle is
    tried next. Each index is tested at most once. Raises BisectError when the bad end is good, the
    good end is bad, or no index between them can be tested at all."""
    if n < 2:
        raise BisectError("need at least two versions (a good and a bad one)")
    results: Dict[int, str] = {}
    order: List[int] = []

    def probe(i: int) -> str:
        if i not in results:
            outcome = test(i)
            if outcome not in OUTCOMES:
                raise ValueError(f"test({i}) returned {outcome!r}, not one of {OUTCOMES}")
            results[i] = outcome
            order.append(i)
        return results[i]

    hi = n - 1
    while probe(hi) == SKIP:
        hi -= 1
        if hi < 0:
            raise BisectError("no version in the range could be tested (every one was a skip)")
    if results[hi] == GOOD:
        where = "the bad end" if hi == n - 1 else f"the nearest testable neighbour of the bad end (#{hi})"
        raise BisectError(f"{where} is not bad")
    lo = 0
    while lo < hi and probe(lo) == SKIP:
        lo += 1
    if lo == hi:
        raise BisectError("no version on the good side of the bad one could be tested")
    if results[lo] == BAD:
        where = "the good end" if lo == 0 else f"the nearest testable neighbour of the good end (#{lo})"
        raise BisectError(f"{where} is bad too")
    while True:
        candidates = [i for i in range(lo + 1, hi) if results.get(i) != SKIP]
        if not candidates:
            break
        middle = (lo + hi) / 2.0
        pick = min(candidates, key=lambda i: (abs(i - middle), i))
        outcome = probe(pick)
        if outcome == BAD:
            hi = pick
        elif outcome == GOOD:
            lo = pick
    skipped = tuple(sorted(i for i, r in results.items() if r == SKIP))
    return SearchResult(
        last_good=lo,
        first_bad=hi,
        skipped=skipped,
        untested_between=tuple(i for i in skipped if lo < i < hi),
        tested=tuple(order),
    )


def orient(versions: Sequence[str], good: str, bad: str) -> Tuple[List[str], str]:
    """The versions from `good` to `bad` inclusive, good end first, and the direction.

    `versions` is oldest first. direction: "regression" (good is older) or "fix" (good is newer).
    Raises BisectError when either is not in `versions` or they are the same."""
    missing = [v for v in (good, bad) if v not in versions]
    if missing:
        near = ", ".join(versions[-5:])
        raise BisectError(f"{missing[0]} is not a released version here (newest: {near})")
    g, b = versions.index(good), versions.index(bad)
    if g == b:
        raise BisectError("--good and --bad are the same version")
    if g < b:
        return list(versions[g : b + 1]), "regression"
    return list(reversed(versions[b : g + 1])), "fix"


# -- judging records ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Judge:
    """Turns a record's verdict into good / bad / skip.

    * bad_class / bad_signature - the failure looked for: class, and a regex on the signature ("" = any);
      both None until defined by the first testable record (the bad end) unless given up front
    * exact_signature - the signature of the bad end, compared for equality (when no regex was given)
    """

    bad_class: Optional[str] = None
    bad_signature: str = ""
    exact_signature: Optional[str] = None

    @property
    def defined(self) -> bool:
        return self.bad_class is not None

    def define(self, failure_class: str, signature: str) -> None:
        self.bad_class = failure_class
        self.exact_signature = signature

    def judge(self, failure_class: str, signature: str) -> Tuple[str, str]:
        """(outcome, why) for one verdict."""
        if failure_class in SKIP_CLASSES:
            return SKIP, failure_class
        if self.bad_class is None:
            raise RuntimeError("the bad verdict is not defined yet")
        if failure_class != self.bad_class:
            return GOOD, "" if failure_class == "passed" else "not the bad class"
        if self.bad_signature:
            if re.search(self.bad_signature, signature or ""):
                return BAD, ""
            return GOOD, "same class, signature does not match --bad-signature"
        if self.exact_signature is not None and signature != self.exact_signature:
            return GOOD, "same class, another signature"
        return BAD, ""

    def describe(self) -> str:
        if self.bad_signature:
            return f"{self.bad_class} /{self.bad_signature}/"
        if self.exact_signature:
            return f"{self.bad_class} {self.exact_signature}"
        return str(self.bad_class)


# -- the CLI layer -----------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_parser(subparsers: "argparse._SubParsersAction[Any]") -> None:
    """Register `harness bisect`."""
    from harness.records import FAILURE_CLASSES, Scenario  # noqa: PLC0415
    from harness.run import BASE_TIMEOUT_S  # noqa: PLC0415

    d = Scenario()
    p = subparsers.add_parser(
        "bisect", help="binary search over released versions for where one failure starts/stops"
    )
    p.add_argument("server", help="uvicorn | hypercorn | gunicorn | granian | daphne")
    p.add_argument("--good", required=True, metavar="VERSION", help="a version without the failure")
    p.add_argument("--bad", required=True, metavar="VERSION", help="a version with the failure")
    p.add_argument("--dependency", default="", metavar="NAME", help="bisect this distribution instead")
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
    p.add_argument("--workers", type=_positive_int, default=d.workers)
    p.add_argument("--bind", default=d.bind, help="tcp | uds | fd:N")
    p.add_argument("--app", default=d.app, metavar="MOD:ATTR")
    p.add_argument("--start-method", default="")
    p.add_argument("--stdin", default=d.stdin, choices=("inherit", "devnull", "closed"))
    p.add_argument("--stop", default=d.stop, choices=("group", "master"))
    p.add_argument("--requests", type=_non_negative_int, default=d.requests)
    p.add_argument("--concurrency", type=_positive_int, default=d.concurrency)
    p.add_argument("--keepalive-requests", type=_non_negative_int, default=d.keepalive_requests)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="adapter option")
    p.add_argument("--results", default=os.path.join("results", "bisect.jsonl"), metavar="FILE.jsonl")
    p.add_argument("--capsule-dir", default="", help="reproduction capsules of non-passing runs")
    p.add_argument("--work-dir", default="")
    p.add_argument("--timeout", type=float, default=BASE_TIMEOUT_S, help="base timeout in seconds")
    p.add_argument(
        "--retry-env-errors",
        action="store_true",
        help="rebuild envs that --results already records as env-error (default: skip them again)",
    )
    p.set_defaults(func=run)


def _requirements(dist: str, pinned: Sequence[str], default: Sequence[str], version: str) -> Tuple[str, ...]:
    """`pinned` (or the server's defaults) with every requirement naming `dist` replaced by dist==version."""
    from harness.envs import canonical_name  # noqa: PLC0415

    def name(req: str) -> str:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        return canonical_name(m.group(1)) if m else ""

    base = list(pinned) if pinned else list(default)
    kept = [r for r in base if name(r) != canonical_name(dist)]
    return (*kept, f"{dist}=={version}")


#: env-errors that say nothing about the env itself: never reused, always retried
_TRANSIENT_ENV_ERRORS = ("could not reach PyPI", "another process is still building", "timed out", "HTTP")


def _recorded_env_errors(path: str, python_version: str) -> "Dict[str, Any]":
    """{scenario id: the last env-error record} in `path` under this Python version, so a second
    bisect over the same range does not rebuild envs that cannot be built (a later record of another
    class for the same scenario clears it; transient errors are never reused)."""
    from harness.records import read_records  # noqa: PLC0415

    found: Dict[str, Any] = {}
    if not path or not os.path.exists(path):
        return found
    for record in read_records([path]):
        if str(record.python.get("version", "")) != python_version:
            continue
        if record.failure_class != "env-error":
            found.pop(record.scenario_id, None)
        elif not any(t in record.signature for t in _TRANSIENT_ENV_ERRORS):
            found[record.scenario_id] = record
    return found


def _record_line(path: str, run_id: str) -> int:
    """1-based line of the record with `run_id` in `path` (0 when not found)."""
    if not run_id or not os.path.exists(path):
        return 0
    needle = f'"run_id": "{run_id}"'
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if needle in line:
                return number
    return 0


def run(args: argparse.Namespace, out: Optional[IO[str]] = None) -> int:
    """`harness bisect`: 0 - an answer (exact or a range); 1 - no answer (an end is not what it was said
    to be, or nothing could be tested)."""
    from harness import envs, pythons  # noqa: PLC0415
    from harness.adapters import get_adapter  # noqa: PLC0415
    from harness.errors import UsageError  # noqa: PLC0415
    from harness.records import ResultRecord, Scenario  # noqa: PLC0415
    from harness.run import run_scenario, validate  # noqa: PLC0415

    stream = out or sys.stdout

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
    options = []
    for item in args.option:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"--option expects KEY=VALUE, got {item!r}")
        options.append((key, value if sep else ""))
    try:
        interp = pythons.resolve(args.python)
    except pythons.InterpreterNotFound as exc:
        raise UsageError(str(exc)) from None
    base = Scenario(
        server=args.server,
        python=args.python,
        workers=args.workers,
        start_method=args.start_method,
        app=args.app,
        bind=args.bind,
        stdin=args.stdin,
        stop=args.stop,
        requests=args.requests,
        concurrency=args.concurrency,
        keepalive_requests=args.keepalive_requests,
        options=tuple(options),
    )
    try:
        validate(base)
    except ValueError as exc:
        raise UsageError(str(exc)) from None

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
    records: Dict[int, ResultRecord] = {}
    why_skipped: Dict[int, str] = {}
    failed_envs = {} if args.retry_env_errors else _recorded_env_errors(args.results, interp.version)
    step = [0]
    builds: List[Tuple[str, float]] = []

    def test(i: int) -> str:
        version = ordered[i]
        step[0] += 1
        label = f"[step {step[0]}] {dist}=={version}"
        if version not in fits:
            why_skipped[i] = f"Requires-Python of every file excludes {interp.version} (not built)"
            say(f"{label} -> skip: {why_skipped[i]}")
            return SKIP
        sc = dataclasses.replace(
            base, requirements=_requirements(dist, args.requirement, adapter.default_requirements, version)
        )
        earlier = failed_envs.get(sc.scenario_id)
        if earlier is not None:
            why_skipped[i] = f"env-error: {earlier.signature} (recorded by run {earlier.run_id}; not rebuilt)"
            say(f"{label} -> skip ({why_skipped[i]})")
            return SKIP
        t = time.monotonic()
        record = run_scenario(
            sc,
            results=args.results,
            work_dir=args.work_dir or None,
            capsule_dir=args.capsule_dir or None,
            base_timeout=args.timeout,
        )
        records[i] = record
        if not record.timings.get("env_cached", True):
            builds.append((version, float(record.timings.get("env_build") or 0.0)))
        if not judge.defined and record.failure_class not in SKIP_CLASSES:
            if record.failure_class == "passed":
                say(f"{label} -> {record.verdict}  = good ({time.monotonic() - t:.1f}s)")
                return GOOD
            judge.define(record.failure_class, record.signature)
            say(f"bad = {judge.describe()} (the verdict of {dist}=={version})")
        outcome, why = judge.judge(record.failure_class, record.signature)
        env_note = "env cached" if record.timings.get("env_cached") else "env built"
        if outcome == SKIP:
            why_skipped[i] = f"{record.failure_class}: {record.signature or record.reason}"
            say(f"{label} -> skip ({why_skipped[i]})  ({time.monotonic() - t:.1f}s)")
        else:
            tail = f" [{why}]" if why else ""
            say(
                f"{label} -> {record.verdict}  = {outcome}{tail}  "
                f"({time.monotonic() - t:.1f}s, {env_note}, run {record.run_id})"
            )
        return outcome

    try:
        result = search(len(ordered), test)
    except BisectError as exc:
        say(f"no answer: {exc}")
        for i, why in sorted(why_skipped.items()):
            say(f"  skipped {dist}=={ordered[i]}: {why}")
        say(f"{step[0]} step(s), {time.monotonic() - t0:.1f}s")
        return 1

    def where(i: int) -> str:
        rec = records.get(i)
        if rec is None:
            return "(no record)"
        line = _record_line(args.results, rec.run_id)
        loc = f"{args.results}:{line}" if line else args.results
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
    if good_rec is not None and good_rec.failure_class != "passed":
        say(
            f"note: {dist}=={good_v} is good only in that it lacks the bad verdict; it fails otherwise "
            f"({good_rec.failure_class}): bisect that failure with --bad {good_v} if it matters"
        )
    if not result.exact:
        between = ", ".join(ordered[i] for i in result.untested_between)
        say(f"not exact: {between} could not be tested; the change is in one of them or at the ends above")
    build_note = ""
    if builds:
        build_note = "; envs built: " + ", ".join(f"{v} {s:.1f}s" for v, s in builds)
    say(f"{step[0]} step(s), {time.monotonic() - t0:.1f}s wall{build_note}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m harness.bisect ...` (the same as `harness bisect ...`, and handled by it)."""
    from harness import cli  # noqa: PLC0415 - cli imports this module

    return cli.main(["bisect", *(sys.argv[1:] if argv is None else argv)])


__all__ = [
    "BAD",
    "GOOD",
    "SKIP",
    "SKIP_CLASSES",
    "BisectError",
    "Judge",
    "SearchResult",
    "add_parser",
    "orient",
    "run",
    "search",
]

if __name__ == "__main__":
    sys.exit(main())
