"""Parametrization of the scenario suite (scenarios/test_workers.py).

The `scenario` argument is filled from the reference server's probe (run under --python's interpreter)
and the plugin's selection options (--harness-server, --harness-workers, --harness-strategy). Ids are
scenario ids, so
`-k uvicorn`, `-k forkserver` or `-k w4` select what they say, and every id contains "workers".
The `fixed_port(N)` marker (the catalog's uvicorn <=0.14 --uds/--fd cases bind 127.0.0.1:8000) comes from
the plugin (harness.plugin).
"""

import dataclasses
from typing import Any, List, Sequence, Tuple

import pytest

from harness.adapters.reference import ProbeFailed, combinations, probe
from harness.env import pythons
from harness.model.records import Scenario

REFERENCE_WORKERS = (1, 2, 4)
#: every upstream server at its latest release, 2 and 4 workers (--harness-server picks among them)
UPSTREAM = (("uvicorn", (2, 4)), ("hypercorn", (2, 4)), ("gunicorn", (2, 4)), ("granian", (2, 4)))


def _worker_counts(config: pytest.Config, default: Sequence[int]) -> Tuple[int, ...]:
    text = str(config.getoption("harness_workers") or "")
    if not text:
        return tuple(default)
    try:
        counts = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise pytest.UsageError(
            f"--harness-workers expects a comma-separated list of integers, got {text!r}"
        ) from None
    if not counts or min(counts) < 1:
        raise pytest.UsageError(f"--harness-workers: every count must be >= 1, got {text!r}")
    return counts


def _reference_params(config: pytest.Config) -> List[Any]:
    python = str(config.getoption("harness_python") or "")
    try:
        data = probe(pythons.resolve(python).path)
    except (ProbeFailed, pythons.InterpreterNotFound) as exc:
        return [
            pytest.param(
                Scenario(server="reference"),
                id="reference-probe-failed",
                marks=pytest.mark.skip(reason=str(exc)),
            )
        ]
    wanted = set(config.getoption("harness_strategies") or [])
    params = []
    for strategy, method, available, reason in combinations(data):
        if wanted and strategy not in wanted:
            continue
        for n in _worker_counts(config, REFERENCE_WORKERS):
            sc = Scenario(server="reference", strategy=strategy, start_method=method, workers=n)
            marks = [pytest.mark.worker_count(n)]
            if not available:
                marks.append(
                    pytest.mark.skip(reason=f"{strategy}/{method or '-'}: {reason or 'unavailable here'}")
                )
            params.append(pytest.param(sc, id=sc.scenario_id, marks=marks))
    return params


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "scenario" not in metafunc.fixturenames:
        return
    config = metafunc.config
    servers = set(config.getoption("harness_servers") or [])
    known = {"reference", *(name for name, _ in UPSTREAM)}
    unknown = sorted(servers - known)
    if unknown:
        raise pytest.UsageError(
            f"--harness-server: unknown server(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    params: List[Any] = []
    if not servers or "reference" in servers:
        params.extend(_reference_params(config))
    for server, counts in UPSTREAM:
        if servers and server not in servers:
            continue
        for n in _worker_counts(config, counts):
            sc = Scenario(server=server, workers=n)
            params.append(pytest.param(sc, id=sc.scenario_id, marks=[pytest.mark.worker_count(n)]))
    python = str(config.getoption("harness_python") or "")
    if python:
        params = [
            pytest.param(
                dataclasses.replace(p.values[0], python=python), id=f"{p.id}-py{python}", marks=p.marks
            )
            for p in params
        ]
    metafunc.parametrize("scenario", params)
