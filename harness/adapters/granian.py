"""granian: `python -m granian --interface asgi --workers N (--host H --port P | --uds PATH) APP`.

Flags by release (read from `granian/cli.py` of 1.0.2, 1.3.2, 1.6.4, 2.0.0, 2.2.0 ... 2.8.7):

* `--interface`, `--workers`, `--host`, `--port`, `--log-level`, `--respawn-failed-workers` and
  `granian/__main__.py`: already in 1.0.2, the floor of this adapter. The default interface is rsgi, so
  `--interface asgi` is always passed
* `--uds`: from 2.5.0 (absent in 2.4.0); older releases cannot bind a unix socket: Unsupported
* no flag serves an inherited fd (no `--fd`): bind=fd is Unsupported on every release

Start methods: granian 1.x starts workers with `multiprocessing.get_context()` (the default start method,
which the launcher emulates); 2.8 reads `multiprocessing.get_start_method()` and replaces anything but
fork/spawn with spawn. Options: `log_level` (default info), `respawn_failed_workers` ("1" passes
`--respawn-failed-workers`).
"""

from typing import List

from harness.adapters._base import LaunchContext, LaunchSpec, Unsupported
from harness.adapters._versions import at_least
from servers.launcher import command

MIN_VERSION = "1.0.2"
UDS_SINCE = "2.5.0"

#: the master's signals (harness.run.contracts), from granian/_signals.py and granian/server/common.py:
#: INT / TERM stop the workers and exit; HUP (1.0.0 on, "HUP signal received, gracefully respawning
#: workers") respawns every worker while the master keeps the listener
SIGNAL_SOURCE = "granian granian/_signals.py, granian/server/common.py (signal_handler_reload)"
SIGNAL_CONTRACTS = ((MIN_VERSION, {"HUP": "reload", "INT": "stop", "TERM": "stop"}),)


class GranianAdapter:
    name = "granian"
    distribution = "granian"
    #: the oldest release this adapter drives (harness catalog sweep starts there by default)
    min_version = MIN_VERSION
    default_requirements = ("granian",)
    SIGNAL_SOURCE = SIGNAL_SOURCE
    SIGNAL_CONTRACTS = SIGNAL_CONTRACTS

    def build(self, ctx: LaunchContext) -> LaunchSpec:
        version = ctx.server_version
        if not at_least(version, MIN_VERSION):
            raise Unsupported(f"granian {version} is older than {MIN_VERSION}, the oldest release read")
        if ctx.fd is not None:
            raise Unsupported(f"granian {version or '(latest)'} cannot serve an inherited fd (no --fd)")
        options = dict(ctx.options)
        args: List[str] = ["--interface", "asgi", "--workers", str(ctx.workers)]
        if ctx.uds:
            if not at_least(version, UDS_SINCE):
                raise Unsupported(f"granian {version} cannot bind a unix socket (--uds from {UDS_SINCE})")
            args += ["--uds", ctx.uds]
        else:
            args += ["--host", ctx.host, "--port", str(ctx.port)]
        args += ["--log-level", options.get("log_level", "info")]
        if options.get("respawn_failed_workers", "") in ("1", "true", "yes"):
            args.append("--respawn-failed-workers")
        args.append(ctx.app)
        return LaunchSpec(argv=command(ctx.python, "granian", args, ctx.start_method))


#: the instance registered in harness.adapters.ADAPTERS
ADAPTER = GranianAdapter()

__all__ = ["ADAPTER", "GranianAdapter"]
