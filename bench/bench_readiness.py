"""Readiness detection latency: how long after a worker really became ready does the harness know it?

    python bench/bench_readiness.py [--rounds 5] [--workers 1,2,4,8] [--contenders ...] [--name readiness]

The "real" instant is measured independently of probing: the app is bench.stamp_app:app, whose lifespan
startup appends {"pid", "t": time.monotonic()} to a file (CLOCK_MONOTONIC is system-wide on Linux). Every
server runs lifespan startup before its worker accepts, so the stamp is slightly EARLY and every latency
below is an upper bound.

Each launch calls harness.run.readiness.wait_ready exactly as harness/run.py does: for upstream servers
target_fn = harness.run.inspection.TargetFinder(root, Target("127.0.0.1", 0)), worker_pids =
harness.run.serverwatch.psutil_workers(root), alive = proc.poll() plus the psutil sample of every worker pid
every
100 ms; for the reference server target_fn reads the `bound` event and worker_pids the worker events.
Contenders (peers' venv python, project root on PYTHONPATH), N = 1, 2, 4, 8, interleaved per round
(order rotated):

* reference - `python -m servers bench.stamp_app:app --workers N --lifespan on --events FILE`
* uvicorn   - `python -m uvicorn --workers N --lifespan on` (spawn children, one pre-bound listener)
* hypercorn - `hypercorn --workers N` (spawn children, listener created in the master)
* gunicorn  - `python -m gunicorn -w N -k uvicorn_worker.UvicornWorker` (forked workers, one listener)
* granian   - `granian --interface asgi --workers N --http 1 --loop asyncio` (asgi = lifespan on)

Figures per contender and N, median (min-max) of the rounds, in ms:

* after first - ReadyResult.first_response - min(stamp t)   (target for upstream servers: <= 25 ms)
* after last  - ReadyResult.all_workers - max(stamp t)       (target: <= 200 ms for N <= 8)
* returned    - the instant wait_ready returned - max(stamp t): what the harness pays, including the
  worker_pids() confirmation after the N-th pid answered
* per-worker lag - pid_first_seen[pid] - stamp[pid], the worst worker of the run
* target found - when target_fn first named the listener - min(stamp t) (negative: the master listened
  before any worker started, as gunicorn's does); first served (JSON) - the app's first request, stamped by
  the app itself: what is left between the two is the server's own, after it the client's
* probes sent; the harness thread's CPU time in wait_ready, and (JSON) per callback
* reference only: all_workers - the server's own `ready` event
"""

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import _common as c
from bench.stamp_app import STAMP_ENV
from harness.run.readiness import ReadyResult, wait_ready
from harness.run.serverwatch import ServerWatch

APP = "bench.stamp_app:app"
CONTENDERS = ("reference", "uvicorn", "hypercorn", "gunicorn", "granian")
TARGET_FIRST_MS = 25.0
TARGET_LAST_MS = 200.0


def argv_for(name: str, py: str, n: int, events: str) -> List[str]:
    if name == "reference":
        return c.reference_argv(py, n, APP, ("--lifespan", "on", "--events", events))
    extra: Dict[str, Tuple[str, ...]] = {
        "uvicorn": ("--lifespan", "on"),
        "gunicorn": ("--worker-class", "uvicorn_worker.UvicornWorker"),
        "granian": ("--http", "1", "--loop", "asyncio"),
    }
    return c.peer_argv(name, py, n, APP, extra.get(name, ()))


