"""A tiny, real, deliberately wrong server and its test-only adapter (tests.servers.wrong_bind:ADAPTER).

Told `--uds PATH` (or `--host H --port P`), it ignores the request and listens on TCP 127.0.0.1 with an
ephemeral port instead, the way uvicorn <= 0.14.0 did for `--workers 2 --uds PATH` (fixed in 0.15.0, PR
#1009). It answers every request with 200 and `x-worker-pid`, so the only thing wrong is *where* it listens.
Stops on SIGTERM. Runs in the server's env: stdlib only, Python 3.6+.
"""

import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Tuple

if __name__ != "__main__":  # the adapter half, imported by the harness
    from harness.adapters import LaunchContext, LaunchSpec

    class WrongBindAdapter:
        name = "wrong-bind"
        distribution = ""
        default_requirements: Tuple[str, ...] = ()

        def build(self, ctx: "LaunchContext") -> "LaunchSpec":
            argv = [ctx.python, os.path.abspath(__file__)]
            argv += ["--uds", ctx.uds] if ctx.uds else ["--host", ctx.host, "--port", str(ctx.port)]
            return LaunchSpec(argv=tuple(argv))

    ADAPTER = WrongBindAdapter()


def main() -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = b"wrong listener\n"
            self.send_response(200)
            self.send_header("x-worker-pid", str(os.getpid()))
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)  # whatever was asked: the bug under test
    print(f"asked {sys.argv[1:]}, listening on {server.server_address}", file=sys.stderr, flush=True)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
