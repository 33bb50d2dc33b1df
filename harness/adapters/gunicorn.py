"""gunicorn: `python -m gunicorn -w N -k WORKER -b (H:P | unix:PATH | fd://N) APP`.

Flags by release (read from `gunicorn/config.py` of 19.9.0, 20.0.0 and 27.0.1; the sdists' file lists):

* `python -m gunicorn` (`gunicorn/__main__.py`): from 20.1.0 - the sdists of 19.10.0, 20.0.0 and 20.0.4
  have no `__main__.py` (`No module named gunicorn.__main__`); that is the floor of this adapter
* `fd://FD` binds: from 20.0 (19.9.0 has none)
* 25.1.0 adds a control socket at `$XDG_RUNTIME_DIR/gunicorn.ctl`, else `~/.gunicorn/gunicorn.ctl`
  (`--control-socket PATH`, `--no-control-socket`). Nothing is passed for it: the runner gives every run a
  private HOME and XDG_RUNTIME_DIR, so parallel runs never share one and gunicorn keeps its default
* `-w`, `-k`, `-b`, `--log-level`, `--error-logfile -` throughout

The ASGI worker class comes from the env: `uvicorn_worker.UvicornWorker` when the `uvicorn-worker`
distribution is installed, else `uvicorn.workers.UvicornWorker` (in uvicorn itself; deprecated from 0.30,
still shipped in 0.54). Neither installed: Unsupported. Option `worker_class` overrides the choice.

gunicorn forks its workers with os.fork(): a multiprocessing start method does not reach it (the launcher
still runs when asked). Options: `log_level` (default info), `worker_class`.
"""

from typing import List

from harness.adapters._base import PREFORK, LaunchContext, LaunchSpec, Unsupported, bind_value
from harness.adapters._versions import at_least
from servers.launcher import command

MIN_VERSION = "20.1.0"  # first release with gunicorn/__main__.py
UVICORN_WORKER_PACKAGE = "uvicorn_worker.UvicornWorker"
UVICORN_BUILTIN_WORKER = "uvicorn.workers.UvicornWorker"

#: what the master does on each signal (harness.run.contracts), from docs/source/signals.rst and
#: gunicorn/arbiter.py (handle_hup / usr1 / ttin / ttou / winch / term / int / quit) of 20.1.0 and 26.1.0:
#: HUP reloads (new workers first, then the old ones stopped gracefully), USR1 reopens the log files,
#: TTIN / TTOU one worker more / less (never below one), WINCH is ignored unless daemonized, TERM is the
#: graceful stop, INT / QUIT the quick one. USR2 (re-exec a new master beside the old) is not checked.
SIGNAL_SOURCE = "gunicorn docs: Signal Handling (docs.gunicorn.org/en/stable/signals.html)"
SIGNAL_CONTRACTS = ((MIN_VERSION, dict(PREFORK)),)


def _installed(ctx: LaunchContext, distribution: str) -> bool:
    wanted = distribution.lower().replace("_", "-")
    return any(name.lower().replace("_", "-") == wanted for name in ctx.installed)


def worker_class(ctx: LaunchContext) -> str:
    """The ASGI worker class for this env, or Unsupported when there is none."""
    options = dict(ctx.options)
    if "worker_class" in options:
        return options["worker_class"]
    if _installed(ctx, "uvicorn-worker"):
        return UVICORN_WORKER_PACKAGE
    if _installed(ctx, "uvicorn"):
        return UVICORN_BUILTIN_WORKER
    raise Unsupported("gunicorn needs an ASGI worker class: install uvicorn-worker (or uvicorn) in the env")


class GunicornAdapter:
    name = "gunicorn"
    distribution = "gunicorn"
    #: the oldest release this adapter drives (harness catalog sweep starts there by default)
    min_version = MIN_VERSION
    default_requirements = ("gunicorn", "uvicorn-worker")
    SIGNAL_SOURCE = SIGNAL_SOURCE
    SIGNAL_CONTRACTS = SIGNAL_CONTRACTS

    def build(self, ctx: LaunchContext) -> LaunchSpec:
        version = ctx.server_version
        if not at_least(version, MIN_VERSION):
            raise Unsupported(f"gunicorn {version} has no `python -m gunicorn` (added in {MIN_VERSION})")
        options = dict(ctx.options)
        bind = bind_value(ctx)
        args: List[str] = [
            "--workers", str(ctx.workers),
            "--worker-class", worker_class(ctx),
            "--bind", bind,
            "--log-level", options.get("log_level", "info"),
            "--error-logfile", "-",
        ]  # fmt: skip
        args.append(ctx.app)
        return LaunchSpec(argv=command(ctx.python, "gunicorn", args, ctx.start_method))


#: the instance registered in harness.adapters.ADAPTERS
ADAPTER = GunicornAdapter()

__all__ = ["ADAPTER", "GunicornAdapter", "worker_class"]
