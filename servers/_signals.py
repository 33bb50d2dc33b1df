"""The supervisor's signal plumbing: handlers only enqueue; a wakeup socketpair wakes the wait loop.

SignalQueue installs handlers for SIGINT, the platform's stop signals (SIGTERM; SIGBREAK on Windows) and,
where the OS has them, the control signals the supervisor acts on (CONTROL_SIGNALS: HUP, USR1, TTIN,
TTOU, WINCH, QUIT), points signal.set_wakeup_fd at a non-blocking socketpair (sockets work on Windows
too), and registers both ends parent_only so forked workers close them. close() restores everything.
"""

import signal
import socket
from types import FrameType
from typing import Any, Dict, List, Optional

from servers import _control
from servers.strategies._platform import stop_signals

#: signals the supervisor handles beyond the stop signals (servers._supervisor); absent ones are skipped
CONTROL_SIGNALS = ("SIGHUP", "SIGUSR1", "SIGTTIN", "SIGTTOU", "SIGWINCH", "SIGQUIT")


def _handled() -> List[int]:
    out = [int(signal.SIGINT), *(int(s) for s in stop_signals())]
    for name in CONTROL_SIGNALS:
        num = getattr(signal, name, None)
        if num is not None and int(num) not in out:
            out.append(int(num))
    return out


class SignalQueue:
    """Pending signal numbers, in arrival order; `reader` is waitable."""

    def __init__(self) -> None:
        self.reader, self._writer = socket.socketpair()
        self.reader.setblocking(False)
        self._writer.setblocking(False)
        _control.parent_only(self.reader)
        _control.parent_only(self._writer)
        self._pending: List[int] = []
        self._previous: Dict[int, Any] = {}
        self._old_wakeup = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for sig in _handled():
            self._previous[sig] = signal.signal(sig, self._handler)

    def _handler(self, signum: int, frame: Optional[FrameType]) -> None:
        self._pending.append(signum)  # nothing else: the loop does the work

    def pop_all(self) -> List[int]:
        """Take the pending signals (and drain the wakeup bytes)."""
        try:
            while self.reader.recv(512):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            pass
        pending, self._pending = self._pending, []
        return pending

    def close(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        signal.set_wakeup_fd(self._old_wakeup)
        for sock in (self.reader, self._writer):
            _control.forget(sock)
            sock.close()


__all__ = ["CONTROL_SIGNALS", "SignalQueue"]
