"""uvicorn: `python -m uvicorn APP --workers N (--host H --port P | --uds PATH | --fd N)`.

Flags by release (read from each release's `uvicorn/main.py`):

* 0.4.0 `--lifespan`; 0.5.0 `--workers`; `--uds` and `--fd` are older than both (0.3.0 has them)
* 0.9.1 `uvicorn/__main__.py` (the sdists of 0.9.0 and older have none, so no `python -m uvicorn`): the
  floor of this adapter
* `--log-level` throughout; reload is off unless `--reload` is given, so nothing is passed for it

Start methods: uvicorn >= 0.10.1 starts workers with `multiprocessing.get_context("spawn")`
(`uvicorn/subprocess.py`, later `_subprocess.py`), so an emulated default (the launcher) reaches only
0.9.1 and 0.10.0. The adapter still runs the launcher when asked, and the result shows that the default
did not matter.

Options: `log_level` (default info), `lifespan` (auto|on|off; omitted = the version's default).
"""

from typing import List

from harness.adapters._base import LaunchContext, LaunchSpec, Unsupported
from harness.adapters._versions import at_least
from servers.launcher import command

MIN_VERSION = "0.9.1"  # first release with uvicorn/__main__.py (read from the sdists of 0.9.0 and 0.9.1)
# (lifespan exists since 0.4.0 and spawn is hard-coded since 0.10.1: neither changes a flag here)

#: the master's signals (harness.run.contracts), from uvicorn/supervisors/multiprocess.py: 0.30.0's new
#: supervisor restarts every worker on HUP (handle_hup -> restart_all), adds / removes one on TTIN / TTOU
#: (never below one), stops on INT / TERM, and catches USR1, USR2, QUIT and WINCH without a handler
#: ("no handler is defined for it": the workers are kept). Before 0.30 the parent installs handlers for
#: INT and TERM only (HANDLED_SIGNALS); any other signal takes its default action.
SIGNAL_SOURCE = "uvicorn docs: Deployment (Built-in process manager); uvicorn/supervisors/multiprocess.py"
SIGNAL_CONTRACTS = (
    (
        "0.30.0",
        {
            "HUP": "reload",
            "TTIN": "add",
            "TTOU": "remove",
            "USR1": "keep",
            "USR2": "keep",
            "QUIT": "keep",
            "WINCH": "keep",
            "INT": "stop",
            "TERM": "stop",
        },
    ),
    (MIN_VERSION, {"INT": "stop", "TERM": "stop"}),
)


class UvicornAdapter:
    name = "uvicorn"
    distribution = "uvicorn"
    #: the oldest release this adapter drives (harness catalog sweep starts there by default)
    min_version = MIN_VERSION
    default_requirements = ("uvicorn",)
    SIGNAL_SOURCE = SIGNAL_SOURCE
    SIGNAL_CONTRACTS = SIGNAL_CONTRACTS

    def build(self, ctx: LaunchContext) -> LaunchSpec:
        version = ctx.server_version
        if not at_least(version, MIN_VERSION):
            raise Unsupported(f"uvicorn {version} has no `python -m uvicorn` (added in {MIN_VERSION})")
        options = dict(ctx.options)
        args: List[str] = [ctx.app, "--workers", str(ctx.workers)]
        if ctx.uds:
            args += ["--uds", ctx.uds]
        elif ctx.fd is not None:
            args += ["--fd", str(ctx.fd)]
        else:
            args += ["--host", ctx.host, "--port", str(ctx.port)]
        args += ["--log-level", options.get("log_level", "info")]
        if "lifespan" in options:
            args += ["--lifespan", options["lifespan"]]
        return LaunchSpec(argv=command(ctx.python, "uvicorn", args, ctx.start_method))


#: the instance registered in harness.adapters.ADAPTERS
ADAPTER = UvicornAdapter()

__all__ = ["ADAPTER", "UvicornAdapter"]
