"""daphne: `python -m daphne (-b H -p P | -u PATH | --fd N) APP`, one process only.

Flags (read from `daphne/cli.py` of 2.0.0, 2.5.0, 3.0.0 and 4.2.3): `-b/--bind`, `-p/--port`,
`-u/--unix-socket`, `--fd`, `-v/--verbosity` throughout; `daphne/__main__.py` from 3.0.0 (2.5.0 has
none), the floor of this adapter.

daphne has no worker processes. Running N daphnes on one listening socket needs a supervisor that binds
once and starts N children with `--fd` (the harness would be that supervisor); this adapter expresses one
process, so workers > 1 is Unsupported. The launcher is used when a start method is asked for, though
daphne never starts a multiprocessing child. Option: `verbosity` (default 1).
"""

from typing import List

from harness.adapters._base import LaunchContext, LaunchSpec, Unsupported
from harness.adapters._versions import at_least
from servers.launcher import command

MIN_VERSION = "3.0.0"


class DaphneAdapter:
    name = "daphne"
    distribution = "daphne"
    #: the oldest release this adapter drives (harness catalog sweep starts there by default)
    min_version = MIN_VERSION
    default_requirements = ("daphne",)

    def build(self, ctx: LaunchContext) -> LaunchSpec:
        version = ctx.server_version
        if not at_least(version, MIN_VERSION):
            raise Unsupported(f"daphne {version} has no `python -m daphne` (added in {MIN_VERSION})")
        if ctx.workers != 1:
            raise Unsupported(
                f"daphne is one process with no --workers; {ctx.workers} workers would need an external "
                "supervisor passing one socket with --fd"
            )
        options = dict(ctx.options)
        args: List[str] = []
        if ctx.uds:
            args += ["-u", ctx.uds]
        elif ctx.fd is not None:
            args += ["--fd", str(ctx.fd)]
        else:
            args += ["-b", ctx.host, "-p", str(ctx.port)]
        args += ["-v", options.get("verbosity", "1"), ctx.app]
        return LaunchSpec(argv=command(ctx.python, "daphne", args, ctx.start_method))


#: the instance registered in harness.adapters.ADAPTERS
ADAPTER = DaphneAdapter()

__all__ = ["ADAPTER", "DaphneAdapter"]
