"""The known-issue catalog as tests: every entry of harness/catalog/known_issues/*.toml, every
requirement set.

    pytest scenarios/test_known_issues.py                      # all entries runnable on this platform
    pytest scenarios/test_known_issues.py -k uvicorn-1009      # one entry
    pytest scenarios/test_known_issues.py -m known_issue -k affected

* an affected release must fail with exactly the entry's failure class, its signature regex must match
  the record's signature, and the exit code must match when the entry names one
* the first fixed release must pass (or show the class the entry names for it)
* a case that can bind a fixed port (see _fixed_ports) is marked fixed_port: it holds that port's lock
* an entry for another platform is skipped with a reason naming the platforms; so is an affected case
  whose Python is outside the entry's range, and an entry with a `skip` reason (e.g. a fault the runner
  lacks)

A malformed entry is a collection error with one line naming the file (harness.catalog.CatalogError).
"""

import os
import platform
import re
import subprocess
import sys
from typing import Any, List, Tuple

import pytest

from harness import PROJECT_ROOT
from harness.capsule import write_capsule
from harness.catalog import Entry, Expectation, case_skip, entries
from harness.model.classes import OK_CLASSES
from harness.model.records import Scenario
from harness.plugin import failure_message


def _case_id(entry: Entry, scenario: Scenario, expectation: Expectation) -> str:
    reqs = "+".join(scenario.requirements)
    return f"{entry.id}-{expectation.role}-{reqs}"


def _fixed_ports(scenario: Scenario) -> Tuple[int, ...]:
    """Ports the case's server may bind whatever it is told: uvicorn <=0.14's multi-worker path ignores
    --uds / --fd and binds 127.0.0.1:8000 (https://github.com/Kludex/uvicorn/pull/1009)."""
    if scenario.server != "uvicorn" or scenario.bind == "tcp":
        return ()
    for req in scenario.requirements:
        m = re.fullmatch(r"uvicorn==(\d+)\.(\d+)(?:\.\d+)*", req.strip())
        if m and (int(m.group(1)), int(m.group(2))) < (0, 15):
            return (8000,)
    return ()


#: pytest-timeout's budget (tox.ini: 300 s) is a net for hangs, sized for a start, a load and a stop; a case
#: whose fault is a sequence of reloads runs each reload twice - in the harness and in its capsule - and
#: each one (old workers drained, N new ones answering) took up to 17.5 s at 8 workers on 2 quiet cores
#: (gunicorn 26.0.0, whose master slows as its leaked threads pile up)
TIMEOUT_S, PER_SIGNAL_S = 300, 30


def _timeout(scenario: Scenario) -> float:
    """The case's budget: the suite's, plus PER_SIGNAL_S for each signal of a repeated signal-master."""
    repeat = int(scenario.fault_repeat or 1) if str(scenario.fault or "").startswith("signal-master") else 1
    return TIMEOUT_S + PER_SIGNAL_S * (repeat - 1)


def _skip_reason(entry: Entry, scenario: Scenario, expectation: Expectation) -> str:
    return case_skip(entry, scenario, expectation, sys.platform, platform.python_version())


def _params() -> List[Any]:
    params = []
    for entry in entries():
        for scenario, expectation in entry.scenarios():
            marks = [pytest.mark.known_issue(entry.id), pytest.mark.worker_count(scenario.workers)]
            marks.append(pytest.mark.slow)
            if _timeout(scenario) > TIMEOUT_S:
                marks.append(pytest.mark.timeout(_timeout(scenario)))
            ports = _fixed_ports(scenario)
            if ports:
                marks.append(pytest.mark.fixed_port(*ports))
            reason = _skip_reason(entry, scenario, expectation)
            if reason:
                marks.append(pytest.mark.skip(reason=reason))
            params.append(
                pytest.param(
                    (entry, scenario, expectation),
                    id=_case_id(entry, scenario, expectation),
                    marks=marks,
                )
            )
    return params


@pytest.mark.parametrize("case", _params())
def test_known_issue(case: Tuple[Entry, Scenario, Expectation], run_scenario: Any, tmp_path: Any) -> None:
    """The case meets its expectation; a failing one's reproduction capsule, run by hand (repro.py, no
    harness), comes to the same class."""
    entry, scenario, expectation = case
    record = run_scenario(scenario, catalog=entry.tag(expectation.role))
    problem = expectation.mismatch(record.failure_class, record.signature, record.exit_code)
    if problem:
        head = f"{entry.id} ({expectation.role}, {'+'.join(scenario.requirements)}): {problem}"
        pytest.fail(head + "\n" + failure_message(record), pytrace=False)
    if record.failure_class in OK_CLASSES or not record.command:
        return
    folder = write_capsule(record, str(tmp_path / "capsules"), project_root=PROJECT_ROOT)
    # ended by SIGTERM, never SIGKILL, whatever ends the wait (its timeout, pytest-timeout, Ctrl-C): repro.py
    # then stops the server it started in a session of its own; a SIGKILL would orphan that server
    proc = subprocess.Popen(
        [sys.executable, os.path.join(folder, "repro.py"), "--grace", "5"], cwd=folder,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=_timeout(scenario) - 60)
    finally:
        if proc.poll() is None:
            proc.terminate()
            out, err = proc.communicate(timeout=30)  # its stop: the server's grace (5 s) and the kill
    found = re.search(r"^VERDICT: ([a-z-]+): (.*)$", out, re.MULTILINE)
    got = found.group(1) if found else f"no verdict (exit {proc.returncode})"
    if got != record.failure_class:
        pytest.fail(
            f"{entry.id}: the capsule's repro.py says {got!r}, the record {record.failure_class!r}\n"
            + out[-4000:]
            + err[-2000:],
            pytrace=False,
        )
