"""Starting one worker process by start method: a multiprocessing context or a fresh `python -m
servers._child` (exec). This is the process-launcher edge: the Windows/POSIX difference in passing
fds/handles to an exec'd child lives here.

* launch(start_method, spec, handoff) -> (WorkerProcess, control Channel); the supervisor-side end of
  the control channel is registered parent_only (forked workers close their copies)
* WorkerProcess - the supervisor's handle: pid, sentinel (waitable, or None: then EOF on the control
  channel says the worker is gone), poll(), wait(timeout), kill(), release()
"""

import json
import multiprocessing
import os
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Dict, List, Optional, Tuple

from servers import _control, _entry
from servers._control import Channel
from servers.strategies._protocol import Handoff

# The directory holding the `servers` package: exec'd workers import it from there, like spawn does
# through the sys.path it copies.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class WorkerProcess:
    """A started worker, however it was started."""

    pid: int
    sentinel: Optional[int]

    def poll(self) -> Optional[int]:
        """The exit code if it exited (negative: killed by that signal on POSIX), else None."""
        raise NotImplementedError

    def wait(self, timeout: float) -> Optional[int]:
        """Wait at most `timeout` seconds; the exit code, or None if still running."""
        raise NotImplementedError

    def kill(self) -> None:
        """SIGKILL / TerminateProcess; no error if it already exited."""
        raise NotImplementedError

    def release(self) -> None:
        """Free the OS resources of an exited process."""


class _MpWorker(WorkerProcess):
    def __init__(self, process: BaseProcess) -> None:
        self._process = process
        self.pid = int(process.pid or 0)
        self.sentinel = process.sentinel

    def poll(self) -> Optional[int]:
        return self._process.exitcode

    def wait(self, timeout: float) -> Optional[int]:
        self._process.join(max(timeout, 0.0))
        return self._process.exitcode

    def kill(self) -> None:
        if self._process.exitcode is None:
            try:
                self._process.kill()
            except OSError:
                pass

    def release(self) -> None:
        try:
            self._process.close()
        except ValueError:
            pass


class _ExecWorker(WorkerProcess):
    def __init__(self, popen: "subprocess.Popen[bytes]") -> None:
        self._popen = popen
        self.pid = popen.pid
        self.sentinel = None
        if sys.platform == "win32":
            self.sentinel = int(popen._handle)  # type: ignore[attr-defined]  # the process handle is waitable

    def poll(self) -> Optional[int]:
        return self._popen.poll()

    def wait(self, timeout: float) -> Optional[int]:
        try:
            return self._popen.wait(max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self._popen.poll() is None:
            try:
                self._popen.kill()
            except OSError:
                pass


def _launch_mp(start_method: str, spec: Dict[str, Any], handoff: Handoff) -> Tuple[WorkerProcess, Channel]:
    ctx = multiprocessing.get_context(start_method)
    if start_method == "fork":
        # A forked worker starts with what the supervisor has imported: import the worker's chain (asyncio,
        # h11, the HTTP core) once here instead of once in every worker. Spawned and exec'd workers import
        # it themselves, so the supervisor leaves it alone for them.
        import servers._worker  # noqa: F401, PLC0415
    elif start_method == "forkserver":
        # The fork server imports the worker (asyncio, h11, the HTTP core) once; every worker forked from it
        # starts with them loaded. Effective only before the fork server starts, harmless after.
        ctx.set_forkserver_preload(["servers._worker"])  # type: ignore[attr-defined]
    theirs: Any
    if sys.platform == "win32":
        ours, theirs = ctx.Pipe(duplex=True)
    else:
        # A socketpair, not a Pipe: the worker gets a plain socket (pickled like the listener) and speaks
        # to it through SocketChannel, so a spawned worker never imports multiprocessing.connection (about
        # 6 ms of CPU each). On Windows a socket would be pickled through resource_sharer's thread.
        mine, theirs = socket.socketpair()
        ours = Connection(mine.detach())
    _control.parent_only(ours)
    process = ctx.Process(  # type: ignore[attr-defined]
        target=_entry.mp_entry,
        args=(spec, handoff.obj, theirs),
        name="servers-worker-{}".format(spec["index"]),
        daemon=True,
    )
    try:
        process.start()
    except BaseException:
        _control.forget(ours)
        ours.close()
        raise
    finally:
        theirs.close()
    return _MpWorker(process), ours


def _exec_argv(control: int, spec: Dict[str, Any], handoff: Handoff) -> List[str]:
    argv = [sys.executable, "-m", "servers._child", "--control", str(control), "--spec", json.dumps(spec)]
    if handoff.wrap_argv is not None:
        argv = handoff.wrap_argv(argv)
    return argv


def _exec_env() -> Dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = _ROOT + (os.pathsep + path if path else "")
    return env


def _launch_exec(spec: Dict[str, Any], handoff: Handoff) -> Tuple[WorkerProcess, Channel]:
    ours, theirs = socket.socketpair()
    try:
        argv = _exec_argv(theirs.fileno(), spec, handoff)
        if sys.platform == "win32":
            # Handles are inherited only when listed: STARTUPINFO.lpAttributeList["handle_list"] (3.7+).
            theirs.set_inheritable(True)
            startupinfo = subprocess.STARTUPINFO(
                lpAttributeList={"handle_list": [theirs.fileno(), *handoff.inherit]}
            )
            popen = subprocess.Popen(argv, env=_exec_env(), close_fds=True, startupinfo=startupinfo)
        else:
            popen = subprocess.Popen(
                argv, env=_exec_env(), close_fds=True, pass_fds=(theirs.fileno(), *handoff.inherit)
            )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    conn = Connection(ours.detach())
    _control.parent_only(conn)
    return _ExecWorker(popen), conn


def launch(start_method: str, spec: Dict[str, Any], handoff: Handoff) -> Tuple[WorkerProcess, Channel]:
    """Start one worker. Raises OSError (or ValueError from multiprocessing) if it cannot be started."""
    if start_method == "exec":
        return _launch_exec(spec, handoff)
    return _launch_mp(start_method, spec, handoff)


__all__ = ["WorkerProcess", "launch"]