class _Meter:
    """Wraps a callback: how often it was called, its wall and CPU (thread) time."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.calls = 0
        self.wall = 0.0
        self.cpu = 0.0
        self.first_found: Optional[float] = None  # when it first returned something (target_fn: a target)
        self.last: Any = None

    def __call__(self) -> Any:
        w, t = time.monotonic(), time.thread_time()
        value = None
        try:
            value = self.fn()
            return value
        finally:
            self.calls += 1
            self.cpu += time.thread_time() - t
            end = time.monotonic()
            self.wall += end - w
            if value and self.first_found is None:
                self.first_found = end
            self.last = value

    def figures(self) -> Dict[str, Any]:
        return {"calls": self.calls, "wall_ms": round(self.wall * 1e3, 2), "cpu_ms": round(self.cpu * 1e3, 2)}


def _stamps(path: str, n: int, deadline: float) -> Tuple[Dict[int, float], Dict[int, float]]:
    """({pid: startup stamp}, {pid: first request stamp}) once n distinct pids stamped their startup
    (polled until the deadline)."""
    while True:
        out: Dict[int, float] = {}
        served: Dict[int, float] = {}
        if os.path.exists(path):
            with open(path, encoding="ascii") as fh:
                for line in fh:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    into = served if rec.get("event") == "first_request" else out
                    into.setdefault(int(rec["pid"]), float(rec["t"]))
        if len(out) >= n or time.monotonic() >= deadline:
            return out, served
        time.sleep(c.POLL_S)


def one(name: str, py: str, n: int, timeout: float) -> Dict[str, Any]:
    d = tempfile.mkdtemp(prefix="awh-bench-rd-")
    events = os.path.join(d, "events.jsonl") if name == "reference" else ""
    stamp_file = os.path.join(d, "stamps.jsonl")
    env = c.server_env(os.path.join(d, "home"))
    env[STAMP_ENV] = stamp_file
    load = os.getloadavg()[0]
    server = c.Server(argv_for(name, py, n, events), env=env, events=events, workdir=d)
    out: Dict[str, Any] = {"loadavg_1m": round(load, 2)}
    try:
        # the callbacks harness/run.py gives wait_ready (plain alive: no early give-up here)
        watch = ServerWatch(server.pid, server.poll, workers=n, events_file=events)
        meters = {
            "target_fn": _Meter(watch.target),
            "worker_pids": _Meter(watch.worker_pids),
            "alive": _Meter(watch.alive),
        }
        cpu0 = time.thread_time()
        rr: ReadyResult = wait_ready(
            meters["target_fn"],
            n,
            time.monotonic() + timeout,
            alive=meters["alive"],
            worker_pids=meters["worker_pids"],
            ready_event=watch.ready_event,
        )
        returned = time.monotonic()
        harness_cpu = time.thread_time() - cpu0
        if not rr.ready or rr.first_response is None or rr.all_workers is None:
            raise c.BenchError(
                f"{name} N={n}: not ready ({rr.errors}, exited={rr.exited}): {server.stderr_tail(300)!r}"
            )
        stamps, served = _stamps(stamp_file, n, time.monotonic() + 5.0)
        answered = set(rr.pid_first_seen)
        if not answered <= set(stamps):
            raise c.BenchError(
                f"{name} N={n}: pids {sorted(answered - set(stamps))} answered without a stamp"
            )
        ts = sorted(stamps.values())
        lags = {pid: rr.pid_first_seen[pid] - stamps[pid] for pid in answered}
        last_pid = max(stamps, key=lambda p: stamps[p])
        found = meters["target_fn"].first_found
        out.update(
            {
                "after_first": rr.first_response - ts[0],
                "after_last": rr.all_workers - ts[-1],
                "returned": returned - ts[-1],
                "worst_worker_lag": max(lags.values()),
                "stamp_spread": ts[-1] - ts[0],
                "launch_to_last_stamp": ts[-1] - server.t0,
                "probes": rr.probes,
                "harness_cpu_ms": round(harness_cpu * 1e3, 2),
                "port": getattr(meters["target_fn"].last, "port", None),
                "responses": rr.responses,
                "errors": dict(rr.errors),
                "callbacks": {k: m.figures() for k, m in meters.items()},
                # where the time after the first stamp went: until target_fn first named the listener,
                # until the server handed any worker a request, until the harness had the answer
                "target_found": None if found is None else found - ts[0],
                "first_served": min(served.values()) - ts[0] if served else None,
                # the last worker to start: its startup -> its first request (server / accept queue share)
                "last_served": served[last_pid] - stamps[last_pid] if last_pid in served else None,
                "worker_pids_confirm": returned - rr.all_workers,
            }
        )
        if rr.ready_event is not None:
            out["after_ready_event"] = rr.all_workers - rr.ready_event
    finally:
        stop = server.stop()
    if stop["leaked"]:
        raise c.BenchError(f"{name} N={n}: processes left after stop: {stop['leaked']}")
    out["stop"] = stop
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", default="1,2,4,8", help="comma-separated N values")
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--name", default="readiness", help="results file bench/results/<name>.json")
    ap.add_argument("--timeout", type=float, default=60.0, help="readiness deadline per launch, seconds")
    args = ap.parse_args(argv)
    ns = [int(x) for x in args.workers.split(",") if x.strip()]
    names = [x for x in args.contenders.split(",") if x.strip()]
    for name in names:
        if name not in CONTENDERS:
            ap.error(f"unknown contender {name!r}")

    py = c.ensure_venv()
    versions = c.installed_versions(py)
    compiled = c.precompile(py)
    before = c.machine()
    print(f"machine: {before}", flush=True)
    for name in names:  # untimed: warms the page cache and writes bench/__pycache__
        one(name, py, 2, args.timeout)

    runs: Dict[str, Dict[int, List[Dict[str, Any]]]] = {name: {n: [] for n in ns} for name in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in ns:
            for name in order:
                res = one(name, py, n, args.timeout)
                runs[name][n].append(res)
                print(
                    f"round {r + 1} {name:9} N={n}: first +{res['after_first'] * 1e3:.1f} ms, "
                    f"last +{res['after_last'] * 1e3:.1f} ms, returned +{res['returned'] * 1e3:.1f} ms, "
                    f"probes {res['probes']}",
                    flush=True,
                )

    keys = (
        "after_first",
        "after_last",
        "returned",
        "worst_worker_lag",
        "stamp_spread",
        "probes",
        "after_ready_event",
        "launch_to_last_stamp",
        "target_found",
        "first_served",
        "last_served",
        "worker_pids_confirm",
        "harness_cpu_ms",
    )
    figures: Dict[str, Dict[str, Any]] = {}
    rows = []
    for name in names:
        figures[name] = {}
        for n in ns:
            rs = runs[name][n]
            f: Dict[str, Any] = {k: c.summary([x[k] for x in rs if x.get(k) is not None]) for k in keys}
            for cb in ("target_fn", "worker_pids", "alive"):
                f[f"{cb}_cpu_ms"] = c.summary([x["callbacks"][cb]["cpu_ms"] for x in rs])
                f[f"{cb}_calls"] = c.summary([x["callbacks"][cb]["calls"] for x in rs])
            if name != "reference":
                f["meets_targets"] = bool(
                    f["after_first"]["n"]
                    and f["after_first"]["median"] * 1e3 <= TARGET_FIRST_MS
                    and f["after_last"]["median"] * 1e3 <= TARGET_LAST_MS
                )
            figures[name][str(n)] = f
            rows.append(
                [
                    name,
                    n,
                    c.fmt(f["after_first"], 1e3, 1),
                    c.fmt(f["after_last"], 1e3, 1),
                    c.fmt(f["returned"], 1e3, 1),
                    c.fmt(f["worst_worker_lag"], 1e3, 1),
                    c.fmt(f["probes"]),
                    c.fmt(f["target_found"], 1e3, 1),
                    c.fmt(f["harness_cpu_ms"], 1, 0),
                    c.fmt(f["after_ready_event"], 1e3, 1),
                ]
            )
    after = c.machine()
    headers = [
        "contender",
        "N",
        "after first ms",
        "after last ms",
        "returned ms",
        "worst lag ms",
        "probes",
        "target found ms",
        "harness cpu ms",
        "after ready-event ms",
    ]
    print()
    print(c.table(headers, rows))
    print(
        f"\ntargets (upstream): after first <= {TARGET_FIRST_MS:.0f} ms, "
        f"after last <= {TARGET_LAST_MS:.0f} ms "
        "(medians; stamps are taken at lifespan startup, before the worker accepts: upper bounds)"
    )
    print(f"machine before: {before}\nmachine after:  {after}")
    path = c.write_results(
        args.name,
        {
            "bench": "readiness",
            "app": APP,
            "rounds": args.rounds,
            "workers": ns,
            "argv": {name: argv_for(name, py, 2, "EVENTS") for name in names},
            "versions": versions,
            "precompile": compiled,
            "targets_ms": {"after_first": TARGET_FIRST_MS, "after_last": TARGET_LAST_MS},
            "machine_before": before,
            "machine_after": after,
            "figures": figures,
            "runs": {name: {str(n): runs[name][n] for n in ns} for name in names},
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except c.BenchError as exc:
        print(f"bench_readiness: {exc}", file=sys.stderr)
        sys.exit(1)
