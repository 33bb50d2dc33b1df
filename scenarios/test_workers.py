"""The scenario suite: does each server start and serve from every one of its N workers?

    pytest scenarios -k workers            # reference x strategies x start methods x {1,2,4} + uvicorn {2,4}
    pytest scenarios -k workers -n auto    # the same, in parallel (every run has its own dirs and ports)

Parametrized from `python -m servers --probe` run under the servers' interpreter: a strategy or start
method that is unavailable here is *skipped with the probe's reason*, never silently dropped. Each test
asserts that every worker served: `passed`, or `degraded` (served, but kept connections stall on the
delayed-ACK timer - uvicorn's multi-worker keep-alive, which the report flags); otherwise it fails with
the class, signature, reason and stderr tail.
"""

from typing import Any

from harness.model.records import Scenario
from harness.plugin import assert_served


def test_workers(scenario: Scenario, run_scenario: Any) -> None:
    record = run_scenario(scenario)
    assert_served(record)
    assert len(record.worker_pids) >= scenario.workers, record.worker_pids
