"""Every adapter at its floor (issue #17 item 4): the oldest release whose launch the adapter builds is
launched for real, and the harness's command line is accepted - the verdict is the server's (here: it
serves), never harness-error or unsupported from a launch the release does not have. One below the floor
is unsupported before anything starts. The floors were read from the release sdists (module docstrings)."""

import dataclasses
from typing import Any, Tuple

import pytest

from harness.adapters import (
    LaunchContext,
    Unsupported,
    daphne,
    get_adapter,
    granian,
    gunicorn,
    hypercorn,
    uvicorn,
)
from harness.env import pythons
from harness.model.records import Scenario
from harness.run.runner import run_scenario


@dataclasses.dataclass(frozen=True)
class Floor:
    server: str
    floor: str
    requirements: Tuple[str, ...]
    workers: int
    below: str
    python: str = "3.8"


FLOORS = (
    # the floor with its period's dependencies (Oct 2019): with today's uvloop it dies at once with
    # "RuntimeError: There is no current event loop" - dependency drift, its own startup-failure
    Floor(
        "uvicorn",
        uvicorn.MIN_VERSION,
        ("uvicorn==0.9.1", "uvloop==0.14.0", "websockets==8.1", "h11==0.8.1", "click==7.0"),
        2,
        "0.9.0",
    ),
    Floor("hypercorn", hypercorn.MIN_VERSION, ("hypercorn==0.6.0",), 2, "0.5.4"),
    # 20.1.0 imports pkg_resources (catalog: gunicorn-pkg-resources): the seed axis pins setuptools
    Floor(
        "gunicorn",
        gunicorn.MIN_VERSION,
        ("gunicorn==20.1.0", "uvicorn==0.20.0", "setuptools<82"),
        2,
        "20.0.4",
    ),
    Floor("granian", granian.MIN_VERSION, ("granian==1.0.2",), 2, "1.0.1"),
    Floor("daphne", daphne.MIN_VERSION, ("daphne==3.0.0",), 1, "2.5.0"),
)


@pytest.mark.slow
@pytest.mark.parametrize("f", FLOORS, ids=[f.server for f in FLOORS])
def test_each_adapter_launches_its_floor_release(tmp_path: Any, f: Floor) -> None:
    try:
        pythons.resolve(f.python)
    except pythons.InterpreterNotFound as exc:
        pytest.skip(str(exc))
    assert f.requirements[0] == f"{f.server}=={f.floor}"  # the test runs the adapter's own floor
    sc = Scenario(server=f.server, requirements=f.requirements, python=f.python, workers=f.workers,
                  requests=20, keepalive_requests=5)  # fmt: skip
    record = run_scenario(sc, work_dir=str(tmp_path))
    assert record.failure_class in ("passed", "degraded"), (record.signature, record.reason)
    assert record.server_version == f.floor
    if f.workers > 1:
        assert len(set(record.worker_pids)) == f.workers


@pytest.mark.parametrize("f", FLOORS, ids=[f.server for f in FLOORS])
def test_one_below_the_floor_is_unsupported_before_launch(f: Floor) -> None:
    installed = {f.server: f.below, "uvicorn": "0.20.0"}
    ctx = LaunchContext(python="/x/python", python_version="3.8.18", server_version=f.below,
                        installed=installed, app="servers.apps:pid", workers=f.workers)  # fmt: skip
    with pytest.raises(Unsupported, match=f.floor.replace(".", r"\.")):
        get_adapter(f.server).build(ctx)
