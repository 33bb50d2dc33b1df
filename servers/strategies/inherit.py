"""inherit: the worker inherits the listening socket's fd (POSIX) or handle (Windows).

* POSIX fork - every fd survives fork(); the worker wraps the same number: socket.socket(fileno=fd)
* POSIX exec - subprocess pass_fds=[fd]; the number is kept, sent as the payload
* Windows exec - the handle is made inheritable and passed with
  STARTUPINFO(lpAttributeList={"handle_list": [h]}); the child wraps socket.socket(fileno=h)
  (multiprocessing's spawn creates its children without handle inheritance, so no spawn here)
"""

import socket
import sys
from typing import Any, Dict, Optional, Tuple

from servers._control import Channel
from servers.strategies._listen import open_listener
from servers.strategies._protocol import Bind, Handoff

name = "inherit"
start_methods: Tuple[str, ...] = ("fork", "exec")


def supported() -> Optional[str]:
    return None


def prepare(bind: Bind) -> socket.socket:
    return open_listener(bind)


def handoff(sock: socket.socket, start_method: str) -> Handoff:
    fd = sock.fileno()
    if start_method == "exec":
        if sys.platform == "win32":
            sock.set_inheritable(True)  # handle_list requires an inheritable handle
        return Handoff(payload={"fd": fd}, inherit=(fd,))
    return Handoff(payload={"fd": fd})


def after_start(sock: socket.socket, handoff: Handoff, pid: int, control: Channel) -> None:
    return None


def acquire(payload: Dict[str, Any], obj: Any, control: Channel) -> socket.socket:
    return socket.socket(fileno=int(payload["fd"]))


__all__ = ["acquire", "after_start", "handoff", "name", "prepare", "start_methods", "supported"]
