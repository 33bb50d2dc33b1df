"""Opening the supervisor's socket: TCP, AF_UNIX (with stale-file handling) or an inherited fd.

* open_tcp(host, port, backlog, reuseport=False, listen=True) - bind (and listen)
* open_uds(path, backlog) - refuse a path in use or not a socket; replace a stale socket file
* adopt_fd(fd, backlog) - take over a bound/listening socket passed as fd N (moved off N so that
  fds 0-2 stay what they should be), listen() on it
* describe(sock, bind) - the `bound` event's fields
* UdsFile - remembers the inode it created so `remove()` never deletes someone else's file
* BindError - str(exc) is one line; the supervisor maps it to BIND_FAILURE
"""

import errno
import os
import socket
import stat
from typing import Any, Dict, Optional

from servers.strategies._platform import set_reuse_address
from servers.strategies._protocol import Bind


class BindError(Exception):
    """The address could not be bound or the fd is not a usable socket; str(exc) is one line."""


def _family_for(host: str, port: int) -> "socket.AddressFamily":
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(f"cannot resolve host {host!r}: {exc}") from exc
    return infos[0][0]


def open_tcp(bind: Bind, *, reuseport: bool = False, listen: bool = True) -> socket.socket:
    """A TCP socket bound to (bind.host, bind.port); listening unless listen=False."""
    family = _family_for(bind.host, bind.port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        set_reuse_address(sock)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_REUSEPORT"), 1)  # noqa: B009
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((bind.host, bind.port))
        if listen:
            sock.listen(bind.backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot bind {bind.host}:{bind.port}: {exc}") from exc
    return sock


def _uds_in_use(path: str) -> bool:
    family = getattr(socket, "AF_UNIX")  # noqa: B009 - absent on old Windows builds
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError as exc:
        return exc.errno not in (errno.ECONNREFUSED, errno.ENOENT)
    finally:
        probe.close()
    return True


class UdsFile:
    """The socket file this server created; remove() deletes it only if it is still ours."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.ino = os.stat(path).st_ino

    def remove(self) -> None:
        try:
            if os.stat(self.path).st_ino == self.ino:
                os.unlink(self.path)
        except OSError:
            pass


def open_uds(bind: Bind) -> socket.socket:
    """An AF_UNIX listener at bind.uds. A stale socket file (nobody accepts) is replaced; a live one,
    or a path that is not a socket, is refused."""
    path = bind.uds
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise BindError(f"cannot use {path}: {exc}") from exc
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise BindError(f"cannot bind {path}: exists and is not a socket")
        if _uds_in_use(path):
            raise BindError(f"cannot bind {path}: another process is listening there")
        try:
            os.unlink(path)
        except OSError as exc:
            raise BindError(f"cannot remove stale socket {path}: {exc}") from exc
    sock = socket.socket(getattr(socket, "AF_UNIX"), socket.SOCK_STREAM)  # noqa: B009
    try:
        sock.bind(path)
        sock.listen(bind.backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot bind {path}: {exc}") from exc
    return sock


def adopt_fd(bind: Bind) -> socket.socket:
    """Take over the socket passed as fd `bind.fd`: dup it off its number, listen() on it."""
    fd = bind.fd
    assert fd is not None
    try:
        new_fd = os.dup(fd)
    except OSError as exc:
        raise BindError(f"--fd {fd}: {exc}") from exc
    try:
        sock = socket.socket(fileno=new_fd)
    except OSError as exc:
        os.close(new_fd)
        raise BindError(f"--fd {fd}: not a socket: {exc}") from exc
    try:
        if sock.type != socket.SOCK_STREAM:
            raise BindError(f"--fd {fd}: not a stream socket ({sock.type})")
        sock.listen(bind.backlog)
    except BindError:
        sock.close()
        raise
    except OSError as exc:
        sock.close()
        raise BindError(f"--fd {fd}: cannot listen: {exc}") from exc
    # fd N is no longer needed; 0-2 get /dev/null so stdio never aliases the listener.
    if fd <= 2:
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, fd)
        os.close(devnull)
    else:
        os.close(fd)
    return sock


def open_listener(bind: Bind) -> socket.socket:
    """The listening socket for `bind` (tcp, uds or fd)."""
    if bind.fd is not None:
        return adopt_fd(bind)
    if bind.uds:
        return open_uds(bind)
    return open_tcp(bind)


def describe(sock: socket.socket, bind: Bind) -> Dict[str, Any]:
    """{address, port, family, path, fd} of the socket, for the `bound` event."""
    family = socket.AddressFamily(sock.family).name
    name: Any = sock.getsockname()
    address: str
    port: Optional[int] = None
    path: Optional[str] = None
    if isinstance(name, tuple):
        address, port = str(name[0]), int(name[1])
    else:
        path = name.decode() if isinstance(name, bytes) else str(name)
        address = path
    return {"address": address, "port": port, "family": family, "path": path, "fd": bind.fd}


__all__ = ["BindError", "UdsFile", "adopt_fd", "describe", "open_listener", "open_tcp", "open_uds"]
