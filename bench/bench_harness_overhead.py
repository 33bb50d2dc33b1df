"""Harness overhead: run_scenario() wall time vs a bare script: same launch + readiness + load + stop.

    python bench/bench_harness_overhead.py [--rounds 7] [--requests 100] [--concurrency 8] [--keepalive 20]

Both sides run in this process (imports are paid once, before timing), interleaved per round (order
alternates), on the reference server with 2 workers, inherit/fork, app servers.apps:pid:

* harness - harness.run.runner.run_scenario(Scenario(...)) -> ResultRecord (a passed record is required)
* bare - the same argv and interpreter as the harness's record, its own session; port from the `bound`
  event; readiness = fresh raw-socket connections kept in flight until 2 distinct x-worker-pid; the same load
  with httpx (`requests` fresh connections, `concurrency` in flight, then `keepalive` requests over 4
  persistent connections); stop = SIGTERM to the group and psutil.wait_procs on every process of the tree

Figures: wall time medians (min-max) and the ratio harness/bare (target <= 1.15); the harness's own
phases from record.timings; and readiness detection latency = timings.all_workers - timings.ready_event
(both seconds since the same launch instant; the `ready` event's `t` is the server's time.monotonic(),
a system-wide clock) - target <= 10 ms. The same latency for the bare script is shown as its peer.
"""

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import httpx
import psutil

from bench import _common as c

WORKERS = 2


def _scenario(args: argparse.Namespace) -> Any:
    from harness.model.records import Scenario  # noqa: PLC0415 - fails clearly if the harness has not landed

    return Scenario(
        server="reference",
        workers=WORKERS,
        strategy="inherit",
        start_method="fork",
        requests=args.requests,
        concurrency=args.concurrency,
        keepalive_requests=args.keepalive,
    )


def run_harness(args: argparse.Namespace, work_dir: str) -> Dict[str, Any]:
    from harness.run.runner import run_scenario  # noqa: PLC0415

    t = time.monotonic()
    rec = run_scenario(_scenario(args), work_dir=work_dir)
    wall = time.monotonic() - t
    if rec.failure_class != "passed":
        raise c.BenchError(f"harness run did not pass: {rec.verdict} ({rec.reason})")
    tm = rec.timings
    latency = None
    if tm.get("all_workers") is not None and tm.get("ready_event") is not None:
        latency = float(tm["all_workers"]) - float(tm["ready_event"])
    return {
        "wall": wall,
        "timings": dict(tm),
        "readiness_latency": latency,
        "duration_s": rec.duration_s,
        "command": list(rec.command),
        "env": dict(rec.env),
        "load_ok": rec.load.get("ok"),
        "keepalive_ok": (rec.load.get("keepalive") or {}).get("ok"),
    }


async def _load(port: int, requests: int, concurrency: int, keepalive: int) -> Dict[str, int]:
    url = f"http://{c.HOST}:{port}/"
    ok = 0
    fresh = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=fresh, timeout=5.0, verify=False) as client:  # as harness.run.load
        todo = list(range(requests))

        async def worker() -> int:
            n = 0
            while todo:
                todo.pop()
                r = await client.get(url, headers={"Connection": "close"})
                n += r.status_code == 200
            return n

        ok += sum(await asyncio.gather(*(worker() for _ in range(concurrency))))
    kept = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    async with httpx.AsyncClient(limits=kept, timeout=5.0, verify=False) as client:
        rs = await asyncio.gather(*(client.get(url) for _ in range(keepalive)))
        ok += sum(r.status_code == 200 for r in rs)
    return {"ok": ok, "asked": requests + keepalive}


