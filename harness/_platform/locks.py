"""An exclusive inter-process file lock with a deadline, on the `filelock` library (which does flock on
POSIX and msvcrt.locking on Windows).

Used by harness.env.venvs so that several builders of the same env (pytest-xdist workers, several harness
processes, threads) never build it twice at once. The lock is held on an open file description, so two
threads of one process that each open the lock file exclude each other too. The OS drops the lock when
the holder dies: a crashed builder never leaves a stale lock behind.

port_lock(port) is the same lock, machine-wide, for a fixed TCP port: every test that can make a server
bind that port (uvicorn <=0.14 binds 127.0.0.1:8000 with --uds/--fd whatever it is told) holds it, so
xdist workers and parallel pytest runs take turns instead of failing each other with EADDRINUSE.

Exceptions:

    LockTimeout (TimeoutError) - the lock was not acquired before the deadline
"""

import os
import tempfile
import time
from types import TracebackType
from typing import Any, Optional, Type

import filelock


class LockTimeout(TimeoutError):
    """The lock was not acquired in time; str(exc) is one line naming the lock file."""


class FileLock:
    """`with FileLock(path, timeout=600):` - exclusive lock on `path` (created if missing), held by the
    `filelock` library (flock on POSIX, msvcrt.locking on Windows; the OS drops it when the holder dies).

    * path - the lock file (its parent directory must exist)
    * timeout - seconds to wait for another holder before LockTimeout
    * poll - seconds between attempts
    * waited - after acquire(): seconds spent waiting for another holder (0 when it was free)

    Every FileLock is its own holder, threads of one process included (no reentrancy across instances:
    two builders in two threads of one process exclude each other, as two processes do)."""

    def __init__(self, path: str, timeout: float = 600.0, poll: float = 0.05) -> None:
        self.path = path
        self.timeout = timeout
        self.poll = poll
        self.waited = 0.0
        self._lock: Any = filelock.FileLock(path, timeout=timeout, thread_local=False, is_singleton=False)

    def acquire(self) -> None:
        start = time.monotonic()
        try:
            self._lock.acquire(timeout=self.timeout, poll_interval=self.poll)
        except filelock.Timeout:
            raise LockTimeout(f"timed out after {self.timeout:g}s waiting for the lock {self.path}") from None
        self.waited = time.monotonic() - start

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.release()


def port_lock(port: int, timeout: float = 600.0) -> FileLock:
    """The machine-wide lock for TCP `port` (a file in /tmp, the same for every process and TMPDIR)."""
    base = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
    return FileLock(os.path.join(base, f"asgi-workers-harness-port-{int(port)}.lock"), timeout=timeout)


__all__ = ["FileLock", "LockTimeout", "port_lock"]
