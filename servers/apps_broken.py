"""An app module that cannot be imported: importing it raises RuntimeError(BROKEN_MESSAGE).

Used by the import-failure scenarios (`servers.apps_broken:app` must end as APP_LOAD_ERROR, never as a
hang or a worker crash loop). Stdlib only, imports (that is: fails) the same way on Python 3.7+.
"""

from typing import Any

BROKEN_MESSAGE = "servers.apps_broken fails at import on purpose (import-failure scenario)"

__all__ = ["BROKEN_MESSAGE", "app"]


async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - never reached
    """Never callable: the raise below stops the import first."""


raise RuntimeError(BROKEN_MESSAGE)
