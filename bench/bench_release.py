"""One release job's wall time, cold and warm: what a job of .github/workflows/releases.yml costs here.

    python bench/bench_release.py [--item uvicorn==0.55.0] [--previous 0.54.0] [--rounds 2] [-n 2]

A job is `harness release ITEM --previous PREV -n JOBS` on this OS and Python: both sides of the item's
release set (the default matrix entry at workers 1, 2, 4), its catalog entries re-pinned, its downstream
servers, each failing or degraded cell re-run once (--confirm 1). Default item: the newest release of
uvicorn on the index against the one before it.

* cold - an empty env cache (HARNESS_CACHE) and an empty uv cache (UV_CACHE_DIR): every env is built from
  downloads, as on a fresh CI runner
* warm - the same caches again: every env is found, nothing is downloaded (a runner with a restored cache)

Rounds alternate cold, warm (each cold round gets fresh caches). The figures: wall seconds per condition
(median, min-max), scenarios and runs per job, and the ratio warm / cold, measured in the same run; the
target for warm is <= 120 s on the 2 cores this project's machine has.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Tuple

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import _common as c


def _default_item() -> Tuple[str, str]:
    from packaging.version import Version  # noqa: PLC0415

    from harness.campaign.release import fetch_release_project, previous_release  # noqa: PLC0415

    project = fetch_release_project("uvicorn")
    finals = [v for v, r in project.releases.items() if r.installable and not Version(v).is_prerelease]
    latest = max(finals, key=Version)
    return f"uvicorn=={latest}", previous_release(project, latest)


def _job(item: str, previous: str, jobs: int, *, caches: str, tmp: str, tag: str) -> Dict[str, Any]:
    results = os.path.join(tmp, tag)
    env = dict(
        os.environ, HARNESS_CACHE=os.path.join(caches, "harness"), UV_CACHE_DIR=os.path.join(caches, "uv")
    )
    argv = [sys.executable, "-m", "harness.cli", "release", item, "--previous", previous, "-n", str(jobs),
            "--results-dir", results, "-o", os.path.join(results, "release.html"), "--json",
            "--work-dir", os.path.join(tmp, tag + "-runs")]  # fmt: skip
    t = time.monotonic()
    proc = subprocess.run(argv, cwd=tmp, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=3600, check=False)  # fmt: skip
    wall = time.monotonic() - t
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise c.BenchError(
            f"harness release exited {proc.returncode}: {proc.stderr.strip()[-300:]}"
        ) from None
    runs = 0
    for name in os.listdir(results):
        if name.endswith(".jsonl"):
            with open(os.path.join(results, name), encoding="utf-8") as fh:
                runs += sum(1 for line in fh if line.strip())
    cells = sum(data["counts"].values())
    return {"wall_s": wall, "exit": proc.returncode, "cells": cells, "runs": runs, "counts": data["counts"]}


def main(argv: "List[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--item", default="", help="DIST==VERSION (default: the newest uvicorn)")
    ap.add_argument("--previous", default="")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("-n", "--jobs", type=int, default=2)
    ap.add_argument("--name", default="release_job")
    args = ap.parse_args(argv)
    item, previous = (args.item, args.previous) if args.item else _default_item()
    if not previous:
        raise SystemExit("bench_release: --previous is needed with --item")
    tmp = tempfile.mkdtemp(prefix="awh-bench-release-")
    got: Dict[str, List[Dict[str, Any]]] = {"cold": [], "warm": []}
    try:
        for rnd in range(args.rounds):
            caches = os.path.join(tmp, f"caches-{rnd}")
            for condition in ("cold", "warm"):
                r = _job(item, previous, args.jobs, caches=caches, tmp=tmp, tag=f"r{rnd}-{condition}")
                got[condition].append(r)
                what = f"{r['cells']} cells, {r['runs']} runs, exit {r['exit']}, {r['counts']}"
                print(f"[round {rnd + 1}] {condition}: {r['wall_s']:.1f} s, {what}", flush=True)
            shutil.rmtree(caches, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    walls = {k: c.summary([r["wall_s"] for r in v], 1) for k, v in got.items()}
    ratio = walls["warm"]["median"] / walls["cold"]["median"] if walls["cold"]["median"] else 0.0
    out = {"machine": c.machine(), "item": item, "previous": previous, "jobs": args.jobs,
           "rounds": args.rounds, "wall_s": walls, "warm_over_cold": round(ratio, 3),
           "runs": got}  # fmt: skip
    print()
    rows = [[k, c.fmt(walls[k]), got[k][0]["cells"], got[k][0]["runs"]] for k in ("cold", "warm")]
    print(c.table(["condition", "wall s", "cells", "runs"], rows))
    print(f"\n{item} vs {previous}, -n {args.jobs}: warm / cold = {ratio:.2f}; warm median "
          f"{walls['warm']['median']:.1f} s (target <= 120 s)")  # fmt: skip
    print(f"results: {c.write_results(args.name, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
