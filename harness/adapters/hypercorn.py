"""hypercorn: `python -m hypercorn APP -w N -b (H:P | unix:PATH | fd://N)`.

Flags by release (read from each release's `hypercorn/__main__.py` and `config.py`):

* `-w/--workers`, `-b/--bind` with `unix:` and `fd://` binds: already in 0.5.3 (the oldest read)
* ASGI 3 single-callable apps (every app in servers/apps.py) from 0.6.0 (CHANGELOG: "Support ASGI 3.0");
  0.5.x calls `app(scope)` and gets no instance back, so nothing it serves answers with a worker pid:
  0.6.0 is the floor of this adapter (it was 0.5.0: runs of 0.5.x read partial-workers 0/2 for a
  harness mismatch, not a server failure)
* `--log-level` from 0.8.0 (absent in 0.6.0); below it the flag is not passed
* `--error-logfile -` (0.8.0+) sends the error log to stderr, where the harness reads it

Start methods: hypercorn >= 0.14.2 starts workers with `multiprocessing.get_context("spawn")` (`run.py`);
up to 0.14.1 it used `multiprocessing.Process`, i.e. the default start method, which the launcher emulates.

Options: `log_level` (default info), `worker_class` (asyncio|uvloop|trio; omitted = asyncio).
"""

from typing import List

from harness.adapters._base import LaunchContext, LaunchSpec, Unsupported, bind_value
from harness.adapters._versions import at_least
from servers.launcher import command

MIN_VERSION = "0.6.0"  # ASGI 3 apps (the harness's test apps are ASGI 3 single callables)
LOG_LEVEL_SINCE = "0.8.0"
# (spawn is hard-coded since 0.14.2: no flag changes with it)

#: the master's signals (harness.run.contracts), from src/hypercorn/run.py: INT / TERM (and BREAK) set
#: the shutdown event for every worker (0.6.0 on); 0.18.0 adds HUP: all workers are told to stop, joined,
#: and a new set is started while the master keeps the sockets ("Reload workers on SIGHUP")
SIGNAL_SOURCE = "hypercorn src/hypercorn/run.py (run / reload / shutdown)"
SIGNAL_CONTRACTS = (
    ("0.18.0", {"HUP": "reload", "INT": "stop", "TERM": "stop"}),
    (MIN_VERSION, {"INT": "stop", "TERM": "stop"}),
)


class HypercornAdapter:
    name = "hypercorn"
    distribution = "hypercorn"
    #: the oldest release this adapter drives (harness catalog sweep starts there by default)
    min_version = MIN_VERSION
    default_requirements = ("hypercorn",)
    SIGNAL_SOURCE = SIGNAL_SOURCE
    SIGNAL_CONTRACTS = SIGNAL_CONTRACTS

    def build(self, ctx: LaunchContext) -> LaunchSpec:
        version = ctx.server_version
        if not at_least(version, MIN_VERSION):
            raise Unsupported(
                f"hypercorn {version} speaks ASGI 2 only (ASGI 3 apps from {MIN_VERSION}); "
                "the test apps are ASGI 3"
            )
        options = dict(ctx.options)
        bind = bind_value(ctx)
        args: List[str] = ["--workers", str(ctx.workers), "--bind", bind]
        if at_least(version, LOG_LEVEL_SINCE):
            args += ["--log-level", options.get("log_level", "info"), "--error-logfile", "-"]
        if "worker_class" in options:
            args += ["--worker-class", options["worker_class"]]
        args.append(ctx.app)
        return LaunchSpec(argv=command(ctx.python, "hypercorn", args, ctx.start_method))


#: the instance registered in harness.adapters.ADAPTERS
ADAPTER = HypercornAdapter()

__all__ = ["ADAPTER", "HypercornAdapter"]
