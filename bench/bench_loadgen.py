"""The harness's load generator vs wrk: fresh-connection requests/s, and who is the bottleneck.

    python bench/bench_loadgen.py [--rounds 5] [--requests 2000] [--high 64] [--duration 3]
                                  [--generator-python PY ...] [--name loadgen]

Two servers with 2 workers and the app servers.apps:pid, both from the peers' venv: the reference server
(inherit/fork) and `uvicorn --workers 2 --http h11 --no-access-log`. Per round each server is started
fresh (server order alternates), proven ready (2 distinct worker pids answer), warmed (1 s of wrk and an
untimed 50-request run of each generator), and then measured. The order of the measurements rotates
from round to round:

* harness(...) n200 c16 (default) - harness.run.load.run_load() exactly as harness.run.runner.run_scenario
calls it
  by default (requests=200, concurrency=16, timeout_s=10, expected pids/workers), except
  keepalive_requests=0: the keep-alive phase runs after the fresh phase and is not what is measured
* harness(...) n2000 c16 / c64 - the same call with `--requests` requests at concurrency 16 and
  `--high`, so the rate is stable (bounded: timeout_s=30 per phase)
* wrk close c16 / c64 - `wrk -t1 -cN -d{duration}s -H "Connection: close"`: one fresh connection per
  request, like the generator's fresh phase
* wrk keep-alive c16 - the ceiling: the same server without connection setup

The generator runs in a child process (imports done before it is timed), once per interpreter: by
default the project's .venv (where `bash dev.sh` runs the harness) and the interpreter running this
bench. They differ in whether `sniffio` is installed, which costs the generator a quarter of its CPU
when it is missing (see NOTES).

Figures per measurement: requests/s (for the generator: run_load's own `rate`, responses over the fresh
phase's duration); the generator's CPU seconds per wall second (the child's getrusage around the call;
wrk's from RUSAGE_CHILDREN around its run) and its "busy" seconds per second (CPU + run-queue wait from
schedstat: on a shared machine a generator that is runnable all the time but gets the core only part of
it is still the bottleneck); the server tree's CPU seconds per wall second (psutil, the whole tree).
The server tree's busy seconds per second (CPU + run-queue wait of all its threads) tell whether
its workers wanted more CPU than they got. Verdict: generator-bound when the generator's busy/s >= 0.85
(it is one thread), server-bound when the server's busy/s >= 0.85 x 2 workers. Prints the table and the
fraction harness/wrk (same concurrency), writes bench/results/<name>.json (with NOTES: the profile).
"""

import argparse
import json
import os
import resource
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import _common as c
from bench.bench_throughput import parse_wrk

APP = "servers.apps:pid"
WORKERS = 2
READY_TIMEOUT_S = 60.0
#: what harness.run.runner.run_scenario passes by default (Scenario defaults; timeout_s = max(5, 20 / 2))
DEFAULT_REQUESTS = 200
DEFAULT_CONCURRENCY = 16
DEFAULT_TIMEOUT_S = 10.0
HIGH_TIMEOUT_S = 30.0
#: thresholds of the verdict (cores busy per wall second)
GEN_BOUND = 0.85


def _servers(py: str) -> List[Tuple[str, List[str], bool]]:
    """(name, argv with an EVENTS placeholder, is_reference)."""
    ref = c.reference_argv(
        py,
        WORKERS,
        APP,
        ("--strategy", "inherit", "--start-method", "fork", "--port", "0", "--events", "EVENTS"),
    )
    uvi = c.peer_argv("uvicorn", py, WORKERS, APP, ("--http", "h11", "--no-access-log"))
    return [("reference inherit/fork", ref, True), ("uvicorn --workers 2 --http h11", uvi, False)]


#: the generator, run in a child process so any interpreter can be measured (argv[1]: JSON settings).
#: It imports first, says "ready", waits for "go" on stdin, then times exactly one run_load() call.
CHILD = r"""
import json, os, resource, sys, threading, time
from harness.run.load import run_load
from harness.run.readiness import Target

def sched():
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as fh:
            run, wait = fh.read().split()[:2]
        return int(run) / 1e9, int(wait) / 1e9
    except OSError:
        return None, None

def cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime

a = json.loads(sys.argv[1])
target = Target(host=a["host"], port=a["port"])
print("ready", flush=True)
sys.stdin.readline()
c0, (r0, w0), t0 = cpu(), sched(), time.monotonic()
load = run_load(target, requests=a["requests"], concurrency=a["concurrency"], timeout_s=a["timeout_s"],
                keepalive_requests=0, expected_pids=a["pids"], expected_workers=a["workers"])
wall, c1, (r1, w1) = time.monotonic() - t0, cpu(), sched()
wait = None if w0 is None or w1 is None else w1 - w0
print(json.dumps({"load": load, "wall_s": wall, "cpu_s": c1 - c0, "runqueue_wait_s": wait}), flush=True)
"""

