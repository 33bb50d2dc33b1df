"""The adapter interface: how the harness turns a Scenario into a command line for one server.

An adapter runs in the harness's process (never in the server's interpreter). It knows the installed
version of its server and maps the scenario onto the flags *that version* has. When a version cannot
express a scenario it raises Unsupported with the reason; the harness records `unsupported`.

* LaunchContext - what the harness has prepared: interpreter, installed versions, bind target, run dir
* LaunchSpec - what to start: argv, extra env, fds to pass, and where the reference server writes events
* Adapter - the Protocol every module in `harness.adapters` implements (registered in ADAPTERS)
"""

import dataclasses
from typing import Dict, Optional, Protocol, Tuple

#: the classic pre-fork master's signals, as gunicorn documents them (docs/source/signals.rst): the
#: reference server declares the same, and so does the correct mode of the tests' broken server
PREFORK: Dict[str, str] = {
    "HUP": "reload",
    "USR1": "keep",
    "TTIN": "add",
    "TTOU": "remove",
    "WINCH": "keep",
    "TERM": "stop",
    "INT": "quick-stop",
    "QUIT": "quick-stop",
}


class Unsupported(Exception):
    """This server/version cannot express the scenario here; str(exc) is the one-line reason."""


@dataclasses.dataclass(frozen=True)
class LaunchContext:
    """Everything an adapter may use to build the command line.

    * python - absolute path of the interpreter the server runs under
    * python_version - "3.11.7"
    * server_version - the installed version of the adapter's distribution ("" for the reference server)
    * installed - {distribution: version} of the env
    * app - MODULE:ATTR
    * workers - N
    * host - the loopback address to bind (tcp)
    * port - 0 unless the scenario pins one
    * uds - the socket path for bind=uds ("" otherwise)
    * fd - the fd number the harness passes for bind=fd:N (None otherwise)
    * strategy / start_method - as in the scenario ("" = the server's default)
    * events_path - where the reference server writes its event stream
    * run_dir - a private directory for this run (HOME and TMP live under it)
    * options - extra adapter options
    """

    python: str
    python_version: str
    server_version: str
    installed: Dict[str, str]
    app: str
    workers: int
    host: str = "127.0.0.1"
    port: int = 0
    uds: str = ""
    fd: Optional[int] = None
    strategy: str = ""
    start_method: str = ""
    events_path: str = ""
    run_dir: str = ""
    options: Tuple[Tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class LaunchSpec:
    """What to start. argv[0] is the interpreter; env holds only the variables to add/override."""

    argv: Tuple[str, ...]
    env: Dict[str, str] = dataclasses.field(default_factory=dict)
    events_path: str = ""  # non-empty: the server writes servers.events lines there


def bind_value(ctx: LaunchContext) -> str:
    """The `--bind` value gunicorn and hypercorn share: `unix:PATH`, `fd://N` or `HOST:PORT` ([v6]:port)."""
    if ctx.uds:
        return f"unix:{ctx.uds}"
    if ctx.fd is not None:
        return f"fd://{ctx.fd}"
    host = f"[{ctx.host}]" if ":" in ctx.host else ctx.host
    return f"{host}:{ctx.port}"


class Adapter(Protocol):
    #: the --server name
    name: str
    #: the PyPI distribution whose version selects the flags ("" for the reference server)
    distribution: str
    #: requirement strings used when the scenario names none (latest that installs)
    default_requirements: Tuple[str, ...]
    # (upstream adapters also have `min_version`, the oldest release they drive; read with getattr)

    def build(self, ctx: LaunchContext) -> LaunchSpec:
        """Return the command for this scenario, or raise Unsupported(reason)."""
        ...


__all__ = ["PREFORK", "Adapter", "LaunchContext", "LaunchSpec", "Unsupported", "bind_value"]
