"""pickle: the socket object is a multiprocessing.Process argument (uvicorn's way).

multiprocessing.reduction decides what really travels:

* fork - nothing is pickled; the object (and its fd) is inherited
* spawn (POSIX) - DupFd: the fd is passed to the new interpreter and keeps its number
* forkserver - DupFd: re-sent to the fork server over SCM_RIGHTS and renumbered
* spawn (Windows) - resource_sharer.DupSocket: a sharer thread in the parent calls share(child_pid)
"""

import socket
from typing import Any, Dict, Optional, Tuple

from servers._control import Channel
from servers.strategies._listen import open_listener
from servers.strategies._protocol import Bind, Handoff, HandoffError

name = "pickle"
start_methods: Tuple[str, ...] = ("fork", "spawn", "forkserver")


def supported() -> Optional[str]:
    return None


def prepare(bind: Bind) -> socket.socket:
    return open_listener(bind)


def handoff(sock: socket.socket, start_method: str) -> Handoff:
    return Handoff(obj=sock)


def after_start(sock: socket.socket, handoff: Handoff, pid: int, control: Channel) -> None:
    return None


def acquire(payload: Dict[str, Any], obj: Any, control: Channel) -> socket.socket:
    if not isinstance(obj, socket.socket):
        raise HandoffError(f"pickle: the Process argument is {type(obj).__name__}, not a socket")
    return obj


__all__ = ["acquire", "after_start", "handoff", "name", "prepare", "start_methods", "supported"]
