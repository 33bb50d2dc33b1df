"""What every benchmark shares: the peers' venv, launching and reaping servers, probing workers, figures.

* ROOT / VENV - the project root; the peers' venv (~/.cache/asgi-workers-harness/bench-venv)
* peer_argv(server, python, workers, app, extra=()) / reference_argv(python, workers, app, extra=()) -
  the contenders' command lines, written once for every bench
* ensure_venv() -> python path: creates the venv with uv and installs the peers that are missing
* precompile(python) - writes .pyc files for servers/ and the venv (this machine sets
  PYTHONDONTWRITEBYTECODE=1, so nothing would otherwise be cached and every launch would recompile)
* server_env(home) - the environment servers run with: project root on PYTHONPATH, bytecode writes
  allowed, a private HOME (gunicorn >= 25 writes a control socket under ~/.gunicorn)
* Server(argv, ...) - one server launched by the harness's ServerProcess; .port(deadline), .stop() reaps the
  tree and says what leaked (a leak is reported, never silently ignored)
* wait_workers(server, n, deadline) -> seconds from launch until n distinct tree pids answered (the
  harness's wait_ready); probe_workers(...) - the bare peer's own probe (bench_harness_overhead)
* summary(values) -> {median, min, max, n}; table(headers, rows) -> str; write_results(name, data)
* machine() - load average, cores, kernel, Python: printed with every figure (the machine is shared)

Deadlines are on time.monotonic(); polling has a small fixed interval and always a deadline.
"""

import errno
import json
import os
import platform
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import psutil

from harness import _platform
from harness.run.process import ServerProcess
from harness.run.readiness import Target, wait_ready
from harness.run.serverwatch import read_events

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(ROOT, "bench", "results")
VENV = os.path.join(os.path.expanduser("~"), ".cache", "asgi-workers-harness", "bench-venv")
#: what the peers' venv holds (unpinned: the installed versions are written into every result file)
PEERS = ("gunicorn", "uvicorn-worker", "uvicorn", "httptools", "h11", "hypercorn", "granian")
#: interval of readiness polls (connection refused -> try again); a poll, not a synchronisation sleep
POLL_S = 0.005
HOST = "127.0.0.1"


class BenchError(Exception):
    """A benchmark could not produce a figure (server did not start, tool missing); one line."""


def peer_argv(server: str, python: str, workers: int, app: str, extra: Sequence[str] = ()) -> List[str]:
    """An upstream peer's command line from the peers' venv that holds `python`: `workers` workers on
    HOST, port 0 (the benches read the port from the tree's listener); `extra` goes before the app.
    server: uvicorn | hypercorn | gunicorn (give the worker class in `extra`) | granian (ASGI)."""
    bindir = os.path.dirname(python)
    n = str(workers)
    if server == "uvicorn":
        return [python, "-m", "uvicorn", "--workers", n, "--host", HOST, "--port", "0", *extra, app]
    if server == "hypercorn":
        return [os.path.join(bindir, "hypercorn"), "--workers", n, "--bind", f"{HOST}:0", *extra, app]
    if server == "gunicorn":
        return [os.path.join(bindir, "gunicorn"), "--workers", n, "--bind", f"{HOST}:0", *extra, app]
    if server == "granian":
        granian = os.path.join(bindir, "granian")
        return [granian, "--interface", "asgi", "--workers", n, "--host", HOST, "--port", "0", *extra, app]
    raise ValueError(f"unknown peer {server!r}")


def reference_argv(python: str, workers: int, app: str, extra: Sequence[str] = ()) -> List[str]:
    """The reference server's command line (`python -m servers APP --workers N ...extra`)."""
    return [python, "-m", "servers", app, "--workers", str(workers), *extra]


def venv_python() -> str:
    return os.path.join(VENV, "bin", "python")


def ensure_venv() -> str:
    """The peers' venv python, created with `uv venv` + `uv pip install` when missing."""
    py = venv_python()
    fresh = not os.path.exists(py)
    missing = list(PEERS) if fresh else [p for p in PEERS if p not in installed_versions(py)]
    if missing:
        uv = shutil.which("uv")
        if uv is None:
            raise BenchError("uv is not on PATH (pip install uv)")
        if fresh:
            subprocess.run([uv, "venv", "-q", "-p", sys.executable, VENV], check=True, timeout=120)
        subprocess.run([uv, "pip", "install", "-q", "--python", py, *missing], check=True, timeout=600)
    return py


