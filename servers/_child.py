"""Entry point of an exec'd worker: `python -m servers._child --control FD --spec JSON`.

FD is the worker's end of the control channel (a socket: an fd on POSIX, a handle on Windows; spoken to
through servers._control.SocketChannel, the supervisor's end is a multiprocessing Connection); JSON is
the worker spec (see servers._worker.run). Exits with the worker's code; a malformed command line exits
USAGE with one line on stderr.
"""

import gc
import json
import os
import signal
import socket
import sys
from typing import List, Optional

from servers import exitcodes
from servers._control import SocketChannel


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if len(args) != 4 or args[0] != "--control" or args[2] != "--spec":
            raise ValueError("usage: python -m servers._child --control FD --spec JSON")
        control = int(args[1])
        spec = json.loads(args[3])
        if not isinstance(spec, dict):
            raise ValueError("--spec must be a JSON object")
    except ValueError as exc:
        print(f"servers._child: error: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    from servers import _worker  # noqa: PLC0415 - imported once SIGINT is ignored

    try:
        channel = SocketChannel(socket.socket(fileno=control))
    except OSError as exc:
        print(f"servers._child: error: --control {control} is not a socket: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    return _worker.run(spec, None, channel)


__all__ = ["main"]

if __name__ == "__main__":
    # Ctrl-C reaches the whole process group; the supervisor coordinates the stop. Ignore it before the
    # heavier imports so an early SIGINT does not print a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.disable()  # the import burst creates no garbage worth collecting; the worker turns it back on
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # os._exit: the watchdog thread may still block on the control channel; no finalizers race it.
    os._exit(code)
