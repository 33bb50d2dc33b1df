"""Test-only adapters whose command line the interpreter or the server's CLI refuses, before any server code
runs: the harness's launch failed, not the server (harness.verdict.signature.launch_problem).

* NO_MAIN - `python -m email`: a package without `__main__` (what `python -m gunicorn` is before 20.1.0)
* BAD_FLAG - `python -m http.server --no-such-flag`: argparse's `unrecognized arguments` (a flag the
  release does not have)
* MISSING - `python -m no_such_server_module`: `No module named ...`
"""

from typing import Tuple

from harness.adapters import LaunchContext, LaunchSpec


class _Argv:
    distribution = ""
    default_requirements: Tuple[str, ...] = ()

    def __init__(self, name: str, *args: str) -> None:
        self.name = name
        self.args = args

    def build(self, ctx: LaunchContext) -> LaunchSpec:
        return LaunchSpec(argv=(ctx.python, *self.args))


NO_MAIN = _Argv("no-main", "-m", "email")
BAD_FLAG = _Argv("bad-flag", "-m", "http.server", "--bind", "127.0.0.1", "--no-such-flag", "0")
MISSING = _Argv("missing", "-m", "no_such_server_module")
