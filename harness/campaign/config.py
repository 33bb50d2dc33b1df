"""Matrix files: TOML (tomllib on 3.11+, tomli before) or JSON, expanded into Scenarios.

    # matrix.toml
    [defaults]                      # applied to every [[scenario]] (any Scenario field)
    requests = 200
    python = ["", "3.12"]           # a list expands: one scenario per value

    [[scenario]]
    server = "reference"
    strategy = "*"                  # "*": every strategy the reference server reports available here
    start_method = "*"              # "*": each start method available for that strategy
    workers = [1, 2, 4]

    [[scenario]]
    server = "uvicorn"
    requirements = [["uvicorn==0.30.0"], ["uvicorn"]]   # list of lists: one scenario per set
    workers = [2, 4]
    options = { "loop" = "asyncio" }

    [[scenario]]
    server = "gunicorn"
    fault = "signal-master:HUP"     # harness.run.faults; signal contracts in harness.run.contracts
    fault_repeat = 10               # the signal 10 times ...
    fault_interval = 0.5            # ... half a second apart
    server_args = ["--graceful-timeout", "2"]   # appended verbatim (a list of lists expands)

JSON has the same shape: {"defaults": {...}, "scenario": [{...}, ...]}.

    repeat = 20                     # optional: every scenario runs 20 times (failure rates)
    confirm = 1                     # optional: re-runs of a failing or degraded verdict (default 1)

* load_matrix_file(path) -> [Scenario] ("*" expanded with the reference server's probe)
* load_settings(path) -> {"repeat": N, "confirm": N} (the keys the file sets)
* expand(entries, defaults, probe_fn) -> [Scenario]
Errors: ConfigError (one line) for unreadable files, unknown fields and bad values.
"""

import dataclasses
import itertools
import json
import os
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from harness.model.errors import ConfigError
from harness.model.records import Scenario

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.8-3.10 only
    try:
        import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:
        tomllib = None  # type: ignore[assignment]

_FIELDS = {f.name: f for f in dataclasses.fields(Scenario)}
#: fields whose value is itself a list: a list of lists (not a list) expands them
_LIST_FIELDS = ("requirements", "server_args")
_INT_FIELDS = ("workers", "requests", "concurrency", "keepalive_requests", "fault_repeat")
_NUMBER_FIELDS = ("fault_interval",)

ProbeFn = Callable[[str], Dict[str, Any]]

#: top-level run settings of a matrix file: {name: (lowest, highest)} (the CLI flags override them)
SETTINGS: Dict[str, Tuple[int, int]] = {"repeat": (1, 10000), "confirm": (0, 20)}


def _load_toml(path: str) -> Dict[str, Any]:
    if tomllib is None:
        raise ConfigError(f"{path}: reading TOML on Python < 3.11 needs `tomli` (or use JSON)")
    try:
        with open(path, "rb") as fh:
            data: Dict[str, Any] = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return data


def read_file(path: str) -> Dict[str, Any]:
    """The raw {defaults, scenario} mapping of a matrix file."""
    if not os.path.isfile(path):
        raise ConfigError(f"matrix file not found: {path}")
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        else:
            data = _load_toml(path)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a matrix file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table/object at the top")
    unknown = set(data) - {"defaults", "scenario", "scenarios", *SETTINGS}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s): {', '.join(sorted(unknown))}")
    return data


