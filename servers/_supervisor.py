"""The supervisor: holds the socket, starts N workers, watches them, restarts crashes, stops cleanly.

Single-threaded on purpose (forking a multi-threaded process is unsafe and warns on 3.12+): one loop
waits with multiprocessing.connection.wait on the workers' control channels, their process sentinels and
the signal wakeup socket, with a timeout from the next scheduled restart or the stop deadline.

Policy:

* startup - `ready` once every worker reported ready. A worker that fails *before* ready stops the
  server (no respawn loop): `error` with its one-line reason, exit with its code (APP_LOAD_ERROR,
  BIND_FAILURE, STARTUP_FAILURE).
* crash after ready - `worker-exit`, then a replacement after a backoff (0.1 s doubling to 5 s) while
  fewer than 5 restarts happened within 60 s (servers._budget); else WORKER_CRASH_LOOP.
* hung worker - a ready worker heartbeats every timeout/5 s; one silent for `--timeout` seconds (its loop
  hangs, or it was SIGSTOPped) gets `worker-timeout`, is SIGKILLed and then replaced like a crash
  (gunicorn's --timeout). Not checked before ready (startup can be slow) nor while stopping.
* stop (SIGTERM/SIGBREAK, or a failure above) - `stopping`, {"type": "stop"} to every worker,
  wait until graceful_timeout + STOP_ALLOWANCE, kill stragglers (SHUTDOWN_TIMEOUT), remove the UDS
  file, `stopped`. A second stop signal kills the stragglers at once. Workers that got SIGTERM from the
  process group directly are never taken for crashes: signals are always handled before exits.
* quick stop (SIGINT/SIGQUIT) - the same, but the workers do not wait for requests in flight and the
  supervisor waits STOP_ALLOWANCE only (gunicorn's INT / QUIT)
* control signals (POSIX; the contract harness.adapters.reference declares and the harness checks):
  - HUP: graceful reload - a new worker per slot is started first; once it is ready the old one is told
    to stop and drains its requests (`retired`), so the listener (held here) never stops being served.
    A replacement that fails before ready is given up and its old worker kept (`error` reload-failure).
  - USR1: reopen the event log; the workers keep running
  - TTIN / TTOU: one worker more / one less (the last slot retires gracefully; never below one)
  - WINCH: ignored (as gunicorn does when not daemonized)

* Supervisor(config, events).run() -> exit code
"""

import dataclasses
import signal
import sys
import time
from multiprocessing.connection import wait
from typing import Any, Dict, List, Optional

from servers import _control, exitcodes
from servers._budget import RestartBudget
from servers._config import Config
from servers._control import Channel
from servers._signals import SignalQueue
from servers.events import EventWriter
from servers.strategies import STRATEGIES
from servers.strategies._launch import WorkerProcess, launch
from servers.strategies._listen import BindError, UdsFile, describe

#: beyond --graceful-timeout: time for lifespan shutdown and process exit
STOP_ALLOWANCE = 2.0
#: how long to wait for an exit code once a worker is known to be exiting
REAP_TIMEOUT = 5.0
#: the longest single wait (bounds how stale the loop's view can get)
TICK = 1.0


