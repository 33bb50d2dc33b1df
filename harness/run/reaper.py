"""A process-wide registry of every server session the harness started, and what kills them if we die.

Every ServerProcess registers its pid (== its session and process-group id on POSIX) when it starts and
unregisters once its stop proved the whole tree gone. Whatever is still registered when the harness goes
away is killed, by three layers (each covers what the one before cannot):

1. atexit - a normal exit, an uncaught exception, pytest after Ctrl-C (SIGINT is left alone: Python's
   KeyboardInterrupt unwinds through the `with ServerProcess(...)` blocks first, which stop gracefully).
2. SIGTERM handler - SIGTERM's default would end the process without atexit. Turning it into an
   exception is not enough (pytest reports a SystemExit inside a test as a failure and carries on), so
   here the handler does the work itself (the exception to "signal handlers only enqueue"): SIGKILL the
   registered sessions, then chain to the previous handler, or restore the default and re-deliver SIGTERM to
   ourselves.
3. a guardian process - covers SIGKILL of the harness and `os._exit` (pytest-timeout's thread method):
   a tiny `python -m harness.run.reaper --guardian` in its own session reads "+pid"/"-pid" lines from a pipe
   whose write end only we hold; at EOF (our death, however it happened) it SIGKILLs what is left.

* install(guardian=True) - idempotent; called by register()
* register(pid) / unregister(pid) / registered() -> [pid]
* kill_session(pid) -> [pids killed]: the hard kill used by all three layers (descendants, session
  members, then the process group)
* reap_all() -> [pids killed]: kill every registered session now (what atexit runs), then remove every
  registered directory
* register_dir(path) / unregister_dir(path): a run's private directory (HOME/TMP, the UDS) that must not
  outlive the harness either; removed by all three layers after the kill
* kill_session also unlinks the UDS files its victims listened on: a SIGKILLed server cannot remove them

A pid-reuse caveat: the registry keeps each pid's create_time and skips a pid whose process changed.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
from typing import Any, Dict, List, Optional, Set

import psutil

from harness import PROJECT_ROOT, _platform

_lock = threading.RLock()
_registry: Dict[int, float] = {}  # pid -> create_time (0.0 when unknown)
_dirs: Dict[str, None] = {}  # registered directories, in order


class _State:
    installed = False
    guardian: Optional[subprocess.Popen[bytes]] = None
    prev_sigterm: Any = None


_state = _State()


def _create_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def kill_session(pid: int, create_time: float = 0.0) -> List[int]:
    """SIGKILL the server session led by `pid`: its descendants (leaves first), every member of its
    session, then its process group. Returns the pids that were signalled."""
    victims: Dict[int, psutil.Process] = {}
    try:
        root = psutil.Process(pid)
        if create_time and abs(root.create_time() - create_time) > 0.01:
            root = None  # type: ignore[assignment]  # the pid was reused: not ours
    except psutil.Error:
        root = None  # type: ignore[assignment]
    if root is not None:
        try:
            for child in root.children(recursive=True):
                victims[child.pid] = child
        except psutil.Error:
            pass
    for member in _platform.session_members(pid):
        if member != os.getpid() and member not in victims:
            try:
                victims[member] = psutil.Process(member)
            except psutil.Error:
                continue
    order = list(reversed(list(victims.values())))
    if root is not None:
        order.append(root)
    sockets = _uds_paths([p.pid for p in order])
    killed = []
    for proc in order:
        try:
            proc.kill()
            killed.append(proc.pid)
        except psutil.Error:
            continue
    if root is not None or victims:
        _platform.kill_group(pid)
    if sockets:
        psutil.wait_procs(order, timeout=2.0)
        for path in sockets:
            _unlink_socket(path)
    return killed


def _uds_paths(pids: List[int]) -> List[str]:
    """Filesystem paths of the AF_UNIX sockets the processes listen on (best effort)."""
    found = _platform.unix_listeners(pids)
    if found is not None:
        return sorted({path for _pid, path in found if path and not path.startswith("@")})
    paths: Set[str] = set()
    for pid in pids:
        try:
            for conn in psutil.Process(pid).net_connections(kind="unix"):
                if isinstance(conn.laddr, str) and conn.laddr and not conn.laddr.startswith("@"):
                    paths.add(conn.laddr)
        except (psutil.Error, OSError):
            continue
    return sorted(paths)


def _unlink_socket(path: str) -> None:
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def _remove_dirs(paths: List[str]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def reap_all() -> List[int]:
    """Kill every registered session that is still there; returns the pids signalled."""
    with _lock:
        items = list(_registry.items())
        _registry.clear()
    killed: List[int] = []
    for pid, ctime in items:
        killed.extend(kill_session(pid, ctime))
    with _lock:
        dirs = list(_dirs)
        _dirs.clear()
    _remove_dirs(dirs)
    return killed


def _on_sigterm(signum: int, frame: Any) -> None:
    # Python runs this in the main thread between bytecodes; _lock is re-entrant for that reason.
    reap_all()
    prev = _state.prev_sigterm
    if callable(prev):
        prev(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _start_guardian() -> None:
    pkg_parent = PROJECT_ROOT
    env = dict(os.environ)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    _state.guardian = subprocess.Popen(
        [sys.executable, "-m", "harness.run.reaper", "--guardian"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
        env=env,
        **_platform.new_session_kwargs(),
    )


def _tell_guardian(line: str) -> None:
    g = _state.guardian
    if g is None or g.stdin is None:
        return
    try:
        g.stdin.write(line.encode("utf-8", "surrogateescape") + b"\n")
        g.stdin.flush()
    except (OSError, ValueError):
        pass


def _atexit() -> None:
    reap_all()
    g = _state.guardian
    if g is not None and g.stdin is not None:
        try:
            g.stdin.close()  # EOF: the guardian finds nothing left to kill and exits
            g.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass


def install(guardian: bool = True) -> None:
    """Install atexit, the SIGTERM handler (main thread only) and, unless guardian=False, the guardian."""
    with _lock:
        if _state.installed:
            return
        _state.installed = True
    atexit.register(_atexit)
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM"):
        try:
            prev = signal.getsignal(signal.SIGTERM)
            if prev is signal.SIG_DFL or callable(prev):
                _state.prev_sigterm = prev if callable(prev) else None
                signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:
            pass
    if guardian and os.environ.get("HARNESS_NO_GUARDIAN") != "1":
        try:
            _start_guardian()
        except OSError:
            pass  # atexit still covers the ordinary exits


def register(pid: int) -> None:
    """Record a server session (its leader's pid) that must not outlive the harness."""
    install()
    with _lock:
        _registry[pid] = _create_time(pid)
    _tell_guardian(f"+{pid} {_registry.get(pid, 0.0)!r}")


def unregister(pid: int) -> None:
    with _lock:
        _registry.pop(pid, None)
    _tell_guardian(f"-{pid}")


def register_dir(path: str) -> None:
    """Record a run directory to remove if the harness dies before it does (the owner removes it normally,
    then calls unregister_dir)."""
    install()
    path = os.path.abspath(path)
    with _lock:
        _dirs[path] = None
    _tell_guardian(f"D+{path}")


def unregister_dir(path: str) -> None:
    path = os.path.abspath(path)
    with _lock:
        _dirs.pop(path, None)
    _tell_guardian(f"D-{path}")


def registered() -> List[int]:
    with _lock:
        return sorted(_registry)


def _guardian_main() -> int:
    """Read +pid/-pid lines until EOF, then kill what is still registered."""
    for name in ("SIGINT", "SIGTERM", "SIGBREAK", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                signal.signal(sig, signal.SIG_IGN)
            except (OSError, ValueError):
                pass
    live: Dict[int, float] = {}
    dirs: Dict[str, None] = {}
    for raw in sys.stdin.buffer:
        line = raw.decode("utf-8", "surrogateescape").rstrip("\n")
        if line.startswith("D+"):
            dirs[line[2:]] = None
            continue
        if line.startswith("D-"):
            dirs.pop(line[2:], None)
            continue
        line = line.strip()
        try:
            if line.startswith("+"):
                pid_s, _, ctime = line[1:].partition(" ")
                live[int(pid_s)] = float(ctime or 0.0)
            elif line.startswith("-"):
                live.pop(int(line[1:]), None)
        except ValueError:
            continue
    for pid, ctime in live.items():
        kill_session(pid, ctime)
    _remove_dirs(list(dirs))
    return 0


__all__ = [
    "install",
    "kill_session",
    "reap_all",
    "register",
    "register_dir",
    "registered",
    "unregister",
    "unregister_dir",
]

if __name__ == "__main__" and sys.argv[1:] == ["--guardian"]:
    sys.exit(_guardian_main())
