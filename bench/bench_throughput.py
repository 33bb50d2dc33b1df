"""Keep-alive throughput of 2 workers: reference server vs gunicorn, uvicorn, hypercorn and granian.

    python bench/bench_throughput.py [--rounds 5] [--duration 5] [--no-reuseport] [--name throughput]

Per round every contender is started fresh (order rotated each round), proven ready (2 distinct worker
pids answer fresh connections), warmed for 1 s, then measured:

* wrk -t1 -c16 -d{duration}s --latency (keep-alive, 16 connections): requests/s and latency p50
* wrk -t1 -c1 -d2s --latency: p50 of one keep-alive connection - the TCP_NODELAY check (Nagle plus
  delayed ACK would show as a p50 near 40 ms on Linux loopback)

and stopped (process group reaped and checked). Prints medians (min-max) over the rounds, the ratio
reference/gunicorn (target >= 1.0), the load average at every run, and writes bench/results/<name>.json.

Every server runs from the peers' venv python with the project root on PYTHONPATH and the app
servers.apps:pid; access logs are off everywhere (uvicorn and granian --no-access-log; gunicorn and
hypercorn log no access by default; the reference server has none). Contenders: the reference server
(inherit/fork, reuseport/fork), gunicorn -k uvicorn_worker.UvicornH11Worker, hypercorn --workers 2
(asyncio worker class, h11; workers are multiprocessing spawn children), granian --interface asgi
--workers 2 (GRANIAN_SETTINGS: HTTP/1.1 only, asyncio loop, 1 runtime thread; each worker is a process
with Rust threads inside, which share its fd table), uvicorn --workers 2 --http h11 / httptools. Every
server binds port 0 on 127.0.0.1; the port is read from the listening socket of the launched tree (the
reference server's comes from its `bound` event).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import psutil

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import _common as c

APP = "servers.apps:pid"
WORKERS = 2
CONNECTIONS = 16
READY_TIMEOUT_S = 60.0
#: granian's settings besides interface/workers/host/port, chosen to match the Python servers: HTTP/1.1
#: only, the stdlib asyncio loop (uvloop is not installed, so every other contender runs on asyncio too),
#: one runtime thread per worker (its default), access log off (its default, made explicit)
GRANIAN_SETTINGS = ("--http", "1", "--loop", "asyncio", "--runtime-threads", "1", "--no-access-log")


def _contenders(py: str, reuseport: bool, h11_worker: str) -> List[Tuple[str, List[str], bool]]:
    """(name, argv with EVENTS placeholder, is_reference)."""
    strategies = ("inherit", "reuseport") if reuseport else ("inherit",)
    out = [
        (
            f"reference {strategy}/fork",
            c.reference_argv(
                py, WORKERS, APP, ("--strategy", strategy, "--start-method", "fork", "--events", "EVENTS")
            ),
            True,
        )
        for strategy in strategies
    ]
    gunicorn = ("--worker-class", h11_worker, "--graceful-timeout", "5")
    out.append(
        (
            f"gunicorn {h11_worker.rsplit('.', maxsplit=1)[-1]}",
            c.peer_argv("gunicorn", py, WORKERS, APP, gunicorn),
            False,
        )
    )
    # hypercorn writes no access log unless --access-logfile is given; asyncio worker class, h11
    out.append(("hypercorn", c.peer_argv("hypercorn", py, WORKERS, APP), False))
    out.append(("granian", c.peer_argv("granian", py, WORKERS, APP, GRANIAN_SETTINGS), False))
    for http in ("h11", "httptools"):
        uvicorn = ("--http", http, "--no-access-log")
        out.append((f"uvicorn --http {http}", c.peer_argv("uvicorn", py, WORKERS, APP, uvicorn), False))
    return out


def _h11_worker(py: str) -> str:
    """uvicorn_worker.UvicornH11Worker when the installed uvicorn-worker has it, else UvicornWorker."""
    code = "import uvicorn_worker; print(hasattr(uvicorn_worker, 'UvicornH11Worker'))"
    out = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    has_h11 = out.stdout.strip() == "True"
    return "uvicorn_worker.UvicornH11Worker" if has_h11 else "uvicorn_worker.UvicornWorker"


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise c.BenchError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> Dict[str, Any]:
    """requests/s, latency percentiles (ms), total requests, non-2xx, socket errors from wrk's output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not rps or not total:
        raise c.BenchError(f"cannot read wrk output: {out[-300:]!r}")
    pct = {f"p{p}": _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)),
        "latency_ms": pct,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
    }


