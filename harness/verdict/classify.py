"""The classifier: Observation -> Verdict(failure_class, signature, reason, rule), a pure table lookup.

RULES is read top to bottom; the first row whose predicate holds decides. Precedence, and why:

1. Outcomes that are not the server's behaviour at all (unsupported, env-error, harness-error): nothing the
   server did can be judged when the run did not happen as specified.
2. Then the server's failures **in the order of a run's phases** - bind, start, serve, load, stop, clean up.
   The earliest phase that went wrong is the root cause a maintainer must fix first; later symptoms are
   usually its consequences (a server that never started cannot serve, and its orphaned workers leak).
   So a run that failed to start *and* leaked is ``startup-failure``; the leak is still named in the reason
   sentence and kept in the record's ``leaks``, so nothing is hidden.
   * wrong-listener comes first because binding is the first thing a server does, and a listener in the
     wrong place explains every later symptom (the harness probes where it asked, sees nothing).
   * respawn-loop is checked before startup-failure / not-serving: "workers keep dying and being replaced"
     is a more specific diagnosis than "exited" or "does not answer".
3. degraded: nothing above matched, but the run's own keep-alive phase shows a delayed-ACK stall
   (harness.verdict.degraded.keepalive_stall: the responses' bodies held for the OS's delayed-ACK
   timer after their heads, which CPU load does not produce; the latency band for older records).
4. passed: nothing above matched.

Signatures: the decisive line of the server's output (harness.verdict.signature); when the output has nothing
decisive, a stable synthetic one per class (`not-serving: ECONNREFUSED`, `partial-workers: 1/2`,
`exit 3 STARTUP_FAILURE`, `leak: process+uds`, ...). Never empty for a non-passing class; "" for passed.
"""

import dataclasses
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

from harness.model.classes import FAILURE_CLASSES
from harness.model.observation import Observation
from harness.verdict.degraded import keepalive_stall
from harness.verdict.signature import decisive_line, launch_problem, normalize, signature_for
from servers import exitcodes

#: restarts (while not ready, or over a whole run) from which "keeps being replaced" is a loop
RESPAWN_LOOP_RESTARTS = 3


class Rule(NamedTuple):
    """One row of the table: name (stable, used in tests and records), predicate, failure class, why."""

    name: str
    predicate: Callable[[Observation], bool]
    failure_class: str
    why: str


@dataclasses.dataclass(frozen=True)
class Verdict:
    """* failure_class - one of harness.model.classes.FAILURE_CLASSES
    * signature - normalized decisive line or a synthetic one ("" only when passed)
    * reason - one human sentence
    * rule - the name of the RULES row that decided"""

    failure_class: str
    signature: str
    reason: str
    rule: str


# --- listener comparison -----------------------------------------------------------------------------


def _family(listener: Dict[str, Any]) -> str:
    fam = str(listener.get("family") or "").lower()
    if "unix" in fam or (not fam and listener.get("path")):
        return "unix"
    if "6" in fam:
        return "inet6"
    if "inet" in fam or "4" in fam or "tcp" in fam:
        return "inet"
    address = str(listener.get("address") or "")
    return "inet6" if ":" in address else "inet"


def _describe(listener: Dict[str, Any]) -> str:
    if _family(listener) == "unix":
        return "unix socket"  # the path is machine-specific: the reason names it, the signature does not
    address = str(listener.get("address") or "?")
    if ":" in address:
        address = f"[{address}]"
    return f"tcp {address}:{listener.get('port')}"


def _asked_family(asked: Dict[str, Any]) -> str:
    if asked.get("kind") == "uds":
        return "unix"
    return "inet6" if ":" in str(asked.get("host") or "") else "inet"


