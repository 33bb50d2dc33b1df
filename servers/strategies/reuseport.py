"""reuseport: every worker binds its own SO_REUSEPORT socket on the same address.

The supervisor reserves the address with a bound, *not listening* SO_REUSEPORT socket (it takes no
connections; with port 0 it is what fixes the port number). Linux >= 3.9 balances new connections
across the workers' sockets by a 4-tuple hash; macOS/BSD accept the binds but do not balance. Windows
has no SO_REUSEPORT. A UDS cannot use it (EOPNOTSUPP on current Linux), which surfaces as BIND_FAILURE.
"""

import socket
from typing import Any, Dict, Optional, Tuple

from servers import _control
from servers._control import Channel
from servers.strategies._listen import open_tcp
from servers.strategies._protocol import Bind, Handoff

name = "reuseport"
start_methods: Tuple[str, ...] = ("fork", "spawn", "forkserver", "exec")


def supported() -> Optional[str]:
    if not hasattr(socket, "SO_REUSEPORT"):
        return "socket.SO_REUSEPORT does not exist on this platform"
    return None


def prepare(bind: Bind) -> socket.socket:
    if bind.uds:
        # The reservation below fails the same way the workers would; say it plainly.
        reservation = socket.socket(getattr(socket, "AF_UNIX"), socket.SOCK_STREAM)  # noqa: B009
        try:
            reservation.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_REUSEPORT"), 1)  # noqa: B009
        finally:
            reservation.close()
    # Forked workers close their inherited copy: each binds its own socket.
    return _control.parent_only(open_tcp(bind, reuseport=True, listen=False))


def handoff(sock: socket.socket, start_method: str) -> Handoff:
    host, port = sock.getsockname()[:2]
    return Handoff(payload={"host": host, "port": port, "backlog": 2048})


def after_start(sock: socket.socket, handoff: Handoff, pid: int, control: Channel) -> None:
    return None


def acquire(payload: Dict[str, Any], obj: Any, control: Channel) -> socket.socket:
    bind = Bind(host=str(payload["host"]), port=int(payload["port"]), backlog=int(payload["backlog"]))
    return open_tcp(bind, reuseport=True, listen=True)


__all__ = ["acquire", "after_start", "handoff", "name", "prepare", "start_methods", "supported"]
