"""ServerProcess: start one server in its own session, capture its output to files, stop it, prove it gone.

    with ServerProcess(argv, env=env, cwd=cwd, run_dir=run_dir, stdin="devnull") as server:
        ...                      # server.pid, server.poll(), server.tail()
        result = server.stop("group", timeout=10.0)

* __init__(argv, *, env (the FULL environment), cwd, run_dir, stdin="devnull", pass_fds=())
  - stdin: "inherit" (the harness's fd 0), "devnull" (/dev/null / NUL), "closed" (fd 0 closed in the
    server: an exec shim, see _platform.closed_stdin_argv; raises _platform.StdinUnsupported on Windows)
  - pass_fds: fds the server inherits under the same numbers (bind=fd:N)
* start() -> self; pid; started_at (time.monotonic() just before the launch); poll() -> Optional[int];
  returncode (negative = killed by that signal on POSIX); wait(timeout) -> exit code, or None if still running
* stdout_path / stderr_path - `server.stdout` / `server.stderr` in run_dir (files: never an undrained PIPE)
* tail(max_bytes=8192) -> str - the end of stderr, then of stdout (decoded with errors="replace");
  stderr_tail() / stdout_tail() separately
* members() -> [pid] - the master's descendants plus every process still in its session (POSIX), master
  excluded: who belongs to this server right now
* stop(mode="group"|"master", timeout) -> StopResult(exit_code, escalated, seconds, signal_sent, killed):
  snapshot the members, send the stop signal (SIGTERM to the group / the master only; CTRL_BREAK_EVENT on
  Windows), wait until the master AND every snapshotted member is gone; at the deadline SIGKILL the whole
  tree (members re-snapshotted before killing, leaves first, then the group) and say escalated=True.
  `killed` lists the pids the escalation signalled. Calling stop() on an exited server still sweeps its
  session (orphaned workers of a crashed master).
* context manager: __enter__ starts (if not started), __exit__ stops (mode "group", timeout
  exit_timeout) when anything of the server is still there.

Every started server is registered with harness.run.reaper until its stop proved the tree gone.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from typing import IO, Any, Dict, List, Optional, Sequence, Tuple

import psutil

from harness import _platform
from harness.run import reaper

STDIN_MODES = ("inherit", "devnull", "closed")


@dataclasses.dataclass(frozen=True)
class StopResult:
    """* exit_code - the master's exit code (None if it could not be reaped)
    * escalated - the stop signal was not enough by the deadline: the tree was SIGKILLed
    * seconds - from the stop signal to the tree being gone (or to the end of the escalation)
    * signal_sent - "SIGTERM" / "CTRL_BREAK_EVENT", "" when nothing was alive to signal
    * killed - pids the escalation SIGKILLed
    """

    exit_code: Optional[int]
    escalated: bool
    seconds: float
    signal_sent: str
    killed: Tuple[int, ...] = ()


def _descendants(pid: int) -> List[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def _read_tail(path: str, max_bytes: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


class ServerProcess:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Dict[str, str],
        cwd: str,
        run_dir: str,
        stdin: str = "devnull",
        pass_fds: Sequence[int] = (),
        exit_timeout: float = 10.0,
    ) -> None:
        if stdin not in STDIN_MODES:
            raise ValueError(f"stdin must be one of {STDIN_MODES}, not {stdin!r}")
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.run_dir = run_dir
        self.stdin = stdin
        self.pass_fds = tuple(pass_fds)
        self.exit_timeout = exit_timeout
        self.stdout_path = os.path.join(run_dir, "server.stdout")
        self.stderr_path = os.path.join(run_dir, "server.stderr")
        self.started_at: float = 0.0
        self._popen: Optional[subprocess.Popen[bytes]] = None
        self._known: Dict[int, psutil.Process] = {}  # every member ever seen (pid reuse safe)

    # -- launch -----------------------------------------------------------------------------------
    def start(self) -> ServerProcess:
        if self._popen is not None:
            raise RuntimeError("already started")
        os.makedirs(self.run_dir, exist_ok=True)
        argv = self.argv
        stdin: Any = None
        if self.stdin == "devnull":
            stdin = subprocess.DEVNULL
        elif self.stdin == "closed":
            argv = _platform.closed_stdin_argv(argv)
        out: IO[bytes] = open(self.stdout_path, "wb")  # the child keeps its own copy
        err: IO[bytes] = open(self.stderr_path, "wb")
        try:
            self.started_at = time.monotonic()
            self._popen = subprocess.Popen(
                argv,
                env=self.env,
                cwd=self.cwd,
                stdin=stdin,
                stdout=out,
                stderr=err,
                close_fds=True,
                pass_fds=self.pass_fds,
                **_platform.new_session_kwargs(),
            )
        finally:
            out.close()
            err.close()
        reaper.register(self._popen.pid)
        return self

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError("not started")
        return self._popen.pid

    def poll(self) -> Optional[int]:
        return None if self._popen is None else self._popen.poll()

    @property
    def returncode(self) -> Optional[int]:
        return None if self._popen is None else self._popen.returncode

    def wait(self, timeout: float) -> Optional[int]:
        """The master's exit code once it exits within `timeout` seconds, else None (it keeps running)."""
        if self._popen is None:
            return None
        try:
            return self._popen.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    # -- output -----------------------------------------------------------------------------------
    def stderr_tail(self, max_bytes: int = 8192) -> str:
        return _read_tail(self.stderr_path, max_bytes)

    def stdout_tail(self, max_bytes: int = 8192) -> str:
        return _read_tail(self.stdout_path, max_bytes)

    def tail(self, max_bytes: int = 8192) -> str:
        err, out = self.stderr_tail(max_bytes), self.stdout_tail(max_bytes)
        if out:
            return f"{err}\n--- stdout ---\n{out}" if err else out
        return err

    # -- membership -------------------------------------------------------------------------------
    def _snapshot(self) -> List[psutil.Process]:
        """Members now (parents before children), remembered for later sweeps."""
        if self._popen is None:
            return []
        procs: Dict[int, psutil.Process] = {}
        for p in _descendants(self._popen.pid):
            procs[p.pid] = p
        for pid in _platform.session_members(self._popen.pid):
            if pid != self._popen.pid and pid not in procs:
                try:
                    procs[pid] = psutil.Process(pid)
                except psutil.Error:
                    continue
        for pid, p in procs.items():
            self._known.setdefault(pid, p)
        return list(procs.values())

    def members(self) -> List[int]:
        return sorted(p.pid for p in self._snapshot())

    def _alive_known(self) -> List[psutil.Process]:
        alive = []
        for p in self._known.values():
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.Error:
                continue
        return alive

    # -- stop -------------------------------------------------------------------------------------
    def stop(self, mode: str = "group", timeout: float = 10.0) -> StopResult:
        """Graceful stop with a deadline, then SIGKILL of the whole tree. See the module docstring."""
        if self._popen is None:
            raise RuntimeError("not started")
        popen = self._popen
        members = self._snapshot()
        t0 = time.monotonic()
        deadline = t0 + timeout
        signal_sent = ""
        if popen.poll() is None:
            signal_sent = _platform.send_stop(popen.pid, mode)
        elif members:
            # The master is gone but its session is not: stop the orphans the same way.
            signal_sent = _platform.send_stop(popen.pid, "group")
        still = _wait_gone(popen, members, deadline)
        escalated = popen.poll() is None or bool(still)
        killed: List[int] = []
        if escalated:
            killed = self._kill_tree(still)
        seconds = time.monotonic() - t0
        if popen.poll() is not None and not self._alive_known():
            reaper.unregister(popen.pid)
        return StopResult(popen.returncode, escalated, seconds, signal_sent, tuple(killed))

    def kill(self) -> List[int]:
        """SIGKILL the whole tree now (no graceful phase); returns the pids signalled."""
        if self._popen is None:
            return []
        killed = self._kill_tree([])
        if self._popen.poll() is not None and not self._alive_known():
            reaper.unregister(self._popen.pid)
        return killed

    def _kill_tree(self, extra: List[psutil.Process]) -> List[int]:
        assert self._popen is not None
        popen = self._popen
        victims: Dict[int, psutil.Process] = {}
        for p in self._snapshot() + extra + self._alive_known():  # re-snapshot *before* killing
            victims.setdefault(p.pid, p)
        victims.pop(popen.pid, None)
        killed: List[int] = []
        for p in reversed(list(victims.values())):  # leaves first: parents were listed before children
            try:
                p.kill()
                killed.append(p.pid)
            except psutil.Error:
                continue
        if popen.poll() is None:
            try:
                popen.kill()
                killed.append(popen.pid)
            except OSError:
                pass
        _platform.kill_group(popen.pid)
        _wait_gone(popen, list(victims.values()), time.monotonic() + max(1.0, self.exit_timeout))
        return killed

    # -- context manager --------------------------------------------------------------------------
    def __enter__(self) -> ServerProcess:
        if self._popen is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._popen is None:
            return
        if self._popen.poll() is None or self._alive_known() or self._snapshot():
            self.stop("group", timeout=self.exit_timeout)


