"""The command line of the reference server (a contract - see docs/REFERENCE_SERVER.md):

    python -m servers APP [--workers N] [--strategy S] [--start-method M] [--host H]
                          [--port P | --uds PATH | --fd N] [--events FILE] [--lifespan auto|on|off]
                          [--graceful-timeout SECONDS] [--timeout SECONDS]
    python -m servers --probe

* main(argv) -> exit code (servers.exitcodes). Bad input is one line on stderr and USAGE; a strategy or
  start method not available here is one line and STRATEGY_UNSUPPORTED, before anything is bound.
* parse(argv) -> Config, raising UsageError / Unsupported
"""

import argparse
import json
import os
import sys
from typing import List, NoReturn, Optional

from servers import exitcodes
from servers._config import Config
from servers.events import EventWriter
from servers.strategies import START_METHODS, STRATEGIES, Bind, availability, pair_error, probe, resolve

LIFESPAN_MODES = ("auto", "on", "off")


class UsageError(Exception):
    """Bad command line; str(exc) is one line."""


class Unsupported(Exception):
    """Valid, but not available on this OS/Python; str(exc) is one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser() -> _Parser:
    p = _Parser(prog="python -m servers", description="The reference multi-worker ASGI server.")
    p.add_argument("app", nargs="?", help="MODULE:ATTR of the ASGI app")
    p.add_argument("--probe", action="store_true", help="print what works here as JSON and exit")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--strategy", default="", help="one of: " + ", ".join(STRATEGIES))
    p.add_argument("--start-method", default="", help="one of: " + ", ".join(START_METHODS))
    p.add_argument("--host", default="127.0.0.1")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--port", type=int, default=0)
    where.add_argument("--uds", default="")
    where.add_argument("--fd", type=int, default=None)
    p.add_argument("--events", default="", help="write the event stream here (default: stdout)")
    p.add_argument("--lifespan", default="auto", choices=LIFESPAN_MODES)
    p.add_argument("--graceful-timeout", type=float, default=10.0)
    p.add_argument(
        "--timeout", type=float, default=10.0, help="replace a ready worker silent this long (0 = never)"
    )
    return p


def parse(argv: List[str]) -> Config:
    """The resolved Config, or UsageError / Unsupported with one line."""
    ns = _parser().parse_args(argv)
    if not ns.app:
        raise UsageError("the APP argument (MODULE:ATTR) is required")
    if ns.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {ns.workers}")
    if not 0 <= ns.port <= 65535:
        raise UsageError(f"--port must be 0-65535, got {ns.port}")
    if ns.fd is not None and ns.fd < 0:
        raise UsageError(f"--fd must be a non-negative fd number, got {ns.fd}")
    if not ns.graceful_timeout >= 0:
        raise UsageError(f"--graceful-timeout must be >= 0, got {ns.graceful_timeout}")
    if not 0 <= ns.timeout < 86400:
        raise UsageError(f"--timeout must be 0 (never) or a number of seconds below 86400, got {ns.timeout}")
    strategy, start_method = resolve(ns.strategy, ns.start_method)
    why = pair_error(strategy, start_method)
    if why is not None:
        raise UsageError(why)
    if strategy == "reuseport" and ns.fd is not None:
        raise UsageError("--fd cannot be used with --strategy reuseport (every worker binds its own socket)")
    why = availability(strategy, start_method)
    if why is not None:
        raise Unsupported(why)
    return Config(
        app=ns.app,
        workers=ns.workers,
        strategy=strategy,
        start_method=start_method,
        bind=Bind(host=ns.host, port=ns.port, uds=ns.uds, fd=ns.fd),
        events=ns.events,
        lifespan=ns.lifespan,
        graceful_timeout=ns.graceful_timeout,
        timeout=ns.timeout,
    )


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--probe" in args:
        if len(args) != 1:
            print("servers: error: --probe takes no other arguments", file=sys.stderr)
            return exitcodes.USAGE
        try:
            print(json.dumps(probe(), indent=2), flush=True)
        except BrokenPipeError:  # the reader went away (`| head`): not our error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return exitcodes.OK
    try:
        config = parse(args)
    except UsageError as exc:
        print(f"servers: error: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    except Unsupported as exc:
        print(f"servers: unsupported: {exc}", file=sys.stderr)
        return exitcodes.STRATEGY_UNSUPPORTED
    try:
        # Imported here: --probe and command-line errors must work even where h11 is missing.
        from servers._supervisor import Supervisor  # noqa: PLC0415
    except ImportError as exc:
        print(f"servers: error: cannot start the server: {exc}", file=sys.stderr)
        return exitcodes.INTERNAL_ERROR
    try:
        events = EventWriter(config.events or None)
    except OSError as exc:
        print(f"servers: error: cannot open --events {config.events}: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    try:
        return Supervisor(config, events).run()
    except Exception as exc:  # the process boundary: one line and a named code, never a traceback
        message = f"internal error: {type(exc).__name__}: {exc}"
        print(f"servers: {message}", file=sys.stderr)
        events.emit("error", message=message, kind="internal-error")
        events.emit("stopped", exitcode=exitcodes.INTERNAL_ERROR)
        return exitcodes.INTERNAL_ERROR
    finally:
        events.close()


__all__ = ["Unsupported", "UsageError", "main", "parse"]
