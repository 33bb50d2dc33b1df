"""`harness watch`: which releases of the watched distributions are new, and what to run for each.

* index_url(explicit="") -> the package index to ask: --index-url, else pip's own configuration
  (PIP_INDEX_URL, then the pip.conf files pip reads, later ones winning), else https://pypi.org/simple/
* fetch_project(index, name) -> Project: every release on the index with its files, through the simple API
  (PEP 691 JSON when the index speaks it, PEP 503 HTML otherwise; PEP 592 yanking, PEP 700 `versions`)
* load_state(path) / save_state(path, state) - the state file: a JSON object mapping each distribution to
  its last tested version ({"uvicorn": "0.53.0"}); a missing file is an empty state; a corrupt one is a
  one-line HarnessError, and nothing is written
* make_plan(state, projects, include_pre=False) -> Plan: one item per release newer than the state's,
  each with its previous release; a distribution the state does not name is seeded with its latest release
  (nothing planned for it); yanked releases are skipped, pre-releases only with include_pre, and a release
  with no file yet (the upload is under way) waits for the next watch (`waiting`, never an item)
* item_scenarios(distribution, version) -> [PlannedScenario]: the release set of a server distribution,
  every catalog entry that pins the distribution re-pinned to the version, and the downstream
  combinations (DOWNSTREAM: a new uvicorn also runs under gunicorn + uvicorn-worker; a new uvloop or
  httptools under uvicorn[standard]; a new h11 under the h11 workers)
* advance(state, distribution, version) -> the state after a release was tested and published

The state only moves forward, and only by advance() (the workflow calls `harness watch --advance D==V`
after a successful publish); a watch writes nothing but the seeds of distributions the state lacks.
"""

import dataclasses
import json
import os
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from harness.campaign.release import DOWNSTREAM, item_pairs
from harness.env.index import (
    TIMEOUT_S,
    Project,
    Release,
    check_distribution,
    fetch_project,
    index_url,
    normal_version,
    parse_project,
    shown,
)
from harness.model.errors import HarnessError, UsageError
from harness.model.files import write_atomic

#: the servers whose releases are watched (each has an adapter)
WATCHED_SERVERS = ("uvicorn", "hypercorn", "gunicorn", "granian", "daphne")
#: dependencies that broke those servers' multi-worker startup before
WATCHED_DEPENDENCIES = ("uvicorn-worker", "uvloop", "httptools", "h11", "websockets", "click", "anyio")
WATCHED = WATCHED_SERVERS + WATCHED_DEPENDENCIES


# -- the state file ------------------------------------------------------------------------------


def load_state(path: str) -> Dict[str, str]:
    """The state file's mapping (normalized names); {} when the file does not exist. HarnessError (one
    line) when it is unreadable, not a JSON object of name -> version strings, or names a bad version."""
    if not path or not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(
            f"cannot read the state file {path}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    except ValueError as exc:
        raise HarnessError(f"the state file {path} is not JSON ({exc}); fix or remove it") from None
    if not isinstance(data, dict):
        raise HarnessError(f"the state file {path} must hold a JSON object of distribution -> version")
    state: Dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise HarnessError(f"the state file {path}: {key!r}: {value!r} is not a name -> version string")
        try:
            name = check_distribution(key)
        except UsageError:
            raise HarnessError(f"the state file {path}: {key!r} is not a distribution name") from None
        version = normal_version(value)
        if version is None:
            raise HarnessError(f"the state file {path}: {key}: {value!r} is not a version")
        state[name] = version
    return state


def save_state(path: str, state: Mapping[str, str]) -> None:
    """Write the state atomically (a reader sees the old file or the new one, never half of one)."""
    write_atomic(path, json.dumps(dict(sorted(state.items())), indent=2) + "\n", "the state file")


def advance(state: Mapping[str, str], distribution: str, version: str) -> Dict[str, str]:
    """The state with `distribution` at `version` (a tested and published release); an older version than
    the state's is refused (UsageError): the state never goes back."""
    from packaging.version import Version  # noqa: PLC0415 - only here

    name = check_distribution(distribution)
    new = normal_version(version)
    if new is None:
        raise UsageError(f"not a version: {version!r}")
    old = state.get(name)
    if old is not None and Version(new) < Version(old):
        raise UsageError(f"{name} is at {old} in the state; {new} is older (the state never goes back)")
    return {**state, name: new}


# -- the plan ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PlannedScenario:
    role: str  # "release-set" | "catalog" | "downstream"
    scenario_id: str
    server: str
    requirements: Tuple[str, ...]
    catalog_id: str = ""


@dataclasses.dataclass(frozen=True)
class Item:
    distribution: str
    version: str
    previous: str
    scenarios: Tuple[PlannedScenario, ...] = ()

    def to_dict(self) -> Dict[str, Any]:
        roles: Dict[str, int] = {}
        for s in self.scenarios:
            roles[s.role] = roles.get(s.role, 0) + 1
        return {
            "distribution": self.distribution,
            "version": self.version,
            "previous": self.previous,
            "counts": roles,
            "scenarios": [dataclasses.asdict(s) for s in self.scenarios],
        }


@dataclasses.dataclass(frozen=True)
class Plan:
    index: str
    items: Tuple[Item, ...]
    seeded: Dict[str, str]  # distributions the state did not name -> their latest release (planned: none)
    waiting: Tuple[Tuple[str, str], ...]  # (distribution, version): listed, no file yet - the next watch
    yanked: Tuple[Tuple[str, str], ...]  # new releases skipped because they are yanked
    latest: Dict[str, str]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "index": shown(self.index),
            "items": [i.to_dict() for i in self.items],
            "seeded": dict(self.seeded),
            "waiting": [{"distribution": d, "version": v} for d, v in self.waiting],
            "yanked": [{"distribution": d, "version": v} for d, v in self.yanked],
            "latest": dict(self.latest),
        }


