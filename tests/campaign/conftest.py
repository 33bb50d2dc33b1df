"""Fixtures of the campaign tests: the loopback package index that serves awh-testserver's real wheels."""

from typing import Iterator

import pytest

from tests._pkgindex import PackageIndex
from tests.servers import release_dist as rd


@pytest.fixture(scope="module")
def index() -> Iterator[str]:
    """A real PEP 691/503 index on loopback serving awh-testserver 1.0, 1.1, 1.2, 1.3 (yanked), 2.0rc1."""
    state = PackageIndex()
    for version, (filename, data) in rd.wheels().items():
        state.add(rd.DIST, filename, data, yanked=rd.YANKED.get(version))
    with state.serve() as url:
        yield url
