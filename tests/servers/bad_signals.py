"""A small, real master/worker HTTP server whose master's signal handling is correct or broken on purpose,
and its test-only adapters (one per mode), for the signal-master / kill-workers faults.

    python bad_signals.py MODE WORKERS PORT

The master binds 127.0.0.1:PORT, forks WORKERS workers that accept on the shared socket and answer every
request with `x-worker-pid`, and handles its signals with sigtimedwait (blocked, then taken one by one).
Every adapter declares the contract of a correct server (gunicorn's): HUP reload, USR1 keep, TTIN / TTOU
one more / less, TERM stop (exit 0), INT / QUIT quick stop. The modes:

* good - keeps it: HUP starts the new workers first, then stops the old ones (SIGTERM: they finish the
  request in hand); a dead worker is replaced one for one
* usr1-restarts - USR1 stops every worker and starts new ones (the replaced-but-should-be-kept kind)
* hup-ignored - HUP does nothing (kept-but-should-be-replaced)
* hup-drops - HUP kills the workers, closes the listener and binds it again 0.5 s later (dropped requests)
* hup-exits - HUP is not handled: its default action ends the master (a master that stops)
* ttin-two - TTIN starts two workers (the wrong count afterwards)
* double-respawn - a dead worker is replaced by two (more workers than asked for)
* no-respawn - dead workers are never replaced
* hup-leaks-fds - a good HUP that also leaves 6 open fds behind in the master every time (resource growth)
* term-exit-1 - TERM stops the workers and exits 1 (a graceful stop with the wrong code)

Runs in the server's env: stdlib only, POSIX (os.fork, sigtimedwait), Python 3.7+.
"""

import os
import select
import signal
import socket
import sys
from typing import Any, Dict, List, Tuple

MODES = (
    "good",
    "usr1-restarts",
    "hup-ignored",
    "hup-drops",
    "hup-exits",
    "ttin-two",
    "double-respawn",
    "no-respawn",
    "hup-leaks-fds",
    "term-exit-1",
)

if __name__ != "__main__":  # the adapter half, imported by the harness
    from harness.adapters import LaunchContext, LaunchSpec
    from harness.adapters._base import PREFORK

    class BadSignalsAdapter:
        distribution = ""
        default_requirements: Tuple[str, ...] = ()
        SIGNAL_SOURCE = "tests/servers/bad_signals.py (a correct server's contract, gunicorn's)"
        SIGNAL_CONTRACTS = (("", dict(PREFORK)),)

        def __init__(self, mode: str) -> None:
            self.name = f"signals-{mode}"
            self.mode = mode

        def build(self, ctx: "LaunchContext") -> "LaunchSpec":
            argv = [ctx.python, os.path.abspath(__file__), self.mode, str(ctx.workers), str(ctx.port)]
            return LaunchSpec(argv=tuple(argv))

    ADAPTERS = {mode: BadSignalsAdapter(mode) for mode in MODES}
    GOOD = ADAPTERS["good"]
    USR1_RESTARTS = ADAPTERS["usr1-restarts"]
    HUP_IGNORED = ADAPTERS["hup-ignored"]
    HUP_DROPS = ADAPTERS["hup-drops"]
    HUP_EXITS = ADAPTERS["hup-exits"]
    TTIN_TWO = ADAPTERS["ttin-two"]
    DOUBLE_RESPAWN = ADAPTERS["double-respawn"]
    NO_RESPAWN = ADAPTERS["no-respawn"]
    HUP_LEAKS_FDS = ADAPTERS["hup-leaks-fds"]
    TERM_EXIT_1 = ADAPTERS["term-exit-1"]


# --- the worker ------------------------------------------------------------------------------------------


def _answer(conn: socket.socket) -> None:
    conn.settimeout(2.0)
    data = b""
    try:
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        body = b"ok\n"
        pid = os.getpid()
        head = f"HTTP/1.1 200 OK\r\nx-worker-pid: {pid}\r\ncontent-length: {len(body)}\r\n"
        head += "connection: close\r\n\r\n"
        conn.sendall(head.encode() + body)
    except OSError:
        pass
    finally:
        conn.close()