def installed_versions(python: str) -> Dict[str, str]:
    code = (
        "import json, importlib.metadata as m\n"
        f"names = {list(PEERS)!r}\n"
        "out = {}\n"
        "for n in names:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return dict(json.loads(out.stdout))


def precompile(python: str) -> str:
    """Write .pyc for servers/ and the venv's site-packages; returns what was done (for the results)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    ).stdout.strip()
    targets = [os.path.join(ROOT, "servers"), site]
    subprocess.run([python, "-m", "compileall", "-q", *targets], check=True, timeout=600, env=env, cwd=ROOT)
    return f"python -m compileall -q servers {site}; PYTHONDONTWRITEBYTECODE unset for the servers"


def server_env(home: str) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = ROOT
    env["HOME"] = home
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("VIRTUAL_ENV", None)
    return env


def machine() -> Dict[str, Any]:
    return {
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class Server:
    """One server launched through the harness's own process runner (harness.run.process.ServerProcess:
    its own session, output to files, stop with escalation and the whole tree reaped).

    * argv / env - what to launch (cwd: the project root); t0 - time.monotonic() right before the launch
    * events - path of the reference server's --events file, or "" (then the port comes from the tree's
      listeners)
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Optional[Dict[str, str]] = None,
        events: str = "",
        workdir: Optional[str] = None,
    ) -> None:
        self.dir = workdir or tempfile.mkdtemp(prefix="awh-bench-")
        self.argv = list(argv)
        self.events = events
        home = os.path.join(self.dir, "home")
        os.makedirs(home, exist_ok=True)
        self.env = env if env is not None else server_env(home)
        self.process = ServerProcess(self.argv, env=self.env, cwd=ROOT, run_dir=self.dir).start()
        self.t0 = self.process.started_at
        self._port: Optional[int] = None
        self._stopped = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> Optional[int]:
        return self.process.poll()

    @property
    def returncode(self) -> Optional[int]:
        return self.process.returncode

    def wait(self, timeout: float) -> Optional[int]:
        return self.process.wait(timeout)

    def tree(self) -> Set[int]:
        """The launched process and every process of its tree and session now."""
        return {self.pid, *self.process.members()}

    def stderr_tail(self, n: int = 1500) -> str:
        return self.process.stderr_tail(n)

    def read_events(self) -> List[Dict[str, Any]]:
        return read_events(self.events)

    def _find_port(self) -> Optional[int]:
        if self.events:
            for ev in self.read_events():
                if ev.get("event") == "bound" and ev.get("port"):
                    return int(ev["port"])
            return None
        return listening_port(sorted(self.tree()))

    def port(self, deadline: float) -> int:
        """The TCP port the server listens on (polled until the deadline)."""
        while self._port is None:
            self._port = self._find_port()
            if self._port is not None:
                break
            if self.poll() is not None:
                raise BenchError(f"server exited {self.returncode}: {self.stderr_tail(300)!r}")
            if time.monotonic() > deadline:
                raise BenchError(f"no listening port before the deadline: {self.argv[:4]}")
            time.sleep(POLL_S)
        return self._port

    def stop(self, timeout: float = 15.0) -> Dict[str, Any]:
        """Stop the whole tree (SIGTERM to the group, SIGKILL at `timeout`): {escalated, leaked, exit_code}.
        A process of the server's session still alive after that is a leak, reported, never ignored."""
        result = self.process.stop("group", timeout=timeout)
        leaked = [pid for pid in _platform.session_members(self.pid) if _live(pid)]
        self._stopped = True
        shutil.rmtree(self.dir, ignore_errors=True)
        return {"escalated": result.escalated, "leaked": sorted(leaked), "exit_code": result.exit_code}

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self._stopped:
            self.stop()


def _live(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def _pid_of(buf: bytes) -> Optional[int]:
    head = buf.split(b"\r\n\r\n", 1)[0]
    if not head.startswith(b"HTTP/1.1 200"):
        return None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-worker-pid":
            try:
                return int(value.strip())
            except ValueError:
                return None
    return None


def _complete(buf: bytes) -> bool:
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip() or b"0")
    return False


def wait_workers(server: Server, n: int, deadline: float) -> Dict[str, Any]:
    """The harness's readiness wait (harness.run.readiness.wait_ready) against a Server, until n distinct
    pids of its tree answered.

    Returns {all_workers: s since launch, first_response: s, pids, probes, errors}. BenchError on
    deadline or exit. A pid outside the launched tree (another server on a recycled port) is an error."""
    port = server.port(deadline)
    rr = wait_ready(
        lambda: Target(host=HOST, port=port), n, deadline, alive=lambda: server.poll() is None,
        worker_pids=server.tree,
    )  # fmt: skip
    if rr.exited:
        raise BenchError(f"server exited {server.returncode}: {server.stderr_tail(300)!r}")
    if not rr.ready:
        raise BenchError(f"only {len(rr.pid_first_seen)}/{n} workers answered before the deadline")
    stray = set(rr.pid_first_seen) - server.tree()
    if stray:
        raise BenchError(f"pids {sorted(stray)} answered but are not in the server's tree")
    return {
        "all_workers": (rr.all_workers or 0.0) - server.t0,
        "first_response": (rr.first_response or 0.0) - server.t0,
        "pids": sorted(rr.pid_first_seen),
        "probes": rr.probes,
        "errors": dict(rr.errors),
    }


