"""A tiny, real master/worker HTTP server that fails its startup with a seeded probability, and its adapter.

    harness run --server tests.servers.seeded_flaky:SEEDED --option seed=7 --option p=0.2 \
        --option state=/tmp/x.count --repeat 50

Each start reads and increments the counter in the `state` file, then draws u = Random("SEED:COUNT") and,
when u < p, fails the way a real server's startup does: a traceback line on stderr and exit 1 before it
binds (`SeededStartupError: seeded failure`). Otherwise the master binds 127.0.0.1:PORT, forks N
workers that answer every request with `x-worker-pid` (and close the connection), and on SIGTERM ends its
workers and exits 0. So the failures of a series are known in advance (expected_failures), which lets a
test assert the exact count a `--repeat` run must report. Stdlib only, POSIX (os.fork), Python 3.6+.
"""

import os
import random
import signal
import socket
import sys
from typing import Any, List, Tuple

if __name__ != "__main__":  # the adapter half, imported by the harness
    from harness.adapters import LaunchContext, LaunchSpec

    class SeededFlakyAdapter:
        name = "seeded-flaky"
        distribution = ""
        default_requirements: Tuple[str, ...] = ()

        def build(self, ctx: "LaunchContext") -> "LaunchSpec":
            opts = dict(ctx.options)
            argv = [
                ctx.python,
                os.path.abspath(__file__),
                str(ctx.workers),
                str(ctx.port),
                opts.get("seed", "0"),
                opts.get("p", "0.5"),
                opts["state"],
            ]
            return LaunchSpec(argv=tuple(argv))

    SEEDED = SeededFlakyAdapter()


def fails(seed: str, count: int, p: float) -> bool:
    """Whether start number `count` (from 1) of the series `seed` fails."""
    return random.Random(f"{seed}:{count}").random() < p


def expected_failures(seed: str, p: float, runs: int) -> int:
    return sum(fails(seed, n, p) for n in range(1, runs + 1))


def _next_count(state: str) -> int:
    try:
        with open(state, encoding="ascii") as fh:
            count = int(fh.read().strip() or "0") + 1
    except FileNotFoundError:
        count = 1
    with open(state, "w", encoding="ascii") as fh:
        fh.write(str(count))
    return count


def _serve(sock: socket.socket) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    pid = str(os.getpid()).encode()
    while True:
        conn, _ = sock.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            body = b"ok " + pid
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\nx-worker-pid: "
                + pid
                + b"\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )


def main() -> None:
    workers, port, seed = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    p, state = float(sys.argv[4]), sys.argv[5]
    count = _next_count(state)
    if fails(seed, count, p):
        print(f"start {count} of series {seed}: failing on purpose", file=sys.stderr)
        print("Traceback (most recent call last):", file=sys.stderr)
        print("SeededStartupError: seeded failure", file=sys.stderr, flush=True)
        sys.exit(1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    print(f"master {os.getpid()} start {count} on {sock.getsockname()}", file=sys.stderr, flush=True)
    children: List[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            _serve(sock)
            os._exit(0)
        children.append(pid)
    stopping: List[int] = []

    def on_term(signum: int, frame: Any) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_term)
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
    sock.close()


if __name__ == "__main__":
    main()