def wrong_listeners(obs: Observation) -> List[Dict[str, Any]]:
    """Listeners of the server's tree that are not where the scenario asked ([] when all are fine).

    * uds asked: any TCP listener is wrong (uvicorn <=0.14 `--workers 2 --uds` binds 127.0.0.1:8000);
      other UNIX sockets are wrong when nothing listens on the asked path, or when they lie outside the
      run's private directories (asked["private"]: HOME, XDG_RUNTIME_DIR and TMPDIR are there, so gunicorn
      >=25's control socket under ~/.gunicorn next to a correct listener is fine).
    * tcp / fd asked: a TCP listener on another family or address (0.0.0.0 when 127.0.0.1 was asked), on
      another port when a port was given, or more than one distinct endpoint when port 0 was asked (a worker
      that called listen() on an unbound socket got an ephemeral port of its own). A UNIX socket outside
      the run's private directories is wrong too (asked TCP, served on /etc/x.sock); inside them it is a
      control socket. Records without asked["private"] (older harnesses) ignore UNIX sockets here.
    """
    asked = obs.asked or {}
    if not asked or not obs.listeners:
        return []
    listeners = list(obs.listeners)
    private = [str(p) for p in (asked.get("private") or ()) if p]

    def outside(lst: Dict[str, Any]) -> bool:
        path = str(lst.get("path") or "")
        if not private or not path or not path.startswith("/"):
            return False  # unnamed / abstract sockets, or a record that does not know its private dirs
        return not any(path == p or path.startswith(p.rstrip("/") + "/") for p in private)

    if asked.get("kind") == "uds":
        path = asked.get("path")
        tcp = [lst for lst in listeners if _family(lst) != "unix"]
        on_path = [lst for lst in listeners if _family(lst) == "unix" and lst.get("path") == path]
        others = [lst for lst in listeners if _family(lst) == "unix" and lst.get("path") != path]
        return tcp + (others if not on_path else [lst for lst in others if outside(lst)])
    host = str(asked.get("host") or "")
    port = int(asked.get("port") or 0)
    family = _asked_family(asked)
    wrong: List[Dict[str, Any]] = []
    endpoints = set()
    for lst in listeners:
        if _family(lst) == "unix":
            if outside(lst):
                wrong.append(lst)
            continue
        endpoints.add((lst.get("address"), lst.get("port")))
        if (
            _family(lst) != family
            or (host and str(lst.get("address") or "") != host)
            or (port and int(lst.get("port") or 0) != port)
        ):
            wrong.append(lst)
    if not wrong and not port and len(endpoints) > 1:
        wrong = [lst for lst in listeners if _family(lst) != "unix"]
    return wrong


# --- predicates ----------------------------------------------------------------------------------------


def _leak_kinds(obs: Observation) -> List[str]:
    names = {"processes": "process", "listeners": "listener", "uds": "uds"}
    leaks = dict(obs.leaks or {})
    if obs.fault == "kill-master":
        # a SIGKILLed master cannot unlink its socket file: the fault leaves it, not the server (the next
        # start has to cope with it, which is the stale-uds fault). Still kept in the record's leaks.
        leaks.pop("uds", None)
    return [names.get(k, k) for k, v in sorted(leaks.items()) if v]


def _launch(obs: Observation, kind: str) -> bool:
    # The command line was refused before any server code ran (it exited, nothing answered): the
    # harness's launch, not the server's startup, is what failed.
    if not obs.exited_before_ready or obs.any_response:
        return False
    found = launch_problem(obs.stderr)
    return found is not None and found[0] == kind


def _crash_loop_exit(obs: Observation) -> bool:
    # The reference server says it by exit code (or event); it gave up after its restart budget.
    if obs.exit_code == exitcodes.WORKER_CRASH_LOOP and bool(obs.events):
        return True
    return any(e.get("event") == "stopping" and e.get("reason") == "crash-loop" for e in obs.events or ())


def _looping_before_ready(obs: Observation) -> bool:
    return not obs.ready and obs.worker_restarts >= RESPAWN_LOOP_RESTARTS


def _looping_while_serving(obs: Observation) -> bool:
    # A fault that kills one worker legitimately causes one replacement, kill-workers:K K of them and a
    # reload every worker once per signal (the new pids the fault saw); more than that is a loop.
    caused = len((obs.fault_outcome or {}).get("new_pids") or ()) if obs.fault else 0
    allowed = RESPAWN_LOOP_RESTARTS + max(1 if obs.fault else 0, caused)
    return obs.ready and obs.worker_restarts >= allowed


def _fault_count(obs: Observation) -> "Tuple[int, int]":
    """(live workers after the fault settled, what the fault leaves), or (-1, -1) when not measured."""
    out = obs.fault_outcome or {}
    if out.get("server_exited") or out.get("workers_after") is None or out.get("expected_after") is None:
        return -1, -1
    return int(out["workers_after"]), int(out["expected_after"])


