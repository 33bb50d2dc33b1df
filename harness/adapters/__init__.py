"""Adapters: how the harness turns a Scenario into a command line for one upstream server (or the reference
server). One module per server, each exposing an object that implements `Adapter`; they run in the harness's
process, never in the server's interpreter (servers.launcher is the one piece that does).

* ADAPTERS - the `--server` name -> "module:attr" (imported lazily: a broken server module never breaks the
  others)
* get_adapter(name) - the adapter for a registered name, or a literal "module:attr" (test-only adapters such
  as tests/servers/wrong_bind.py); the attribute may be an instance or a class taking no arguments.
  UnknownServer (one line) when there is none
* known_servers() - the registered names
* Adapter, LaunchContext, LaunchSpec, Unsupported - the interface (harness.adapters._base)
"""

import importlib
from typing import Any, Dict, List

from harness.adapters._base import Adapter, LaunchContext, LaunchSpec, Unsupported
from harness.model.errors import UnknownServer

#: --server name -> "module:attr"
ADAPTERS: Dict[str, str] = {
    "reference": "harness.adapters.reference:ADAPTER",
    "uvicorn": "harness.adapters.uvicorn:ADAPTER",
    "hypercorn": "harness.adapters.hypercorn:ADAPTER",
    "gunicorn": "harness.adapters.gunicorn:ADAPTER",
    "granian": "harness.adapters.granian:ADAPTER",
    "daphne": "harness.adapters.daphne:ADAPTER",
}


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


__all__ = [
    "ADAPTERS",
    "Adapter",
    "LaunchContext",
    "LaunchSpec",
    "Unsupported",
    "get_adapter",
    "known_servers",
]
