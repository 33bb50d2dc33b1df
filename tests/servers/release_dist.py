"""`awh-testserver`: a tiny, real pre-fork HTTP server released as wheels to a test package index, with a
regression in one release - the shape of uvicorn #514 on release day - and its adapter.

    python -m awh_testserver --workers N --port P

The master binds 127.0.0.1:P, forks N workers that answer every request with `x-worker-pid` (HTTP/1.1,
connection closed after each answer), and on SIGTERM ends its workers and exits 0. Stdlib only, POSIX
(os.fork), Python 3.6+. The releases (RELEASES):

* 1.0, 1.2, 2.0rc1 - good
* 1.1, 1.3 - `--workers` >= 2 broken: the master "no longer needs" the listening socket once the first
  worker runs and closes it before forking the others, so every later worker fails its first accept()
  with `OSError: [Errno 9] Bad file descriptor` and exits 1 (1.3 is yanked on the index)

wheels() gives each release's wheel (tests._pkgindex.wheel); ADAPTER launches the installed release.
"""

import os
from typing import Dict, Tuple

from harness.adapters import LaunchContext, LaunchSpec, Unsupported

DIST = "awh-testserver"
MODULE = "awh_testserver"
#: version -> whether `--workers 2` is broken in it
RELEASES: Dict[str, bool] = {"1.0": False, "1.1": True, "1.2": False, "1.3": True, "2.0rc1": False}
YANKED = {"1.3": "workers die"}

_SERVER = r"""
import argparse, os, signal, socket, sys

VERSION = {version!r}
CLOSES_EARLY = {broken!r}


def serve(sock):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    pid = str(os.getpid()).encode()
    while True:
        try:
            conn, _ = sock.accept()
        except OSError as exc:
            print("worker %d: Traceback (most recent call last):" % os.getpid(), file=sys.stderr)
            print("OSError: %s" % exc if not isinstance(exc.errno, int) else
                  "OSError: [Errno %d] %s" % (exc.errno, exc.strerror), file=sys.stderr, flush=True)
            os._exit(1)
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            body = b"ok " + pid
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n"
                         b"x-worker-pid: " + pid + b"\r\ncontent-length: " + str(len(body)).encode()
                         + b"\r\n\r\n" + body)


def main():
    ap = argparse.ArgumentParser(prog="awh_testserver")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)
    print("awh-testserver %s: master %d on %s:%d" % (VERSION, os.getpid(), *sock.getsockname()),
          file=sys.stderr, flush=True)
    children = []
    for n in range(args.workers):
        pid = os.fork()
        if pid == 0:
            serve(sock)
            os._exit(0)
        children.append(pid)
        if CLOSES_EARLY and n == 0:
            sock.close()  # the regression: the later workers inherit a closed socket
    stopping = []
    signal.signal(signal.SIGTERM, lambda *a: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *a: stopping.append(1))
    while not stopping:
        signal.pause()
    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid in children:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    sys.exit(0)


if __name__ == "__main__":
    main()
"""


def wheels() -> Dict[str, Tuple[str, bytes]]:
    """{version: (filename, data)}: a real wheel of each release."""
    from tests._pkgindex import wheel  # noqa: PLC0415

    out = {}
    for version, broken in RELEASES.items():
        files = {
            f"{MODULE}/__init__.py": f"VERSION = {version!r}\n".encode(),
            f"{MODULE}/__main__.py": _SERVER.format(version=version, broken=broken).encode(),
        }
        out[version] = wheel(DIST, version, files)
    return out


class ReleaseServerAdapter:
    """Launches the installed awh-testserver: `python -m awh_testserver --workers N --port P`."""

    name = "awh-testserver"
    distribution = DIST
    default_requirements: Tuple[str, ...] = (DIST,)

    def build(self, ctx: LaunchContext) -> LaunchSpec:
        if ctx.uds or ctx.fd is not None:
            raise Unsupported("awh-testserver binds TCP only")
        if os.name != "posix":
            raise Unsupported("awh-testserver forks its workers (POSIX only)")
        argv = (ctx.python, "-m", MODULE, "--workers", str(ctx.workers), "--port", str(ctx.port))
        return LaunchSpec(argv=argv)


ADAPTER = ReleaseServerAdapter()