def _excess(obs: Observation) -> bool:
    after, expected = _fault_count(obs)
    return after > expected >= 0


def _workers_lost(obs: Observation) -> bool:
    after, expected = _fault_count(obs)
    return str(obs.fault).startswith("kill-workers") and 0 <= after < expected


def _violation(obs: Observation) -> str:
    return str((obs.fault_outcome or {}).get("violation") or "")


def _growth(obs: Observation) -> "Dict[str, Any]":
    return dict(((obs.fault_outcome or {}).get("resources") or {}).get("growth") or {})


def _all_workers_died(obs: Observation) -> bool:
    # The master is alive but every worker it started is gone, none replaced (uvicorn <=0.29 with a failing
    # lifespan startup: the parent waits forever with no workers).
    return (
        not obs.ready
        and not obs.exited_before_ready
        and obs.worker_exits >= max(1, obs.expected_workers)
        and obs.worker_restarts == 0
        and not obs.any_response
    )


def _fault_unhandled(obs: Observation) -> bool:
    return bool(obs.fault) and (obs.fault_outcome or {}).get("handled") is False


def _stall(obs: Observation) -> "Any":
    return keepalive_stall(obs.keepalive_latency, obs.platform, obs.keepalive_ok, obs.keepalive_body_gap)


def _distinct_answered(obs: Observation) -> int:
    return len(set(obs.answered_pids))


#: faults that leave the master up by their nature: a master that exits after one has given up
WORKER_FAULTS = ("kill-worker", "kill-workers", "stop-worker")


def _master_exited_after_worker_fault(obs: Observation) -> bool:
    base = str(obs.fault or "").split(":", 1)[0]
    out = obs.fault_outcome or {}
    return (
        base in WORKER_FAULTS and bool(out.get("server_exited")) and obs.exited_before_ready and not obs.ready
    )