#: at the deadline, a tree that is still making progress gets this much longer, again and again ...
STOP_GRACE_SLICE_S = 2.0
#: ... up to this multiple of the stop timeout
STOP_GRACE_CAP = 3.0
#: CPU seconds the live processes must have burnt in a slice to count as working on their shutdown
STOP_PROGRESS_CPU_S = 0.02


def _cpu(procs: List[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _wait_gone(
    popen: subprocess.Popen[bytes], procs: List[psutil.Process], deadline: float
) -> List[psutil.Process]:
    """Wait until the master is reaped and every process in `procs` is gone or a zombie, or the deadline
    passes (psutil.wait_procs would wait for zombies of a live parent too; this treats them as gone).
    Woken by each exit where the platform has an event for it (Linux pidfds), else polled. Returns the
    ones still live.

    The evidence a stop waits for is exits. At the deadline the tree gets STOP_GRACE_SLICE_S more, again,
    while it is still making progress on its shutdown - a process exited in the last slice, or the live
    ones burnt >= STOP_PROGRESS_CPU_S of CPU in it (a loaded machine slows a draining server, it does not
    stop it) - up to STOP_GRACE_CAP x the timeout. A server that sits idle past the deadline (waiting on
    nothing, or on a graceful timeout of its own) is not making progress: it is a shutdown-hang on a
    quiet machine and a loaded one alike."""
    waiter = _platform.ExitWaiter([popen.pid, *(p.pid for p in procs)])
    start = time.monotonic()
    cap = start + STOP_GRACE_CAP * max(0.0, deadline - start)
    live_before, cpu_before = len(procs) + 1, _cpu(procs)
    try:
        while True:
            popen.poll()
            live = [p for p in procs if _is_live(p)]
            if popen.returncode is not None and not live:
                return []
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                n_live = len(live) + (popen.returncode is None)
                cpu_now = _cpu(live)
                progressing = n_live < live_before or cpu_now - cpu_before >= STOP_PROGRESS_CPU_S
                if not progressing or time.monotonic() >= cap:
                    return live
                live_before, cpu_before = n_live, cpu_now
                deadline = min(cap, time.monotonic() + STOP_GRACE_SLICE_S)
                continue
            waiter.wait(remaining)
    finally:
        waiter.close()


def _is_live(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


__all__ = ["STDIN_MODES", "ServerProcess", "StopResult"]
