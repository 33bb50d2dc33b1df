"""duplicate-handle (Windows): _winapi.DuplicateHandle of the socket handle into the worker process.

The supervisor opens the started worker with PROCESS_DUP_HANDLE, duplicates its socket handle into it
and sends the new handle value as {"type": "handle"}; the worker wraps it with socket.socket(fileno=h).
Microsoft documents this as unsupported for sockets ("the duplicate handle may not be recognized by
Winsock at the target process", WSADuplicateSocket docs) and no error is returned at duplication time:
this is the deliberate negative case, implemented faithfully so the harness records what happens.
"""

import socket
import sys
from typing import Any, Dict, Optional, Tuple

from servers import _control
from servers._control import Channel
from servers.strategies._listen import open_listener
from servers.strategies._protocol import Bind, Handoff

name = "duplicate-handle"
start_methods: Tuple[str, ...] = ("spawn", "exec")

#: how long a worker waits for the handle value
RECEIVE_TIMEOUT = 30.0


def supported() -> Optional[str]:
    if sys.platform != "win32":
        return f"DuplicateHandle is a Windows-only Win32 API; not available on {sys.platform}"
    return None


def prepare(bind: Bind) -> socket.socket:
    return open_listener(bind)


def handoff(sock: socket.socket, start_method: str) -> Handoff:
    return Handoff(payload={"await": _control.HANDLE})


def after_start(sock: socket.socket, handoff: Handoff, pid: int, control: Channel) -> None:
    if sys.platform == "win32":
        import _winapi  # noqa: PLC0415 - exists only on Windows

        process = _winapi.OpenProcess(_winapi.PROCESS_DUP_HANDLE, False, pid)
        try:
            value = _winapi.DuplicateHandle(
                _winapi.GetCurrentProcess(),
                sock.fileno(),
                process,
                0,
                False,
                _winapi.DUPLICATE_SAME_ACCESS,
            )
        finally:
            _winapi.CloseHandle(process)
        _control.send(control, _control.HANDLE, value=int(value))


def acquire(payload: Dict[str, Any], obj: Any, control: Channel) -> socket.socket:
    message = _control.recv_type(control, _control.HANDLE, RECEIVE_TIMEOUT)
    return socket.socket(fileno=int(message["value"]))


__all__ = ["acquire", "after_start", "handoff", "name", "prepare", "start_methods", "supported"]
