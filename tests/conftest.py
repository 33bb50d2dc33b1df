"""Shared by tests/: `@pytest.mark.fixed_port(8000)` - a test that can make a server bind a fixed TCP port
holds the machine-wide lock on it (harness._locks.port_lock) while it runs, with or without xdist
(scenarios/conftest.py does the same for the scenario suite)."""

import contextlib
from typing import Iterator

import pytest

from harness._locks import port_lock


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fixed_port(*ports): the test can bind these fixed TCP ports; it holds a lock on each"
    )


@pytest.fixture(autouse=True)
def _fixed_port_locks(request: pytest.FixtureRequest) -> Iterator[None]:
    ports = sorted({int(p) for mark in request.node.iter_markers("fixed_port") for p in mark.args})
    with contextlib.ExitStack() as stack:
        for port in ports:  # always in the same order: two tests never wait for each other's second lock
            stack.enter_context(port_lock(port))
        yield
