"""Exit codes of the reference server, shared by the supervisor, its workers and the harness.

The harness classifies a run by these numbers (never by log text where a code says it):

* OK - stopped on request, every worker exited cleanly.
* INTERNAL_ERROR - an unexpected exception in the server itself (a bug in `servers`).
* USAGE - bad command line: unknown strategy/start method, a pair that makes no sense, bad values.
* STARTUP_FAILURE - a worker failed before it was ready (lifespan startup failed, socket unusable, ...).
* APP_LOAD_ERROR - the APP (`module:attr`) could not be imported or is not callable.
* STRATEGY_UNSUPPORTED - the strategy or start method is not available on this OS/Python; the reason
  is the one line on stderr. Nothing was bound.
* BIND_FAILURE - the address could not be bound (in use, permission, bad fd).
* WORKER_CRASH_LOOP - workers kept dying after ready and the restart budget ran out.
* ORPHANED - (worker only) the supervisor went away; the worker exited on parent-pipe EOF.
* SHUTDOWN_TIMEOUT - graceful stop did not finish within --graceful-timeout; stragglers were killed.
"""

OK = 0
INTERNAL_ERROR = 1
USAGE = 2
STARTUP_FAILURE = 3
APP_LOAD_ERROR = 4
STRATEGY_UNSUPPORTED = 5
BIND_FAILURE = 6
WORKER_CRASH_LOOP = 7
ORPHANED = 8
SHUTDOWN_TIMEOUT = 9

#: number -> name, for records and reports.
NAMES = {
    OK: "OK",
    INTERNAL_ERROR: "INTERNAL_ERROR",
    USAGE: "USAGE",
    STARTUP_FAILURE: "STARTUP_FAILURE",
    APP_LOAD_ERROR: "APP_LOAD_ERROR",
    STRATEGY_UNSUPPORTED: "STRATEGY_UNSUPPORTED",
    BIND_FAILURE: "BIND_FAILURE",
    WORKER_CRASH_LOOP: "WORKER_CRASH_LOOP",
    ORPHANED: "ORPHANED",
    SHUTDOWN_TIMEOUT: "SHUTDOWN_TIMEOUT",
}

__all__ = [
    "APP_LOAD_ERROR",
    "BIND_FAILURE",
    "INTERNAL_ERROR",
    "NAMES",
    "OK",
    "ORPHANED",
    "SHUTDOWN_TIMEOUT",
    "STARTUP_FAILURE",
    "STRATEGY_UNSUPPORTED",
    "USAGE",
    "WORKER_CRASH_LOOP",
]
