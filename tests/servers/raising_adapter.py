"""A test-only adapter whose build() raises: the runner must turn that into a `harness-error` record."""

from typing import Tuple

from harness.adapters import LaunchContext, LaunchSpec


class RaisingAdapter:
    name = "raising"
    distribution = ""
    default_requirements: Tuple[str, ...] = ()

    def build(self, ctx: LaunchContext) -> LaunchSpec:
        raise RuntimeError("adapter exploded on purpose")


ADAPTER = RaisingAdapter()
