"""The one interface every socket-handoff strategy implements, and the data it passes around.

A strategy answers three questions:

* supervisor, once: which socket does the supervisor hold? (`prepare`: normally the listening socket;
  `reuseport` holds a bound, not listening reservation instead)
* supervisor, per worker: what does this worker get? (`handoff` before the worker starts, `after_start`
  once its pid exists - `share` and `duplicate-handle` need the pid, `scm-rights` sends the fd then)
* worker: turn what arrived into a listening socket (`acquire`)

* Strategy - the Protocol (one module per strategy, registered in servers.strategies.STRATEGIES)
* Bind - where to listen, as the command line asked
* Handoff - one worker's share of the socket: a JSON payload, fds/handles an exec'd child must inherit,
  an object for a multiprocessing child, an argv wrapper, supervisor-side objects to close after start
* HandoffError - the worker could not obtain a usable socket; str(exc) is one line
"""

import dataclasses
import socket
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

from servers._control import Channel


class HandoffError(Exception):
    """The worker could not obtain its socket; str(exc) is the one-line reason."""


@dataclasses.dataclass(frozen=True)
class Bind:
    """Where to listen: exactly one of tcp (host, port), uds (path) or fd is meant.

    * host / port - TCP (port 0 = the OS picks; the real port is read back from the socket)
    * uds - AF_UNIX path ("" = not a UDS)
    * fd - an already bound or listening socket the caller passed (None = not an fd)
    * backlog - listen() backlog
    """

    host: str = "127.0.0.1"
    port: int = 0
    uds: str = ""
    fd: Optional[int] = None
    backlog: int = 2048


@dataclasses.dataclass
class Handoff:
    """What one worker gets.

    * payload - JSON-able; reaches the worker for every start method
    * inherit - exec only: fds (POSIX) / handles (Windows) the child must inherit
    * obj - multiprocessing only: an object passed as a Process argument (pickled under spawn/forkserver)
    * wrap_argv - exec only: rewrites the child's argv (the systemd shim); the argv holds
      "--control N" which the wrapper may renumber
    * closables - supervisor-side objects closed once the worker started (or failed to)
    * private - supervisor-side state for after_start
    """

    payload: Dict[str, Any] = dataclasses.field(default_factory=dict)
    inherit: Tuple[int, ...] = ()
    obj: Any = None
    wrap_argv: Optional[Callable[[List[str]], List[str]]] = None
    closables: List[Any] = dataclasses.field(default_factory=list)
    private: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def close(self) -> None:
        """Close the supervisor-side objects (idempotent)."""
        while self.closables:
            obj = self.closables.pop()
            try:
                obj.close()
            except OSError:
                pass


class Strategy(Protocol):
    """One way of getting the listening socket into worker processes."""

    #: the --strategy name
    name: str
    #: every start method this strategy can work with on the platforms where it is available
    start_methods: Tuple[str, ...]

    def supported(self) -> Optional[str]:
        """None when the strategy is available on this OS/Python, else the one-line reason why not."""
        ...

    def prepare(self, bind: Bind) -> socket.socket:
        """Supervisor: the socket it holds for the server's life. Raises OSError (-> BIND_FAILURE)."""
        ...

    def handoff(self, sock: socket.socket, start_method: str) -> Handoff:
        """Supervisor: what the next worker gets, before it is started."""
        ...

    def after_start(self, sock: socket.socket, handoff: Handoff, pid: int, control: Channel) -> None:
        """Supervisor: the worker `pid` exists; finish the handoff (may send over `control`)."""
        ...

    def acquire(self, payload: Dict[str, Any], obj: Any, control: Channel) -> socket.socket:
        """Worker: return the socket to serve on (listening, or bound - create_server listens).

        Raises HandoffError or OSError with a one-line reason.
        """
        ...


__all__ = ["Bind", "Handoff", "HandoffError", "Strategy"]
