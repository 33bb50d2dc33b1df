"""The reference server's resolved command line (plain, frozen).

* app - MODULE:ATTR
* workers - N >= 1
* strategy / start_method - resolved (never ""), valid and available here
* bind - servers.strategies.Bind (tcp host/port, uds path or fd)
* events - path of the event stream ("" = stdout)
* lifespan - auto | on | off
* graceful_timeout - seconds a worker has to finish in-flight requests after a stop
* timeout - seconds a ready worker may stay silent (no heartbeat) before the supervisor kills and replaces
  it (gunicorn's --timeout); 0 = never
"""

import dataclasses

from servers.strategies import Bind


@dataclasses.dataclass(frozen=True)
class Config:
    app: str
    workers: int = 1
    strategy: str = "inherit"
    start_method: str = "fork"
    bind: Bind = dataclasses.field(default_factory=Bind)
    events: str = ""
    lifespan: str = "auto"
    graceful_timeout: float = 10.0
    timeout: float = 10.0


__all__ = ["Config"]
