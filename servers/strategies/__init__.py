"""Socket-handoff strategies: how the listening socket reaches the workers.

* STRATEGIES - name -> module implementing servers.strategies._protocol.Strategy
* START_METHODS - fork, spawn, forkserver (multiprocessing contexts) and exec (a fresh interpreter
  running `python -m servers._child`)
* pair_error(strategy, start_method) - why the pair makes no sense anywhere (-> USAGE), or None
* availability(strategy, start_method) - why the pair cannot run *here* (-> STRATEGY_UNSUPPORTED), or None
* resolve(strategy, start_method) - fill in defaults ("" = not given): see its docstring
* probe() - the `--probe` document
"""

import sys
from typing import Any, Dict, Optional, Tuple

from servers.strategies import (
    duplicate_handle,
    inherit,
    pickling,
    reuseport,
    scm_rights,
    share,
    systemd,
)
from servers.strategies._platform import (
    START_METHODS,
    available_start_methods,
    default_start_method,
    natural_strategy,
)
from servers.strategies._protocol import Bind, Handoff, HandoffError, Strategy

STRATEGIES: Dict[str, Strategy] = {
    "inherit": inherit,
    "share": share,
    "duplicate-handle": duplicate_handle,
    "reuseport": reuseport,
    "pickle": pickling,
    "scm-rights": scm_rights,
    "systemd": systemd,
}


def pair_error(strategy: str, start_method: str) -> Optional[str]:
    """None if the names exist and the strategy can work with the start method on some OS."""
    if strategy not in STRATEGIES:
        return "unknown strategy {!r} (choose from {})".format(strategy, ", ".join(STRATEGIES))
    if start_method not in START_METHODS:
        return "unknown start method {!r} (choose from {})".format(start_method, ", ".join(START_METHODS))
    methods = STRATEGIES[strategy].start_methods
    if start_method not in methods:
        return "strategy {!r} does not work with start method {!r} (it supports {})".format(
            strategy, start_method, ", ".join(methods)
        )
    return None


def availability(strategy: str, start_method: str) -> Optional[str]:
    """None if the (valid) pair can run on this OS/Python, else the one-line reason."""
    reason = STRATEGIES[strategy].supported()
    if reason is not None:
        return f"strategy {strategy!r} is not available: {reason}"
    return available_start_methods()[start_method]


def resolve(strategy: str, start_method: str) -> Tuple[str, str]:
    """Defaults for what was not given ("").

    * neither - the platform's default start method and its natural strategy
    * only the start method - the natural strategy for it
    * only the strategy - the platform default start method if the strategy supports it, else the
      first start method it supports that is available here (else its first one)
    Unknown names are returned unchanged for pair_error() to report.
    """
    if not start_method:
        if strategy in STRATEGIES:
            default = default_start_method()
            methods = STRATEGIES[strategy].start_methods
            usable = available_start_methods()
            if default in methods:
                start_method = default
            else:
                start_method = next((m for m in methods if usable[m] is None), methods[0])
        else:
            start_method = default_start_method()
    if not strategy:
        strategy = natural_strategy(start_method)
    return strategy, start_method


def probe() -> Dict[str, Any]:
    """{platform, python, default_strategy, default_start_method, default_strategy_for: {m: strategy},
    strategies: {name: {available, reason, default_start_method, start_methods: {m: {available, reason}}}}}
    - every strategy x start method, and why not. default_strategy_for[m] is what `--start-method m`
    alone runs with; a strategy's default_start_method is what `--strategy NAME` alone runs with."""
    default_strategy, default_method = resolve("", "")
    usable = available_start_methods()
    strategies: Dict[str, Any] = {}
    for name, module in STRATEGIES.items():
        reason = module.supported()
        methods: Dict[str, Any] = {}
        for method in START_METHODS:
            why = pair_error(name, method) or reason or usable[method]
            methods[method] = {"available": why is None, "reason": why or ""}
        strategies[name] = {
            "available": reason is None,
            "reason": reason or "",
            "default_start_method": resolve(name, "")[1],
            "start_methods": methods,
        }
    return {
        "platform": sys.platform,
        "python": "{}.{}.{}".format(*sys.version_info[:3]),
        "default_strategy": default_strategy,
        "default_start_method": default_method,
        "default_strategy_for": {method: resolve("", method)[0] for method in START_METHODS},
        "strategies": strategies,
    }


__all__ = [
    "START_METHODS",
    "STRATEGIES",
    "Bind",
    "Handoff",
    "HandoffError",
    "Strategy",
    "availability",
    "pair_error",
    "probe",
    "resolve",
]
