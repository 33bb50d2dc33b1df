"""Loading the ASGI app a worker serves, and the ASGI callable types.

* load_app(spec) - "module:attr" (attr may be dotted, "pkg.mod:obj.app") -> the callable
* AppLoadError - every way that can fail (bad spec, import error of any kind, missing attribute, not
  callable); str(exc) is one line naming the spec and the cause. The worker maps it to
  `servers.exitcodes.APP_LOAD_ERROR`.
"""

import importlib
from typing import Any, Awaitable, Callable, MutableMapping

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AppLoadError(Exception):
    """The app could not be loaded; str(exc) is the one-line reason."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_app(spec: str) -> ASGIApp:
    """Import `module:attr` and return the attribute; raise AppLoadError (never anything else) on failure."""
    if not isinstance(spec, str):
        raise AppLoadError(f"app must be a string MODULE:ATTR, got {spec!r}")
    module_name, sep, attr = spec.partition(":")
    module_name, attr = module_name.strip(), attr.strip()
    if not sep or not module_name or not attr:
        raise AppLoadError(f"app must be MODULE:ATTR, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppLoadError(f"cannot import {spec!r}: no module named {exc.name!r}") from exc
        raise AppLoadError(f"cannot import {spec!r}: {_one_line(exc)}") from exc
    except (Exception, SystemExit) as exc:  # an app module may do anything at import: report it
        raise AppLoadError(f"cannot import {spec!r}: {_one_line(exc)}") from exc
    obj: Any = module
    for part in attr.split("."):
        if not part:
            raise AppLoadError(f"app must be MODULE:ATTR, got {spec!r}")
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise AppLoadError(
                f"cannot load {spec!r}: module {module_name!r} has no attribute {attr!r}"
            ) from exc
    if not callable(obj):
        raise AppLoadError(f"cannot load {spec!r}: {type(obj).__name__} object is not callable")
    app: ASGIApp = obj
    return app


__all__ = ["ASGIApp", "AppLoadError", "Message", "Receive", "Scope", "Send", "load_app"]