def make_plan(
    state: Mapping[str, str],
    projects: Mapping[str, Project],
    *,
    include_pre: bool = False,
    scenarios: Any = None,
) -> Plan:
    """The items to run (see the module docstring). `scenarios(distribution, version)` lists each item's
    scenarios (default: item_scenarios)."""
    from packaging.version import Version  # noqa: PLC0415 - only here

    lister = item_scenarios if scenarios is None else scenarios
    items: List[Item] = []
    seeded: Dict[str, str] = {}
    waiting: List[Tuple[str, str]] = []
    yanked: List[Tuple[str, str]] = []
    latest: Dict[str, str] = {}
    index = ""
    for name, project in projects.items():
        index = index or project.index
        ordered = sorted(project.releases.values(), key=lambda r: Version(r.version))
        wanted = [r for r in ordered if include_pre or not Version(r.version).is_prerelease]
        live = [r for r in wanted if r.installable]
        if live:
            latest[name] = live[-1].version
        if name not in state:
            if live:
                seeded[name] = live[-1].version
            continue
        since = Version(state[name])
        previous = state[name]
        for release in wanted:
            version = Version(release.version)
            if version <= since:
                if release.installable:
                    previous = release.version
                continue
            if release.yanked:
                yanked.append((name, release.version))
                continue
            if not release.installable:
                waiting.append((name, release.version))
                continue
            planned = tuple(lister(name, release.version))
            items.append(Item(name, release.version, previous, planned))
            previous = release.version
    return Plan(index, tuple(items), seeded, tuple(waiting), tuple(yanked), latest)


def item_scenarios(
    distribution: str, version: str, *, pythons: Sequence[str] = ("",)
) -> List[PlannedScenario]:
    """What one plan item runs (harness.campaign.release.item_pairs): the server's release set (its
    default matrix and its catalog entries, re-pinned), else (a dependency) the catalog entries that pin
    it, re-pinned; then DOWNSTREAM."""
    return [
        PlannedScenario(role, sc.scenario_id, sc.server, tuple(sc.requirements), tag.get("id", ""))
        for role, sc, tag in item_pairs(distribution, version, pythons=pythons)
    ]


def fetch_all(index: str, names: Sequence[str], *, timeout: float = TIMEOUT_S) -> Dict[str, Project]:
    """fetch_project for each name, in order; the first failure is raised (nothing is half-planned)."""
    return {check_distribution(n): fetch_project(index, n, timeout=timeout) for n in names}


__all__ = [
    "DOWNSTREAM",
    "TIMEOUT_S",
    "WATCHED",
    "Item",
    "Plan",
    "PlannedScenario",
    "Project",
    "Release",
    "advance",
    "check_distribution",
    "fetch_all",
    "fetch_project",
    "index_url",
    "item_scenarios",
    "load_state",
    "make_plan",
    "parse_project",
    "save_state",
]