def probe_workers(
    port: int, n: int, deadline: float, gone: Callable[[], Optional[str]], inflight: int = 0
) -> Tuple[Dict[int, float], Optional[float], int, Dict[str, int]]:
    """Keep fresh connections in flight until n distinct x-worker-pid values answered: the BARE peer of
    bench_harness_overhead, which must not use the harness it is measured against (every other bench waits
    with the harness's own wait_ready, through wait_workers).

    Each probe is one `GET /` with `Connection: close` on a new connection; a finished probe is replaced
    at once (min(32, max(4, 2n)) in flight), so a worker that is slow to win an accept keeps being offered
    connections. A refused connection is retried after POLL_S. Times are when the response arrived.
    gone() -> None while the server runs, else why it is gone (then BenchError).

    Returns ({pid: first answer time}, first response time, probes, {error: n})."""
    want = inflight or min(32, max(4, 2 * n))
    seen: Dict[int, float] = {}
    first: Optional[float] = None
    probes = 0
    errs: Dict[str, int] = {}
    sel = selectors.DefaultSelector()
    retry_at = 0.0

    def err(name: str) -> None:
        errs[name] = errs.get(name, 0) + 1

    def drop(s: socket.socket) -> None:
        sel.unregister(s)
        s.close()

    try:
        while len(seen) < n:
            now = time.monotonic()
            if now > deadline:
                raise BenchError(f"only {len(seen)}/{n} workers answered before the deadline")
            why = gone()
            if why is not None:
                raise BenchError(why)
            while len(sel.get_map()) < want and now >= retry_at:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                probes += 1
                code = s.connect_ex((HOST, port))
                if code not in (0, errno.EINPROGRESS):
                    s.close()
                    err(errno.errorcode.get(code, str(code)))
                    retry_at = now + POLL_S
                    break
                sel.register(s, selectors.EVENT_WRITE, bytearray())
            if not sel.get_map():
                time.sleep(max(0.0, min(retry_at, deadline) - time.monotonic()))
                continue
            timeout = max(0.0, min(deadline, retry_at if retry_at > now else deadline) - now)
            for key, _mask in sel.select(timeout):
                fobj = key.fileobj
                assert isinstance(fobj, socket.socket)
                s = fobj
                buf: bytearray = key.data
                if key.events == selectors.EVENT_WRITE:
                    code = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code:
                        err(errno.errorcode.get(code, str(code)))
                        drop(s)
                        retry_at = time.monotonic() + POLL_S
                        continue
                    try:
                        s.send(_REQUEST)
                    except OSError as exc:
                        err(type(exc).__name__)
                        drop(s)
                        continue
                    sel.modify(s, selectors.EVENT_READ, buf)
                    continue
                try:
                    data = s.recv(65536)
                except OSError as exc:
                    err(type(exc).__name__)
                    drop(s)
                    continue
                buf += data
                if data and not _complete(bytes(buf)):
                    continue
                t = time.monotonic()
                drop(s)
                pid = _pid_of(bytes(buf))
                if pid is None:
                    err("bad-response")
                    continue
                if first is None:
                    first = t
                seen.setdefault(pid, t)
    finally:
        for key in list(sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        sel.close()
    return seen, first, probes, errs


def listening_port(pids: Iterable[int]) -> Optional[int]:
    """A TCP port some process of `pids` listens on (Linux: sock_diag through harness._platform; elsewhere
    psutil), or None."""
    pid_list = list(pids)
    found = _platform.tcp_listeners(pid_list)
    if found is not None:
        return found[0][3] if found else None
    for pid in pid_list:
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for conn in conns:
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port:
                return int(conn.laddr.port)
    return None


def connections_per_worker(port: int, pids: Sequence[int]) -> Dict[int, int]:
    """How many established connections on `port` each of `pids` holds now (Linux only; {} elsewhere)."""
    if not sys.platform.startswith("linux"):
        return {}
    wanted = _platform.established_inodes(port)
    return {pid: len(_platform.socket_inodes(pid) & wanted) for pid in pids}


def tree_cpu(server: "Server") -> float:
    """CPU seconds (user + system, with reaped children's) of the server's process tree so far."""
    total = 0.0
    for pid in server.tree():
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def summary(values: Sequence[float], digits: int = 4) -> Dict[str, Any]:
    vals = [float(v) for v in values]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {
        "median": round(statistics.median(vals), digits),
        "min": round(min(vals), digits),
        "max": round(max(vals), digits),
        "n": len(vals),
    }


def fmt(s: Dict[str, Any], scale: float = 1.0, digits: int = 0) -> str:
    """'median (min-max)' of a summary."""
    if not s.get("n"):
        return "-"
    f = f"{{:.{digits}f}}"
    return f"{f.format(s['median'] * scale)} ({f.format(s['min'] * scale)}-{f.format(s['max'] * scale)})"


def ratio(a: Dict[str, Any], b: Dict[str, Any]) -> Optional[float]:
    if not a.get("n") or not b.get("n") or not b["median"]:
        return None
    return round(float(a["median"]) / float(b["median"]), 3)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_results(name: str, data: Dict[str, Any]) -> str:
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    return path


__all__ = [
    "HOST",
    "ROOT",
    "VENV",
    "BenchError",
    "Server",
    "ensure_venv",
    "fmt",
    "installed_versions",
    "machine",
    "precompile",
    "ratio",
    "server_env",
    "summary",
    "table",
    "venv_python",
    "wait_workers",
    "write_results",
]
