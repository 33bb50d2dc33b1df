"""A tiny, real server with a descendant that escapes its session, and its test-only adapter
(tests.servers.detacher:DETACH / DETACH_KEEP_FDS).

The server answers as asked (TCP, `x-worker-pid`). At start it forks a child that calls setsid(), forks
again (the grandchild is orphaned at once), and - for DETACH - closes every inherited fd, then listens on
a port of its own on 127.0.0.1 forever and writes its pid to the file named by option `pidfile`. So it is
in no process group, session or fd table of the run: only a subreaper sees it (issue #16 item 15).
DETACH_KEEP_FDS keeps the inherited fds (it holds the server's stdout / stderr pipes). Stdlib only, POSIX.
"""

import os
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Tuple

if __name__ != "__main__":  # the adapter half, imported by the harness
    from harness.adapters import LaunchContext, LaunchSpec

    class DetachAdapter:
        distribution = ""
        default_requirements: Tuple[str, ...] = ()

        def __init__(self, keep_fds: bool) -> None:
            self.name = "detach-keep-fds" if keep_fds else "detach"
            self.keep_fds = keep_fds

        def build(self, ctx: "LaunchContext") -> "LaunchSpec":
            pidfile = dict(ctx.options)["pidfile"]
            argv = [
                ctx.python,
                os.path.abspath(__file__),
                ctx.host,
                str(ctx.port),
                pidfile,
                str(int(self.keep_fds)),
            ]
            return LaunchSpec(argv=tuple(argv))

    DETACH = DetachAdapter(keep_fds=False)
    DETACH_KEEP_FDS = DetachAdapter(keep_fds=True)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("x-worker-pid", str(os.getpid()))
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def _detach(pidfile: str, keep_fds: bool) -> None:
    if os.fork() != 0:
        return
    os.setsid()
    if os.fork() != 0:
        os._exit(0)  # the middle process exits: the grandchild is an orphan
    if not keep_fds:
        os.closerange(0, 1024)
    side = socket.socket()
    side.bind(("127.0.0.1", 0))
    side.listen(1)
    with open(pidfile + ".tmp", "w") as fh:
        fh.write(f"{os.getpid()} {side.getsockname()[1]}")
    os.rename(pidfile + ".tmp", pidfile)
    while True:
        signal.pause()


def main() -> None:
    host, port, pidfile, keep = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
    _detach(pidfile, keep)
    try:
        os.wait()  # the middle process
    except ChildProcessError:
        pass
    server = HTTPServer((host, port), _Handler)
    signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


if __name__ == "__main__":
    main()
