"""Soak: many reference-server scenario runs mixing every fault and every strategy/start method available
here, `-n 2` at a time through harness.campaign.matrix, then a psutil sweep for anything any run left behind.

    python -m bench.soak [--runs 500] [--minutes 15] [-n 2] [--out FILE.json]

Stops at --runs or when --minutes is used up (the chunk in flight finishes), then reports:

* runs - records written; classes - failure class counts; harness_errors - records of class harness-error
* faults - per fault: runs, handled / not handled / unknown (the fault's own verdict, harness.run.faults)
* leftover_processes - processes carrying this soak's token in their environment (every server, worker and
  helper inherits it), still running after the soak
* listening - TCP ports any run listened on (events / snapshots) that something still listens on
* uds_files - UDS paths of any run (asked or bound) that still exist
* scratch_dirs - the runs' private temp dirs (their TMPDIR's parent, from each record) that still exist
* run_dirs_left - run directories left under the soak's work dir (non-passing runs keep theirs as evidence;
  the soak removes its work dir at the end and says how many there were)

Exit code 0 when leftovers and harness errors are all 0, else 1. Figures only, never timed asserts.
"""

import argparse
import collections
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from typing import Any, Dict, Iterator, List, Set

import psutil

from harness.adapters.reference import combinations, probe
from harness.campaign.matrix import run_matrix
from harness.model.records import ResultRecord, Scenario, read_records
from harness.run.faults import FAULTS

TOKEN_VAR = "AWH_SOAK_TOKEN"


def scenarios() -> Iterator[Scenario]:
    """An endless, deterministic mix: every fault (and none) x every available strategy/start method,
    workers 1 and 2, TCP and (where the strategy can) UDS."""
    pairs = [(s, m) for s, m, ok, _why in combinations(probe()) if ok]
    faults = ["", *FAULTS]
    for n in itertools.count():
        for i, fault in enumerate(faults):
            strategy, method = pairs[(n + i) % len(pairs)]
            workers = 1 + (n + i) % 2
            bind = "uds" if (n + i) % 3 == 0 and strategy != "reuseport" else "tcp"
            if fault == "stale-uds" and strategy == "reuseport":  # SO_REUSEPORT has no AF_UNIX (EOPNOTSUPP)
                strategy, method = next(p for p in pairs if p[0] != "reuseport")
            if fault == "port-in-use":  # a TCP fault: the harness holds the TCP port it gives the server
                bind = "tcp"
            if fault in ("kill-worker", "stop-worker") and workers == 1:
                workers = 2
            yield Scenario(
                server="reference",
                strategy=strategy,
                start_method=method,
                workers=workers,
                bind=bind,
                fault=fault,
                requests=40,
                concurrency=8,
                keepalive_requests=10,
            )


def _ours(token: str) -> List[Dict[str, Any]]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(TOKEN_VAR) == token:
                found.append({"pid": proc.pid, "cmdline": proc.cmdline()[:6]})
        except psutil.Error:
            continue
    return found


def _ports_and_paths(records: List[ResultRecord]) -> "tuple[Set[int], Set[str]]":
    ports: Set[int] = set()
    paths: Set[str] = set()
    for r in records:
        for ev in r.events:
            if ev.get("event") == "bound":
                if ev.get("port"):
                    ports.add(int(ev["port"]))
                if ev.get("path"):
                    paths.add(str(ev["path"]))
        for snap in r.snapshots:
            for lst in snap.get("listeners") or []:
                if lst.get("port"):
                    ports.add(int(lst["port"]))
                if lst.get("path"):
                    paths.add(str(lst["path"]))
        fault = r.fault or {}
        if fault.get("uds_path"):
            paths.add(str(fault["uds_path"]))
    return ports, paths


def _listening(ports: Set[int]) -> List[int]:
    return sorted(
        {
            c.laddr.port
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in ports
        }
    )


