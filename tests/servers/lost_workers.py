"""A tiny, real master/worker server whose workers all fail at startup, and its test-only adapters.

* tests.servers.lost_workers:LINGER - the workers exit 1 at once and the master never replaces them; it
  lingers, bound and listening, until SIGTERM (uvicorn <= 0.29 after a failed lifespan startup)
* tests.servers.lost_workers:RESPAWN - the master replaces every dead worker at once, forever (uvicorn
  0.30-0.49 in the same situation)
* tests.servers.lost_workers:SLOW_RESPAWN - the same, but each replacement comes SLOW_RESPAWN_S after the
  death while the master wakes every 0.5 s (uvicorn 0.30-0.49 on a loaded machine: more than 3 s)

The master binds 127.0.0.1 and listens but never accepts (a worker would). Stops on SIGTERM: kills and
reaps its workers, exits 0. Runs in the server's env: stdlib only, POSIX (os.fork), Python 3.6+.
"""

import os
import signal
import socket
import sys
from typing import Any, Tuple

RESPAWN_DELAY_S = 0.1
SLOW_RESPAWN_S = 3.5
WORKER_STARTUP_S = 0.4

if __name__ != "__main__":  # the adapter half, imported by the harness
    from harness.adapters import LaunchContext, LaunchSpec

    class LostWorkersAdapter:
        distribution = ""
        default_requirements: Tuple[str, ...] = ()

        def __init__(self, mode: str) -> None:
            self.name = f"lost-workers-{mode}"
            self.mode = mode

        def build(self, ctx: "LaunchContext") -> "LaunchSpec":
            argv = [ctx.python, os.path.abspath(__file__), self.mode, str(ctx.workers), str(ctx.port)]
            return LaunchSpec(argv=tuple(argv))

    LINGER = LostWorkersAdapter("linger")
    RESPAWN = LostWorkersAdapter("respawn")
    SLOW_RESPAWN = LostWorkersAdapter("slow-respawn")


def _start_worker() -> int:
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        # "startup" takes a while, as it does in a real worker (imports, lifespan), then fails
        signal.sigtimedwait([signal.SIGTERM], WORKER_STARTUP_S)
        print(f"worker {os.getpid()}: startup failed on purpose", file=sys.stderr, flush=True)
        os._exit(1)
    return pid


def main() -> None:
    mode, workers, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    print(f"master {os.getpid()} listening on {sock.getsockname()}", file=sys.stderr, flush=True)
    stopping = []

    def on_term(signum: int, frame: Any) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_term)
    for _ in range(workers):
        _start_worker()
    while not stopping:
        try:
            pid, _status = os.wait()  # until a worker exits (after a SIGTERM the next exit ends the loop)
        except ChildProcessError:  # no worker left (linger): wait for SIGTERM
            signal.pause()
            continue
        if mode in ("respawn", "slow-respawn") and not stopping:
            # the respawn delay, ended early by a SIGTERM (uvicorn 0.30-0.49 replaces about twice a second,
            # and wakes every 0.5 s meanwhile)
            ticks = 1 if mode == "respawn" else int(SLOW_RESPAWN_S / 0.5)
            for _ in range(ticks):
                signal.sigtimedwait([signal.SIGTERM], RESPAWN_DELAY_S if mode == "respawn" else 0.5)
                if stopping:
                    break
            if not stopping:
                print(f"worker {pid} died, starting another", file=sys.stderr, flush=True)
                _start_worker()
    sock.close()


if __name__ == "__main__":
    main()
