"""A small stdlib multi-process HTTP server for the harness's own tests (real processes, real sockets).

    python tests/_mpserver.py --workers N [--host 127.0.0.1 --port 0 | --uds PATH] [--info FILE] [options]

The master binds one socket, forks N workers that all accept on it (one shared accept queue), and answers
every request with `x-worker-pid`. The master never serves. --info FILE receives one JSON line
{"port", "path", "workers": [pids]} once every worker has been forked.

Options that make the test cases:
* --ignore-term - master and workers ignore SIGTERM (forces the harness to escalate)
* --grandchild - every worker forks one grandchild that just waits
* --helper - the master starts multiprocessing's real resource_tracker (a helper, not a worker)
* --orphan - the master double-forks a setsid'ed daemon that keeps the listening socket (a leak)
* --worker-delay S - worker i waits i*S seconds (Event.wait, bounded) before accepting
* --exit-after S - the master exits with code 3 after S seconds (workers killed first)
* --no-listen - bind but never listen (clients get ECONNREFUSED while the port is held)
* --parent-poll S - a worker checks every S seconds whether its master is still its parent and exits when
  not (gunicorn's is_parent_alive(), polled); without it a worker outlives a killed master
"""

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn

#: the one base timeout of these tests; scale it on slow machines with HARNESS_TIMEOUT_SCALE.
TIMEOUT = 10.0 * float(os.environ.get("HARNESS_TIMEOUT_SCALE", "1"))


_DEFAULT_SIGINT_SHIM = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def with_default_sigint(argv: list) -> list:
    """`argv` behind an exec shim (same pid) that first puts SIGINT back to its default, for a child that a
    test interrupts with SIGINT. A background job of a non-interactive shell (`cmd &`, as when .ci/run is
    started in the background) inherits SIGINT and SIGQUIT ignored, and Python keeps an inherited SIG_IGN,
    so the child would never see the KeyboardInterrupt. Ctrl-C only ever reaches a foreground job, which
    has the default: the shim restores what the test means."""
    return [sys.executable, "-c", _DEFAULT_SIGINT_SHIM, *argv]


def signal_state(pid: int) -> str:
    """A live process's state, signal masks and where it sleeps (Linux /proc), for a failure message
    about a process that did not react to a signal."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            lines = [ln.strip() for ln in fh if ln.startswith(("State", "Sig", "Shd"))]
        with open(f"/proc/{pid}/wchan") as fh:
            lines.append("wchan: " + fh.read().strip())
        return "; ".join(lines)
    except OSError as exc:
        return f"(no /proc state: {exc})"


def argv(*options: str) -> list:
    """The command line that starts this server under the current interpreter."""
    return [sys.executable, os.path.abspath(__file__), *options]


def read_info(path: str, timeout: float = TIMEOUT) -> dict:
    """Poll (no event exists across processes here) for the --info file; raises TimeoutError."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            with open(path) as fh:
                return dict(json.load(fh))
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} not written within {timeout} s") from None
        threading.Event().wait(delay)
        delay = min(delay * 2, 0.02)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        # headers and body are separate writes: TCP_NODELAY avoids 40 ms delayed-ACK stalls (TCP only)
        self.disable_nagle_algorithm = self.request.family != socket.AF_UNIX
        super().setup()

    def do_GET(self) -> None:
        body = b"ok\n"
        self.send_response(200)
        self.send_header("x-worker-pid", str(os.getpid()))
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:  # the socket is already bound by the master
        pass

    def server_activate(self) -> None:
        pass


def _wait_forever() -> None:
    threading.Event().wait()


def _worker(sock: socket.socket, index: int, args: argparse.Namespace) -> None:
    if args.grandchild and os.fork() == 0:
        sock.close()
        _wait_forever()
    if args.worker_delay:
        threading.Event().wait(index * args.worker_delay)
    if args.parent_poll:
        master = os.getppid()

        def watch() -> None:
            tick = threading.Event()
            while not tick.wait(args.parent_poll):  # the poll interval under test, as gunicorn's loop
                if os.getppid() != master:
                    os._exit(0)

        threading.Thread(target=watch, daemon=True).start()
    srv = _Server(("127.0.0.1", 0), _Handler, bind_and_activate=False)
    srv.socket.close()
    srv.socket = sock
    srv.serve_forever(poll_interval=0.05)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--uds", default="")
    ap.add_argument("--info", default="")
    ap.add_argument("--ignore-term", action="store_true")
    ap.add_argument("--grandchild", action="store_true")
    ap.add_argument("--helper", action="store_true")
    ap.add_argument("--orphan", action="store_true")
    ap.add_argument("--worker-delay", type=float, default=0.0)
    ap.add_argument("--exit-after", type=float, default=0.0)
    ap.add_argument("--no-listen", action="store_true")
    ap.add_argument("--parent-poll", type=float, default=0.0)
    args = ap.parse_args()

    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.uds:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(args.uds)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
    if not args.no_listen:
        sock.listen(128)
    if args.helper:
        from multiprocessing import resource_tracker  # noqa: PLC0415

        resource_tracker.ensure_running()
    if args.orphan and os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            _wait_forever()  # the daemon keeps `sock` open
        os._exit(0)

    pids = []
    for i in range(args.workers if not args.no_listen else 0):
        pid = os.fork()
        if pid == 0:
            try:
                _worker(sock, i, args)
            finally:
                os._exit(0)
        pids.append(pid)
    if args.orphan:
        os.wait()  # the intermediate fork of the daemon

    stop = threading.Event()
    if not args.ignore_term:

        def on_term(signum: int, frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_term)
    if args.info:
        tmp = args.info + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(
                {"port": sock.getsockname()[1] if not args.uds else 0, "path": args.uds, "workers": pids}, fh
            )
        os.replace(tmp, args.info)
    code = 0
    if args.exit_after:
        if not stop.wait(args.exit_after):
            code = 3
    else:
        stop.wait()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL if code else signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid in pids:
        os.waitpid(pid, 0)
    if args.uds:
        try:
            os.unlink(args.uds)
        except OSError:
            pass
    return code


if __name__ == "__main__":
    sys.exit(main())
