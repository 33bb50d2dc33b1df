"""Repeat mode: how many judged starts per minute `harness run --repeat N` makes, against bare starts.

    python bench/bench_repeat.py [--rounds 3] [--repeat 30] [--name bench_repeat]

A 1% startup flake needs about 300 starts for a 95% interval that excludes 0, so the figure that matters
is starts per minute. Per round, interleaved, for the reference server (default strategy) and uvicorn (the
latest the harness resolves), both with 2 workers:

* harness - `python -m harness.cli run --server S --workers 2 --repeat N --json` (the real CLI, one
  process for the N runs, every run launched, proven ready by responses from 2 worker pids, loaded,
  stopped and checked for leaks), in two load profiles: `startup` (`--requests 10 --keepalive-requests 0`:
  what a startup-flake hunt needs) and `default` (200 fresh + 50 keep-alive requests)
* bare - the peer: the same command line the harness recorded, launched N times in this process with its
  own session, readiness by the harness's wait_ready (2 distinct worker pids), SIGTERM to the group, the
  tree reaped - no env checks, no load, no leak search

Figures: starts per minute (median of rounds, min-max) and the ratio harness/bare. Targets on this 2-core
machine: reference >= 100/min, uvicorn --workers 2 >= 30/min (startup profile). Also the classes seen.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import _common as c

SERVERS = ("reference", "uvicorn")
PROFILES = {
    "startup": ["--requests", "10", "--keepalive-requests", "0"],
    "default": [],
}
WORKERS = 2


def run_harness(server: str, repeat: int, profile: str, work: str) -> Dict[str, Any]:
    argv = [sys.executable, "-m", "harness.cli", "run", "--server", server, "--workers", str(WORKERS)]
    argv += ["--repeat", str(repeat), "--json", "--work-dir", work, "--capsule-dir", os.path.join(work, "c")]
    t = time.monotonic()
    proc = subprocess.run(
        [*argv, *PROFILES[profile]], cwd=c.ROOT, capture_output=True, text=True, timeout=1800, check=False
    )
    wall = time.monotonic() - t
    try:
        out = json.loads(proc.stdout)
    except ValueError:
        msg = f"harness run printed no JSON (exit {proc.returncode}): {proc.stderr[-400:]}"
        raise c.BenchError(msg) from None
    classes = {k: v["count"] for k, v in out["rates"].items()}
    command = out["records"][0].get("command") or []
    env = out["records"][0].get("env") or {}
    per_min = 60.0 * repeat / wall
    return {"wall_s": wall, "per_min": per_min, "classes": classes, "command": command, "env": env}


def run_bare(command: List[str], env: Dict[str, str], repeat: int) -> Dict[str, Any]:
    """The recorded command, launched `repeat` times: ready (2 worker pids), stopped, reaped."""
    base = dict(os.environ)
    base.update({k: v for k, v in env.items() if k not in ("HOME", "TMPDIR", "XDG_RUNTIME_DIR")})
    t = time.monotonic()
    for _ in range(repeat):
        work = tempfile.mkdtemp(prefix="awh-bench-repeat-")
        home = os.path.join(work, "home")
        os.makedirs(home)
        argv, events = list(command), ""
        if "--events" in argv:  # the recorded path lived in the harness's (removed) run dir
            events = os.path.join(work, "events.jsonl")
            argv[argv.index("--events") + 1] = events
        server = c.Server(argv, env={**base, "HOME": home, "TMPDIR": work}, events=events, workdir=work)
        try:
            c.wait_workers(server, WORKERS, time.monotonic() + 60)
        finally:
            stopped = server.stop()
        if stopped["leaked"]:
            raise c.BenchError(f"bare start leaked {stopped['leaked']}")
    wall = time.monotonic() - t
    return {"wall_s": wall, "per_min": 60.0 * repeat / wall}


def main(argv: "List[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=30, help="starts per harness run (uvicorn: half)")
    ap.add_argument("--name", default="bench_repeat")
    args = ap.parse_args(argv)
    figures: Dict[str, Dict[str, List[float]]] = {}
    classes: Dict[str, Dict[str, int]] = {}
    for rnd in range(args.rounds):
        for server in SERVERS if rnd % 2 == 0 else tuple(reversed(SERVERS)):
            n = args.repeat if server == "reference" else max(5, args.repeat // 2)
            for profile in PROFILES:
                with tempfile.TemporaryDirectory(prefix="awh-bench-repeat-") as work:
                    got = run_harness(server, n, profile, work)
                key = f"{server} {profile}"
                figures.setdefault(key, {}).setdefault("harness", []).append(got["per_min"])
                for cls, k in got["classes"].items():
                    classes.setdefault(key, {})[cls] = classes.get(key, {}).get(cls, 0) + k
                if profile == "startup":
                    bare = run_bare(got["command"], got["env"], n)
                    figures.setdefault(f"{server} bare", {}).setdefault("bare", []).append(bare["per_min"])
                line = f"[round {rnd + 1}] {key}: {got['per_min']:.0f} starts/min {got['classes']}"
                print(line, flush=True)
    rows = []
    out: Dict[str, Any] = {"machine": c.machine(), "workers": WORKERS, "repeat": args.repeat, "cells": {}}
    for server in SERVERS:
        bare = c.summary(figures[f"{server} bare"]["bare"], 1)
        for profile in PROFILES:
            key = f"{server} {profile}"
            s = c.summary(figures[key]["harness"], 1)
            r = c.ratio(s, bare)
            rows.append([server, profile, c.fmt(s), c.fmt(bare), f"{r:.2f}" if r else "-"])
            cell = {"harness_per_min": s, "bare_per_min": bare, "ratio": r, "classes": classes[key]}
            out["cells"][key] = cell
    print()
    print(c.table(["server", "profile", "harness starts/min", "bare starts/min", "harness/bare"], rows))
    print(f"\nresults: {c.write_results(args.name, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
