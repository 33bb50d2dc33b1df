"""scm-rights (POSIX): the fd travels to an exec'd worker as SCM_RIGHTS ancillary data.

The supervisor makes a dedicated socketpair per worker, passes one end to the child (pass_fds), and once
the child exists sends the listener's fd over the other end with one byte of payload. The child receives
a *new* fd number for the same open socket. socket.send_fds/recv_fds are 3.9+; on 3.8
multiprocessing.reduction.sendfds/recvfds do the same.
"""

import socket
import sys
from typing import Any, Dict, List, Optional, Tuple

from servers._control import Channel
from servers.strategies._listen import open_listener
from servers.strategies._protocol import Bind, Handoff, HandoffError

name = "scm-rights"
start_methods: Tuple[str, ...] = ("exec",)

#: how long a worker waits for the fd
RECEIVE_TIMEOUT = 30.0


def supported() -> Optional[str]:
    if sys.platform == "win32":
        return "SCM_RIGHTS needs AF_UNIX ancillary data, which Windows does not have"
    return None


def prepare(bind: Bind) -> socket.socket:
    return open_listener(bind)


def handoff(sock: socket.socket, start_method: str) -> Handoff:
    ours, theirs = socket.socketpair()
    return Handoff(
        payload={"channel": theirs.fileno()},
        inherit=(theirs.fileno(),),
        closables=[ours, theirs],
        private={"channel": ours},
    )


def _send_fds(chan: socket.socket, fds: List[int]) -> None:
    if sys.platform != "win32":
        if sys.version_info >= (3, 9):
            socket.send_fds(chan, [b"L"], fds)
        else:
            from multiprocessing import reduction  # noqa: PLC0415 - 3.8 only: not on every import path

            reduction.sendfds(chan, fds)


def _recv_fd(chan: socket.socket) -> int:
    if sys.platform != "win32":
        if sys.version_info >= (3, 9):
            _msg, fds, _flags, _addr = socket.recv_fds(chan, 16, 1)
        else:
            from multiprocessing import reduction  # noqa: PLC0415

            fds = reduction.recvfds(chan, 1)
        if not fds:
            raise HandoffError("scm-rights: the supervisor closed the channel without sending an fd")
        return int(fds[0])
    raise HandoffError("scm-rights: not available on Windows")


def after_start(sock: socket.socket, handoff: Handoff, pid: int, control: Channel) -> None:
    _send_fds(handoff.private["channel"], [sock.fileno()])


def acquire(payload: Dict[str, Any], obj: Any, control: Channel) -> socket.socket:
    chan = socket.socket(fileno=int(payload["channel"]))
    try:
        chan.settimeout(RECEIVE_TIMEOUT)
        fd = _recv_fd(chan)
    finally:
        chan.close()
    return socket.socket(fileno=fd)


__all__ = ["acquire", "after_start", "handoff", "name", "prepare", "start_methods", "supported"]
