"""The reference server's event stream: one JSON object per line, the contract the harness reads.

Every event has:

* event - the event name (below)
* t - `time.monotonic()` of the supervisor when it happened (system-wide clock on Linux, macOS and
  Windows, so the harness can compare it with its own `time.monotonic()`)
* pid - the supervisor's pid

Events, in the order they can appear:

* starting - {workers, strategy, start_method, python, platform}
* bound - {address, port, family, path, fd}: where the listener really is (port 0 resolved; `path`
  for --uds; `fd` for --fd). For `reuseport` this is the reserved address every worker binds.
* worker-spawned - {index, worker_pid}
* worker-ready - {index, worker_pid}: the worker is listening and its lifespan startup completed
* ready - {pids}: all N workers are ready (emitted once)
* worker-exit - {index, worker_pid, exitcode, ready}: exitcode is the process exit code
  (negative = killed by that signal on POSIX); `ready` tells whether it had been ready
* worker-restart - {index, old_pid, worker_pid, restarts, backoff}: a replacement was started
* worker-timeout - {index, worker_pid, silent_s}: a ready worker sent no heartbeat for --timeout seconds
  (hung or stopped); the supervisor kills it, then worker-exit / worker-restart follow as for a crash
* signal - {name, action}: a control signal was acted on (HUP "reload", USR1 "reopen", TTIN "add",
  TTOU "remove" or "at-minimum", WINCH "ignored")
* reloaded - {pids}: after HUP, every replacement worker is ready (the old ones are being drained)
* worker-exit of a worker the supervisor retired (HUP's old workers, TTOU's) carries `retired: true`
* stopping - {reason, quick}: a stop began (reason: signal name, "startup-failure", "crash-loop", ...;
  quick for INT / QUIT: no graceful wait for requests in flight)
* error - {message, kind}: one line saying what went wrong (kind: startup-failure, bind-failure, ...)
* stopped - {exitcode}: the supervisor is about to exit with this code

Worker pids are under `worker_pid`; `pid` is always the supervisor.
"""

import json
import os
import sys
import time
from typing import IO, Any, Dict, Optional

EVENT_NAMES = (
    "starting",
    "bound",
    "worker-spawned",
    "worker-ready",
    "ready",
    "worker-exit",
    "worker-restart",
    "worker-timeout",
    "signal",
    "reloaded",
    "stopping",
    "error",
    "stopped",
)


class EventWriter:
    """Writes events as JSON lines, flushed per line. Only the supervisor writes."""

    def __init__(self, path: Optional[str] = None) -> None:
        self._own = path is not None
        self._path = path
        self._fh: IO[str] = open(path, "a", encoding="utf-8") if path is not None else sys.stdout

    def reopen(self) -> None:
        """Close and open the event log again (USR1: a log rotation moved or truncated it)."""
        if self._own and self._path is not None:
            self._fh.close()
            self._fh = open(self._path, "a", encoding="utf-8")

    def emit(self, event: str, **fields: Any) -> Dict[str, Any]:
        assert event in EVENT_NAMES, event
        record: Dict[str, Any] = {"event": event, "t": time.monotonic(), "pid": os.getpid()}
        record.update(fields)
        self._fh.write(json.dumps(record, sort_keys=False) + "\n")
        self._fh.flush()
        return record

    def close(self) -> None:
        if self._own:
            self._fh.close()


__all__ = ["EVENT_NAMES", "EventWriter"]
