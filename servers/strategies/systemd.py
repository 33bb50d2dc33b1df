"""systemd (POSIX): socket activation as sd_listen_fds() expects it - gunicorn's way.

The exec'd worker must see LISTEN_FDS=1, LISTEN_PID=<its own pid> and the socket as fd 3. The pid is
only known after fork, and preexec_fn is unsafe, so the supervisor execs a tiny `python -S -c` shim
that moves the control fd off 3 if it landed there, dup2()s the listener to 3, sets the variables with
its own pid and os.execv()s the real worker - same pid. The worker checks LISTEN_PID == getpid(), takes
fd 3 and unsets the variables (so its own children would not take them).
"""

import os
import socket
import sys
from typing import Any, Dict, List, Optional, Tuple

from servers._control import Channel
from servers.strategies._listen import open_listener
from servers.strategies._protocol import Bind, Handoff, HandoffError

name = "systemd"
start_methods: Tuple[str, ...] = ("exec",)

SD_LISTEN_FDS_START = 3

# argv: shim LISTEN_FD -- WORKER_ARGV...; WORKER_ARGV holds "--control N", renumbered here.
_SHIM = """\
import fcntl, os, sys
lfd = int(sys.argv[1]); argv = sys.argv[3:]
i = argv.index("--control") + 1; cfd = int(argv[i])
if cfd == 3:
    cfd = fcntl.fcntl(3, fcntl.F_DUPFD, 4); os.close(3); argv[i] = str(cfd)
if lfd != 3:
    os.dup2(lfd, 3); os.close(lfd)
os.set_inheritable(3, True); os.set_inheritable(cfd, True)
env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execve(argv[0], argv, env)
"""


def supported() -> Optional[str]:
    if sys.platform == "win32":
        return "systemd socket activation passes fds by number (LISTEN_FDS), which Windows does not have"
    return None


def prepare(bind: Bind) -> socket.socket:
    return open_listener(bind)


def _wrapper(fd: int) -> Any:
    def wrap(argv: List[str]) -> List[str]:
        return [argv[0], "-S", "-c", _SHIM, str(fd), "--", *argv]

    return wrap


def handoff(sock: socket.socket, start_method: str) -> Handoff:
    fd = sock.fileno()
    return Handoff(payload={}, inherit=(fd,), wrap_argv=_wrapper(fd))


def after_start(sock: socket.socket, handoff: Handoff, pid: int, control: Channel) -> None:
    return None


def acquire(payload: Dict[str, Any], obj: Any, control: Channel) -> socket.socket:
    listen_pid = os.environ.pop("LISTEN_PID", "")
    listen_fds = os.environ.pop("LISTEN_FDS", "")
    os.environ.pop("LISTEN_FDNAMES", None)
    if listen_pid != str(os.getpid()):
        raise HandoffError(f"systemd: LISTEN_PID={listen_pid!r} is not this process ({os.getpid()})")
    try:
        count = int(listen_fds)
    except ValueError:
        count = 0
    if count < 1:
        raise HandoffError(f"systemd: LISTEN_FDS={listen_fds!r}, expected at least 1")
    return socket.socket(fileno=SD_LISTEN_FDS_START)


__all__ = ["acquire", "after_start", "handoff", "name", "prepare", "start_methods", "supported"]
