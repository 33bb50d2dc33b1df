"""pickle: the socket object is a multiprocessing.Process argument (uvicorn's way).

multiprocessing.reduction decides what really travels:

* fork - nothing is pickled; the object (and its fd) is inherited
* spawn (POSIX) - DupFd: the fd is passed to the new interpreter and keeps its number
* forkserver - DupFd: re-sent to the fork server over SCM_RIGHTS and renumbered
* spawn (Windows) - resource_sharer.DupSocket: a sharer thread in the parent calls share(child_pid)
"""

import socket
from multiprocessing.connection import Connection
from typing import Any, Dict, Optional, Tuple

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


def after_start(sock: socket.socket, handoff: Handoff, pid: int, control: Connection) -> None:
    return None


def acquire(payload: Dict[str, Any], obj: Any, control: Connection) -> socket.socket:
    if not isinstance(obj, socket.socket):
        raise HandoffError("pickle: the Process argument is {}, not a socket".format(type(obj).__name__))
    return obj