def run_bare(args: argparse.Namespace, argv: List[str], env: Dict[str, str]) -> Dict[str, Any]:
    t = time.monotonic()
    d = tempfile.mkdtemp(prefix="awh-bench-bare-")
    events = os.path.join(d, "events.jsonl")
    argv = list(argv)
    argv[argv.index("--events") + 1] = events
    full_env = dict(os.environ)
    full_env.update(env)
    for k in ("HOME", "TMP", "TEMP", "TMPDIR", "XDG_RUNTIME_DIR"):
        full_env[k] = d
    with open(os.path.join(d, "out"), "wb") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            argv,
            env=full_env,
            cwd=d,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        port = 0
        while not port:  # the `bound` event: poll the file (1 ms, then 5 ms)
            port = next((int(e["port"]) for e in _events(events) if e.get("event") == "bound"), 0)
            if not port:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise c.BenchError("bare: the server did not bind")
                time.sleep(0.001 if time.monotonic() - t0 < 0.05 else 0.005)
        seen, _first, _probes, _errors = c.probe_workers(
            port, WORKERS, deadline, lambda: None if proc.poll() is None else "bare: the server exited"
        )
        all_workers = max(seen.values())
        load = asyncio.run(_load(port, args.requests, args.concurrency, args.keepalive))
        load_done = time.monotonic()
    finally:
        stop_sent = time.monotonic()
        try:
            procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        os.killpg(proc.pid, signal.SIGTERM)
        _gone, alive = psutil.wait_procs(procs, timeout=15)
        for p in alive:
            p.kill()
        proc.wait(5)
        stopped = time.monotonic()
    ready_t = next((float(e["t"]) for e in _events(events) if e.get("event") == "ready"), None)
    shutil.rmtree(d, ignore_errors=True)
    wall = time.monotonic() - t
    if alive:
        raise c.BenchError(f"bare: processes needed SIGKILL: {[p.pid for p in alive]}")
    if load["ok"] != load["asked"]:
        raise c.BenchError(f"bare: load saw errors: {load}")
    return {
        "wall": wall,
        "readiness_latency": None if ready_t is None else all_workers - ready_t,
        "all_workers": all_workers - t0,
        "spans": {
            "before launch": t0 - t,
            "launch -> all workers answered": all_workers - t0,
            "all workers -> load done": load_done - all_workers,
            "stop sent -> stopped": stopped - stop_sent,
            "after stopped": wall - (stopped - t),
        },
    }


def _ms(seconds: Optional[float]) -> str:
    return "before the ready event" if seconds is None else f"{seconds * 1000:.1f} ms"