RULES: Tuple[Rule, ...] = (
    Rule(
        "unsupported",
        lambda o: bool(o.unsupported),
        "unsupported",
        "the scenario cannot be expressed on this OS/Python/version; nothing ran, nothing to judge",
    ),
    Rule(
        "env-error",
        lambda o: bool(o.env_error),
        "env-error",
        "the environment could not be built, so the server never ran",
    ),
    Rule(
        "harness-error",
        lambda o: bool(o.harness_error),
        "harness-error",
        "the harness itself failed; whatever the server did is unreliable evidence",
    ),
    Rule(
        "launch-entry-point",
        lambda o: _launch(o, "entry-point"),
        "harness-error",
        "the interpreter could not start what the harness named (no __main__ in this release, no such "
        "module or file): the harness launched it wrongly, the server never ran",
    ),
    Rule(
        "launch-flag",
        lambda o: _launch(o, "flag"),
        "unsupported",
        "the server's CLI rejected a flag this release does not have: the scenario cannot be expressed "
        "at this version",
    ),
    Rule(
        "wrong-listener",
        lambda o: bool(wrong_listeners(o)),
        "wrong-listener",
        "binding is the first phase: a listener in the wrong place explains every later symptom",
    ),
    # A fault is injected only once N workers answered: what the server did about it is judged before
    # anything the fault made happen afterwards (workers gone, nothing answering, a stop that failed).
    Rule(
        "fault-contract",
        lambda o: bool(_violation(o)),
        "contract-violation",
        "a signal to the master broke what its server documents for it (harness.run.contracts)",
    ),
    Rule(
        "fault-excess-workers",
        _excess,
        "excess-workers",
        "after the fault settled more workers ran than asked for (or than the signal's contract leaves)",
    ),
    Rule(
        "fault-workers-lost",
        _workers_lost,
        "partial-workers",
        "after killing workers at once, fewer than N came back",
    ),
    Rule(
        "fault-resource-growth",
        lambda o: bool(_growth(o)),
        "leak",
        "the contract was kept, but the master's fds / threads / children grew over the signals",
    ),
    Rule(
        "crash-loop-exit",
        _crash_loop_exit,
        "respawn-loop",
        "the server itself reports it gave up after workers kept dying (WORKER_CRASH_LOOP)",
    ),
    Rule(
        "respawn-before-ready",
        _looping_before_ready,
        "respawn-loop",
        "workers keep being replaced and never all become ready: more specific than exited or silent",
    ),
    Rule(
        "master-exited-after-worker-fault",
        # ready was proven before the fault: this master gave up when a worker died or hung, which a
        # prefork master should survive. Its exit code is kept in the reason, not the signature, because
        # it can be a race inside the server (hypercorn 0.18.0 exits 0 or 241 for the same bug)
        _master_exited_after_worker_fault,
        "startup-failure",
        "the master exited after one of its workers was killed or hung: the server gave up on its workers",
    ),
    Rule(
        "exited-before-ready",
        lambda o: o.exited_before_ready and not o.ready,
        "startup-failure",
        "the master exited before N workers answered; everything later is a consequence",
    ),
    Rule(
        "all-workers-died",
        _all_workers_died,
        "startup-failure",
        "every worker died before ready and none was replaced, while the master lingers",
    ),
    Rule(
        "no-response",
        lambda o: not o.ready and not o.any_response,
        "not-serving",
        "alive (and maybe bound) but no request got an answer: refused or hanging",
    ),
    Rule(
        "fewer-pids",
        # after "no-response": something answered, so fewer pids than N is a partial start
        lambda o: not o.ready and _distinct_answered(o) < max(1, o.expected_workers),
        "partial-workers",
        "serving, but fewer distinct worker pids answered than asked for",
    ),
    Rule(
        "fault-hung-worker-kept",
        # stop-worker (harness.run.faults): the fault's own verdict; nobody replaced the hung worker, so N-1
        # workers served until the harness resumed it (after that everything looks fine again)
        lambda o: (
            o.fault == "stop-worker" and _fault_unhandled(o) and not o.fault_outcome.get("server_exited")
        ),
        "partial-workers",
        "a hung worker was never replaced: only N-1 workers served while it hung",
    ),
    Rule(
        "respawn-while-serving",
        _looping_while_serving,
        "respawn-loop",
        "ready, but workers kept dying and being replaced during the run",
    ),
    Rule(
        "load-errors",
        lambda o: o.load_errors > 0 or o.load_non_2xx > 0,
        "request-errors",
        "every worker answered, but the load saw errors or non-2xx responses",
    ),
    Rule(
        "stop-escalated",
        lambda o: o.stop_escalated,
        "shutdown-hang",
        "the stop signal was not enough; the tree was killed at the deadline",
    ),
    Rule(
        "fault-orphans",
        lambda o: o.fault == "kill-master" and bool(o.fault_outcome.get("workers_left")),
        "leak",
        "workers outlived their killed master (orphans); the harness's stop ended them, not the server",
    ),
    Rule(
        "leaked",
        lambda o: bool(_leak_kinds(o)),
        "leak",
        "a process, listener or UDS file of the run survived the stop",
    ),
    Rule(
        "keepalive-stall",
        lambda o: _stall(o) is not None,
        "degraded",
        "everything worked, but kept connections wait out the client's delayed-ACK timer",
    ),
    Rule(
        "passed",
        lambda o: True,
        "passed",
        "started, every worker served, load clean, stopped clean, nothing leaked",
    ),
)


# --- signatures and reasons --------------------------------------------------------------------------

_SIGNALS = {-1: "SIGHUP", -2: "SIGINT", -6: "SIGABRT", -9: "SIGKILL", -11: "SIGSEGV", -15: "SIGTERM"}


def exit_text(code: Optional[int], named: bool) -> str:
    """`exit 3 STARTUP_FAILURE` (reference server names), `exit 3`, `killed by SIGKILL`, `exit ?`."""
    if code is None:
        return "exit ?"
    if code < 0:
        return f"killed by {_SIGNALS.get(code, f'signal {-code}')}"
    name = exitcodes.NAMES.get(code, "") if named else ""
    return f"exit {code} {name}".rstrip()


def _connect_symbol(errors: Iterable[str]) -> str:
    text = " ".join(errors).lower()
    if "refused" in text or "connecterror" in text:
        return "ECONNREFUSED"
    if "timeout" in text:
        return "timeout"
    if "reset" in text or "remoteprotocolerror" in text or "readerror" in text:
        return "ECONNRESET"
    if "filenotfound" in text or "enoent" in text:
        return "ENOENT"
    return "no response"


