"""Flakiness: run the default matrix (`harness matrix`, the real CLI) several times and compare verdicts.

    python -m bench.flaky [--repeats 10] [--minutes 20] [-n 2] [--out FILE.json] [-- EXTRA MATRIX ARGS]

For every scenario id the verdicts of all repeats are compared:

* flaky_classes - ids whose failure class differed between repeats (the figure that must be 0)
* flaky_signatures - ids with the same class every time but a different signature (normalization gaps)
* repeats - matrix runs completed (stops early when --minutes is used up; the run in flight finishes)
* scenarios - distinct scenario ids; classes - failure class counts of the first repeat
* exit_codes - the CLI's exit code per repeat

Each repeat writes its own JSONL in a temp dir (removed at the end). Figures only, no timed asserts.
"""

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Set

from harness.model.records import read_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv: "List[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.flaky", description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("-n", "--jobs", type=int, default=2)
    ap.add_argument("--out", default="")
    ap.add_argument("extra", nargs="*", help="more `harness matrix` arguments (after --)")
    args = ap.parse_args(argv)

    work = tempfile.mkdtemp(prefix="awh-flaky-")
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t0 = time.monotonic()
    deadline = t0 + args.minutes * 60
    verdicts: Dict[str, List[str]] = collections.defaultdict(list)
    classes: Dict[str, List[str]] = collections.defaultdict(list)
    codes: List[int] = []
    first: Dict[str, int] = {}
    repeats = 0
    try:
        while repeats < args.repeats and time.monotonic() < deadline:
            results = os.path.join(work, f"run{repeats}.jsonl")
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "harness.cli",
                    "matrix",
                    "-n",
                    str(args.jobs),
                    "--results",
                    results,
                    *args.extra,
                ],
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=max(60.0, deadline - time.monotonic() + 600),
                check=False,
            )
            codes.append(proc.returncode)
            records = list(read_records([results])) if os.path.exists(results) else []
            for r in records:
                verdicts[r.scenario_id].append(r.verdict)
                classes[r.scenario_id].append(r.failure_class)
            if repeats == 0:
                first = dict(collections.Counter(r.failure_class for r in records))
            repeats += 1
            print(
                f"[flaky] repeat {repeats}: {len(records)} records, exit {proc.returncode}, "
                f"{time.monotonic() - t0:.0f} s",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    flaky_classes = {sid: cl for sid, cl in classes.items() if len(set(cl)) > 1}
    flaky_sigs = {
        sid: sorted(set(v)) for sid, v in verdicts.items() if len(set(v)) > 1 and sid not in flaky_classes
    }
    incomplete: Set[str] = {sid for sid, cl in classes.items() if len(cl) != repeats}
    figures = {
        "repeats": repeats,
        "elapsed_s": round(time.monotonic() - t0, 1),
        "scenarios": len(classes),
        "classes": first,
        "exit_codes": codes,
        "flaky_classes": len(flaky_classes),
        "flaky_class_details": {k: dict(collections.Counter(v)) for k, v in sorted(flaky_classes.items())},
        "flaky_signatures": len(flaky_sigs),
        "flaky_signature_details": dict(sorted(flaky_sigs.items())[:10]),
        "missing_in_some_repeat": sorted(incomplete),
    }
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0 if not flaky_classes and not incomplete else 1


if __name__ == "__main__":
    sys.exit(main())
