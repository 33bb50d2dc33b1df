"""Startup: time until all N workers have answered, reference server vs uvicorn, granian, hypercorn.

    python bench/bench_startup.py [--rounds 5] [--workers 1,2,4,8,16] [--name startup]

"Answered" means: fresh connections kept in flight (one `GET /` each, `Connection: close`) until N distinct
`x-worker-pid` values from the launched process tree came back. The clock starts right before Popen.

Contenders, interleaved per round (order rotated), all under the peers' venv python with the project root
on PYTHONPATH and app servers.apps:pid:

* reference fork / spawn / forkserver / exec - `python -m servers --start-method M` (its natural
  strategy: inherit for fork/exec, pickle for spawn/forkserver)
* uvicorn - `python -m uvicorn --workers N` (uvicorn always uses spawn)
* granian - `granian --interface asgi --workers N --http 1 --loop asyncio` (worker processes started by
  multiprocessing with the platform's default method, fork on Linux, each running Rust threads)
* hypercorn - `hypercorn --workers N` (multiprocessing spawn children)
* floor fork / floor spawn - the bare floor: a parent that starts N multiprocessing children which
  `import asyncio` and report their pid over a TCP connection (no HTTP): what any server pays at least

Before timing: `python -m compileall -q servers <venv site-packages>` (this machine sets
PYTHONDONTWRITEBYTECODE=1; it is unset for the launched servers) and one untimed launch of each contender.
Targets at N=8: reference fork <= 0.3x uvicorn, spawn and exec <= 0.6x. Printed: medians (min-max), the
ratios of every contender to uvicorn and to granian, CPU seconds, and how the time grows with N: the
least-squares line through the medians (slope ms/worker, intercept, R^2) and t(N_max)/t(N_max/2).

This file is also the floor's own program (`--floor METHOD N PORT`): under spawn its children re-import it
as __mp_main__, so its top level imports nothing but os, socket and sys.
"""

import os
import socket
import sys
from typing import Any, Set


def _floor_child(port: int) -> None:
    import asyncio  # noqa: F401, PLC0415 - the cost being measured

    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"%d\n" % os.getpid())


