"""One worker process: obtain the socket, load the app, run lifespan, serve until told to stop.

Contract with the supervisor (see servers._control for the messages):

* before ready, any failure prints the traceback to stderr (its last line is the one-line reason),
  sends {"type": "failed"} and exits with APP_LOAD_ERROR, BIND_FAILURE or STARTUP_FAILURE
* ready = listening + lifespan startup complete -> {"type": "ready"}
* {"type": "stop"}, SIGTERM (or SIGBREAK on Windows): stop accepting, finish in-flight requests within
  graceful_timeout, lifespan shutdown, exit OK (SHUTDOWN_TIMEOUT if connections had to be aborted).
  A stop the worker got by signal is announced with {"type": "stopping"} so the supervisor never takes
  the exit for a crash. SIGINT is ignored: the supervisor coordinates.
* a watchdog thread blocks on the control channel; EOF (the supervisor died) -> exit ORPHANED at once
* once ready, the event loop sends {"type": "alive"} every spec["heartbeat"] seconds (0 = never): sent
  from the loop, not a thread, so a hung loop goes silent and the supervisor replaces the worker

* run(spec, obj, conn) -> exit code; spec = {index, app, strategy, start_method, lifespan,
  graceful_timeout, heartbeat, payload}; servers._entry.mp_entry is the multiprocessing target that
  calls it, servers._child the exec'd one
"""

import asyncio
import gc
import logging
import os
import signal
import sys
import threading
import traceback
from typing import Any, Dict, Optional

from servers import _control, exitcodes
from servers._app import AppLoadError, load_app
from servers._control import Channel
from servers._http import HttpService, stop_accepting
from servers._lifespan import Lifespan, LifespanFailure
from servers.strategies import STRATEGIES, Bind, HandoffError
from servers.strategies._listen import BindError
from servers.strategies._platform import new_event_loop, stop_signals


class _Failure(Exception):
    """Failed before ready: exit `code`, error kind `kind`; __cause__ is the original exception."""

    def __init__(self, code: int, kind: str) -> None:
        super().__init__(kind)
        self.code = code
        self.kind = kind


