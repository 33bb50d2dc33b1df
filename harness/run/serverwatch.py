"""ServerWatch: what the readiness wait asks about one launched server, in one place for harness.run.runner
and
bench/bench_readiness.py.

    watch = ServerWatch(root_pid, proc.poll, workers=N, events_file=path, asked=Target(...), fd_port=None)
    wait_ready(watch.target, N, deadline, alive=watch.alive_until_hopeless, worker_pids=watch.worker_pids,
               ready_event=watch.ready_event)

* target() - where to probe: the asked port for bind=fd:N; the reference server's `bound` event; for
  upstream servers where the tree really listens (inspect.TargetFinder: the asked path, or - the
  wrong-listener case - elsewhere)
* alive() - the master runs; for upstream servers it also samples the worker pids every SAMPLE_S, so
  workers that die and get replaced show up in ever_workers (restarts) without an event stream
* alive_until_hopeless() - alive(), but False (and a gave_up entry) once an upstream master has had no
  worker alive and shown no activity of its own for NO_WORKER_GRACE_S, or RESPAWN_GIVE_UP_FACTOR x N
  workers have died: the first readiness wait ends there instead of at its deadline
* worker_pids() - the current workers (event stream, else psutil); ready_event() - the `ready` event's t
* ever_workers, gave_up [(t, why)], events()
* psutil_workers(root_pid), event_workers(events), read_events(path) - the pieces, usable alone
"""

import os
import time
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import psutil

from harness.model.records import iter_json_objects
from harness.run import inspection as hinspect
from harness.run.readiness import Target

#: upstream servers: a master with no worker alive that has also done nothing at all (no context switch,
#: no CPU time: asleep without a timeout) for this long will not serve: uvicorn <= 0.29 after a failed
#: lifespan startup waits on an Event forever. The evidence is the master's own activity, not the clock: a
#: respawning supervisor wakes up while it works (uvicorn 0.30+ every 0.5 s), however slowly a loaded
#: machine lets it start the replacements (more than 3 s with 3 busy processes on 2 cores). The longest
#: a living supervisor sleeps without waking is uvicorn's worker health check, a pipe poll of 5 s
#: (supervisors/multiprocess.py, Process.ping(timeout=5), timeout_worker_healthcheck in 0.49); this is
#: above it. A zombie worker does not count as alive.
NO_WORKER_GRACE_S = 6.0
#: upstream servers: once this many times N workers have died before readiness was proven, the server is
#: in a respawn loop (uvicorn 0.30-0.49 after a failed lifespan startup replaces its workers forever)
RESPAWN_GIVE_UP_FACTOR = 4
#: how often alive() samples an upstream tree's workers
SAMPLE_S = 0.1


def read_events(path: str) -> List[Dict[str, Any]]:
    """The reference server's events so far; a torn last line is skipped."""
    if not path or not os.path.exists(path):
        return []
    return [ev for ev in iter_json_objects(path) if "event" in ev]


