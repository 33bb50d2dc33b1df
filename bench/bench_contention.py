"""Contention: do verdicts change when the machine is busy? The default matrix and the runnable catalog,
quiet and beside `under-load 3`, interleaved round by round.

    python bench/bench_contention.py [--rounds 3] [--hogs 3] [-n 2] [--name bench_contention]

Per round: `harness matrix` (the README's default matrix, `-n 2`, its default --confirm 1) and
`harness catalog --run` (every case runnable here), once quiet and once under ../shared/tools/under-load
HOGS (HOGS busy CPU loops beside the run; the order alternates per round). A scenario's verdict is the
verdict of its group of runs (harness.verdict.agreement: the shared class + signature when the runs of a
confirmation agree, `flaky ...` when they do not).

Figures:
* differ - scenarios whose quiet verdicts and loaded verdicts are not the same set (the target is 0)
* unstable_quiet / unstable_loaded - scenarios with more than one verdict within one condition
* flaky - groups whose confirmation runs disagreed, per condition
* wall_s - each condition's wall time per round (median, min-max) and the ratio loaded / quiet
* the details of every differing scenario (its verdicts per condition), and every run record of it, quiet
  and loaded, in bench/results/NAME-differing.jsonl (stderr, timings, snapshots: what the next diagnosis
  needs; the runs' own directories are deleted)
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Set

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import _common as c
from harness.model.records import read_records
from harness.verdict.agreement import group_runs

UNDER_LOAD = os.path.join(os.path.dirname(c.ROOT), "shared", "tools", "under-load")
CONDITIONS = ("quiet", "loaded")


def _command(kind: str, results: str, jobs: int, work: str) -> List[str]:
    py = [sys.executable, "-m", "harness.cli"]
    if kind == "matrix":
        return [*py, "matrix", "-n", str(jobs), "--results", results, "--work-dir", work]
    return [*py, "catalog", "--run", "--results", results, "--work-dir", work]


def _run(kind: str, condition: str, args: argparse.Namespace, tmp: str, tag: str) -> Dict[str, Any]:
    hogs, jobs = args.hogs, args.jobs
    results = os.path.join(tmp, f"{tag}-{kind}-{condition}.jsonl")
    work = os.path.join(tmp, f"{tag}-{kind}-{condition}-runs")
    argv = _command(kind, results, jobs, work)
    if condition == "loaded":
        argv = [UNDER_LOAD, str(hogs), "--", *argv]
    t = time.monotonic()
    proc = subprocess.run(
        argv, cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=5400, check=False
    )
    wall = time.monotonic() - t
    records = list(read_records([results])) if os.path.exists(results) else []
    groups = group_runs(records)
    verdicts = {g.first.scenario_id: g.verdict for g in groups}
    shutil.rmtree(work, ignore_errors=True)
    kept: Dict[str, List[str]] = {}
    for rec in records:
        kept.setdefault(f"{kind}:{rec.scenario_id}", []).append(rec.to_json())
    return {
        "records": kept,
        "wall_s": wall,
        "exit": proc.returncode,
        "verdicts": verdicts,
        "flaky": sum(1 for g in groups if g.status == "flaky"),
        "runs": len(records),
    }


def main(argv: "List[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--hogs", type=int, default=3)
    ap.add_argument("-n", "--jobs", type=int, default=2)
    ap.add_argument("--kinds", default="matrix,catalog", help="matrix, catalog or both (comma-separated)")
    ap.add_argument("--name", default="bench_contention")
    args = ap.parse_args(argv)
    if not os.access(UNDER_LOAD, os.X_OK):
        print(f"bench_contention: {UNDER_LOAD} not found", file=sys.stderr)
        return 2
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    seen: Dict[str, Dict[str, Set[str]]] = {cond: {} for cond in CONDITIONS}
    walls: Dict[str, List[float]] = {f"{k} {cond}": [] for k in kinds for cond in CONDITIONS}
    flaky: Dict[str, int] = {cond: 0 for cond in CONDITIONS}
    exits: List[int] = []
    runs: Dict[str, List[str]] = {}
    tmp = tempfile.mkdtemp(prefix="awh-bench-contention-")
    t0 = time.monotonic()
    try:
        for rnd in range(args.rounds):
            order = CONDITIONS if rnd % 2 == 0 else tuple(reversed(CONDITIONS))
            for condition in order:
                for kind in kinds:
                    got = _run(kind, condition, args, tmp, f"r{rnd}")
                    walls[f"{kind} {condition}"].append(got["wall_s"])
                    flaky[condition] += got["flaky"]
                    exits.append(got["exit"])
                    for sid, lines in got["records"].items():
                        runs.setdefault(sid, []).extend(lines)
                    for sid, verdict in got["verdicts"].items():
                        seen[condition].setdefault(f"{kind}:{sid}", set()).add(verdict)
                    print(
                        f"[round {rnd + 1}] {kind} {condition}: {len(got['verdicts'])} scenarios, "
                        f"{got['runs']} runs, {got['flaky']} flaky, {got['wall_s']:.0f} s, "
                        f"exit {got['exit']}",
                        flush=True,
                    )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ids = sorted(set(seen["quiet"]) | set(seen["loaded"]))
    differ = {i: {k: sorted(seen[k].get(i, ())) for k in CONDITIONS} for i in ids}
    differ = {i: v for i, v in differ.items() if v["quiet"] != v["loaded"]}
    out: Dict[str, Any] = {
        "machine": c.machine(),
        "rounds": args.rounds,
        "hogs": args.hogs,
        "scenarios": len(ids),
        "differ": len(differ),
        "unstable_quiet": sum(1 for v in seen["quiet"].values() if len(v) > 1),
        "unstable_loaded": sum(1 for v in seen["loaded"].values() if len(v) > 1),
        "flaky": flaky,
        "exit_codes": exits,
        "wall_s": {k: c.summary(v, 1) for k, v in walls.items()},
        "differing": differ,
        "elapsed_s": round(time.monotonic() - t0, 1),
    }
    rows = [
        [k, c.fmt(c.summary(walls[f"{k} quiet"], 1)), c.fmt(c.summary(walls[f"{k} loaded"], 1))]
        for k in kinds
    ]
    print()
    print(c.table(["suite", "quiet wall s", f"under-load {args.hogs} wall s"], rows))
    print(
        f"\n{len(ids)} scenarios; verdicts that differ quiet vs loaded: {len(differ)} (target 0); "
        f"unstable within quiet: {out['unstable_quiet']}, within loaded: {out['unstable_loaded']}; "
        f"flaky groups: {flaky}"
    )
    for sid, v in sorted(differ.items()):
        print(f"  {sid}\n    quiet:  {v['quiet']}\n    loaded: {v['loaded']}")
    if differ:
        os.makedirs(c.RESULTS_DIR, exist_ok=True)
        path = os.path.join(c.RESULTS_DIR, f"{args.name}-differing.jsonl")
        with open(path, "w", encoding="utf-8") as fh:
            fh.writelines(line + "\n" for sid in sorted(differ) for line in runs.get(sid, ()))
        print(f"records of the differing scenarios: {path}")
    print(f"\nresults: {c.write_results(args.name, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