def main(argv: "List[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("-n", "--jobs", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=18, help="scenarios per run_matrix call")
    ap.add_argument("--out", default="", help="write the figures here as JSON")
    ap.add_argument("--keep", default="", help="copy the records (JSONL) here")
    args = ap.parse_args(argv)

    token = uuid.uuid4().hex
    os.environ[TOKEN_VAR] = token  # inherited by every matrix child and every server it starts
    work = tempfile.mkdtemp(prefix="awh-soak-")
    results = os.path.join(work, "soak.jsonl")
    t0 = time.monotonic()
    deadline = t0 + args.minutes * 60
    gen = scenarios()
    done = 0
    try:
        while done < args.runs and time.monotonic() < deadline:
            chunk = [next(gen) for _ in range(min(args.chunk, args.runs - done))]
            recs = run_matrix(chunk, results=results, jobs=args.jobs, work_dir=os.path.join(work, "runs"))
            done += len(recs)
            print(f"[soak] {done} runs, {time.monotonic() - t0:.0f} s", flush=True)
    except KeyboardInterrupt:
        print("[soak] interrupted: figures for the runs so far", flush=True)
    elapsed = time.monotonic() - t0
    records = list(read_records([results])) if os.path.exists(results) else []

    # sweep: give orphans a bounded moment to finish dying, then count what is left
    left = _ours(token)
    if left:
        psutil.wait_procs([psutil.Process(p["pid"]) for p in left if psutil.pid_exists(p["pid"])], timeout=5)
        left = _ours(token)
    ports, paths = _ports_and_paths(records)
    listening = _listening(ports)
    uds_left = sorted(p for p in paths if os.path.exists(p))
    scratch = {os.path.dirname(str(r.env["TMPDIR"])) for r in records if r.env.get("TMPDIR")}
    scratch_left = sorted(d for d in scratch if os.path.exists(d))
    run_dirs = os.path.join(work, "runs")
    run_dirs_left = len(os.listdir(run_dirs)) if os.path.isdir(run_dirs) else 0

    classes = collections.Counter(r.failure_class for r in records)
    per_fault: Dict[str, Dict[str, int]] = {}
    for r in records:
        name = str(r.scenario.get("fault") or "none")
        row = per_fault.setdefault(name, {"runs": 0, "handled": 0, "not_handled": 0, "unknown": 0})
        row["runs"] += 1
        handled = (r.fault or {}).get("handled") if r.scenario.get("fault") else True
        row["handled" if handled is True else "not_handled" if handled is False else "unknown"] += 1
    harness_errors = [(r.scenario_id, r.signature) for r in records if r.failure_class == "harness-error"]
    figures = {
        "runs": len(records),
        "elapsed_s": round(elapsed, 1),
        "jobs": args.jobs,
        "classes": dict(sorted(classes.items())),
        "harness_errors": len(harness_errors),
        "harness_error_samples": harness_errors[:10],
        "faults": per_fault,
        "strategies": sorted(
            {f"{r.scenario.get('strategy')}/{r.scenario.get('start_method')}" for r in records}
        ),
        "leftover_processes": left,
        "listening": listening,
        "uds_files": uds_left,
        "scratch_dirs": scratch_left,
        "scratch_dirs_checked": len(scratch),
        "run_dirs_left": run_dirs_left,
        "class_samples": {
            cls: [
                (
                    r.scenario_id,
                    r.signature,
                    r.reason[:200],
                    {k: len(v or []) for k, v in (r.leaks or {}).items()},
                )
                for r in records
                if r.failure_class == cls
            ][:5]
            for cls in sorted(classes)
            if cls != "passed"
        },
        "not_handled_samples": [
            (r.scenario_id, (r.fault or {}).get("why"))
            for r in records
            if r.scenario.get("fault") and (r.fault or {}).get("handled") is not True
        ][:10],
    }
    if args.keep:
        shutil.copyfile(results, args.keep)
    shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    clean = not (left or listening or uds_left or scratch_left or harness_errors)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
