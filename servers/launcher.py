"""Start-method emulation: run a server's own entry point with a multiprocessing start method forced.

    python -m servers.launcher --start-method forkserver -- uvicorn servers.apps:pid --workers 2

sets `multiprocessing.set_start_method(M, force=True)` under the `__main__` guard, rewrites sys.argv to
`[<module>, <args>...]` and runs `<module>` as `__main__` (runpy, alter_sys=True, which then sets
sys.argv[0] to the module's file), exactly as `python -m <module> <args>...` would. This emulates the
forkserver default of Python 3.14 on the interpreters this machine has.

It changes only the *default* start method. Servers that ask for a context explicitly are not affected:
uvicorn >= 0.10.1 and hypercorn >= 0.14.2 call multiprocessing.get_context("spawn"); gunicorn forks
with os.fork(); granian 2.8 maps anything but fork/spawn to spawn; daphne has no workers. Exposed: uvicorn
0.10.0, hypercorn <= 0.14.1 and granian 1.x (verified: all still serve under forkserver, see
docs/KNOWN_ISSUES.md).

Runs in the server's interpreter: stdlib only, Python 3.7+ syntax (no walrus, no f-string `=`).
Exit codes: 2 - bad command line (argparse); otherwise whatever the server's entry point exits with.
"""

import argparse
import multiprocessing
import runpy
import sys
from typing import List, Optional, Sequence, Tuple

USAGE_ERROR = 2


def _parse(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m servers.launcher",
        description="Run MODULE as __main__ with a multiprocessing start method forced.",
    )
    parser.add_argument(
        "--start-method",
        required=True,
        choices=multiprocessing.get_all_start_methods(),
        help="the start method to force (fork, spawn, forkserver where available)",
    )
    parser.add_argument("module", help="the module to run as __main__ (e.g. uvicorn)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the module")
    if "--" in argv:
        # everything after `--` belongs to the module: `--start-method M -- MODULE ARGS...`
        split = argv.index("--")
        ours, rest = argv[:split], argv[split + 1 :]
        if not rest:
            parser.error("a module is required after --")
        namespace = parser.parse_args([*ours, rest[0]])
        namespace.args = rest[1:]
        return namespace
    return parser.parse_args(argv)


def command(python: str, module: str, args: Sequence[str], start_method: str = "") -> Tuple[str, ...]:
    """The argv that runs `python -m module args...`, through this launcher when start_method is set.

    Used by the adapters (in the harness's interpreter) to build LaunchSpec.argv."""
    if not start_method:
        return (python, "-m", module, *args)
    return (python, "-m", "servers.launcher", "--start-method", start_method, "--", module, *args)


def main(argv: Optional[List[str]] = None) -> None:
    namespace = _parse(list(sys.argv[1:] if argv is None else argv))
    multiprocessing.set_start_method(namespace.start_method, force=True)
    sys.argv = [namespace.module, *namespace.args]
    runpy.run_module(namespace.module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
