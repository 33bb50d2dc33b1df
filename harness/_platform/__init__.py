"""The one harness module with `sys.platform` branches: process groups, stop signals, kills.

Everything else in the harness calls these functions and stays platform-neutral.

* new_session_kwargs() - Popen kwargs that put the server in its own session / process group
  (POSIX: `start_new_session=True`, so pgid == sid == the server's pid; Windows:
  `CREATE_NEW_PROCESS_GROUP`, so CTRL_BREAK_EVENT can be aimed at it)
* STOP_SIGNAL_NAME - "SIGTERM" (POSIX) or "CTRL_BREAK_EVENT" (Windows)
* send_stop(pid, mode) - the graceful stop: mode "group" signals the server's process group, "master"
  only the master. Returns the signal name sent, "" when the process was already gone.
* kill_group(pgid) - SIGKILL a whole process group (POSIX); False on Windows (no such primitive)
* session_members(sid) - pids whose session id is `sid` (POSIX; [] on Windows)
* closed_stdin_argv(argv) - argv that starts `argv` with fd 0 closed, keeping the pid (exec shim)
* unix_listeners(pids) - [(pid, path)] of listening AF_UNIX sockets (Linux /proc), None where unknown
* ExitWaiter(pids) - .wait(timeout) returns when one of pids exits (Linux pidfds) or after a short poll
  interval elsewhere; .close()
* listener_inodes() - inodes of every listening TCP/AF_UNIX socket on the machine (Linux, ~0.1 ms), None
  where unknown
* tcp_listeners(pids, ports=()) - [(pid, family, ip, port)] of listening TCP sockets held by pids (or,
  pids=None, by anyone on `ports`) from Linux sock_diag netlink; None where unknown (use psutil)
* StdinUnsupported - raised when a stdin mode cannot be expressed on this platform
"""

import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Sequence, Set, Tuple

import psutil

if sys.platform == "win32":
    STOP_SIGNAL_NAME = "CTRL_BREAK_EVENT"
else:
    STOP_SIGNAL_NAME = "SIGTERM"


class StdinUnsupported(ValueError):
    """The stdin mode cannot be expressed here; str(exc) is the one-line reason."""


def new_session_kwargs() -> Dict[str, Any]:
    """Popen kwargs for a server that owns its own session / process group."""
    if sys.platform == "win32":
        # CTRL_BREAK_EVENT reaches only a process group created with this flag (CTRL_C is ignored there).
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    # A new session (and so a new group, pgid == pid): a group kill never hits the harness, and a
    # terminal's Ctrl-C (sent to the foreground group) does not reach the server behind our back.
    return {"start_new_session": True}


def send_stop(pid: int, mode: str) -> str:
    """Send the graceful stop signal. mode: "group" (the server's whole group) or "master" (pid only)."""
    if mode not in ("group", "master"):
        raise ValueError(f"stop mode must be 'group' or 'master', not {mode!r}")
    if sys.platform == "win32":
        # Windows has no per-process console signal: CTRL_BREAK_EVENT aimed at a pid is delivered to the
        # process group that pid leads, so "master" and "group" are the same thing here.
        try:
            os.kill(pid, signal.CTRL_BREAK_EVENT)
        except OSError:
            return ""
        return STOP_SIGNAL_NAME
    try:
        if mode == "group":
            os.killpg(pid, signal.SIGTERM)  # pgid == pid: started with start_new_session=True
        else:
            os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return ""
    return STOP_SIGNAL_NAME


def kill_group(pgid: int) -> bool:
    """SIGKILL every member of process group `pgid`; True when the signal was delivered to someone."""
    if sys.platform == "win32":
        return False
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def session_members(sid: int) -> List[int]:
    """Pids in session `sid` (the server's session: it was started with start_new_session=True).

    Catches processes that left the tree (their parent died) but stayed in the session."""
    if sys.platform == "win32":
        return []
    found = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == sid:
                found.append(pid)
        except OSError:
            continue
    return found


def closed_stdin_argv(argv: Sequence[str]) -> List[str]:
    """An argv that runs `argv` with fd 0 closed and the same pid.

    Popen cannot do it by itself: the child always gets *something* on fd 0 (the parent's stdin, a pipe
    or /dev/null), close_fds only closes fds >= 3, and preexec_fn is banned (unsafe with threads). A POSIX
    shell's `exec "$@" 0<&-` closes fd 0 and execs in place: the pid Popen returns *is* the server's pid,
    passed fds survive (the shell opens no fds of its own with -c), and it costs ~1 ms.
    """
    if sys.platform == "win32":
        # No fd 0 to close: a Windows child always gets a standard input handle from CreateProcess when
        # output is redirected, and an exec shim there would change the pid (os.execv spawns anew).
        raise StdinUnsupported("stdin=closed cannot be expressed on Windows without changing the pid")
    return ["/bin/sh", "-c", 'exec "$@" 0<&-', "sh", *argv]


def unix_listeners(pids: Iterable[int]) -> Optional[List[Tuple[int, str]]]:
    """[(pid, path)] of *listening* AF_UNIX sockets held by `pids`; None where this cannot be told.

    psutil reports unix sockets without a listening state; on Linux /proc/net/unix has the
    __SO_ACCEPTCON flag (0x10000), matched to the processes' fds by inode."""
    if not sys.platform.startswith("linux"):
        return None
    listening: Dict[str, str] = {}
    try:
        with open("/proc/net/unix", encoding="utf-8", errors="replace") as fh:
            next(fh, None)
            for line in fh:
                parts = line.split(None, 7)
                if len(parts) < 8:
                    continue  # unbound sockets have no path
                flags, inode, path = int(parts[3], 16), parts[6], parts[7].rstrip("\n")
                if flags & 0x10000:
                    listening[inode] = path
    except OSError:
        return None
    found: List[Tuple[int, str]] = []
    for pid in pids:
        for inode in sorted(_socket_inodes(pid)):
            if inode in listening:
                found.append((pid, listening[inode]))
    return found


