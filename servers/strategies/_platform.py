"""Platform facts the rest of the server asks about, in one place (the platform edge).

* START_METHODS - every start method name the server knows: multiprocessing's three plus "exec"
* available_start_methods() - the ones this OS/Python can use, name -> None or the reason why not
* default_start_method() - mirrors multiprocessing's default (fork on Linux <=3.13, spawn on macOS and
  Windows, forkserver on Linux 3.14+), including a set_start_method() done before the server ran
* natural_strategy(start_method) - the strategy used when --strategy is not given
* set_reuse_address(sock) - SO_REUSEADDR where it means "rebind despite TIME_WAIT" (POSIX only)
* new_event_loop() - the loop a worker runs (always a selector loop on Windows)
* stop_signals() - signals that mean "stop gracefully" to the supervisor and workers
"""

import signal
import socket
import sys
from typing import TYPE_CHECKING, Dict, List, Optional

if TYPE_CHECKING:
    import asyncio

START_METHODS = ("fork", "spawn", "forkserver", "exec")


def available_start_methods() -> Dict[str, Optional[str]]:
    """Start method -> None (usable here) or the one-line reason it is not."""
    import multiprocessing  # noqa: PLC0415 - asked by the supervisor only; a worker does not need it

    usable = set(multiprocessing.get_all_start_methods())
    result: Dict[str, Optional[str]] = {}
    for method in START_METHODS:
        if method == "exec" or method in usable:
            result[method] = None
        else:
            result[method] = "start method {!r} is not available on {} (multiprocessing offers {})".format(
                method, sys.platform, ", ".join(sorted(usable))
            )
    return result


def default_start_method() -> str:
    """What multiprocessing would use here (respects an earlier multiprocessing.set_start_method)."""
    import multiprocessing  # noqa: PLC0415

    method = multiprocessing.get_start_method(allow_none=True)
    if method is None:
        method = multiprocessing.get_context().get_start_method()
    return method


def natural_strategy(start_method: str) -> str:
    """The strategy a server on this platform would use with `start_method` by default."""
    if sys.platform == "win32":
        # Windows sockets cannot simply be inherited by a spawned worker; uvicorn >= 0.12.2 and hypercorn
        # use share()/fromshare() (uvicorn #514, https://github.com/encode/uvicorn/issues/514).
        return "share"
    if start_method in ("fork", "exec"):
        return "inherit"
    # POSIX spawn/forkserver: what uvicorn does - the socket object pickled into the Process arguments.
    return "pickle"


def set_reuse_address(sock: socket.socket) -> None:
    """SO_REUSEADDR on POSIX listeners; never on Windows, where it lets another process hijack the port."""
    if sys.platform != "win32":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)


def new_event_loop() -> "asyncio.AbstractEventLoop":
    """A fresh event loop for a worker (asyncio is imported here: the supervisor never needs it)."""
    import asyncio  # noqa: PLC0415

    if sys.platform == "win32":
        # The Proactor loop registers the shared socket with an I/O completion port and fails with
        # WinError 87 (uvicorn #1317, https://github.com/encode/uvicorn/issues/1317): use the selector loop.
        return asyncio.SelectorEventLoop()
    return asyncio.new_event_loop()


def stop_signals() -> List[signal.Signals]:
    """SIGTERM everywhere, plus SIGBREAK on Windows (what CTRL_BREAK_EVENT delivers)."""
    signals = [signal.SIGTERM]
    if sys.platform == "win32":
        signals.append(signal.SIGBREAK)
    return signals


__all__ = [
    "START_METHODS",
    "available_start_methods",
    "default_start_method",
    "natural_strategy",
    "new_event_loop",
    "set_reuse_address",
    "stop_signals",
]
