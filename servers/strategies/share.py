"""share (Windows): socket.share(child_pid) in the supervisor, socket.fromshare() in the worker.

WSADuplicateSocket needs the target pid, so the worker is started first (spawn or exec) and waits on the
control channel; the supervisor then calls sock.share(pid) and sends the bytes as {"type": "share"}.
The bytes are good for that one pid, once. This is what uvicorn >= 0.12.2 and hypercorn do (the fix
for uvicorn #514, https://github.com/encode/uvicorn/issues/514).
"""

import socket
import sys
from typing import Any, Dict, Optional, Tuple

from servers import _control
from servers._control import Channel
from servers.strategies._listen import open_listener
from servers.strategies._protocol import Bind, Handoff, HandoffError

name = "share"
start_methods: Tuple[str, ...] = ("spawn", "exec")

#: how long a worker waits for the share bytes
RECEIVE_TIMEOUT = 30.0


def supported() -> Optional[str]:
    if sys.platform != "win32":
        return f"socket.share() is Windows-only (WSADuplicateSocket); not available on {sys.platform}"
    return None


def prepare(bind: Bind) -> socket.socket:
    return open_listener(bind)


def handoff(sock: socket.socket, start_method: str) -> Handoff:
    return Handoff(payload={"await": _control.SHARE})


def after_start(sock: socket.socket, handoff: Handoff, pid: int, control: Channel) -> None:
    if sys.platform == "win32":
        data = sock.share(pid)
        _control.send(control, _control.SHARE, data=data.hex())


def acquire(payload: Dict[str, Any], obj: Any, control: Channel) -> socket.socket:
    message = _control.recv_type(control, _control.SHARE, RECEIVE_TIMEOUT)
    if sys.platform == "win32":
        return socket.fromshare(bytes.fromhex(str(message["data"])))
    raise HandoffError("share: socket.fromshare() is Windows-only")


__all__ = ["acquire", "after_start", "handoff", "name", "prepare", "start_methods", "supported"]
