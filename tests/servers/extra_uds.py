"""A tiny, real server that serves where it was asked (TCP) and also listens on a unix socket of its own,
and its test-only adapter (tests.servers.extra_uds:ELSEWHERE / IN_HOME).

* ELSEWHERE - the extra socket is at the path of option `extra` (a directory outside the run's own): a
  listener nobody asked for (issue #16: asked TCP, served on /etc/x.sock, recorded passed)
* IN_HOME - the extra socket is under $TMPDIR (the run's private scratch dir): a control socket, as
  gunicorn >= 25 keeps in ~/.gunicorn; not wrong

It answers every request with 200 and `x-worker-pid`. Stops on SIGTERM and removes its socket file.
Stdlib only, POSIX (AF_UNIX), Python 3.6+.
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

    class ExtraUdsAdapter:
        distribution = ""
        default_requirements: Tuple[str, ...] = ()

        def __init__(self, where: str) -> None:
            self.name = f"extra-uds-{where}"
            self.where = where

        def build(self, ctx: "LaunchContext") -> "LaunchSpec":
            extra = dict(ctx.options).get("extra", "") if self.where == "elsewhere" else ""
            argv = [ctx.python, os.path.abspath(__file__), ctx.host, str(ctx.port), extra]
            return LaunchSpec(argv=tuple(argv))

    ELSEWHERE = ExtraUdsAdapter("elsewhere")
    IN_HOME = ExtraUdsAdapter("in-home")


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("x-worker-pid", str(os.getpid()))
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    host, port, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    # the run's TMPDIR: private like HOME, and short enough for an AF_UNIX path
    path = extra or os.path.join(os.environ["TMPDIR"], "control.sock")
    side = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    side.bind(path)
    side.listen(1)
    server = HTTPServer((host, port), _Handler)
    signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=server.shutdown).start())
    print(f"serving on {server.server_address}, extra unix socket {path}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        side.close()
        os.unlink(path)


if __name__ == "__main__":
    main()