def _socket_inodes(pid: int) -> Set[str]:
    inodes: Set[str] = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for name in names:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return inodes


def _diag_listeners(family: int) -> List[Tuple[int, str, int, str]]:
    """[(family, ip, port, inode)] of TCP listeners, from the kernel's sock_diag (NETLINK_INET_DIAG).

    Why not psutil: it reads /proc/net/tcp{,6} (and udp) once per process, and that file lists every
    TIME_WAIT socket of the machine: measured 80 ms per read with ~10k entries while other engineers'
    tests ran, so 400 ms for a 5-process tree. The kernel filters LISTEN sockets itself here (~1 ms)."""
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4)  # type: ignore[attr-defined]
    try:
        nl.settimeout(2.0)
        # inet_diag_req_v2: family, protocol, ext, pad, states (1 << TCP_LISTEN), sockid (48 zero bytes)
        req = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 1 << 10) + b"\0" * 48
        # nlmsghdr: len, type SOCK_DIAG_BY_FAMILY (20), flags NLM_F_REQUEST | NLM_F_DUMP, seq, pid
        nl.send(struct.pack("=IHHII", 16 + len(req), 20, 0x1 | 0x300, 1, 0) + req)
        found: List[Tuple[int, str, int, str]] = []
        while True:
            data = nl.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, mtype = struct.unpack_from("=IH", data, offset)
                if mtype == 3:  # NLMSG_DONE
                    return found
                if mtype == 2 or length < 16:  # NLMSG_ERROR
                    raise OSError("sock_diag error")
                body = offset + 16
                fam = data[body]
                sport = struct.unpack_from("!H", data, body + 4)[0]
                raw = data[body + 8 : body + 8 + (4 if fam == socket.AF_INET else 16)]
                inode = struct.unpack_from("=I", data, body + 68)[0]
                found.append((fam, socket.inet_ntop(fam, raw), sport, str(inode)))
                offset += (length + 3) & ~3
    finally:
        nl.close()


def listener_inodes() -> Optional[FrozenSet[str]]:
    """The inodes of every listening TCP and AF_UNIX socket on this machine (Linux: one sock_diag dump per
    address family plus /proc/net/unix, about 0.1 ms); None where this cannot be told. A cheap "did a
    listener appear?" test before mapping sockets to processes, which costs a walk over /proc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        tcp = _diag_listeners(socket.AF_INET) + _diag_listeners(socket.AF_INET6)
        with open("/proc/net/unix", encoding="utf-8", errors="replace") as fh:
            next(fh, None)
            unix = [
                parts[6]
                for parts in (line.split(None, 7) for line in fh)
                if len(parts) >= 7 and int(parts[3], 16) & 0x10000
            ]
    except (OSError, struct.error, IndexError, ValueError):
        return None
    return frozenset([entry[3] for entry in tcp] + unix)


class ExitWaiter:
    """Sleeps until one of `pids` exits (becomes a zombie or is reaped), or `timeout` passes.

    Linux (3.9+): a pidfd per process, readable once it has exited - an event, for children and
    non-children alike. Elsewhere, or for a pid whose pidfd cannot be opened, a poll interval that doubles
    from 1 ms to 20 ms: there is no exit event for a process that is not our child."""

    def __init__(self, pids: Iterable[int]) -> None:
        self._selector: Optional[selectors.BaseSelector] = None
        self._interval = 0.001
        if sys.platform == "linux" and sys.version_info >= (3, 9):
            selector = selectors.DefaultSelector()
            for pid in pids:
                try:
                    fd = os.pidfd_open(pid)
                except OSError:  # gone already, or no pidfd here (ENOSYS before Linux 5.3)
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


def tcp_listeners(
    pids: Optional[Iterable[int]], ports: Iterable[int] = ()
) -> Optional[List[Tuple[int, int, str, int]]]:
    """[(pid, family, ip, port)] of listening TCP sockets held by `pids`; None where this cannot be told.

    pids=None: held by any process, on one of `ports` (every process's fds are read only when such a
    listener exists)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        listeners = _diag_listeners(socket.AF_INET) + _diag_listeners(socket.AF_INET6)
    except (OSError, struct.error, IndexError):
        return None
    if pids is None:
        wanted = set(ports)
        listeners = [entry for entry in listeners if entry[2] in wanted]
        pids = psutil.pids() if listeners else []
    by_inode: Dict[str, List[Tuple[int, str, int]]] = {}
    for fam, ip, port, inode in listeners:
        by_inode.setdefault(inode, []).append((fam, ip, port))
    found: List[Tuple[int, int, str, int]] = []
    for pid in pids:
        for inode in sorted(_socket_inodes(pid)):
            for fam, ip, port in by_inode.get(inode, ()):
                found.append((pid, fam, ip, port))
    return found


__all__ = [
    "STOP_SIGNAL_NAME",
    "ExitWaiter",
    "StdinUnsupported",
    "closed_stdin_argv",
    "kill_group",
    "listener_inodes",
    "new_session_kwargs",
    "send_stop",
    "session_members",
    "tcp_listeners",
    "unix_listeners",
]