def _floor(method: str, n: int, port: int) -> int:
    import multiprocessing  # noqa: PLC0415

    ctx: Any = multiprocessing.get_context(method)
    procs = [ctx.Process(target=_floor_child, args=(port,)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    return 0


def main(argv=None) -> int:  # type: ignore[no-untyped-def]
    import argparse  # noqa: PLC0415
    import resource  # noqa: PLC0415
    import tempfile  # noqa: PLC0415
    import time  # noqa: PLC0415
    from typing import Dict, List, Optional, Tuple  # noqa: PLC0415

    if __package__ in (None, ""):
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bench import _common as c  # noqa: PLC0415

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", default="1,2,4,8,16", help="comma-separated N values")
    ap.add_argument("--name", default="startup", help="results file bench/results/<name>.json")
    ap.add_argument("--timeout", type=float, default=60.0, help="readiness deadline per launch, seconds")
    ap.add_argument(
        "--contenders",
        default="",
        help='comma-separated subset, e.g. "reference spawn,reference exec" (uvicorn, the target\'s base, '
        "is always run)",
    )
    args = ap.parse_args(argv)
    ns = [int(x) for x in args.workers.split(",") if x.strip()]

    py = c.ensure_venv()
    versions = c.installed_versions(py)
    compiled = c.precompile(py)
    me = os.path.abspath(__file__)
    ref_methods: Tuple[str, ...] = ("fork", "spawn", "forkserver", "exec")
    peers = ("uvicorn", "granian", "hypercorn")
    names = [f"reference {m}" for m in ref_methods] + [*peers, "floor fork", "floor spawn"]
    if args.contenders:
        wanted = {x.strip() for x in args.contenders.split(",") if x.strip()} | {"uvicorn"}
        unknown = sorted(wanted - set(names))
        if unknown:
            ap.error(f"unknown contender(s) {unknown}; choose from {names}")
        names = [nm for nm in names if nm in wanted]
        ref_methods = tuple(m for m in ref_methods if f"reference {m}" in wanted)

    def argv_for(name: str, n: int, events: str, port: int) -> List[str]:
        if name.startswith("reference "):
            return c.reference_argv(
                py, n, "servers.apps:pid", ("--start-method", name.split()[1], "--events", events)
            )
        if name in peers:
            granian = ("--http", "1", "--loop", "asyncio")
            return c.peer_argv(name, py, n, "servers.apps:pid", granian if name == "granian" else ())
        return [py, me, "--floor", name.split()[1], str(n), str(port)]

    def floor_wait(server: Any, listener: socket.socket, n: int, deadline: float) -> float:
        """Seconds from launch until n distinct child pids reported on `listener`."""
        seen: Set[int] = set()
        while len(seen) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise c.BenchError(f"floor: only {len(seen)}/{n} children reported")
            listener.settimeout(min(left, 1.0))
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                if server.poll() is not None and len(seen) < n:
                    why = f"floor exited {server.returncode}: {server.stderr_tail(300)!r}"
                    raise c.BenchError(why) from None
                continue
            with conn:
                conn.settimeout(max(0.1, deadline - time.monotonic()))
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(64)
                    if not chunk:
                        break
                    data += chunk
            if data.strip():
                seen.add(int(data.strip()))
        return time.monotonic() - float(server.t0)

    def one(name: str, n: int) -> Dict[str, Any]:
        d = tempfile.mkdtemp(prefix="awh-bench-")
        events = os.path.join(d, "events.jsonl") if name.startswith("reference") else ""
        listener = None
        port = 0
        if name.startswith("floor"):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind((c.HOST, 0))
            listener.listen(64)
            port = listener.getsockname()[1]
        load = os.getloadavg()[0]
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu0 = ru0.ru_utime + ru0.ru_stime
        server = c.Server(argv_for(name, n, events, port), events=events, workdir=d)
        out: Dict[str, Any] = {"loadavg_1m": round(load, 2)}
        try:
            deadline = time.monotonic() + args.timeout
            if listener is not None:
                out["all_workers"] = floor_wait(server, listener, n, deadline)
                # the floor's parent joins its children and exits: their CPU lands in our RUSAGE_CHILDREN
                server.wait(max(1.0, deadline - time.monotonic()))
                ru = resource.getrusage(resource.RUSAGE_CHILDREN)
                out["cpu_s"] = (ru.ru_utime + ru.ru_stime) - cpu0
            else:
                r = c.wait_workers(server, n, deadline)
                out["all_workers"] = r["all_workers"]
                out["cpu_s"] = c.tree_cpu(server)
                out["first_response"] = r["first_response"]
                evs = server.read_events()
                ready = [e["t"] for e in evs if e.get("event") == "ready"]
                if ready:
                    out["ready_event"] = ready[0] - server.t0
                start = [e for e in evs if e.get("event") == "starting"]
                if start:
                    out["strategy"] = start[0].get("strategy")
        finally:
            stop = server.stop()
            if listener is not None:
                listener.close()
        if stop["leaked"]:
            raise c.BenchError(f"processes left after stop: {stop['leaked']} ({name}, N={n})")
        return out

    def _growth(ns: List[int], medians: List[Optional[float]]) -> Dict[str, Optional[float]]:
        """Least-squares line ms = slope * N + intercept through (N, median seconds); R^2; t(last)/t(prev)."""
        pts = [(float(n), m * 1000.0) for n, m in zip(ns, medians) if m is not None]
        out: Dict[str, Optional[float]] = {
            "slope_ms_per_worker": None,
            "intercept_ms": None,
            "r2": None,
            "ratio_last_two": None,
        }
        if len(pts) >= 2:
            mx = sum(x for x, _ in pts) / len(pts)
            my = sum(y for _, y in pts) / len(pts)
            sxx = sum((x - mx) ** 2 for x, _ in pts)
            sxy = sum((x - mx) * (y - my) for x, y in pts)
            syy = sum((y - my) ** 2 for _, y in pts)
            slope = sxy / sxx if sxx else 0.0
            out["slope_ms_per_worker"] = round(slope, 2)
            out["intercept_ms"] = round(my - slope * mx, 1)
            out["r2"] = round(sxy * sxy / (sxx * syy), 3) if sxx and syy else None
            if pts[-2][1]:
                out["ratio_last_two"] = round(pts[-1][1] / pts[-2][1], 3)
        return out

    before = c.machine()
    print(
        f"# startup: time until N workers answered, {args.rounds} rounds, N={ns}; load {before['loadavg']} "
        f"on {before['cpus']} cpus; {versions}"
    )
    print(f"# {compiled}")
    for name in names:  # one untimed launch each: page cache, pyc files, uv's venv symlinks
        one(name, 2)
    results: Dict[str, Dict[str, List[Dict[str, Any]]]] = {str(n): {name: [] for name in names} for n in ns}
    for n in ns:
        for r in range(args.rounds):
            order: List[str] = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                res = one(name, n)
                results[str(n)][name].append(res)
            last = {nm: results[str(n)][nm][-1]["all_workers"] for nm in names}
            line = "  ".join(f"{nm.replace('reference ', 'ref ')}={t:.3f}" for nm, t in last.items())
            print(f"  N={n} round {r + 1}: {line}  load {os.getloadavg()[0]:.2f}", flush=True)
    after = c.machine()

    figures: Dict[str, Dict[str, Any]] = {}
    for n in ns:
        figures[str(n)] = {}
        for name in names:
            rs = results[str(n)][name]
            fig = {
                "all_workers": c.summary([x["all_workers"] for x in rs]),
                "cpu_s": c.summary([x["cpu_s"] for x in rs if "cpu_s" in x]),
            }
            if any("ready_event" in x for x in rs):
                fig["ready_event"] = c.summary([x["ready_event"] for x in rs if "ready_event" in x])
            figures[str(n)][name] = fig
    headers = ["N", *[nm.replace("reference ", "ref ") for nm in names]]
    rows = []
    for n in ns:
        rows.append([n, *[c.fmt(figures[str(n)][nm]["all_workers"], 1000) for nm in names]])
    print("\ntime until all N workers answered, ms: median (min-max)")
    print(c.table(headers, rows))

    def short(nm: str) -> str:
        return nm.replace("reference ", "ref ")

    def ratio_table(base: str, key: str) -> Dict[str, Dict[str, Any]]:
        """{N: {contender: median / base's median}} for every contender but base and the floors."""
        others = [nm for nm in names if nm != base and not nm.startswith("floor")]
        out = {
            str(n): {nm: c.ratio(figures[str(n)][nm][key], figures[str(n)][base][key]) for nm in others}
            for n in ns
        }
        print(c.table(["N", *[short(nm) for nm in others]], [[n, *out[str(n)].values()] for n in ns]))
        return out

    print("\nx uvicorn (medians; the target column)")
    over_uvicorn = ratio_table("uvicorn", "all_workers")
    over_granian: Dict[str, Dict[str, Any]] = {}
    if "granian" in names:
        print("\nx granian (medians)")
        over_granian = ratio_table("granian", "all_workers")
    ratios = {str(n): {m: over_uvicorn[str(n)][f"reference {m}"] for m in ref_methods} for n in ns}
    # rounds are interleaved, so a ratio taken within one round cancels what the machine did between rounds
    paired = {
        str(n): {
            m: c.summary(
                [
                    ref["all_workers"] / uv["all_workers"]
                    for ref, uv in zip(results[str(n)][f"reference {m}"], results[str(n)]["uvicorn"])
                    if uv["all_workers"]
                ],
                digits=3,
            )
            for m in ref_methods
        }
        for n in ns
    }
    print("\nx uvicorn, paired: reference / uvicorn within each round, median (min-max)")
    print(
        c.table(
            ["N", *[f"ref {m}" for m in ref_methods]],
            [[n, *[c.fmt(paired[str(n)][m], 1, 3) for m in ref_methods]] for n in ns],
        )
    )
    growth = {nm: _growth(ns, [figures[str(n)][nm]["all_workers"]["median"] for n in ns]) for nm in names}
    last_col = f"t({ns[-1]})/t({ns[-2]})" if len(ns) > 1 else "t(N)/t(N/2)"
    print(f"\ngrowth with N: least-squares line through the medians, and {last_col}")
    print(
        c.table(
            ["contender", "slope ms/worker", "intercept ms", "R^2", last_col],
            [
                [nm, g["slope_ms_per_worker"], g["intercept_ms"], g["r2"], g["ratio_last_two"]]
                for nm, g in growth.items()
            ],
        )
    )
    cpu_rows = [[n, *[c.fmt(figures[str(n)][nm]["cpu_s"], 1000) for nm in names]] for n in ns]
    print("\nCPU ms (user+sys) the process tree had used when all N had answered (floor: until it exited)")
    print("- less sensitive to the machine's load than wall time")
    print(c.table(headers, cpu_rows))
    print("\nCPU x uvicorn (medians)")
    cpu_over_uvicorn = ratio_table("uvicorn", "cpu_s")
    cpu_ratios = {str(n): {m: cpu_over_uvicorn[str(n)][f"reference {m}"] for m in ref_methods} for n in ns}
    targets: List[Tuple[str, float]] = [("fork", 0.3), ("spawn", 0.6), ("exec", 0.6)]
    if "8" in ratios:
        for m, limit in targets:
            if m not in ratios["8"]:
                continue
            got = ratios["8"][m]
            verdict = "met" if got is not None and got <= limit else "MISSED"
            pair = paired["8"][m].get("median")
            print(f"N=8 reference {m} / uvicorn = {got}, paired {pair} (target <= {limit}: {verdict})")
    print(f"load average before {before['loadavg']} after {after['loadavg']}")
    data = {
        "bench": "startup",
        "settings": {
            "rounds": args.rounds,
            "workers": ns,
            "app": "servers.apps:pid",
            "precompile": compiled,
            "probe": "min(32, max(4, 2N)) fresh connections kept in flight, each replaced when it finishes",
            "granian": "--interface asgi --http 1 --loop asyncio (access log off by default; no uvloop/rloop"
            " in the venv, so loop auto would be asyncio too)",
            "hypercorn": "defaults: asyncio worker class, h11, no access log",
            "growth": "least-squares line through the per-N medians of all_workers (ms against N); "
            "ratio_last_two = median t(N_max) / median t(previous N)",
        },
        "versions": versions,
        "machine_before": before,
        "machine_after": after,
        "commands": {nm: argv_for(nm, 0, "EVENTS", 0) for nm in names},
        "figures": figures,
        "ratios_reference_over_uvicorn": ratios,
        "paired_ratios_reference_over_uvicorn": paired,
        "ratios_over_uvicorn": over_uvicorn,
        "ratios_over_granian": over_granian,
        "growth": growth,
        "cpu_ratios_reference_over_uvicorn": cpu_ratios,
        "cpu_ratios_over_uvicorn": cpu_over_uvicorn,
        "runs": results,
    }
    print(f"results: {c.write_results(args.name, data)}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--floor":
        sys.exit(_floor(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    sys.exit(main())
