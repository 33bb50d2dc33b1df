"""Observation: everything the runner saw during one scenario, as plain data; the classifier's only input.

The runner (harness.run.runner) fills it in; harness.verdict.classify turns it into (failure class,
signature, reason).
Keeping this plain keeps the classifier a pure, table-tested function.

* platform - sys.platform of the machine the server ran on ("linux", "win32", "darwin"): errno numbers
  in the output are read with that platform's table
* unsupported - non-empty: the scenario cannot run here, and why (adapter or strategy said so)
* env_error - non-empty: the environment could not be built; the installer's decisive line
* harness_error - non-empty: the harness failed (exception text)
* detail - with one of the three above: the reason's fuller text (the interpreters this machine has, the
  installer's line); the signature never reads it, so it may name what only this machine has
* expected_workers - N asked for
* ready - N distinct worker pids answered within the readiness deadline
* answered_pids - every distinct pid that answered (readiness + load)
* any_response - at least one HTTP response came back at all
* exited_before_ready - the master process exited before readiness was proven
* exit_code - the master's exit code (None while alive / unknown); negative = killed by signal (POSIX)
* alive_at_deadline - the master was still running when the readiness deadline passed
* connect_errors - error class names seen while probing readiness (e.g. "ConnectError", "ReadTimeout")
* asked - where the scenario asked to listen: {"kind": "tcp"|"uds"|"fd", "host", "port", "path", "fd"}
* listeners - where the server's process tree really listened: [{"pid", "family", "address", "port", "path"}]
* worker_exits - workers that exited while the server was supposed to be running (from events or psutil)
* worker_restarts - replacements started (events, or new worker pids seen by psutil)
* load_requests / load_errors / load_non_2xx - the load phase totals (fault windows excluded by the runner)
* keepalive_latency / keepalive_ok - the keep-alive phase's latency quantiles (ms: {min, p10, p25, p50,
  p90, p99, max}) and its 2xx answers: the in-run evidence of a delayed-ACK stall (degraded)
* keepalive_body_gap - the keep-alive responses' head-to-last-body-byte gap quantiles (ms; {} when not
  measured): the stall's own mechanism, which CPU load does not fake (harness.verdict.degraded)
* stop_escalated - the stop signal was not enough; the tree was SIGKILLed at the deadline
* stop_exit_code - exit code after the stop
* leaks - {"processes": [...], "listeners": [...], "uds": [...]} that survived the stop
* stderr - the tail of the server's stderr (and stdout where servers log there): untrusted text
* events - the reference server's events ([] for upstream servers)
* fault - the fault injected ("" = none) and fault_outcome - what the server did about it
"""

import dataclasses
from typing import Any, Dict, List, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Observation:
    platform: str = "linux"
    unsupported: str = ""
    env_error: str = ""
    harness_error: str = ""
    detail: str = ""
    expected_workers: int = 1
    ready: bool = False
    answered_pids: Tuple[int, ...] = ()
    any_response: bool = False
    exited_before_ready: bool = False
    exit_code: Optional[int] = None
    alive_at_deadline: bool = False
    connect_errors: Tuple[str, ...] = ()
    asked: Dict[str, Any] = dataclasses.field(default_factory=dict)
    listeners: Tuple[Dict[str, Any], ...] = ()
    worker_exits: int = 0
    worker_restarts: int = 0
    load_requests: int = 0
    load_errors: int = 0
    load_non_2xx: int = 0
    stop_escalated: bool = False
    stop_exit_code: Optional[int] = None
    leaks: Dict[str, List[Any]] = dataclasses.field(default_factory=dict)
    stderr: str = ""
    events: Tuple[Dict[str, Any], ...] = ()
    fault: str = ""
    fault_outcome: Dict[str, Any] = dataclasses.field(default_factory=dict)
    keepalive_latency: Dict[str, Any] = dataclasses.field(default_factory=dict)
    keepalive_ok: int = 0
    keepalive_body_gap: Dict[str, Any] = dataclasses.field(default_factory=dict)


__all__ = ["Observation"]
