"""An exclusive inter-process file lock with a deadline (fcntl.flock on POSIX, msvcrt.locking on Windows).

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
import sys
import tempfile
import time
from types import TracebackType
from typing import Optional, Type

# Platform branch (why: Windows has no flock; msvcrt.locking is its byte-range equivalent).
if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class LockTimeout(TimeoutError):
    """The lock was not acquired in time; str(exc) is one line naming the lock file."""


class FileLock:
    """`with FileLock(path, timeout=600):` - exclusive lock on `path` (created if missing).

    * path - the lock file (its parent directory must exist)
    * timeout - seconds to wait for another holder before LockTimeout
    * poll - seconds between attempts
    """

    def __init__(self, path: str, timeout: float = 600.0, poll: float = 0.05) -> None:
        self.path = path
        self.timeout = timeout
        self.poll = poll
        self._fd: Optional[int] = None
        #: seconds spent waiting for another holder (0 when the lock was free)
        self.waited = 0.0

    def acquire(self) -> None:
        start = time.monotonic()
        deadline = start + self.timeout
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while not _try_lock(fd):
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"timed out after {self.timeout:g}s waiting for the lock {self.path}")
                time.sleep(self.poll)
        except BaseException:
            os.close(fd)
            raise
        self.waited = time.monotonic() - start
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            _unlock(fd)
        finally:
            os.close(fd)

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