def _first_line(text: str) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def _last_line(text: str) -> str:
    for line in reversed((text or "").splitlines()):
        if line.strip():
            return line.strip()
    return ""


def _synthetic(rule: Rule, obs: Observation) -> str:
    cls = rule.failure_class
    named = bool(obs.events)
    if rule.name == "fault-orphans":
        return f"leak: {len(obs.fault_outcome.get('workers_left') or ())} workers outlived the killed master"
    if rule.name == "fault-hung-worker-kept":
        return "partial-workers: hung worker not replaced"
    if rule.name == "fault-contract":
        return _violation(obs)
    if rule.name in ("fault-excess-workers", "fault-workers-lost"):
        after, expected = _fault_count(obs)
        return f"{cls}: {after}/{expected} workers after {obs.fault}"
    if rule.name == "fault-resource-growth":
        out = obs.fault_outcome or {}
        what = ", ".join(f"master {k}" for k in sorted(_growth(obs)))
        sig = str((out.get("contract") or {}).get("signal") or obs.fault)
        return f"leak: {what} grew after {out.get('sent', '?')} x {sig}"
    if cls == "wrong-listener":
        wrong = wrong_listeners(obs)
        asked = (obs.asked or {}).get("kind", "tcp")
        return f"wrong-listener: {_describe(wrong[0])} (asked {asked})" if wrong else "wrong-listener"
    if cls == "respawn-loop":
        return f"respawn-loop: {obs.worker_restarts} restarts"
    if rule.name == "master-exited-after-worker-fault":
        return f"startup-failure: the master exited after {obs.fault}"
    if cls == "startup-failure":
        if rule.name == "all-workers-died":
            return f"startup-failure: {obs.worker_exits}/{obs.expected_workers} workers exited"
        return exit_text(obs.exit_code, named)
    if cls == "not-serving":
        return f"not-serving: {_connect_symbol(obs.connect_errors)}"
    if cls == "partial-workers":
        return f"partial-workers: {_distinct_answered(obs)}/{obs.expected_workers}"
    if cls == "request-errors":
        return f"request-errors: {obs.load_errors} errors, {obs.load_non_2xx} non-2xx"
    if cls == "shutdown-hang":
        return "shutdown-hang"
    if cls == "leak":
        return "leak: " + "+".join(_leak_kinds(obs))
    return cls


def _signature(rule: Rule, obs: Observation) -> str:
    cls = rule.failure_class
    if cls == "passed":
        return ""
    if rule.name.startswith("launch-"):
        found = launch_problem(obs.stderr)
        return normalize(found[1] if found else rule.name, obs.platform)
    if cls == "unsupported":
        return normalize(_first_line(obs.unsupported), obs.platform) or "unsupported"
    if cls == "env-error":
        line = decisive_line(obs.env_error) or _last_line(obs.env_error)
        return normalize(line, obs.platform) or "env-error"
    if cls == "harness-error":
        line = decisive_line(obs.harness_error) or _last_line(obs.harness_error)
        return normalize(line, obs.platform) or "harness-error"
    if rule.name.startswith("fault-"):  # what the fault measured, not whatever the server logged
        return _synthetic(rule, obs)
    if rule.name == "keepalive-stall":  # a measurement, not a log line
        return str(_stall(obs).signature)
    return signature_for(obs.stderr, obs.platform) or _synthetic(rule, obs)