def _worker(sock: socket.socket) -> None:
    stopping: List[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, signal.SIG_IGN)  # the master's business
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    sock.setblocking(False)
    while not stopping:
        try:
            ready, _, _ = select.select([sock], [], [], 0.05)
        except InterruptedError:
            continue
        if not ready:
            continue
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            continue
        conn.setblocking(True)
        _answer(conn)


# --- the master ------------------------------------------------------------------------------------------


class Master:
    def __init__(self, mode: str, workers: int, port: int) -> None:
        self.mode = mode
        self.wanted = workers
        self.port = port
        self.sock = self._bind()
        self.workers: Dict[int, bool] = {}  # pid -> retiring
        self.leaked: List[int] = []
        self.code = 0

    def _bind(self) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        return sock

    def spawn(self) -> None:
        pid = os.fork()
        if pid == 0:
            try:
                _worker(self.sock)
            finally:
                os._exit(0)
        self.workers[pid] = False

    def active(self) -> List[int]:
        return [pid for pid, retiring in self.workers.items() if not retiring]

    def retire(self, pids: List[int], sig: int = signal.SIGTERM) -> None:
        for pid in pids:
            self.workers[pid] = True
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def reap(self, stopping: bool) -> None:
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            retiring = self.workers.pop(pid, True)
            if stopping or retiring or self.mode == "no-respawn":
                continue
            print(f"worker {pid} died, replacing it", file=sys.stderr, flush=True)
            for _ in range(2 if self.mode == "double-respawn" else 1):
                self.spawn()

    def on_hup(self) -> None:
        old = self.active()
        if self.mode == "hup-ignored":
            return
        if self.mode == "hup-drops":
            self.retire(old, signal.SIGKILL)
            self.sock.close()
            signal.sigtimedwait([signal.SIGTERM], 0.5)  # the gap with nothing listening
            self.sock = self._bind()
            for _ in range(self.wanted):
                self.spawn()
            return
        for _ in range(self.wanted):
            self.spawn()
        self.retire(old)
        if self.mode == "hup-leaks-fds":
            self.leaked += [os.open(os.devnull, os.O_RDONLY) for _ in range(6)]

    def on_usr1(self) -> None:
        if self.mode == "usr1-restarts":
            old = self.active()
            self.retire(old)
            for _ in old:
                self.spawn()

    def on_ttin(self) -> None:
        for _ in range(2 if self.mode == "ttin-two" else 1):
            self.wanted += 1
            self.spawn()

    def on_ttou(self) -> None:
        active = self.active()
        if len(active) > 1:
            self.wanted -= 1
            self.retire(active[-1:])

    def stop(self, quick: bool) -> None:
        self.retire(list(self.workers), signal.SIGKILL if quick else signal.SIGTERM)
        for pid in list(self.workers):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.sock.close()
        if self.mode == "term-exit-1" and not quick:
            self.code = 1

    def run(self) -> int:
        handled = [signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1]
        handled += [signal.SIGTTIN, signal.SIGTTOU]
        if self.mode != "hup-exits":
            handled.append(signal.SIGHUP)
        else:
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_BLOCK, handled)
        print(
            f"master {os.getpid()} listening on 127.0.0.1:{self.port} ({self.mode})",
            file=sys.stderr,
            flush=True,
        )
        for _ in range(self.wanted):
            self.spawn()
        actions: Dict[int, Any] = {
            signal.SIGHUP: self.on_hup,
            signal.SIGUSR1: self.on_usr1,
            signal.SIGTTIN: self.on_ttin,
            signal.SIGTTOU: self.on_ttou,
        }
        while True:
            info = signal.sigtimedwait(handled, 1.0)
            if info is None:
                self.reap(False)
                continue
            sig = info.si_signo
            if sig == signal.SIGCHLD:
                self.reap(False)
            elif sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                self.stop(quick=sig != signal.SIGTERM)
                return self.code
            elif sig in actions:
                actions[sig]()


if __name__ == "__main__":
    sys.exit(Master(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])).run())