def psutil_children(root_pid: int) -> Tuple[Set[int], Set[int]]:
    """(workers, helpers): the master's live descendants, split by their command line (upstream servers).

    A child between its fork and its exec still shows the master's command line, so a multiprocessing
    helper caught there (uvicorn's resource tracker, started beside the workers) reads as a worker until a
    later sample sees what it became: callers that keep every worker they ever saw drop every pid they ever
    saw as a helper (ServerWatch.ever_workers). Measured beside 3 CPU hogs, sampling uvicorn 0.29.0 without
    pause: the tracker read as a worker in 11 of 20 starts."""
    try:
        children = psutil.Process(root_pid).children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return set(), set()
    workers: Set[int] = set()
    helpers: Set[int] = set()
    for child in children:
        try:
            text = " ".join(child.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        (helpers if any(marker in text for marker in hinspect.HELPER_MARKERS) else workers).add(child.pid)
    return workers, helpers


def psutil_workers(root_pid: int) -> Set[int]:
    """Children of the master that are not multiprocessing helpers (upstream servers), as seen now."""
    return psutil_children(root_pid)[0]


def dead_children(root_pid: int) -> Set[int]:
    """The master's children that exited and were not reaped (zombies): workers that died, even if they
    died before any sample saw them alive - on a starved machine a worker can start and fail its lifespan
    between two samples, and a master that never reaps (uvicorn <= 0.29) keeps it as a zombie."""
    try:
        children = psutil.Process(root_pid).children()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return set()
    out: Set[int] = set()
    for child in children:
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                out.add(child.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def event_workers(events: List[Dict[str, Any]]) -> Set[int]:
    """Worker pids alive according to the event stream (spawned and not exited)."""
    alive: Set[int] = set()
    for ev in events:
        name = ev.get("event")
        pid = ev.get("worker_pid")
        if name in ("worker-spawned", "worker-ready", "worker-restart") and isinstance(pid, int):
            alive.add(pid)
        elif name == "worker-exit" and isinstance(pid, int):
            alive.discard(pid)
    return alive


class ServerWatch:
    """The callbacks of wait_ready for one launched server (see the module docstring)."""

    def __init__(
        self,
        root_pid: int,
        poll: Callable[[], Optional[int]],
        *,
        workers: int,
        events_file: str = "",
        asked: Optional[Target] = None,
        fd_port: Optional[int] = None,
    ) -> None:
        self.root_pid = root_pid
        self.workers = workers
        self.events_file = events_file
        self.fd_port = fd_port
        self.ever_workers: Set[int] = set()
        #: every pid ever seen as a multiprocessing helper: never a worker, whatever an earlier sample of
        #: it (before its exec) said (psutil_children)
        self.helpers: Set[int] = set()
        self.gave_up: List[Tuple[float, str]] = []
        self._poll = poll
        self._finder = hinspect.TargetFinder(root_pid, asked or Target(host="127.0.0.1", port=0))
        self._live: Set[int] = set()
        self._next_sample = 0.0
        self._no_worker_since: Optional[float] = None
        self._master_activity: Optional[Tuple[int, float]] = None
        self._master_active_at = time.monotonic()

    def events(self) -> List[Dict[str, Any]]:
        return read_events(self.events_file)

    def target(self) -> Optional[Target]:
        if self.fd_port is not None:
            return Target(host="127.0.0.1", port=self.fd_port)
        if self.events_file:
            for ev in self.events():
                if ev.get("event") == "bound":
                    if ev.get("path"):
                        return Target(uds=str(ev["path"]))
                    if ev.get("port"):
                        return Target(host=str(ev.get("address") or "127.0.0.1"), port=int(ev["port"]))
            return None
        return self._finder()

    def alive(self) -> bool:
        now = time.monotonic()
        if not self.events_file and now >= self._next_sample:
            self._next_sample = now + SAMPLE_S
            current = self._sample()
            self._live = current
            if current or not self.ever_workers:
                self._no_worker_since = None
            elif self._no_worker_since is None:
                self._no_worker_since = now
            self._sample_master(now)
        return self._poll() is None

    def _sample_master(self, now: float) -> None:
        """Note when the master last did anything: a context switch or CPU time it did not have before."""
        try:
            proc = psutil.Process(self.root_pid)
            switches = proc.num_ctx_switches()
            cpu = proc.cpu_times()
            activity = (int(switches.voluntary + switches.involuntary), float(cpu.user + cpu.system))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return
        if activity != self._master_activity:
            self._master_activity = activity
            self._master_active_at = now

    def alive_until_hopeless(self) -> bool:
        if not self.alive():
            return False
        now = time.monotonic()
        since = self._no_worker_since
        if since is not None and now - max(since, self._master_active_at) >= NO_WORKER_GRACE_S:
            why = f"no worker alive and the master idle for {NO_WORKER_GRACE_S:g} s"
            self.gave_up.append((now, why))
            return False
        dead = len(self.ever_workers - self._live)
        if dead >= RESPAWN_GIVE_UP_FACTOR * max(1, self.workers):
            self.gave_up.append((now, f"{dead} workers died before readiness"))
            return False
        return True

    def worker_pids(self) -> Set[int]:
        if self.events_file:
            return event_workers(self.events())
        return self._sample()

    def _sample(self) -> Set[int]:
        """The live workers now; every worker seen so far (dead ones too) kept in ever_workers."""
        current, helpers = psutil_children(self.root_pid)
        self.helpers |= helpers
        current -= self.helpers
        self.ever_workers = (self.ever_workers | current | dead_children(self.root_pid)) - self.helpers
        return current

    def ready_event(self) -> Optional[float]:
        for ev in self.events() if self.events_file else ():
            if ev.get("event") == "ready":
                return float(ev.get("t", 0.0))
        return None


__all__ = [
    "NO_WORKER_GRACE_S",
    "RESPAWN_GIVE_UP_FACTOR",
    "ServerWatch",
    "dead_children",
    "event_workers",
    "psutil_children",
    "psutil_workers",
    "read_events",
]