class _Stopper:
    """Where stop requests go: signal handlers and the watchdog only call request()."""

    def __init__(self) -> None:
        self.reason: Optional[str] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._event: Optional[asyncio.Event] = None

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._fire)
            except RuntimeError:  # the loop is already closed: nothing left to stop
                pass

    def attach(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        self._loop, self._event = loop, event
        if self.reason is not None:
            event.set()

    def detach(self) -> None:
        self._loop = None

    def _fire(self) -> None:
        if self._event is not None:
            self._event.set()


def _watchdog(conn: Channel, stopper: _Stopper, finished: threading.Event) -> None:
    while True:
        try:
            message = _control.recv(conn)
        except (EOFError, OSError):
            if finished.is_set():
                return
            # The supervisor is gone: nobody will ever stop us or read our exit code.
            os._exit(exitcodes.ORPHANED)
        except ValueError:
            continue
        if message["type"] == _control.STOP:
            stopper.request("quick" if message.get("quick") else "stop")


async def _serve(app: Any, sock: Any, spec: Dict[str, Any], conn: Channel, stopper: _Stopper) -> int:
    loop = asyncio.get_event_loop()
    stop = asyncio.Event()
    stopper.attach(loop, stop)
    lifespan = Lifespan(app, str(spec["lifespan"]))
    try:
        await lifespan.startup()
    except LifespanFailure as exc:
        raise _Failure(exitcodes.STARTUP_FAILURE, "startup-failure") from exc
    service = HttpService(app, state=lifespan.state)
    try:
        # asyncio calls listen(backlog) on the socket; without this it would shrink a shared socket's
        # backlog to asyncio's default of 100.
        server = await loop.create_server(service.protocol_factory, sock=sock, backlog=Bind().backlog)
    except (OSError, ValueError) as exc:
        raise _Failure(exitcodes.STARTUP_FAILURE, "startup-failure") from exc
    _control.send(conn, _control.READY, pid=os.getpid())
    beat = _heartbeat(loop, conn, float(spec.get("heartbeat") or 0.0))
    await stop.wait()
    if beat is not None:
        beat.cancel()
    if stopper.reason not in ("stop", "quick"):
        try:
            _control.send(conn, _control.STOPPING, reason=stopper.reason)
        except OSError:
            pass
    await stop_accepting(server)  # not server.close(): that loses the connections accepted just before
    # a quick stop (the supervisor got INT / QUIT) does not wait for requests in flight
    clean = await service.shutdown(0.0 if stopper.reason == "quick" else float(spec["graceful_timeout"]))
    try:
        await lifespan.shutdown()
    except LifespanFailure as exc:
        print(f"lifespan shutdown failed: {exc}", file=sys.stderr, flush=True)
    return exitcodes.OK if clean else exitcodes.SHUTDOWN_TIMEOUT


class _Beat:
    """The periodic heartbeat; cancel() stops it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, conn: Channel, interval: float) -> None:
        self._loop, self._conn, self._interval = loop, conn, interval
        self._handle: Optional[asyncio.TimerHandle] = None

    def start(self) -> "_Beat":
        self._handle = self._loop.call_later(self._interval, self._beat)
        return self

    def _beat(self) -> None:
        try:
            _control.send(self._conn, _control.ALIVE)
        except OSError:
            return  # the supervisor is gone: the watchdog sees EOF and ends the process
        self.start()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


def _heartbeat(loop: asyncio.AbstractEventLoop, conn: Channel, interval: float) -> Optional[_Beat]:
    return _Beat(loop, conn, interval).start() if interval > 0 else None


def _report(conn: Channel, failure: _Failure) -> int:
    cause = failure.__cause__ if failure.__cause__ is not None else failure
    traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
    sys.stderr.flush()
    try:
        _control.send(
            conn, _control.FAILED, code=failure.code, kind=failure.kind, message=_control.last_line(cause)
        )
    except OSError:
        pass
    return failure.code


def _install_signals(stopper: _Stopper) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in stop_signals():
        signal.signal(sig, lambda signum, frame: stopper.request(signal.Signals(signum).name))


def _prepare(spec: Dict[str, Any], obj: Any, conn: Channel) -> Any:
    """Load the app and obtain the socket; raises _Failure."""
    try:
        app = load_app(str(spec["app"]))
    except AppLoadError as exc:
        raise _Failure(exitcodes.APP_LOAD_ERROR, "app-load-error") from exc
    strategy = STRATEGIES[str(spec["strategy"])]
    try:
        sock = strategy.acquire(dict(spec["payload"]), obj, conn)
    except BindError as exc:
        raise _Failure(exitcodes.BIND_FAILURE, "bind-failure") from exc
    except (HandoffError, OSError, ValueError) as exc:  # TimeoutError is an OSError
        raise _Failure(exitcodes.STARTUP_FAILURE, "startup-failure") from exc
    return app, sock


def run(spec: Dict[str, Any], obj: Any, conn: Channel) -> int:
    """Run one worker to completion; returns its exit code."""
    try:
        signal.set_wakeup_fd(-1)  # forked: the supervisor's wakeup fd is not ours
    except ValueError:
        pass
    _control.close_parent_only()  # forked: drop the supervisor's ends of every channel
    logging.basicConfig(
        level=logging.WARNING, format="[worker %(process)d] %(levelname)s %(name)s: %(message)s"
    )
    stopper = _Stopper()
    _install_signals(stopper)
    try:
        app, sock = _prepare(spec, obj, conn)
    except _Failure as failure:
        return _report(conn, failure)
    except EOFError:
        return exitcodes.ORPHANED
    except _control.StopRequested:
        return exitcodes.OK
    finally:
        # servers._entry and servers._child import with the cyclic collector off (about 5 ms of CPU less per
        # spawned or exec'd worker, 8 of them sharing 2 cores); the app's lifespan and requests run with it on
        gc.enable()
    finished = threading.Event()
    watchdog = threading.Thread(
        target=_watchdog, args=(conn, stopper, finished), name="watchdog", daemon=True
    )
    watchdog.start()
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_serve(app, sock, spec, conn, stopper))
    except _Failure as failure:
        return _report(conn, failure)
    finally:
        finished.set()
        stopper.detach()
        loop.close()


__all__ = ["run"]