def _stderr(message: str) -> None:
    print(f"servers: error: {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class _Slot:
    index: int
    proc: Optional[WorkerProcess] = None
    conn: Optional[Channel] = None
    ready: bool = False
    failure: Optional[Dict[str, Any]] = None
    restart_at: Optional[float] = None
    old_pid: int = 0
    backoff: float = 0.0
    last_seen: float = 0.0
    timed_out: bool = False
    #: HUP: the slot of the old worker this one replaces (None once that one is told to stop)
    replacing: Optional["_Slot"] = None


class Supervisor:
    """Runs the server described by `config`, writing events to `events`."""

    def __init__(self, config: Config, events: EventWriter) -> None:
        self.config = config
        self.events = events
        self.strategy = STRATEGIES[config.strategy]
        self._slots = [_Slot(i) for i in range(config.workers)]
        #: old workers told to stop (HUP, TTOU) or waiting for their replacement to be ready (HUP)
        self._retiring: List[_Slot] = []
        self._reloading = False
        self._sock: Any = None
        self._signals: Optional[SignalQueue] = None
        self._stopping = False
        self._stop_reason = ""
        self._deadline = 0.0
        self._code = exitcodes.OK
        self._announced_ready = False
        self._budget = RestartBudget()

    # -- lifecycle -----------------------------------------------------------------------------------

    def run(self) -> int:
        cfg = self.config
        self.events.emit(
            "starting",
            workers=cfg.workers,
            strategy=cfg.strategy,
            start_method=cfg.start_method,
            python="{}.{}.{}".format(*sys.version_info[:3]),
            platform=sys.platform,
        )
        uds: Optional[UdsFile] = None
        # Signals first: a SIGTERM while binding is queued and becomes a clean stop, never a dead
        # supervisor with a socket file left behind.
        self._signals = SignalQueue()
        try:
            self._sock = self.strategy.prepare(cfg.bind)
        except (BindError, OSError) as exc:
            self._signals.close()
            message = str(exc) if isinstance(exc, BindError) else f"cannot bind: {exc}"
            return self._finish_early(exitcodes.BIND_FAILURE, "bind-failure", message)
        try:
            if cfg.bind.uds:
                uds = UdsFile(cfg.bind.uds)
            where = describe(self._sock, cfg.bind)
            self.events.emit("bound", **where)
            # a person running `python -m servers` sees where it listens (the harness reads the event)
            if where.get("path"):
                shown = f"unix:{where['path']}"
            else:
                host = str(where.get("address") or "")
                shown = (
                    f"http://[{host}]:{where.get('port')}"
                    if ":" in host
                    else f"http://{host}:{where.get('port')}"
                )
            print(
                f"servers: listening on {shown} ({cfg.workers} workers, strategy {cfg.strategy})",
                file=sys.stderr,
                flush=True,
            )
            for slot in self._slots:
                self._handle_signals()
                if not self._stopping:
                    self._spawn(slot)
            self._loop()
        finally:
            self._kill_all()
            self._signals.close()
            _control.forget(self._sock)
            self._sock.close()
            if uds is not None:
                uds.remove()
        self.events.emit("stopped", exitcode=self._code)
        return self._code

    def _finish_early(self, code: int, kind: str, message: str) -> int:
        _stderr(message)
        self.events.emit("error", message=message, kind=kind)
        self.events.emit("stopped", exitcode=code)
        return code

    def _loop(self) -> None:
        assert self._signals is not None
        while True:
            self._handle_signals()
            if self._stopping and not self._alive():
                return
            now = time.monotonic()
            if self._stopping and now >= self._deadline:
                self._kill_stragglers()
                return
            self._restart_due(now)
            self._kill_silent(now)
            self._retire_replaced()
            conns: Dict[Any, _Slot] = {}
            sentinels: Dict[Any, _Slot] = {}
            for slot in [*self._slots, *self._retiring]:
                if slot.conn is not None:
                    conns[slot.conn] = slot
                if slot.proc is not None and slot.proc.sentinel is not None:
                    sentinels[slot.proc.sentinel] = slot
            timeout = self._timeout(now)
            ready = wait([self._signals.reader, *conns, *sentinels], timeout)
            self._handle_signals()  # before exits: a process-group SIGTERM is a stop, not a crash
            for obj in ready:
                if obj in conns:
                    self._on_message(conns[obj])
            for obj in ready:
                if obj in sentinels and sentinels[obj].proc is not None:
                    self._reap(sentinels[obj])

    def _timeout(self, now: float) -> float:
        timeout = TICK
        if self._stopping:
            timeout = min(timeout, self._deadline - now)
        for slot in self._slots:
            if slot.restart_at is not None:
                timeout = min(timeout, slot.restart_at - now)
            if self._watched(slot):
                timeout = min(timeout, slot.last_seen + self.config.timeout - now)
        return max(timeout, 0.0)

    def _watched(self, slot: _Slot) -> bool:
        """A ready, running worker whose heartbeat is checked."""
        return (
            self.config.timeout > 0
            and not self._stopping
            and slot.ready
            and not slot.timed_out
            and slot.proc is not None
        )

    def _kill_silent(self, now: float) -> None:
        for slot in self._slots:
            if self._watched(slot) and now - slot.last_seen >= self.config.timeout:
                assert slot.proc is not None
                if slot.conn is not None and _pending(slot.conn):
                    continue  # a heartbeat is waiting to be read (we were the slow one): not silent
                slot.timed_out = True
                silent = round(now - slot.last_seen, 3)
                pid = slot.proc.pid
                _stderr(f"worker {slot.index} (pid {pid}) sent no heartbeat for {silent:g} s: killed")
                self.events.emit("worker-timeout", index=slot.index, worker_pid=pid, silent_s=silent)
                slot.proc.kill()  # the sentinel fires next: worker-exit, then a restart like any crash

    def _alive(self) -> bool:
        return any(slot.proc is not None for slot in [*self._slots, *self._retiring])

    # -- signals and stopping --------------------------------------------------------------------------

    def _handle_signals(self) -> None:
        assert self._signals is not None
        for signum in self._signals.pop_all():
            name = _signal_name(signum)
            control = CONTROL.get(name)
            if control is not None:
                if not self._stopping:  # a stopping server does not reload or resize
                    control(self)
            elif self._stopping:
                # A second stop signal: do not wait for stragglers any longer.
                self._deadline = min(self._deadline, time.monotonic())
            else:
                self._begin_stop(name, exitcodes.OK, quick=name in QUICK_STOP)

    def _begin_stop(self, reason: str, code: int, quick: bool = False) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._stop_reason = reason
        if self._code == exitcodes.OK:
            self._code = code
        wait_s = STOP_ALLOWANCE if quick else self.config.graceful_timeout + STOP_ALLOWANCE
        self._deadline = time.monotonic() + wait_s
        self.events.emit("stopping", reason=reason, quick=quick)
        for slot in [*self._slots, *self._retiring]:
            slot.restart_at = None
            slot.replacing = None
            self._tell_stop(slot, quick)

    def _tell_stop(self, slot: _Slot, quick: bool = False) -> None:
        if slot.conn is not None:
            try:
                if quick:
                    _control.send(slot.conn, _control.STOP, quick=True)
                else:
                    _control.send(slot.conn, _control.STOP)
            except OSError:
                pass

    # -- control signals (POSIX) ----------------------------------------------------------------------

    def _on_hup(self) -> None:
        """Graceful reload: a replacement per slot now; each old worker retires once its replacement is
        ready (_retire_replaced). A HUP during a reload starts over from the slots as they are."""
        self.events.emit("signal", name="HUP", action="reload")
        self._reloading = True
        for pos, old in enumerate(list(self._slots)):
            if old.replacing is not None:  # a reload still under way: its old worker retires now
                self._tell_stop(old.replacing)
                old.replacing = None
            new = _Slot(old.index, replacing=old if old.proc is not None else None)
            if old.proc is not None:
                old.restart_at = None
                self._retiring.append(old)
            self._slots[pos] = new
            if not self._spawn(new):
                return

    def _retire_replaced(self) -> None:
        for slot in self._slots:
            old = slot.replacing
            if old is not None and slot.ready:
                slot.replacing = None
                self._tell_stop(old)
        if self._reloading and all(s.ready and s.replacing is None for s in self._slots):
            self._reloading = False
            self.events.emit("reloaded", pids=[s.proc.pid for s in self._slots if s.proc is not None])

    def _on_usr1(self) -> None:
        self.events.reopen()
        self.events.emit("signal", name="USR1", action="reopen")

    def _on_ttin(self) -> None:
        self.events.emit("signal", name="TTIN", action="add")
        slot = _Slot(1 + max((s.index for s in [*self._slots, *self._retiring]), default=-1))
        self._slots.append(slot)
        self._spawn(slot)

    def _on_ttou(self) -> None:
        if len(self._slots) <= 1:
            self.events.emit("signal", name="TTOU", action="at-minimum")
            return
        self.events.emit("signal", name="TTOU", action="remove")
        slot = self._slots.pop()
        slot.restart_at = None
        if slot.proc is not None:
            self._retiring.append(slot)
            self._tell_stop(slot)
        if slot.replacing is not None:  # removed mid-reload: its old worker goes too
            self._tell_stop(slot.replacing)
            slot.replacing = None

    def _on_winch(self) -> None:
        self.events.emit("signal", name="WINCH", action="ignored")

    def _kill_stragglers(self) -> None:
        killed = False
        every = [*self._slots, *self._retiring]
        for slot in every:
            if slot.proc is not None:
                slot.proc.kill()
                killed = True
        for slot in every:
            if slot.proc is not None:
                self._reap(slot)
        if killed and self._code == exitcodes.OK:
            self._code = exitcodes.SHUTDOWN_TIMEOUT

    def _kill_all(self) -> None:
        """Last resort on the way out (normally nothing is left): kill and reap, quietly."""
        for slot in [*self._slots, *self._retiring]:
            if slot.proc is not None:
                slot.proc.kill()
                slot.proc.wait(REAP_TIMEOUT)
                slot.proc.release()
                slot.proc = None
            self._close_conn(slot)

    # -- workers -------------------------------------------------------------------------------------

    def _spec(self, slot: _Slot, payload: Dict[str, Any]) -> Dict[str, Any]:
        cfg = self.config
        return {
            "index": slot.index,
            "app": cfg.app,
            "strategy": cfg.strategy,
            "start_method": cfg.start_method,
            "lifespan": cfg.lifespan,
            "graceful_timeout": cfg.graceful_timeout,
            "heartbeat": cfg.timeout / 5.0,
            "payload": payload,
        }

    def _spawn(self, slot: _Slot) -> bool:
        cfg = self.config
        handoff = self.strategy.handoff(self._sock, cfg.start_method)
        proc: Optional[WorkerProcess] = None
        try:
            proc, conn = launch(cfg.start_method, self._spec(slot, handoff.payload), handoff)
            slot.proc, slot.conn, slot.ready, slot.failure = proc, conn, False, None
            slot.timed_out = False
            self.strategy.after_start(self._sock, handoff, proc.pid, conn)
        except (OSError, ValueError) as exc:
            reason = _control.last_line(exc)
            message = f"worker {slot.index}: cannot hand over the socket ({cfg.strategy}): {reason}"
            if proc is not None:
                proc.kill()
                self._reap(slot, quiet=True)
            _stderr(message)
            self.events.emit("error", message=message, kind="startup-failure")
            self._begin_stop("startup-failure", exitcodes.STARTUP_FAILURE)
            return False
        finally:
            handoff.close()
        self.events.emit("worker-spawned", index=slot.index, worker_pid=proc.pid)
        return True

    def _restart_due(self, now: float) -> None:
        for slot in self._slots:
            if slot.restart_at is not None and slot.restart_at <= now and not self._stopping:
                slot.restart_at = None
                self._budget.record(now)
                if self._spawn(slot):
                    assert slot.proc is not None
                    self.events.emit(
                        "worker-restart",
                        index=slot.index,
                        old_pid=slot.old_pid,
                        worker_pid=slot.proc.pid,
                        restarts=self._budget.count,
                        backoff=slot.backoff,
                    )

    def _on_message(self, slot: _Slot) -> None:
        assert slot.conn is not None
        try:
            message = _control.recv(slot.conn)
        except (EOFError, OSError):
            self._close_conn(slot)
            if slot.proc is not None and slot.proc.sentinel is None:
                self._reap(slot)  # exec'd on POSIX: EOF is how we learn it is exiting
            return
        except ValueError:
            return
        self._apply(slot, message)

    def _apply(self, slot: _Slot, message: Dict[str, Any]) -> None:
        kind = message["type"]
        slot.last_seen = time.monotonic()
        if kind == _control.READY and slot.proc is not None and not slot.ready:
            slot.ready = True
            self.events.emit("worker-ready", index=slot.index, worker_pid=slot.proc.pid)
            if not self._announced_ready and not self._stopping and all(s.ready for s in self._slots):
                self._announced_ready = True
                self.events.emit("ready", pids=[s.proc.pid for s in self._slots if s.proc is not None])
        elif kind == _control.FAILED:
            slot.failure = message

    def _close_conn(self, slot: _Slot) -> None:
        if slot.conn is not None:
            _control.forget(slot.conn)
            slot.conn.close()
            slot.conn = None

    def _reap(self, slot: _Slot, quiet: bool = False) -> None:
        proc = slot.proc
        assert proc is not None
        code = proc.wait(REAP_TIMEOUT)
        if code is None:
            proc.kill()
            code = proc.wait(REAP_TIMEOUT)
        # Messages sent just before exiting (a failure report) may still be queued.
        while slot.conn is not None:
            try:
                if not slot.conn.poll(0):
                    break
                self._apply(slot, _control.recv(slot.conn))
            except (EOFError, OSError, ValueError):
                break
        self._close_conn(slot)
        proc.release()
        slot.proc = None
        slot.old_pid = proc.pid
        if quiet:
            return
        if slot in self._retiring:
            self._retiring.remove(slot)
            self.events.emit(
                "worker-exit", index=slot.index, worker_pid=proc.pid, exitcode=code, ready=slot.ready,
                retired=True,
            )  # fmt: skip
            return
        self.events.emit(
            "worker-exit", index=slot.index, worker_pid=proc.pid, exitcode=code, ready=slot.ready
        )
        if self._stopping:
            if code == exitcodes.SHUTDOWN_TIMEOUT and self._code == exitcodes.OK:
                self._code = exitcodes.SHUTDOWN_TIMEOUT
            return
        if not slot.ready and slot.replacing is not None:
            self._reload_failed(slot, proc.pid, code)
        elif not slot.ready:
            self._startup_failed(slot, proc.pid, code)
        else:
            self._crashed(slot)

    def _reload_failed(self, slot: _Slot, pid: int, code: Optional[int]) -> None:
        """A HUP replacement died before ready: keep the old worker it was to replace (still serving)."""
        old = slot.replacing
        assert old is not None
        reason = str((slot.failure or {}).get("message") or f"exited with code {code} before it was ready")
        message = f"worker {slot.index} (pid {pid}): reload failed, the old worker is kept: {reason}"
        _stderr(message)
        self.events.emit("error", message=message, kind="reload-failure")
        if old in self._retiring and old.proc is not None:
            self._retiring.remove(old)
            self._slots[self._slots.index(slot)] = old
        self._reloading = any(s.replacing is not None for s in self._slots)

    def _startup_failed(self, slot: _Slot, pid: int, code: Optional[int]) -> None:
        failure = slot.failure
        if failure is not None:
            exit_code = int(failure.get("code", exitcodes.STARTUP_FAILURE))
            kind = str(failure.get("kind", "startup-failure"))
            reason = str(failure.get("message", ""))
        else:
            known = (exitcodes.APP_LOAD_ERROR, exitcodes.BIND_FAILURE, exitcodes.STARTUP_FAILURE)
            exit_code = code if code in known else exitcodes.STARTUP_FAILURE
            kind = {exitcodes.APP_LOAD_ERROR: "app-load-error", exitcodes.BIND_FAILURE: "bind-failure"}.get(
                exit_code, "startup-failure"
            )
            reason = f"exited with code {code} before it was ready"
        message = f"worker {slot.index} (pid {pid}) failed to start: {reason}"
        _stderr(message)
        self.events.emit("error", message=message, kind=kind)
        self._begin_stop(kind, exit_code)

    def _crashed(self, slot: _Slot) -> None:
        now = time.monotonic()
        backoff = self._budget.backoff(now)
        if backoff is None:
            budget = self._budget
            message = f"workers keep dying: {budget.limit} restarts within {budget.window:g} s"
            _stderr(message)
            self.events.emit("error", message=message, kind="crash-loop")
            self._begin_stop("crash-loop", exitcodes.WORKER_CRASH_LOOP)
            return
        slot.backoff = backoff
        slot.restart_at = now + backoff


def _pending(conn: Channel) -> bool:
    try:
        return bool(conn.poll(0))
    except (EOFError, OSError):
        return True  # EOF is news too: let the loop read it (and reap) instead of killing


#: control signals -> what the supervisor does (stop signals are not here: they all stop)
CONTROL = {
    "SIGHUP": Supervisor._on_hup,
    "SIGUSR1": Supervisor._on_usr1,
    "SIGTTIN": Supervisor._on_ttin,
    "SIGTTOU": Supervisor._on_ttou,
    "SIGWINCH": Supervisor._on_winch,
}
#: stop signals that stop at once (no graceful wait for requests in flight)
QUICK_STOP = ("SIGINT", "SIGQUIT")


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


__all__ = ["STOP_ALLOWANCE", "Supervisor"]