def _choices(key: str, value: Any) -> List[Any]:
    """The values one field takes across the expansion."""
    if key in _LIST_FIELDS:
        if isinstance(value, str):
            return [(value,)]
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            sets = value
        elif isinstance(value, list):
            sets = [value]
        else:
            raise ConfigError(f"{key}: expected a string, a list of strings or a list of lists")
        for one in sets:
            if not all(isinstance(x, str) for x in one):
                raise ConfigError(f"{key}: every item must be a string, got {one!r}"[:200])
        return [tuple(one) for one in sets]
    if key == "options":
        if isinstance(value, dict):
            pairs = list(value.items())
        elif isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value):
            pairs = [(p[0], p[1]) for p in value]
        else:
            raise ConfigError("options: expected a table of key = value (or a list of [key, value] pairs)")
        for k, v in pairs:
            if not isinstance(k, str) or not isinstance(v, (str, int, float)) or isinstance(v, bool):
                raise ConfigError(f"options: {k!r} = {v!r} is not a key = string (or number)"[:200])
        return [tuple((k, str(v)) for k, v in pairs)]
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ConfigError(f"{key}: an empty list expands to nothing")
    out: List[Any] = []
    for v in values:
        if key in _INT_FIELDS:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{key}: expected an integer, got {v!r}")
            if key == "workers" and v < 1:
                raise ConfigError(f"workers must be >= 1, got {v}")
        elif key in _NUMBER_FIELDS:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{key}: expected a number of seconds, got {v!r}")
            out.append(float(v))
            continue
        elif not isinstance(v, str):
            raise ConfigError(f"{key}: expected a string, got {v!r}")
        out.append(v)
    return out


def _strategy_pairs(fields: Dict[str, Any], probe_fn: Optional[ProbeFn]) -> Iterable[Tuple[str, str]]:
    """Expand "*" strategy / start method with the reference server's probe (available ones only)."""
    strategy, method = fields.get("strategy", ""), fields.get("start_method", "")
    if strategy != "*" and method != "*":
        return [(strategy, method)]
    if fields.get("server", "reference") != "reference":
        raise ConfigError('"*" for strategy/start_method is only meaningful for the reference server')
    if probe_fn is None:
        raise ConfigError('"*" needs the reference server probe')
    data = probe_fn(fields.get("python", ""))
    if not data:
        # no probe (the interpreter is missing): one cell with the server's defaults, which the run
        # records as env-error with the reason, rather than a matrix that silently lacks that Python
        return [("", "")]
    pairs: List[Tuple[str, str]] = []
    for name, info in (data.get("strategies") or {}).items():
        if strategy not in ("*", name) or not info.get("available"):
            continue
        methods = info.get("start_methods") or {}
        if method == "*":
            avail = [m for m, mi in methods.items() if mi.get("available")]
            pairs.extend((name, m) for m in (avail or [""]))
        else:
            pairs.append((name, method))
    return pairs


def expand(
    entries: Iterable[Dict[str, Any]],
    defaults: Optional[Dict[str, Any]] = None,
    probe_fn: Optional[ProbeFn] = None,
) -> List[Scenario]:
    """Cartesian expansion of every entry (defaults first, entry overrides); duplicates dropped."""
    out: List[Scenario] = []
    seen = set()
    for n, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise ConfigError(f"scenario #{n}: expected a table")
        merged = dict(defaults or {})
        merged.update(entry)
        unknown = set(merged) - set(_FIELDS)
        if unknown:
            raise ConfigError(
                f"scenario #{n}: unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(_FIELDS)}"
            )
        keys = sorted(merged)
        for combo in itertools.product(*(_choices(k, merged[k]) for k in keys)):
            fields = dict(zip(keys, combo))
            for strategy, method in _strategy_pairs(fields, probe_fn):
                fields2 = dict(fields, strategy=strategy, start_method=method)
                try:
                    sc = Scenario(**fields2)
                except TypeError as exc:
                    raise ConfigError(f"scenario #{n}: {exc}") from exc
                if sc.scenario_id not in seen:
                    seen.add(sc.scenario_id)
                    out.append(sc)
    return out


def load_matrix_file(path: str, probe_fn: Optional[ProbeFn] = None) -> List[Scenario]:
    data = read_file(path)
    entries = data.get("scenario", data.get("scenarios", []))
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: no [[scenario]] entries")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: [defaults] must be a table")
    return expand(entries, defaults, probe_fn)


def load_settings(path: str) -> Dict[str, int]:
    """The file's top-level `repeat` (runs per scenario) and `confirm` (re-runs of a failing verdict)."""
    data = read_file(path)
    out: Dict[str, int] = {}
    for name, (low, high) in SETTINGS.items():
        if name not in data:
            continue
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{path}: {name} must be an integer from {low} to {high}, not {value!r}")
        out[name] = value
    return out


__all__ = ["SETTINGS", "expand", "load_matrix_file", "load_settings", "read_file"]