def _reason(rule: Rule, obs: Observation) -> str:
    n = obs.expected_workers
    got = _distinct_answered(obs)
    cls = rule.failure_class
    named = bool(obs.events)
    if rule.name.startswith("launch-"):
        found = launch_problem(obs.stderr)
        line = found[1] if found else ""
        text = (
            f"The launch was refused before the server ran ({exit_text(obs.exit_code, named)}): {line}"
            if rule.name == "launch-entry-point"
            else f"This release's command line has no such flag ({exit_text(obs.exit_code, named)}): {line}"
        )
    elif cls in ("unsupported", "env-error", "harness-error") and obs.detail:
        text = obs.detail
    elif cls == "unsupported":
        text = f"Unsupported here: {_first_line(obs.unsupported)}"
    elif cls == "env-error":
        text = (
            f"The environment could not be built: {decisive_line(obs.env_error) or _last_line(obs.env_error)}"
        )
    elif cls == "harness-error":
        text = f"The harness failed: {_last_line(obs.harness_error)}"
    elif cls == "wrong-listener":
        wrong = ", ".join(_describe(lst) for lst in wrong_listeners(obs)[:3])
        text = f"The server listened on {wrong}, not where it was asked ({(obs.asked or {}).get('kind')})"
    elif rule.name == "fault-orphans":
        left = obs.fault_outcome.get("workers_left") or ()
        pids = ", ".join(map(str, left))
        text = f"After the master was killed, {len(left)} worker(s) kept running (pids {pids})"
    elif rule.name == "fault-hung-worker-kept":
        text = f"A hung (stopped) worker was never replaced: {obs.fault_outcome.get('why', '')}"
    elif rule.name == "fault-contract":
        expected = (obs.fault_outcome.get("contract") or {}).get("text", "")
        text = f"The signal's contract was broken: {_violation(obs)} (documented: {expected})"
    elif rule.name in ("fault-excess-workers", "fault-workers-lost"):
        after, expected = _fault_count(obs)
        text = f"After {obs.fault} settled, {after} workers ran where {expected} were expected"
    elif rule.name == "fault-resource-growth":
        out = obs.fault_outcome
        grown = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in sorted(_growth(obs).items()))
        text = f"The master's resources grew over {out.get('sent', '?')} signals: {grown}"
    elif cls == "respawn-loop":
        text = f"Workers kept exiting and being replaced ({obs.worker_restarts} restarts, {got}/{n} answered)"
        if rule.name == "crash-loop-exit":
            text += f"; the server gave up ({exit_text(obs.exit_code, named)})"
    elif rule.name == "all-workers-died":
        text = (
            f"All {obs.worker_exits} workers exited before ready and none was replaced; the master stayed up"
        )
    elif rule.name == "master-exited-after-worker-fault":
        text = (
            f"Every worker had answered; after {obs.fault} the master exited "
            f"({exit_text(obs.exit_code, named)}) instead of replacing the worker ({got}/{n} answered after)"
        )
    elif cls == "startup-failure":
        text = (
            f"The server exited ({exit_text(obs.exit_code, named)}) before {n} workers answered ({got} did)"
        )
    elif cls == "not-serving":
        errors = ", ".join(obs.connect_errors) or "no answer"
        text = f"The server stayed up but no request was answered ({errors})"
    elif cls == "partial-workers":
        text = f"Only {got} of {n} worker processes answered requests"
    elif cls == "request-errors":
        text = (
            f"All {n} workers answered, but {obs.load_errors} of {obs.load_requests} requests failed "
            f"and {obs.load_non_2xx} were not 2xx"
        )
    elif cls == "shutdown-hang":
        text = "The server did not stop on the stop signal and was killed at the deadline"
    elif rule.name == "keepalive-stall":
        return str(_stall(obs).reason)
    elif cls == "leak":
        text = "Survived the stop: " + ", ".join(
            f"{len(v)} {k}" for k, v in sorted((obs.leaks or {}).items()) if v
        )
    else:
        text = f"Started, all {n} workers answered, load clean, stopped clean, nothing leaked"
    later = _leak_kinds(obs)
    if later and cls not in ("leak", "passed", "unsupported", "env-error"):
        # phase order put an earlier failure first; do not hide the leak
        text += "; it also leaked (" + "+".join(later) + ")"
    return text + "."


def classify(obs: Observation) -> Verdict:
    """The verdict of the first RULES row whose predicate holds (the last row always does)."""
    for rule in RULES:
        if rule.predicate(obs):
            assert rule.failure_class in FAILURE_CLASSES, rule
            return Verdict(rule.failure_class, _signature(rule, obs), _reason(rule, obs), rule.name)
    raise AssertionError("RULES must end with a catch-all row")  # pragma: no cover


__all__ = ["RESPAWN_LOOP_RESTARTS", "RULES", "Rule", "Verdict", "classify", "exit_text", "wrong_listeners"]