#: what the child reports about its interpreter (the sniffio question: see the notes in the results)
CHILD_ENV = r"""
import json, sys, importlib.metadata as m, importlib.util as u
v = {n: m.version(n) for n in ("httpx", "httpcore", "anyio", "h11")}
v["sniffio"] = m.version("sniffio") if u.find_spec("sniffio") else None
print(json.dumps({"python": sys.executable, "version": sys.version.split()[0], "packages": v}))
"""


def _child_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = c.ROOT
    env.pop("VIRTUAL_ENV", None)
    return env


def generator_info(python: str) -> Dict[str, Any]:
    out = subprocess.run(
        [python, "-c", CHILD_ENV], capture_output=True, text=True, timeout=60, check=True, env=_child_env()
    )
    return dict(json.loads(out.stdout))


def tree_sched(server: c.Server) -> Dict[int, Tuple[float, float]]:
    """{pid: (seconds on a cpu, seconds runnable but waiting for one)} summed over each process's threads
    (Linux schedstat; {} elsewhere), for every process of the server's tree."""
    out: Dict[int, Tuple[float, float]] = {}
    for pid in server.tree():
        run = wait = 0.0
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as fh:
                    r, w = fh.read().split()[:2]
                run += int(r) / 1e9
                wait += int(w) / 1e9
        except (OSError, ValueError):
            continue
        out[pid] = (run, wait)
    return out


def _busy(
    before: Dict[int, Tuple[float, float]], after: Dict[int, Tuple[float, float]], wall: float
) -> float:
    """(cpu + run-queue wait) per wall second over the processes seen both times."""
    both = before.keys() & after.keys()
    total = sum(after[p][0] - before[p][0] + after[p][1] - before[p][1] for p in both)
    return round(total / wall, 3)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _readline(proc: "subprocess.Popen[str]", deadline: float) -> str:
    """One line of the child's stdout, waiting at most until `deadline` (BenchError otherwise)."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise c.BenchError("the generator did not report in time")
            if sel.select(left):
                return proc.stdout.readline()


def harness_load(
    python: str,
    server: c.Server,
    *,
    port: int,
    pids: List[int],
    requests: int,
    concurrency: int,
    timeout_s: float,
) -> Dict[str, Any]:
    """One fresh-connection phase of harness.run.load.run_load in a child `python`, its CPU and the
    server's."""
    settings = {
        "host": c.HOST,
        "port": port,
        "pids": pids,
        "workers": WORKERS,
        "requests": requests,
        "concurrency": concurrency,
        "timeout_s": timeout_s,
    }
    proc = subprocess.Popen(
        [python, "-c", CHILD, json.dumps(settings)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=c.ROOT,
        env=_child_env(),
    )
    try:
        if _readline(proc, time.monotonic() + 60).strip() != "ready":
            raise c.BenchError(f"the generator failed to start: {proc.communicate(timeout=10)[1][-300:]!r}")
        assert proc.stdin is not None
        srv0, sch0 = c.tree_cpu(server), tree_sched(server)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=2 * timeout_s + 30)  # run_load returns within ~2 x timeout_s
        srv1, sch1 = c.tree_cpu(server), tree_sched(server)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise c.BenchError(f"the generator exited {proc.returncode}: {err.strip()[-300:]!r}")
    rep = json.loads(out.strip().splitlines()[-1])
    load, wall, cpu = rep["load"], rep["wall_s"], rep["cpu_s"]
    wait = rep["runqueue_wait_s"]
    errors = sum(load["errors"].values()) + sum(n for k, n in load["status"].items() if not k.startswith("2"))
    return {
        "rps": float(load["rate"]),
        "requests": requests,
        "ok": load["ok"],
        "errors": errors,
        "error_classes": load["errors"],
        "phase_s": load["duration_s"],
        "wall_s": round(wall, 4),
        "gen_cpu_s": round(cpu, 4),
        "server_cpu_s": round(srv1 - srv0, 4),
        "gen_cpu_per_s": round(cpu / wall, 3),
        "gen_busy_per_s": None if wait is None else round((cpu + wait) / wall, 3),
        "server_cpu_per_s": round((srv1 - srv0) / wall, 3),
        "server_busy_per_s": _busy(sch0, sch1, wall),
        "per_worker": sorted(load["per_worker"].values()),
        "p50_ms": load["latency_ms"]["p50"],
        "cpu_ms_per_request": round(1000 * cpu / max(1, load["ok"]), 3),
    }