def wrk(port: int, connections: int, seconds: float, pids: Sequence[int] = ()) -> Dict[str, Any]:
    """One wrk run. With `pids`: also which worker holds how many of the connections (sampled once all
    are established, within 2 s) and each worker's CPU seconds during the run."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "2s"]
    argv.append(f"http://{c.HOST}:{port}/")
    cpu0 = _cpu(pids)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    split: Dict[int, int] = {}
    try:
        deadline = time.monotonic() + min(2.0, seconds / 2)
        while pids and time.monotonic() < deadline:
            split = c.connections_per_worker(port, pids)
            if sum(split.values()) >= connections:
                break
            time.sleep(0.02)  # a sampling interval while wrk connects, not a synchronisation
        out, err = proc.communicate(timeout=seconds + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise c.BenchError(f"wrk exited {proc.returncode}: {err.strip()[:300]}")
    res = parse_wrk(out)
    cpu1 = _cpu(pids)
    res["connections_per_worker"] = sorted(split.values())
    res["worker_cpu_s"] = sorted(round(cpu1[p] - cpu0[p], 2) for p in cpu0 if p in cpu1)
    return res


def _split(res: Dict[str, Any]) -> str:
    return "/".join(str(n) for n in res["connections_per_worker"]) or "?"


def _cpu(pids: Sequence[int]) -> Dict[int, float]:
    out = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        out[pid] = t.user + t.system
    return out


def run_one(argv: List[str], is_ref: bool, duration: float) -> Dict[str, Any]:
    d = tempfile.mkdtemp(prefix="awh-bench-")
    events = os.path.join(d, "events.jsonl") if is_ref else ""
    argv = [events if a == "EVENTS" else a for a in argv]
    load_before = os.getloadavg()[0]
    server = c.Server(argv, events=events, workdir=d)
    try:
        ready = c.wait_workers(server, WORKERS, time.monotonic() + READY_TIMEOUT_S)
        port = server.port(time.monotonic() + 1)
        wrk(port, CONNECTIONS, 1.0)  # warm-up, not counted
        main = wrk(port, CONNECTIONS, duration, ready["pids"])
        single = wrk(port, 1, 2.0)
        load_after = os.getloadavg()[0]
    finally:
        stop = server.stop()
    if stop["leaked"]:
        raise c.BenchError(f"processes left after stop: {stop['leaked']} ({argv[:4]})")
    return {
        "rps": main["rps"],
        "p50_ms": main["latency_ms"].get("p50"),
        "p99_ms": main["latency_ms"].get("p99"),
        "c1_p50_ms": single["latency_ms"].get("p50"),
        "c1_rps": single["rps"],
        "requests": main["requests"],
        "non_2xx": main["non_2xx"] + single["non_2xx"],
        "socket_errors": main["socket_errors"] + single["socket_errors"],
        "connections_per_worker": main["connections_per_worker"],
        "worker_cpu_s": main["worker_cpu_s"],
        "ready_s": round(ready["all_workers"], 3),
        "workers": ready["pids"],
        "loadavg_1m": [round(load_before, 2), round(load_after, 2)],
        "stop": stop,
    }


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of each measured wrk run")
    ap.add_argument("--no-reuseport", action="store_true", help="leave out the reference server's reuseport")
    ap.add_argument("--name", default="throughput", help="results file bench/results/<name>.json")
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    py = c.ensure_venv()
    versions = c.installed_versions(py)
    compiled = c.precompile(py)
    worker_class = _h11_worker(py)
    contenders = _contenders(py, not args.no_reuseport, worker_class)
    before = c.machine()
    print(
        f"# throughput: {WORKERS} workers, app pid, wrk -t1 -c{CONNECTIONS} -d{args.duration:g}s "
        f"keep-alive, {args.rounds} rounds; load {before['loadavg']} on {before['cpus']} cpus; {versions}"
    )
    runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name, _, _ in contenders}
    for r in range(args.rounds):
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        for name, cmd, is_ref in order:
            res = run_one(cmd, is_ref, args.duration)
            runs[name].append(res)
            print(
                f"  round {r + 1} {name:<28} {res['rps']:8.0f} req/s  p50 {res['p50_ms']:.2f} ms  "
                f"c1 p50 {res['c1_p50_ms']:.3f} ms  conns/worker {_split(res)}  cpu s {res['worker_cpu_s']}  "
                f"load {res['loadavg_1m']}",
                flush=True,
            )
    after = c.machine()
    figures: Dict[str, Dict[str, Any]] = {}
    for name, rs in runs.items():
        figures[name] = {
            "rps": c.summary([x["rps"] for x in rs], 1),
            "p50_ms": c.summary([x["p50_ms"] for x in rs], 3),
            "c1_p50_ms": c.summary([x["c1_p50_ms"] for x in rs], 3),
            "errors": sum(x["non_2xx"] + x["socket_errors"] for x in rs),
            "connection_splits": [_split(x) for x in rs],
            "runs_one_worker_idle": sum(1 for x in rs if x["connections_per_worker"][:1] == [0]),
        }
    gname = next(n for n, _, is_ref in contenders if n.startswith("gunicorn"))
    rows = []
    for name, _, _ in contenders:
        f = figures[name]
        rows.append(
            [
                name,
                c.fmt(f["rps"]),
                c.ratio(f["rps"], figures[gname]["rps"]),
                c.fmt(f["p50_ms"], digits=2),
                c.fmt(f["c1_p50_ms"], digits=3),
                f["errors"],
                " ".join(f["connection_splits"]),
            ]
        )
    print()
    print(
        c.table(
            [
                "server (2 workers)",
                "req/s median (min-max)",
                "x gunicorn",
                "p50 ms c16",
                "p50 ms c1",
                "errors",
                "conns/worker per run",
            ],
            rows,
        )
    )
    ref = figures["reference inherit/fork"]
    ratio = c.ratio(ref["rps"], figures[gname]["rps"])
    verdict = "met" if ratio and ratio >= 1 else "MISSED"
    print(f"\nreference inherit/fork / {gname}: {ratio} (target >= 1.0: {verdict})")
    print(f"load average before {before['loadavg']} after {after['loadavg']}")
    data = {
        "bench": "throughput",
        "settings": {
            "workers": WORKERS,
            "connections": CONNECTIONS,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "app": APP,
            "wrk": "wrk -t1 --latency --timeout 2s",
            "gunicorn_worker_class": worker_class,
            "hypercorn": "defaults: asyncio worker class, h11, no access log, backlog 100",
            "granian": " ".join(GRANIAN_SETTINGS)
            + " (access log is off by default; no uvloop/rloop in the venv, so loop auto would be asyncio"
            " as well; blocking threads 1, the ASGI default)",
            "port": "every server binds 127.0.0.1:0; the port is read from the tree's listening socket",
            "precompile": compiled,
        },
        "versions": versions,
        "machine_before": before,
        "machine_after": after,
        "commands": {name: cmd for name, cmd, _ in contenders},
        "figures": figures,
        "ratio_reference_over_gunicorn": ratio,
        "runs": runs,
    }
    print(f"results: {c.write_results(args.name, data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
