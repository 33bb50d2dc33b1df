"""What the commands' flags share: integer types that say what is wrong, `--option KEY=VALUE`, and the
Scenario built from the flags a command has."""

import argparse
import dataclasses
import os
import stat
import tempfile
from typing import Callable, List, Sequence, Tuple

from harness.model.errors import UsageError
from harness.model.records import Scenario
from harness.run import check_timeout

#: Scenario fields a command's flags may set under the same name (requirements and options are not: each
#: command says what its --requirement means, and --option is parsed)
_SCENARIO_FLAGS = tuple(
    f.name for f in dataclasses.fields(Scenario) if f.name not in ("requirements", "options")
)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def bounded_int(low: int, high: int) -> "Callable[[str], int]":
    """An argparse type: an integer in [low, high], else one line saying which bound it broke."""

    def parse(text: str) -> int:
        value = _int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {value}")
        return value

    return parse


def duration(text: str) -> float:
    """An argparse type for seconds (harness.run.check_timeout: finite, > 0, bounded)."""
    try:
        return check_timeout(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def check_writable(path: str, what: str) -> None:
    """A path we will write: create its directory and prove we can create a file there (root ignores
    permission bits, so os.access alone would lie)."""
    if not path:
        return
    if os.path.isdir(path):
        raise UsageError(f"{what} {path!r} is a directory")
    if path != os.devnull and os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
        # a FIFO would block the check (and every append) until a reader comes; /dev/full would take the
        # record and lose it: records and reports go to regular files only
        raise UsageError(f"{what} {path!r} is not a regular file")
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".harness-write-test-", dir=parent)
        os.close(fd)
        os.unlink(probe)
        if os.path.exists(path):
            with open(path, "ab"):
                pass
    except OSError as exc:
        raise UsageError(f"{what} {path!r} is not writable: {exc.strerror or exc}") from None


def parse_options(items: Sequence[str]) -> Tuple[Tuple[str, str], ...]:
    """`--option KEY=VALUE` (repeatable; `KEY` alone means an empty value); UsageError without a key."""
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"--option expects KEY=VALUE, got {item!r}")
        out.append((key, value if sep else ""))
    return tuple(out)


def scenario_from_args(args: argparse.Namespace, requirements: Sequence[str] = ()) -> Scenario:
    """The Scenario of the flags this command has (the others keep Scenario's defaults)."""
    fields = {name: getattr(args, name) for name in _SCENARIO_FLAGS if hasattr(args, name)}
    return Scenario(requirements=tuple(requirements), options=parse_options(args.option), **fields)


def jsonl_inputs(inputs: Sequence[str]) -> List[str]:
    """The .jsonl files of `inputs` (files, or directories of them); UsageError when one is missing."""
    files: List[str] = []
    for item in inputs:
        if os.path.isdir(item):
            files.extend(sorted(os.path.join(item, n) for n in os.listdir(item) if n.endswith(".jsonl")))
        elif os.path.isfile(item):
            files.append(item)
        else:
            raise UsageError(f"no such results file or directory: {item}")
    if not files:
        raise UsageError("no .jsonl results found in " + ", ".join(inputs))
    return files


__all__ = [
    "bounded_int",
    "check_writable",
    "duration",
    "jsonl_inputs",
    "non_negative_int",
    "parse_options",
    "positive_int",
    "scenario_from_args",
]
