"""The ASGI lifespan protocol, server side (https://asgi.readthedocs.io/en/latest/specs/lifespan.html).

* Lifespan(app, mode) - mode is one of MODES:
    * "auto" - run it; an app that raises (or returns) before completing startup does not support
      lifespan: go on without it (like uvicorn's default)
    * "on" - run it; the app must complete startup, anything else is a LifespanFailure
    * "off" - never call the app with a lifespan scope
* Lifespan.state - the lifespan "state" dict; the HTTP layer copies it into every request scope
* Lifespan.supported - None before startup, then whether the app takes part in lifespan
* startup(timeout) / shutdown(timeout) - see their docstrings; both have a deadline
* LifespanFailure - str(exc) is the app's startup.failed / shutdown.failed message, or the one-line
  exception the app raised, or the timeout
"""

import asyncio
import logging
from typing import Any, Dict, Optional

from servers._app import ASGIApp, Message

MODES = ("auto", "on", "off")
DEFAULT_TIMEOUT = 60.0

_log = logging.getLogger("servers.lifespan")


class LifespanFailure(Exception):
    """Lifespan startup or shutdown failed; str(exc) is the one-line reason."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Lifespan:
    """Drives one app through lifespan startup and shutdown on the running event loop."""

    def __init__(self, app: ASGIApp, mode: str) -> None:
        if mode not in MODES:
            raise ValueError("lifespan mode must be one of {}, got {!r}".format(", ".join(MODES), mode))
        self.app = app
        self.mode = mode
        self.state: Dict[str, Any] = {}
        self.supported: Optional[bool] = None
        self._task: Optional[asyncio.Task[None]] = None
        self._queue: Optional[asyncio.Queue[Message]] = None
        self._startup_done: Optional[asyncio.Event] = None
        self._shutdown_done: Optional[asyncio.Event] = None
        self._phase = "idle"  # idle -> startup -> started -> shutdown -> stopped
        self._failure: Optional[str] = None
        self._error: Optional[BaseException] = None
        self._app_finished = False

    async def startup(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Send lifespan.startup and wait for the app's answer, at most `timeout` seconds.

        Raises LifespanFailure on lifespan.startup.failed, on timeout, and in mode "on" when the app
        raises or returns instead of completing. In mode "auto" such an app is marked unsupported.
        """
        if self.mode == "off":
            self.supported = False
            return
        if self._phase != "idle":
            raise RuntimeError("Lifespan.startup() called twice")
        self._phase = "startup"
        self._queue = asyncio.Queue()
        self._startup_done = asyncio.Event()
        self._shutdown_done = asyncio.Event()
        self._queue.put_nowait({"type": "lifespan.startup"})
        self._task = asyncio.ensure_future(self._main())
        if not await self._wait(self._startup_done, timeout):
            await self._cancel()
            raise LifespanFailure(f"lifespan startup did not complete within {timeout:g} s")
        if self._failure is not None:
            await self._cancel()
            raise LifespanFailure(self._failure)
        if self._phase == "started":
            self.supported = True
            return
        # The app raised or returned before completing startup.
        self.supported = False
        reason = (
            _one_line(self._error)
            if self._error is not None
            else "app returned before lifespan.startup.complete"
        )
        if self.mode == "on":
            raise LifespanFailure(reason) from self._error
        _log.info("ASGI lifespan unsupported by the app (%s); continuing without it", reason)

    async def shutdown(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Send lifespan.shutdown and wait for the app's answer, at most `timeout` seconds.

        Does nothing when lifespan is off, unsupported or never started. Raises LifespanFailure on
        lifespan.shutdown.failed, when the app raises during shutdown, and on timeout.
        """
        if self._phase != "started" or self._queue is None or self._shutdown_done is None:
            return
        self._phase = "shutdown"
        self._queue.put_nowait({"type": "lifespan.shutdown"})
        finished = await self._wait(self._shutdown_done, timeout)
        # The app normally returns right after shutdown.complete; give it a moment, then cancel it.
        task = self._task
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=1.0 if finished else 0)
        await self._cancel()
        if not finished:
            raise LifespanFailure(f"lifespan shutdown did not complete within {timeout:g} s")
        if self._failure is not None:
            raise LifespanFailure(self._failure)
        if self._phase != "stopped":
            if self._error is not None:
                raise LifespanFailure(_one_line(self._error)) from self._error
            _log.info("lifespan: app returned before lifespan.shutdown.complete")

    async def _wait(self, event: asyncio.Event, timeout: float) -> bool:
        if self._task is None:
            return True
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({waiter, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not waiter.done():
                waiter.cancel()
        return event.is_set() or self._task.done()

    async def _cancel(self) -> None:
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the app's own failure: recorded, reported by startup/shutdown
            self._error = exc
        finally:
            self._app_finished = True
            assert self._startup_done is not None and self._shutdown_done is not None
            self._startup_done.set()
            self._shutdown_done.set()

    async def _receive(self) -> Message:
        assert self._queue is not None
        return await self._queue.get()

    async def _send(self, message: Message) -> None:
        assert self._startup_done is not None and self._shutdown_done is not None
        kind = message.get("type")
        if self._phase == "startup" and kind == "lifespan.startup.complete":
            self._phase = "started"
            self._startup_done.set()
        elif self._phase == "startup" and kind == "lifespan.startup.failed":
            self._failure = str(message.get("message", "") or "lifespan.startup.failed")
            self._phase = "failed"
            self._startup_done.set()
        elif self._phase == "shutdown" and kind == "lifespan.shutdown.complete":
            self._phase = "stopped"
            self._shutdown_done.set()
        elif self._phase == "shutdown" and kind == "lifespan.shutdown.failed":
            self._failure = str(message.get("message", "") or "lifespan.shutdown.failed")
            self._phase = "failed"
            self._shutdown_done.set()
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} during lifespan {self._phase}")


__all__ = ["DEFAULT_TIMEOUT", "MODES", "Lifespan", "LifespanFailure"]
