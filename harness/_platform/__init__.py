"""The harness's OS branches, in one place (psutil's layout): this facade picks _posix or _windows, and
on Linux _linux for what /proc and sock_diag can tell. Everything else in the harness calls these names and
stays platform-neutral.

* new_session_kwargs() - Popen kwargs that put a process in its own session / process group
  (POSIX: `start_new_session=True`, so pgid == sid == its pid; Windows: `CREATE_NEW_PROCESS_GROUP`, so
  CTRL_BREAK_EVENT can be aimed at it)
* STOP_SIGNAL_NAME - "SIGTERM" (POSIX) or "CTRL_BREAK_EVENT" (Windows)
* send_stop(pid, mode) - the graceful stop: mode "group" signals the server's process group, "master"
  only the master. Returns the signal name sent, "" when the process was already gone.
* send_signal(pid, name) - SIG<name> to that process alone ("" when gone); signal_unavailable(name) - ""
  or the one-line reason SIG<name> cannot be sent here (Windows: none can)
* open_handles(proc) - a psutil.Process's open fds (POSIX num_fds) or handles (Windows num_handles)
* kill_group(pgid) - SIGKILL a whole process group (POSIX); False on Windows (no such primitive)
* kill_tree(popen) - kill a process started with new_session_kwargs() and what it started
* session_members(sid) - pids whose session id is `sid` (POSIX; [] on Windows)
* closed_stdin_argv(argv) - argv that starts `argv` with fd 0 closed, keeping the pid (exec shim);
  StdinUnsupported where that cannot be expressed
* FD_PASSING - sockets reach a child as numbered fds (POSIX); HAS_PY_LAUNCHER - the `py` launcher exists
* user_cache_root(), exe(name), venv_python(venv) - where caches, executables and a venv's python live
* unix_listeners(pids) - [(pid, path)] of listening AF_UNIX sockets (Linux /proc), None where unknown
* listener_inodes() - inodes of every listening TCP/AF_UNIX socket on the machine (Linux, ~0.1 ms), None
  where unknown
* tcp_listeners(pids, ports=()) - [(pid, family, ip, port)] of listening TCP sockets held by pids (or,
  pids=None, by anyone on `ports`) from Linux sock_diag netlink; None where unknown (use psutil)
* socket_inodes(pid), established_inodes(port) - Linux: the socket inodes a process holds, and those of
  the established connections on a local port (so: connections per worker); empty sets elsewhere
* set_subreaper(on), is_subreaper() - Linux: PR_SET_CHILD_SUBREAPER, so descendants that detach (setsid +
  double fork) are reparented to this process and stay findable as its children; False where there is no
  such thing (macOS, Windows: there only the session / process-group sweep and the tree snapshots find
  them)
* ExitWaiter(pids) - .wait(timeout) returns when one of pids exits (Linux pidfds) or after a short poll
  interval elsewhere; .close()
"""

import os
import selectors
import sys
import time
from typing import FrozenSet, Iterable, List, Optional, Set, Tuple

if sys.platform == "win32":
    from harness._platform._windows import (
        FD_PASSING,
        HAS_PY_LAUNCHER,
        STOP_SIGNAL_NAME,
        StdinUnsupported,
        closed_stdin_argv,
        exe,
        kill_group,
        kill_tree,
        new_session_kwargs,
        open_handles,
        send_signal,
        send_stop,
        session_members,
        signal_unavailable,
        user_cache_root,
        venv_python,
    )
else:
    from harness._platform._posix import (
        FD_PASSING,
        HAS_PY_LAUNCHER,
        STOP_SIGNAL_NAME,
        StdinUnsupported,
        closed_stdin_argv,
        exe,
        kill_group,
        kill_tree,
        new_session_kwargs,
        open_handles,
        send_signal,
        send_stop,
        session_members,
        signal_unavailable,
        user_cache_root,
        venv_python,
    )

if sys.platform.startswith("linux"):
    from harness._platform._linux import (
        established_inodes,
        is_subreaper,
        listener_inodes,
        pidfd_open,
        set_subreaper,
        socket_inodes,
        tcp_listeners,
        unix_listeners,
    )
else:

    def socket_inodes(pid: int) -> Set[str]:
        return set()  # no /proc/PID/fd here

    def established_inodes(port: int) -> Set[str]:
        return set()

    def unix_listeners(pids: Iterable[int]) -> Optional[List[Tuple[int, str]]]:
        return None  # no /proc/net/unix: the callers use psutil

    def listener_inodes() -> Optional[FrozenSet[str]]:
        return None

    def tcp_listeners(
        pids: Optional[Iterable[int]], ports: Iterable[int] = ()
    ) -> Optional[List[Tuple[int, int, str, int]]]:
        return None

    def pidfd_open(pid: int) -> int:
        raise OSError("no pidfds here")

    def set_subreaper(on: bool) -> bool:
        return False  # no PR_SET_CHILD_SUBREAPER outside Linux

    def is_subreaper() -> bool:
        return False


class ExitWaiter:
    """Sleeps until one of `pids` exits (becomes a zombie or is reaped), or `timeout` passes.

    Linux (3.9+): a pidfd per process, readable once it has exited - an event, for children and
    non-children alike. Elsewhere, or for a pid whose pidfd cannot be opened, a poll interval that doubles
    from 1 ms to 20 ms: there is no exit event for a process that is not our child."""

    def __init__(self, pids: Iterable[int]) -> None:
        self._selector: Optional[selectors.BaseSelector] = None
        self._interval = 0.001
        selector = selectors.DefaultSelector()
        for pid in pids:
            try:
                fd = pidfd_open(pid)
            except OSError:  # gone already, or no pidfd here (ENOSYS before Linux 5.3, not Linux)
                continue
            selector.register(fd, selectors.EVENT_READ, pid)
        if selector.get_map():
            self._selector = selector
        else:
            selector.close()

    def wait(self, timeout: float) -> None:
        timeout = max(0.0, timeout)
        selector = self._selector
        if selector is not None and selector.get_map():
            for key, _ in selector.select(timeout):
                selector.unregister(key.fd)
                os.close(key.fd)
            return
        time.sleep(min(self._interval, timeout))  # a poll: no exit event exists here
        self._interval = min(self._interval * 2, 0.02)

    def close(self) -> None:
        selector, self._selector = self._selector, None
        if selector is not None:
            for key in list(selector.get_map().values()):
                os.close(key.fd)
            selector.close()


__all__ = [
    "FD_PASSING",
    "HAS_PY_LAUNCHER",
    "STOP_SIGNAL_NAME",
    "ExitWaiter",
    "StdinUnsupported",
    "closed_stdin_argv",
    "established_inodes",
    "exe",
    "is_subreaper",
    "kill_group",
    "kill_tree",
    "listener_inodes",
    "new_session_kwargs",
    "open_handles",
    "send_signal",
    "send_stop",
    "session_members",
    "set_subreaper",
    "signal_unavailable",
    "socket_inodes",
    "tcp_listeners",
    "unix_listeners",
    "user_cache_root",
    "venv_python",
]