def wrk_load(server: c.Server, port: int, connections: int, seconds: float, close: bool) -> Dict[str, Any]:
    """One wrk run (-t1), with wrk's own CPU (RUSAGE_CHILDREN: wrk is the only child reaped meanwhile)."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "2s"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"http://{c.HOST}:{port}/")
    srv0, sch0, gen0, t0 = c.tree_cpu(server), tree_sched(server), _children_cpu(), time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=seconds + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wall, gen1, srv1, sch1 = time.monotonic() - t0, _children_cpu(), c.tree_cpu(server), tree_sched(server)
    if proc.returncode != 0:
        raise c.BenchError(f"wrk exited {proc.returncode}: {err.strip()[:300]}")
    res = parse_wrk(out)
    return {
        "rps": res["rps"],
        "requests": res["requests"],
        "ok": res["requests"] - res["non_2xx"],
        "errors": res["non_2xx"] + res["socket_errors"],
        "wall_s": round(wall, 4),
        "gen_cpu_s": round(gen1 - gen0, 4),
        "server_cpu_s": round(srv1 - srv0, 4),
        "gen_cpu_per_s": round((gen1 - gen0) / wall, 3),
        "server_cpu_per_s": round((srv1 - srv0) / wall, 3),
        "server_busy_per_s": _busy(sch0, sch1, wall),
        "p50_ms": res["latency_ms"].get("p50"),
    }


Measure = Callable[[c.Server, int, List[int]], Dict[str, Any]]


def _generators(paths: List[str]) -> List[Tuple[str, str, Dict[str, Any]]]:
    """(label, python, info) for each generator interpreter; by default the project's .venv (where
    `bash dev.sh` runs the harness) and the interpreter running this bench, if that is another one."""
    if not paths:
        venv = os.path.join(c.ROOT, ".venv", "bin", "python")
        paths = [venv] if os.path.exists(venv) else []
        if not paths or os.path.abspath(sys.executable) != os.path.abspath(venv):
            paths.append(sys.executable)
    out = []
    for py in paths:
        info = generator_info(py)
        where = ".venv" if os.path.abspath(py).startswith(os.path.join(c.ROOT, ".venv")) else "python"
        sniff = "sniffio" if info["packages"]["sniffio"] else "no sniffio"
        out.append((f"harness({where}, {sniff})", py, info))
    return out


def _measures(
    args: argparse.Namespace, generators: List[Tuple[str, str, Dict[str, Any]]]
) -> List[Tuple[str, Measure]]:
    n, hi, d = args.requests, args.high, args.duration
    out: List[Tuple[str, Measure]] = []
    for label, py, _ in generators:

        def default(s: c.Server, p: int, w: List[int], py: str = py) -> Dict[str, Any]:
            return harness_load(
                py,
                s,
                port=p,
                pids=w,
                requests=DEFAULT_REQUESTS,
                concurrency=DEFAULT_CONCURRENCY,
                timeout_s=DEFAULT_TIMEOUT_S,
            )

        def c16(s: c.Server, p: int, w: List[int], py: str = py) -> Dict[str, Any]:
            return harness_load(py, s, port=p, pids=w, requests=n, concurrency=16, timeout_s=HIGH_TIMEOUT_S)

        def chi(s: c.Server, p: int, w: List[int], py: str = py) -> Dict[str, Any]:
            return harness_load(py, s, port=p, pids=w, requests=n, concurrency=hi, timeout_s=HIGH_TIMEOUT_S)

        out += [
            (f"{label} n{DEFAULT_REQUESTS} c{DEFAULT_CONCURRENCY} (default)", default),
            (f"{label} n{n} c16", c16),
            (f"{label} n{n} c{hi}", chi),
        ]
    out += [
        ("wrk close c16", lambda s, p, w: wrk_load(s, p, 16, d, True)),
        (f"wrk close c{hi}", lambda s, p, w: wrk_load(s, p, hi, d, True)),
        ("wrk keep-alive c16", lambda s, p, w: wrk_load(s, p, 16, d, False)),
    ]
    return out


def run_server(
    argv: List[str], is_ref: bool, measures: List[Tuple[str, Measure]], generators: List[str]
) -> Dict[str, Any]:
    d = tempfile.mkdtemp(prefix="awh-bench-")
    events = os.path.join(d, "events.jsonl") if is_ref else ""
    argv = [events if a == "EVENTS" else a for a in argv]
    load_before = os.getloadavg()[0]
    server = c.Server(argv, events=events, workdir=d)
    out: Dict[str, Any] = {}
    try:
        ready = c.wait_workers(server, WORKERS, time.monotonic() + READY_TIMEOUT_S)
        port = server.port(time.monotonic() + 1)
        pids = list(ready["pids"])
        wrk_load(server, port, 16, 1.0, False)  # warm-up, not counted
        for py in generators:  # warm-up, not counted
            harness_load(
                py, server, port=port, pids=pids, requests=50, concurrency=16, timeout_s=DEFAULT_TIMEOUT_S
            )
        for name, fn in measures:
            out[name] = fn(server, port, pids)
        load_after = os.getloadavg()[0]
    finally:
        stop = server.stop()
    if stop["leaked"]:
        raise c.BenchError(f"processes left after stop: {stop['leaked']} ({argv[:4]})")
    return {"measures": out, "loadavg_1m": [round(load_before, 2), round(load_after, 2)], "stop": stop}


def verdict(gen: Optional[float], srv_busy: Optional[float]) -> str:
    """gen: the generator's busy (harness) or CPU (wrk) seconds per second; srv_busy: the server tree's
    busy seconds per second (CPU + run-queue wait: its workers wanted a core this much)."""
    if gen is None or srv_busy is None:
        return "-"
    gen_bound, srv_bound = gen >= GEN_BOUND, srv_busy >= GEN_BOUND * WORKERS
    if gen_bound and srv_bound:
        return "both"
    return "generator" if gen_bound else "server" if srv_bound else "neither"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=2000, help="requests of the larger generator runs")
    ap.add_argument("--high", type=int, default=64, help="the higher concurrency (generator and wrk)")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds of each wrk run")
    ap.add_argument(
        "--generator-python",
        action="append",
        default=[],
        help="interpreter(s) to run harness.run.load in (default: .venv/bin/python and this one)",
    )
    ap.add_argument("--name", default="loadgen", help="results file bench/results/<name>.json")
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    py = c.ensure_venv()
    versions = c.installed_versions(py)
    compiled = c.precompile(py)
    servers = _servers(py)
    generators = _generators(args.generator_python)
    measures = _measures(args, generators)
    names = [m for m, _ in measures]
    before = c.machine()
    print(
        f"# loadgen: {WORKERS} workers, app pid, {args.rounds} rounds; load {before['loadavg']} on "
        f"{before['cpus']} cpus; servers {versions}"
    )
    for label, gpy, info in generators:
        print(f"# {label}: {gpy} {info['version']} {info['packages']}")
    runs: Dict[str, List[Dict[str, Any]]] = {s: [] for s, _, _ in servers}
    for r in range(args.rounds):
        order = servers[r % 2 :] + servers[: r % 2]
        k = r % len(measures)
        rotated = measures[k:] + measures[:k]
        for sname, cmd, is_ref in order:
            res = run_server(cmd, is_ref, rotated, [g[1] for g in generators])
            runs[sname].append(res)
            rates = " ".join(f"{res['measures'][m]['rps']:.0f}" for m in names)
            print(f"  round {r + 1} {sname:<32} req/s {rates}  load {res['loadavg_1m']}", flush=True)
    after = c.machine()

    figures: Dict[str, Dict[str, Any]] = {}
    for sname, rs in runs.items():
        fs: Dict[str, Any] = {}
        for m in names:
            vals = [x["measures"][m] for x in rs]
            keys = ["rps", "gen_cpu_per_s", "server_cpu_per_s", "server_busy_per_s", "p50_ms"]
            if "gen_busy_per_s" in vals[0]:
                keys += ["gen_busy_per_s", "cpu_ms_per_request"]
            fs[m] = {key: c.summary([v[key] for v in vals if v[key] is not None], 3) for key in keys}
            fs[m]["errors"] = sum(v["errors"] for v in vals)
            gen = fs[m].get("gen_busy_per_s", fs[m]["gen_cpu_per_s"])
            fs[m]["verdict"] = verdict(gen["median"], fs[m]["server_busy_per_s"]["median"])
        fractions: Dict[str, Optional[float]] = {}
        for label, _, _ in generators:
            d16, n16, nhi = (m for m in names if m.startswith(label + " "))
            fractions[f"{d16} / wrk close c16"] = c.ratio(fs[d16]["rps"], fs["wrk close c16"]["rps"])
            fractions[f"{n16} / wrk close c16"] = c.ratio(fs[n16]["rps"], fs["wrk close c16"]["rps"])
            hi = f"wrk close c{args.high}"
            fractions[f"{nhi} / {hi}"] = c.ratio(fs[nhi]["rps"], fs[hi]["rps"])
        if len(generators) == 2:
            a, b = ([m for m in names if m.startswith(g[0] + " ")][1] for g in generators)
            fractions[f"{b} / {a}"] = c.ratio(fs[b]["rps"], fs[a]["rps"])
        fractions["wrk close c16 / wrk keep-alive c16"] = c.ratio(
            fs["wrk close c16"]["rps"], fs["wrk keep-alive c16"]["rps"]
        )
        fs["fractions"] = fractions
        figures[sname] = fs

    for sname in runs:
        fs = figures[sname]
        rows = []
        for m in names:
            f = fs[m]
            rows.append(
                [
                    m,
                    c.fmt(f["rps"]),
                    c.fmt(f["gen_cpu_per_s"], digits=2),
                    c.fmt(f["gen_busy_per_s"], digits=2) if "gen_busy_per_s" in f else "-",
                    c.fmt(f["server_cpu_per_s"], digits=2),
                    c.fmt(f["server_busy_per_s"], digits=2),
                    c.fmt(f["cpu_ms_per_request"], digits=2) if "cpu_ms_per_request" in f else "-",
                    f["errors"],
                    f["verdict"],
                ]
            )
        print(f"\n{sname} (2 workers)")
        headers = [
            "load",
            "req/s median (min-max)",
            "gen cpu/s",
            "gen busy/s",
            "server cpu/s",
            "server busy/s",
        ]
        print(c.table([*headers, "gen cpu ms/req", "errors", "bound"], rows))
        for k2, v in fs["fractions"].items():
            print(f"  {k2}: {v}")
    print(f"\nload average before {before['loadavg']} after {after['loadavg']}")
    data = {
        "bench": "loadgen",
        "settings": {
            "workers": WORKERS,
            "app": APP,
            "rounds": args.rounds,
            "harness_default": {
                "requests": DEFAULT_REQUESTS,
                "concurrency": DEFAULT_CONCURRENCY,
                "timeout_s": DEFAULT_TIMEOUT_S,
                "keepalive_requests": 0,
            },
            "harness_high": {
                "requests": args.requests,
                "concurrency": [16, args.high],
                "timeout_s": HIGH_TIMEOUT_S,
            },
            "wrk": f"wrk -t1 -cN -d{args.duration:g}s --latency --timeout 2s [-H 'Connection: close']",
            "generator_cpu": "harness: getrusage(RUSAGE_SELF) of the child running run_load, around it; "
            "busy = (cpu + run-queue wait from /proc/self/task/TID/schedstat) / wall; "
            "wrk: getrusage(RUSAGE_CHILDREN) of this process around the run",
            "server_cpu": "psutil cpu_times (user+system, incl. reaped children) of the server tree",
            "server_busy": "server tree: (cpu + run-queue wait) per wall second, schedstat of every thread",
            "verdict": f"generator if generator busy (harness) or cpu (wrk) per s >= {GEN_BOUND}; server if "
            f"server busy per s >= {GEN_BOUND} x {WORKERS} workers; both; else neither",
            "precompile": compiled,
        },
        "versions": versions,
        "generators": {label: {"python": gpy, **info} for label, gpy, info in generators},
        "machine_before": before,
        "machine_after": after,
        "commands": {s: cmd for s, cmd, _ in servers},
        "figures": figures,
        "notes": NOTES,
        "runs": runs,
    }
    print(f"results: {c.write_results(args.name, data)}")
    return 0


#: what profiling the generator showed (cProfile of run_load(2000 requests, concurrency 16) against the
#: reference server; separate runs, not this bench's timed ones) and what would lift the rate
NOTES: List[str] = [
    "Verdict: the generator is the bottleneck by a wide margin. It is one asyncio thread that is on a core "
    "(or waiting in the run queue for one) all of the phase (gen busy/s = 1.00), while the server tree "
    "uses ~0.3-0.6 of its 2 workers; wrk with Connection: close at the same concurrency gets ~5-11x the "
    "rate from the same servers, and there the server's workers are runnable all the time (server busy/s "
    "~1.9).",
    "Where the generator's CPU goes (tottime by package, project .venv): importlib 18% (+ ~7% posix.stat "
    "under it), httpx 11%, httpcore 11%, anyio 11%, asyncio 11%, h11 7%, socket syscalls 5%. The importlib "
    "share is httpcore 1.0.9's current_async_library(): it runs `import sniffio` at every "
    "lock/event/semaphore setup (6 per fresh-connection request); anyio 4.16 no longer installs sniffio "
    "and httpcore does not declare it, so in the .venv every one is a failed import that searches sys.path "
    "again (failed imports are not cached). With sniffio installed (the bench's own interpreter) that "
    "share is ~0.5%.",
    "Known upstream: encode/httpcore discussion #1102 and PR #1103 (open: import sniffio once at module "
    "level); anyio stopped depending on sniffio in agronholm/anyio#1021 (anyio >= 4.11). The sniffio cost "
    "is measured here as 'harness(python, sniffio) / harness(.venv, no sniffio)' (same "
    "httpx/httpcore/anyio/h11 versions). The fix is to declare sniffio in pyproject's dependencies (not "
    "done here: pyproject is outside this change; harness/load.py could only do it with "
    "sys.modules['sniffio'] = None, a process-wide hack).",
    "Fixed in harness/load.py: every httpx client loaded certifi's CA bundle into an SSLContext (~21 ms of "
    "CPU per client, 2 clients per run_load, the first inside the fresh phase's measured duration) "
    "although Target.url is always plain http:// on loopback; the transports now pass verify=False. "
    "Before/after (harness/load.py at ec8e8c8 vs with the change, in one process, alternating, 11 rounds "
    "under the lock, project .venv, reference server, run_load with run_scenario's defaults: 200 fresh + "
    "50 keep-alive): wall 0.312 s (0.299-0.359) -> 0.273 s (0.260-0.287), generator CPU 0.311 -> 0.273 s, "
    "fresh rate 823 (692-863) -> 897 (855-942) req/s, keep-alive rate 721 (676-748) -> 1004 (951-1071) "
    "req/s.",
    "What is left is httpx's own per-request cost: ~1.0 ms of CPU per fresh-connection request with "
    "sniffio (~1.3-1.5 ms without), i.e. at most ~700-1000 req/s on one core, against wrk's ~5500-7200 "
    "req/s. Nothing small in harness/load.py changes that order of magnitude. What would: several "
    "generator processes (on 2 cores they take the server's core), or a raw-socket / asyncio-streams "
    "client for the fresh phase (like bench/_common.probe_burst, ~10x cheaper per request); DEVELOPERS.md "
    "keeps httpx as the client.",
    "What it means for the harness: at the default 200 requests / 16 in flight the server is far from "
    "saturated, so the fresh phase's per_worker split is the kernel's accept distribution under light load "
    "(short or no accept backlog), not under a saturating load.",
    "uvicorn --workers 2 keep-alive is ~367 req/s because of uvicorn#3149 (no TCP_NODELAY on the pre-bound "
    "listener: ~44 ms per response; see 'Reading the figures'), so its keep-alive row is no ceiling. "
    "Connection: close is not affected (closing flushes the response). The reference server's keep-alive "
    "rows often had all 16 connections on one worker (server busy/s ~1.0), as bench_throughput reports.",
]


if __name__ == "__main__":
    sys.exit(main())
