"""The multiprocessing target of a worker, in a module of its own that imports nothing heavy.

spawn and forkserver pickle the target by reference, and pickling a function imports its module in the
supervisor. Were the target servers._worker.mp_entry, every supervisor would import the worker's whole
chain (asyncio, h11, the HTTP core) even when its workers are spawned and import it themselves.

* mp_entry(spec, obj, conn) - run servers._worker.run(spec, obj, conn) and exit with its code; conn is
  the worker's end of the control channel: a socket on POSIX (wrapped in _control.SocketChannel here), a
  multiprocessing Connection on Windows
"""

import socket
import sys
from typing import Any, Dict

from servers import _control


def mp_entry(spec: Dict[str, Any], obj: Any, conn: Any) -> None:
    """multiprocessing target: the worker's run() and exit with its code."""
    import gc  # noqa: PLC0415

    gc.disable()  # the import burst creates no garbage worth collecting; run() turns it back on
    from servers import _worker  # noqa: PLC0415 - imported in the worker, not in the supervisor

    if isinstance(conn, socket.socket):  # POSIX: the control channel is a socketpair end
        conn = _control.SocketChannel(conn)
    sys.exit(_worker.run(spec, obj, conn))


__all__ = ["mp_entry"]