def _events(path: str) -> List[Dict[str, Any]]:
    import json  # noqa: PLC0415

    out = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--keepalive", type=int, default=20)
    ap.add_argument("--name", default="harness_overhead", help="results file bench/results/<name>.json")
    args = ap.parse_args(argv)
    try:
        import harness.run.runner  # noqa: F401, PLC0415
    except ImportError as exc:
        print(f"harness.run.runner is not importable yet: {exc}", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="awh-bench-harness-")
    before = c.machine()
    print(
        f"# harness overhead: reference inherit/fork, {WORKERS} workers, load {args.requests} fresh "
        f"(c={args.concurrency}) + {args.keepalive} keep-alive; "
        f"{args.rounds} rounds; load {before['loadavg']}"
    )
    warm = run_harness(args, work)  # builds/finds the env, warms caches; not counted
    print(f"  warm-up: harness {warm['wall']:.3f}s; server argv {warm['command'][:3]}...")
    run_bare(args, warm["command"], warm["env"])
    harness_runs: List[Dict[str, Any]] = []
    bare_runs: List[Dict[str, Any]] = []
    for r in range(args.rounds):
        order = ("harness", "bare") if r % 2 == 0 else ("bare", "harness")
        for side in order:
            if side == "harness":
                harness_runs.append(run_harness(args, work))
            else:
                bare_runs.append(run_bare(args, warm["command"], warm["env"]))
        h, b = harness_runs[-1], bare_runs[-1]
        print(
            f"  round {r + 1}: harness {h['wall']:.3f}s  bare {b['wall']:.3f}s  readiness latency "
            f"{_ms(h['readiness_latency'])}  load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    after = c.machine()
    subprocess.run(["rm", "-rf", work], check=False)

    hw = c.summary([x["wall"] for x in harness_runs])
    bw = c.summary([x["wall"] for x in bare_runs])
    ratio = c.ratio(hw, bw)
    lat = c.summary([x["readiness_latency"] for x in harness_runs if x["readiness_latency"] is not None], 5)
    blat = c.summary([x["readiness_latency"] for x in bare_runs if x["readiness_latency"] is not None], 5)
    # record.timings.ready_event is read right after readiness: absent when the harness had proved
    # readiness before the server wrote its `ready` line (latency < 0, not measurable from the record)
    early = sum(1 for x in harness_runs if x["readiness_latency"] is None)
    phases = (
        "env_build",
        "first_response",
        "all_workers",
        "ready_event",
        "load_done",
        "stop_sent",
        "stopped",
    )
    phase_fig = {
        k: c.summary([float(x["timings"][k]) for x in harness_runs if x["timings"].get(k) is not None])
        for k in phases
    }

    # where the wall time goes, both sides, seconds (harness: from record.timings, relative to its launch)
    def hspan(x: Dict[str, Any], name: str) -> float:
        tm = x["timings"]
        return {
            "outside launch..stopped": float(x["wall"]) - float(tm["stopped"]),
            "launch -> all workers answered": float(tm["all_workers"]),
            "all workers -> load done": float(tm["load_done"]) - float(tm["all_workers"]),
            "load done -> stop sent": float(tm["stop_sent"]) - float(tm["load_done"]),
            "stop sent -> stopped": float(tm["stopped"]) - float(tm["stop_sent"]),
        }[name]

    def bspan(x: Dict[str, Any], name: str) -> float:
        sp = x["spans"]
        if name == "outside launch..stopped":
            return float(sp["before launch"]) + float(sp["after stopped"])
        return float(sp.get(name, 0.0))

    span_names = (
        "outside launch..stopped",
        "launch -> all workers answered",
        "all workers -> load done",
        "load done -> stop sent",
        "stop sent -> stopped",
    )
    span_fig = {
        k: {
            "harness": c.summary([hspan(x, k) for x in harness_runs]),
            "bare": c.summary([bspan(x, k) for x in bare_runs]),
        }
        for k in span_names
    }
    print()
    print(
        c.table(
            ["side", "wall ms median (min-max)", "x bare"],
            [["harness run_scenario", c.fmt(hw, 1000), ratio], ["bare script", c.fmt(bw, 1000), 1.0]],
        )
    )
    print()
    print(
        c.table(
            ["span", "harness ms", "bare ms"],
            [[k, c.fmt(v["harness"], 1000), c.fmt(v["bare"], 1000)] for k, v in span_fig.items()],
        )
    )
    print()
    print(
        c.table(
            ["readiness latency (noticed - ready event)", "ms median (min-max)", "runs noticed before event"],
            [
                ["harness", c.fmt(lat, 1000, 1), early],
                [
                    "bare script",
                    c.fmt(blat, 1000, 1),
                    sum(1 for x in bare_runs if x["readiness_latency"] is None),
                ],
            ],
        )
    )
    print(
        f"\nharness/bare = {ratio} (target <= 1.15: {'met' if ratio and ratio <= 1.15 else 'MISSED'}); "
        f"readiness latency median {c.fmt(lat, 1000, 1)} ms (target <= 10 ms: "
        f"{'met' if lat['n'] and lat['median'] <= 0.010 else 'MISSED'})"
    )
    print(f"load average before {before['loadavg']} after {after['loadavg']}")
    data = {
        "bench": "harness_overhead",
        "settings": {
            "workers": WORKERS,
            "strategy": "inherit",
            "start_method": "fork",
            "requests": args.requests,
            "concurrency": args.concurrency,
            "keepalive": args.keepalive,
            "rounds": args.rounds,
        },
        "machine_before": before,
        "machine_after": after,
        "command": warm["command"],
        "figures": {
            "harness_wall": hw,
            "bare_wall": bw,
            "ratio_harness_over_bare": ratio,
            "readiness_latency_harness": lat,
            "readiness_latency_bare": blat,
            "harness_runs_noticed_before_ready_event": early,
            "harness_phases_since_launch": phase_fig,
            "spans": span_fig,
        },
        "runs": {"harness": harness_runs, "bare": bare_runs},
    }
    print(f"results: {c.write_results(args.name, data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
