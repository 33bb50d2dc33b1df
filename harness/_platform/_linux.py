"""Linux: what /proc and the kernel's sock_diag netlink tell about listening sockets, and pidfds.

Imported by the facade (harness._platform) on Linux only; elsewhere the facade answers None ("cannot be
told here") and the callers fall back to psutil.
"""

import functools
import os
import socket
import struct
import sys
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

import psutil

assert sys.platform.startswith("linux")  # mypy: this module is Linux's


def unix_listeners(pids: Iterable[int]) -> Optional[List[Tuple[int, str]]]:
    """[(pid, path)] of *listening* AF_UNIX sockets held by `pids`; None where this cannot be told.

    psutil reports unix sockets without a listening state; /proc/net/unix has the
    __SO_ACCEPTCON flag (0x10000), matched to the processes' fds by inode."""
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
        for inode in sorted(socket_inodes(pid)):
            if inode in listening:
                found.append((pid, listening[inode]))
    return found


def socket_inodes(pid: int) -> Set[str]:
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


#: TCP states as sock_diag's bit mask wants them (1 << TCP_ESTABLISHED, 1 << TCP_LISTEN)
ESTABLISHED, LISTEN = 1 << 1, 1 << 10


def diag_listeners(family: int) -> List[Tuple[int, str, int, str]]:
    """[(family, ip, port, inode)] of TCP listeners (diag_sockets in the LISTEN state)."""
    return diag_sockets(family, LISTEN)


def established_inodes(port: int) -> Set[str]:
    """Inodes of the established IPv4/IPv6 TCP sockets whose local port is `port` (a server's side of its
    connections): with socket_inodes(pid), how many connections each worker holds now."""
    found = diag_sockets(socket.AF_INET, ESTABLISHED) + diag_sockets(socket.AF_INET6, ESTABLISHED)
    return {inode for _fam, _ip, sport, inode in found if sport == port}


def diag_sockets(family: int, states: int) -> List[Tuple[int, str, int, str]]:
    """[(family, ip, port, inode)] of TCP sockets in `states`, from sock_diag (NETLINK_INET_DIAG).

    Why not psutil: it reads /proc/net/tcp{,6} (and udp) once per process, and that file lists every
    TIME_WAIT socket of the machine: measured 80 ms per read with ~10k entries while other engineers'
    tests ran, so 400 ms for a 5-process tree. The kernel filters LISTEN sockets itself here (~1 ms)."""
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4)  # type: ignore[attr-defined]
    try:
        nl.settimeout(2.0)
        # inet_diag_req_v2: family, protocol, ext, pad, states (a bit mask), sockid (48 zero bytes)
        req = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, states) + b"\0" * 48
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
    try:
        tcp = diag_listeners(socket.AF_INET) + diag_listeners(socket.AF_INET6)
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


def tcp_listeners(
    pids: Optional[Iterable[int]], ports: Iterable[int] = ()
) -> Optional[List[Tuple[int, int, str, int]]]:
    """[(pid, family, ip, port)] of listening TCP sockets held by `pids`; None where this cannot be told.

    pids=None: held by any process, on one of `ports` (every process's fds are read only when such a
    listener exists)."""
    try:
        listeners = diag_listeners(socket.AF_INET) + diag_listeners(socket.AF_INET6)
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
        for inode in sorted(socket_inodes(pid)):
            for fam, ip, port in by_inode.get(inode, ()):
                found.append((pid, fam, ip, port))
    return found


def pidfd_open(pid: int) -> int:
    """A pidfd for `pid` (readable once it has exited); OSError when gone or unsupported (before 5.3)."""
    if sys.version_info < (3, 9):
        raise OSError("os.pidfd_open needs Python 3.9")
    return os.pidfd_open(pid)


__all__ = [
    "diag_listeners",
    "diag_sockets",
    "established_inodes",
    "is_subreaper",
    "listener_inodes",
    "pidfd_open",
    "set_subreaper",
    "socket_inodes",
    "tcp_listeners",
    "unix_listeners",
]


#: prctl(2) options: orphaned descendants are reparented to this process instead of init (Linux 3.4+)
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    """This process's C library, loaded once (dlopen(NULL): no ldconfig subprocess as find_library runs)."""
    import ctypes  # noqa: PLC0415 - only here

    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def set_subreaper(on: bool) -> bool:
    """Make this process the reaper of its orphaned descendants (on) or stop being it (off): a server's
    process that calls setsid() and double-forks away from its session is reparented here, not to init,
    so the harness still finds it (as its child) and ends it. True when the kernel took it."""
    import ctypes  # noqa: PLC0415 - only here

    libc = _libc()
    try:
        return (
            libc is not None
            and int(libc.prctl(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(int(on)), 0, 0, 0)) == 0
        )
    except AttributeError:
        return False


def is_subreaper() -> bool:
    """Whether this process is a child subreaper now (PR_GET_CHILD_SUBREAPER)."""
    import ctypes  # noqa: PLC0415 - only here

    libc = _libc()
    flag = ctypes.c_int(0)
    try:
        ok = libc is not None and int(libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0)) == 0
    except AttributeError:
        return False
    return ok and flag.value != 0
