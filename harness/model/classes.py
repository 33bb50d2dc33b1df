"""The one failure-class vocabulary: every class a record can carry, what it means, and how it groups.

Class names are stable lowercase strings: JSON keys in records, CSS classes in the report, `--bad-class`
choices in bisect. Everything that names a class reads it from here (the classifier's table asserts that
each of its rows decides one of these; the report's legend prints CLASS_HELP).

* CLASS_HELP - {class: one-line meaning}, most benign first (that order is the report's order too)
* FAILURE_CLASSES - the class names in that order
* OK_CLASSES - the server did what it should (degraded: and slower than its 1-worker twin)
* rank(cls) - the sort position of a class (unknown ones - written by a newer harness - last)
* INCONCLUSIVE - nothing the server did was judged: the run could not happen as specified; a bisect
  skips such a version, a release diff does not count it
"""

from typing import Dict, Tuple

CLASS_HELP: Dict[str, str] = {
    "passed": "started, every worker served, load clean, stopped clean, nothing leaked",
    "degraded": "passed, but kept connections stall on the client's delayed-ACK timer (40 ms on Linux)",
    "partial-workers": "serving, but fewer distinct worker pids answered than asked for",
    "excess-workers": "more live workers than asked for (or than a fault's contract leaves) after a fault",
    "request-errors": "all workers answered, but the load saw errors or non-2xx responses",
    "contract-violation": "a signal to the master did not do what the server documents for it",
    "wrong-listener": "listening somewhere other than asked (address, port, family, TCP instead of UDS)",
    "respawn-loop": "workers keep dying and being replaced",
    "not-serving": "the server is alive (maybe bound) but no request gets an answer",
    "startup-failure": "exited, or its workers died, before it was ready",
    "shutdown-hang": "did not stop on the stop signal within the deadline; SIGKILLed",
    "leak": "a process, listening socket or UDS file of the run survived the stop",
    "unsupported": "the scenario cannot be expressed here (strategy / OS / version)",
    "env-error": "the environment could not be built (interpreter missing, install failed)",
    "harness-error": "the harness itself failed: a harness bug, not a server bug",
}

FAILURE_CLASSES: Tuple[str, ...] = tuple(CLASS_HELP)

OK_CLASSES: Tuple[str, ...] = ("passed", "degraded")

INCONCLUSIVE: Tuple[str, ...] = ("unsupported", "env-error", "harness-error")


def rank(failure_class: str) -> int:
    """Its position in FAILURE_CLASSES; a class this harness does not know (a newer one's) sorts last."""
    try:
        return FAILURE_CLASSES.index(failure_class)
    except ValueError:
        return len(FAILURE_CLASSES)


__all__ = ["CLASS_HELP", "FAILURE_CLASSES", "INCONCLUSIVE", "OK_CLASSES", "rank"]
