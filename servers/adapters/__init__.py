"""Adapters: one module per server, each exposing an object that implements `servers.adapters.Adapter`.

ADAPTERS maps the `--server` name to "module:attr" (imported lazily, so a missing server module never
breaks the others). `harness.adapters.get_adapter(name)` resolves it; it also accepts a literal
"module:attr" for test-only adapters. The attribute may be an Adapter instance or a class taking no
arguments.
"""

from typing import Dict

from servers.adapters._base import Adapter, LaunchContext, LaunchSpec, Unsupported

#: --server name -> "module:attr"
ADAPTERS: Dict[str, str] = {
    "reference": "servers.adapters.reference:ADAPTER",
    "uvicorn": "servers.adapters.uvicorn:ADAPTER",
    "hypercorn": "servers.adapters.hypercorn:ADAPTER",
    "gunicorn": "servers.adapters.gunicorn:ADAPTER",
    "granian": "servers.adapters.granian:ADAPTER",
    "daphne": "servers.adapters.daphne:ADAPTER",
}

__all__ = ["ADAPTERS", "Adapter", "LaunchContext", "LaunchSpec", "Unsupported"]
