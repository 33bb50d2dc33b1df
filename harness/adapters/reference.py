"""Adapter for the reference server (`python -m servers APP ...`).

The reference server reports where it really listens and which workers are ready through its event
stream (`--events FILE`, see servers.events), so the harness never has to guess from psutil.

A strategy or start method that `python -m servers --probe` (run under the *server's* interpreter)
reports as unavailable raises Unsupported with the probe's reason: the harness records `unsupported`
instead of running something that cannot work here.
"""

import json
import os
import subprocess
import sys
from typing import Any, Dict, List, Tuple

from harness.adapters._base import PREFORK, LaunchContext, LaunchSpec, Unsupported

_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PROBE_TIMEOUT_S = 60.0
#: servers/ uses 3.8 syntax (positional-only parameters)
MIN_PYTHON = (3, 8)
_probe_cache: Dict[str, Dict[str, Any]] = {}


class ProbeFailed(Exception):
    """`python -m servers --probe` did not answer with JSON; str(exc) is one line."""


def probe(python: str = "") -> Dict[str, Any]:
    """The reference server's own view of what works here, from `PYTHON -m servers --probe` (cached).

    {strategies: {name: {available, reason, start_methods: {m: {available, reason}}}},
     default_strategy, default_start_method}
    """
    python = python or sys.executable
    cached = _probe_cache.get(python)
    if cached is not None:
        return cached
    try:
        proc = subprocess.run(
            [python, "-m", "servers", "--probe"],
            cwd=_PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProbeFailed(f"{python} -m servers --probe: {exc}") from exc
    try:
        data = json.loads(proc.stdout)
    except ValueError as exc:
        lines = (proc.stderr or proc.stdout or "").strip().splitlines()
        last = lines[-1] if lines else f"exit {proc.returncode}, no output"
        raise ProbeFailed(f"{python} -m servers --probe: {last}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("strategies"), dict):
        raise ProbeFailed(f"{python} -m servers --probe: unexpected answer")
    _probe_cache[python] = data
    return data


def combinations(probe_data: Dict[str, Any]) -> List[Tuple[str, str, bool, str]]:
    """Every (strategy, start_method, available, reason) the probe lists, in its order."""
    rows: List[Tuple[str, str, bool, str]] = []
    for name, info in probe_data.get("strategies", {}).items():
        methods = info.get("start_methods") or {}
        if not methods:
            rows.append((name, "", bool(info.get("available")), str(info.get("reason", ""))))
        for method, minfo in methods.items():
            available = bool(info.get("available")) and bool(minfo.get("available"))
            reason = (
                str(info.get("reason") or "") if not info.get("available") else str(minfo.get("reason") or "")
            )
            rows.append((name, method, available, reason))
    return rows


def check_supported(probe_data: Dict[str, Any], strategy: str, start_method: str) -> None:
    """Raise Unsupported with the probe's reason when the pair cannot run here."""
    strategies = probe_data.get("strategies", {})
    strategy = strategy or str(probe_data.get("default_strategy", ""))
    start_method = start_method or str(probe_data.get("default_start_method", ""))
    if strategy not in strategies:
        raise Unsupported(
            f"the reference server has no strategy {strategy!r} (known: {', '.join(strategies)})"
        )
    info = strategies[strategy]
    if not info.get("available"):
        raise Unsupported(f"strategy {strategy}: {info.get('reason') or 'unavailable here'}")
    methods = info.get("start_methods") or {}
    if start_method and methods:
        if start_method not in methods:
            raise Unsupported(f"strategy {strategy}: no start method {start_method!r}")
        if not methods[start_method].get("available"):
            reason = methods[start_method].get("reason") or "unavailable here"
            raise Unsupported(f"strategy {strategy} with {start_method}: {reason}")


#: what the reference server's supervisor does on each signal (servers/_supervisor.py; POSIX only, as the
#: signals are): the baseline of a correct server (harness.run.contracts)
SIGNAL_SOURCE = "servers/_supervisor.py (the reference server's own contract)"
SIGNAL_CONTRACTS = (("", dict(PREFORK)),)


class ReferenceAdapter:
    name = "reference"
    distribution = ""
    default_requirements: Tuple[str, ...] = ("h11",)
    SIGNAL_SOURCE = SIGNAL_SOURCE
    SIGNAL_CONTRACTS = SIGNAL_CONTRACTS

    def build(self, ctx: LaunchContext) -> LaunchSpec:
        version = tuple(int(p) for p in str(ctx.python_version).split(".")[:2] if p.isdigit())
        if version and version < MIN_PYTHON:
            raise Unsupported(f"the reference server needs Python >= 3.8, not {ctx.python_version}")
        try:
            data = probe(ctx.python)
        except ProbeFailed as exc:
            raise Unsupported(str(exc)) from exc
        check_supported(data, ctx.strategy, ctx.start_method)
        argv: List[str] = [ctx.python, "-m", "servers", ctx.app, "--workers", str(ctx.workers)]
        if ctx.strategy:
            argv += ["--strategy", ctx.strategy]
        if ctx.start_method:
            argv += ["--start-method", ctx.start_method]
        if ctx.uds:
            argv += ["--uds", ctx.uds]
        elif ctx.fd is not None:
            argv += ["--fd", str(ctx.fd)]
        else:
            argv += ["--host", ctx.host, "--port", str(ctx.port)]
        events = ctx.events_path or os.path.join(ctx.run_dir, "events.jsonl")
        argv += ["--events", events]
        for key, value in ctx.options:
            argv += [f"--{key}", value] if value else [f"--{key}"]
        return LaunchSpec(argv=tuple(argv), env={}, events_path=events)


ADAPTER = ReferenceAdapter()

__all__ = ["ADAPTER", "ProbeFailed", "ReferenceAdapter", "check_supported", "combinations", "probe"]
