"""Adapters: how the harness turns a Scenario into a command line for one upstream server (or the reference
server). One module per server, each exposing an object that implements `Adapter`; they run in the harness's
process, never in the server's interpreter (servers.launcher is the one piece that does).

* ADAPTERS - the `--server` name -> "module:attr" (imported lazily: a broken server module never breaks the
  others)
* get_adapter(name) - the adapter for a registered name; UnknownServer (one line) for anything else, with
  nothing imported. Adapters outside this package (the test servers in tests/servers/) are registered by
  whoever runs the harness, in the environment: ASGI_HARNESS_ADAPTERS="module:attr,module:attr" makes each
  literal "module:attr" a registered name. The attribute may be an instance or a class taking no
  arguments; an import that fails in any way is UnknownServer too, never a traceback
* known_servers() - the registered names
* Adapter, LaunchContext, LaunchSpec, Unsupported - the interface (harness.adapters._base)
"""

import importlib
import os
import re
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


#: the environment variable that registers adapters outside this package ("module:attr,module:attr")
EXTRA_VAR = "ASGI_HARNESS_ADAPTERS"
_SPEC = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def registered_extra() -> List[str]:
    """The "module:attr" names registered through ASGI_HARNESS_ADAPTERS (malformed entries ignored)."""
    raw = os.environ.get(EXTRA_VAR, "")
    return [s.strip() for s in raw.split(",") if _SPEC.match(s.strip())]


def known_servers() -> List[str]:
    return sorted(ADAPTERS)


def get_adapter(name: str) -> Adapter:
    """Resolve a registered server name to its adapter; UnknownServer (one line) otherwise."""
    target = ADAPTERS.get(name)
    if target is None:
        if name not in registered_extra():
            raise UnknownServer(f"unknown server {name!r}; known: {', '.join(known_servers())}")
        target = name
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a registered module that fails to import: one line, whatever it raised
        line = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise UnknownServer(f"server {name!r}: cannot import {module_name}: {line}") from None
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
    "EXTRA_VAR",
    "Adapter",
    "LaunchContext",
    "LaunchSpec",
    "Unsupported",
    "get_adapter",
    "known_servers",
    "registered_extra",
]
