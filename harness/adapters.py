"""Adapter lookup: `--server` name -> an object implementing servers.adapters.Adapter.

Names come from the servers.adapters.ADAPTERS registry. A literal "module:attr" is accepted too, for
test-only adapters (tests/servers/wrong_bind.py). The attribute may be an instance or a class.
"""

import importlib
from typing import Any, List

from harness.errors import UnknownServer
from servers.adapters import ADAPTERS, Adapter


def known_servers() -> List[str]:
    return sorted(ADAPTERS)


def get_adapter(name: str) -> Adapter:
    """Resolve a server name (or "module:attr") to its adapter; UnknownServer (one line) if none."""
    target = ADAPTERS.get(name)
    if target is None:
        if ":" not in name:
            raise UnknownServer(f"unknown server {name!r}; known: {', '.join(known_servers())}")
        target = name
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownServer(f"server {name!r}: cannot import {module_name}: {exc}") from exc
    obj: Any = getattr(module, attr, None)
    if obj is None:
        raise UnknownServer(f"server {name!r}: {module_name} has no attribute {attr!r}")
    if isinstance(obj, type):
        obj = obj()
    if not callable(getattr(obj, "build", None)):
        raise UnknownServer(f"server {name!r}: {target} is not an adapter (no build())")
    return obj  # type: ignore[no-any-return]


__all__ = ["get_adapter", "known_servers"]
