"""`harness release SERVER VERSION [--previous V]`: the same scenarios at two versions -> the release diff.

For each of the two versions it runs

* the default matrix of that server (harness.campaign.matrix.default_matrix, with the worker counts asked for
-
  1 included by default, so `degraded` can be judged against the single-worker twin) over the binds asked
  for, with the server's distribution pinned to the version, and
* every known-issue catalog entry (harness.catalog) that concerns the server - its scenario server is the
  server, or one of its requirement sets pins the server's distribution (gunicorn + uvicorn-worker +
  uvicorn for a uvicorn release) - with the entry's newest requirement set (its `fixed` case, else its
  last) re-pinned to the version. Entries with a `skip` reason or for another platform are left out.

Both sides run in one pool (`-n` jobs at a time, paired(): the two sides of a cell next to each other,
the costliest cells first), each side's records in its own JSONL.

The face (harness.cli.release_cmd) then diffs the two record sets (reports.diff) and writes one HTML page
(reports.render_release): newly broken, newly fixed, unchanged, inconclusive. The JSONL of each side is kept
under --results-dir.

* previous_version(version, versions) -> the newest release older than `version`
* release_scenarios(server, version, ...) -> [Scenario]
* run_release(server, version, previous="", ...) -> ReleaseRun (both sides' records)
"""

import dataclasses
import os
import re
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from harness import catalog
from harness.adapters import get_adapter, known_servers, registered_extra
from harness.campaign.config import expand
from harness.campaign.matrix import DEFAULT_CONFIRM, Progress, merge_requirements, run_matrix, summary
from harness.env import index
from harness.model.errors import HarnessError, UnknownServer, UsageError
from harness.model.records import ResultRecord, Scenario
from harness.run.runner import BASE_TIMEOUT_S
from harness.verdict.degraded import mark_degraded

__all__ = [
    "DOWNSTREAM",
    "ReleaseRun",
    "catalog_scenarios",
    "check_release",
    "concerns",
    "item_pairs",
    "matrix_scenarios",
    "paired",
    "previous_version",
    "release_scenarios",
    "run_release",
    "server_of",
]

ProjectLookup = Callable[[str], index.Project]

#: a new release of the key also runs these servers' default matrix with it pinned; the tuple holds
#: requirements that replace the server's default ones of the same distribution (the extra that pulls
#: the dependency in). Read from each server's requirements: gunicorn's ASGI worker is uvicorn-worker,
#: which requires uvicorn; uvicorn[standard] brings uvloop, httptools, websockets and watchfiles (which
#: requires anyio); uvicorn and hypercorn speak HTTP/1.1 through h11; uvicorn and granian have click CLIs.
DOWNSTREAM: Dict[str, Tuple[Tuple[str, Tuple[str, ...]], ...]] = {
    "uvicorn": (("gunicorn", ()),),
    "uvicorn-worker": (("gunicorn", ()),),
    "uvloop": (("uvicorn", ("uvicorn[standard]",)),),
    "httptools": (("uvicorn", ("uvicorn[standard]",)),),
    "websockets": (("uvicorn", ("uvicorn[standard]",)),),
    "anyio": (("uvicorn", ("uvicorn[standard]",)),),
    "h11": (("uvicorn", ()), ("hypercorn", ())),
    "click": (("uvicorn", ()), ("granian", ())),
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip().lower())


def _dist_of(requirement: str) -> str:
    return _norm(re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0])


def check_version(version: str, what: str = "version") -> str:
    """`version` when it is a PEP 440 version (normalized), else UsageError - before anything runs, so a
    version never becomes a path or a requirement unchecked ('../../x' is not a version)."""
    from packaging.version import InvalidVersion, Version  # noqa: PLC0415 - only here

    try:
        return str(Version(version))
    except InvalidVersion:
        raise UsageError(f"{what} {version!r} is not a version (PEP 440: 0.55.0, 1.0rc1, ...)") from None


def _file_part(text: str) -> str:
    """A name safe as part of a file name: anything but letters, digits, '.', '_', '+' and '-' becomes
    '_', and a leading dot too (a checked version has none of those; this is the second line of defence)."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", text)
    return "_" + safe[1:] if safe.startswith(".") else safe


def previous_version(version: str, versions: Sequence[str]) -> str:
    """The newest of `versions` that is older than `version` (PEP 440 order); UsageError when none is."""
    from packaging.version import InvalidVersion, Version  # noqa: PLC0415 - only here

    try:
        new = Version(version)
    except InvalidVersion:
        raise UsageError(f"not a version: {version!r}") from None
    older = []
    for v in versions:
        try:
            parsed = Version(v)
        except InvalidVersion:
            continue
        if parsed < new and not parsed.is_prerelease:
            older.append((parsed, v))
    if not older:
        raise UsageError(f"no release older than {version} to compare against; give --previous")
    return max(older)[1]


def _pinned(requirements: Sequence[str], distribution: str, version: str) -> Tuple[str, ...]:
    """`requirements` with the distribution's own requirement replaced by `distribution==version`
    (extras kept: uvicorn[standard]==X stays uvicorn[standard]); appended when absent."""
    out: List[str] = []
    found = False
    for req in requirements:
        if _dist_of(req) == _norm(distribution):
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*(?:\[[^\]]*\])?)", req)
            out.append(f"{m.group(1) if m else distribution}=={version}")
            found = True
        else:
            out.append(req)
    if not found:
        out.insert(0, f"{distribution}=={version}")
    return tuple(out)


def matrix_scenarios(
    server: str,
    version: str,
    *,
    pythons: Sequence[str] = ("",),
    workers: Sequence[int] = (1, 2, 4),
    binds: Sequence[str] = ("tcp",),
) -> List[Scenario]:
    """The server's default-matrix entry, pinned to `version`, over `workers` x `binds` x `pythons`."""
    adapter = get_adapter(server)
    if not adapter.distribution:
        raise UsageError(f"server {server!r} has no released versions to compare")
    extra = [r for r in adapter.default_requirements if _dist_of(r) != _norm(adapter.distribution)]
    reqs = [f"{adapter.distribution}=={version}", *extra]
    entry = {"server": server, "requirements": reqs, "workers": list(workers), "bind": list(binds)}
    return expand([entry], {"python": list(pythons) or [""]})


def concerns(entry: catalog.Entry, server: str, distribution: str) -> bool:
    """Does this catalog entry say something about a release of `server`?"""
    if entry.scenario.server == server:
        return True
    return any(_dist_of(r) == _norm(distribution) for case in entry.cases for r in case.requirements)


def catalog_scenarios(
    server: str,
    version: str,
    *,
    pythons: Sequence[str] = ("",),
    entries: Optional[Sequence[catalog.Entry]] = None,
    sys_platform: str = sys.platform,
) -> List[Tuple[Scenario, Dict[str, str]]]:
    """Every catalog entry that concerns `server`, at `version`: the entry's newest requirement set (its
    fixed case, else its last case) with the distribution re-pinned, each with its catalog tag
    (ResultRecord.catalog) so the page links the cell to the issue. `pythons` == ("",): each entry's own
    python pin; else those interpreters (entries whose python range excludes one are left out there)."""
    dist = get_adapter(server).distribution

    def cases(entry: catalog.Entry) -> Sequence[catalog.Case]:
        return entry.cases if concerns(entry, server, dist) else ()

    return _repinned(dist, version, cases, pythons=pythons, entries=entries, sys_platform=sys_platform)


def _repinned(
    dist: str,
    version: str,
    cases_of: Callable[[catalog.Entry], Sequence[catalog.Case]],
    *,
    pythons: Sequence[str],
    entries: Optional[Sequence[catalog.Entry]],
    sys_platform: str,
) -> List[Tuple[Scenario, Dict[str, str]]]:
    """Per catalog entry that runs here and has cases (cases_of): its newest requirement set among them
    (the fixed case, else the last) with `dist` re-pinned to `version`, per python (module doc)."""
    out: List[Tuple[Scenario, Dict[str, str]]] = []
    seen = set()
    for entry in catalog.entries() if entries is None else entries:
        cases = cases_of(entry)
        if entry.skip or entry.platform_skip(sys_platform) or not cases:
            continue
        fixed = [c for c in cases if c.expectation.role == "fixed"]
        case = fixed[0] if fixed else cases[-1]
        base = dataclasses.replace(
            entry.scenario,
            requirements=_pinned(case.requirements, dist, version),
            python=case.python or entry.scenario.python,
        )
        for py in [p for p in pythons if p] or [base.python]:
            if py and py[0].isdigit() and entry.python_skip(py):
                continue
            sc = dataclasses.replace(base, python=py)
            if sc.scenario_id in seen:  # several entries, one scenario (e.g. the failing-lifespan ones)
                continue
            seen.add(sc.scenario_id)
            out.append((sc, entry.tag(case.expectation.role)))
    return out


def release_scenarios(
    server: str,
    version: str,
    *,
    pythons: Sequence[str] = ("",),
    workers: Sequence[int] = (1, 2, 4),
    binds: Sequence[str] = ("tcp",),
    with_catalog: bool = True,
    entries: Optional[Sequence[catalog.Entry]] = None,
) -> List[Tuple[Scenario, Dict[str, str]]]:
    """The default matrix ({} tags) and (with_catalog) the catalog of `server` (its entries' tags), at
    `version`; duplicates dropped."""
    pairs: List[Tuple[Scenario, Dict[str, str]]] = [
        (sc, {}) for sc in matrix_scenarios(server, version, pythons=pythons, workers=workers, binds=binds)
    ]
    if with_catalog:
        pairs += catalog_scenarios(server, version, pythons=pythons, entries=entries)
    seen = set()
    out = []
    for sc, tag in pairs:
        if sc.scenario_id not in seen:
            seen.add(sc.scenario_id)
            out.append((sc, tag))
    return out


def server_of(distribution: str) -> str:
    """The registered server (adapter name) whose distribution this is; "" when it is no server's (a
    dependency such as h11). Adapters registered through ASGI_HARNESS_ADAPTERS count too."""
    wanted = _norm(distribution)
    for name in (*known_servers(), *registered_extra()):
        try:
            if _norm(get_adapter(name).distribution or "") == wanted:
                return name
        except (UnknownServer, UsageError, ValueError):
            continue
    return ""


def item_pairs(
    distribution: str,
    version: str,
    *,
    pythons: Sequence[str] = ("",),
    workers: Sequence[int] = (1, 2, 4),
    binds: Sequence[str] = ("tcp",),
    with_catalog: bool = True,
    with_downstream: bool = True,
    entries: Optional[Sequence[catalog.Entry]] = None,
    sys_platform: str = sys.platform,
    server: Optional[str] = None,
) -> List[Tuple[str, Scenario, Dict[str, str]]]:
    """What one release of `distribution` runs, as (role, scenario, catalog tag): a server's release set
    (role "release-set": its default matrix; "catalog": its catalog entries, re-pinned), a dependency's
    catalog entries that pin it (re-pinned), then the DOWNSTREAM combinations ("downstream": that
    server's default requirements with the release pinned in). Duplicates dropped. `server`: the
    adapter that runs the distribution when the caller knows it ("" for a dependency; default: found)."""
    dist = _norm(distribution)
    out: List[Tuple[str, Scenario, Dict[str, str]]] = []
    seen = set()

    def add(role: str, scenario: Scenario, tag: Dict[str, str]) -> None:
        if scenario.scenario_id not in seen:
            seen.add(scenario.scenario_id)
            out.append((role, scenario, tag))

    if server is None:
        server = server_of(dist)
    if server:
        pairs = release_scenarios(server, version, pythons=pythons, workers=workers, binds=binds,
                                  with_catalog=with_catalog, entries=entries)  # fmt: skip
        for sc, tag in pairs:
            add("catalog" if tag else "release-set", sc, tag)
    elif with_catalog:

        def pinning(entry: catalog.Entry) -> Sequence[catalog.Case]:
            return [c for c in entry.cases if any(_dist_of(r) == dist for r in c.requirements)]

        for sc, tag in _repinned(
            dist, version, pinning, pythons=pythons, entries=entries, sys_platform=sys_platform
        ):
            add("catalog", sc, tag)
    for downstream, extra in DOWNSTREAM.get(dist, ()) if with_downstream else ():
        reqs = merge_requirements(merge_requirements(get_adapter(downstream).default_requirements, extra),
                                  [f"{dist}=={version}"])  # fmt: skip
        combo = {"server": downstream, "requirements": reqs, "workers": list(workers), "bind": list(binds)}
        for sc in expand([combo], {"python": list(pythons) or [""]}):
            add("downstream", sc, {})
    return out


def fetch_release_project(name: str) -> index.Project:
    """The index's page of `name` (the index pip's configuration names, as the env builder uses it)."""
    return index.fetch_project(index.index_url(), name)


def check_release(project: index.Project, version: str, what: str = "") -> index.Release:
    """The release `version` of `project` when it can be tested: on the index, with a file that is not
    yanked. UsageError (one line) when the index does not have it or it is yanked; HarnessError when it
    is listed without files yet (an upload under way: try again later, never a verdict)."""
    where = index.shown(project.index)
    label = f"{what}{project.name} {version}"
    release = project.releases.get(version)
    if release is None:
        from packaging.version import Version  # noqa: PLC0415 - only here

        finals = [v for v, r in project.releases.items() if r.installable and not Version(v).is_prerelease]
        newest = max(finals, key=Version) if finals else ""
        hint = f" (its newest release is {newest})" if newest else ""
        raise UsageError(f"{label} is not on the index {where}{hint}")
    if release.yanked:
        reason = next((y for _, y, _ in release.files if y), "")
        raise UsageError(f"{label} is yanked on {where}" + (f": {reason}" if reason else ""))
    if not release.installable:
        raise HarnessError(f"{label} is listed on {where} without files yet (an upload under way): try later")
    return release


def previous_release(project: index.Project, version: str) -> str:
    """The newest release of `project` older than `version` that can be tested (installable, not
    yanked, not a pre-release); UsageError when there is none."""
    return previous_version(
        version, [v for v, r in project.releases.items() if r.installable and not r.yanked]
    )


@dataclasses.dataclass(frozen=True)
class ReleaseRun:
    """Both sides of a release check, as run.

    * server, distribution, version, previous - what was compared (previous found on the index when not
      given)
    * sides - {version: the records of its scenarios, in order}"""

    server: str
    distribution: str
    version: str
    previous: str
    sides: Dict[str, List[ResultRecord]]

    @property
    def records(self) -> List[ResultRecord]:
        return [*self.sides[self.previous], *self.sides[self.version]]


def resolve(name: str) -> Tuple[str, str]:
    """(server, distribution) of what `harness release NAME` names: a registered server (its adapter's
    distribution), or a distribution - a server's, or a dependency's (server "")."""
    try:
        adapter = get_adapter(name)
    except UnknownServer:
        from harness.env.index import check_distribution  # noqa: PLC0415

        dist = check_distribution(name)
        return server_of(dist), dist
    if not adapter.distribution:
        raise UsageError(f"server {name!r} has no released versions to compare")
    return name, _norm(adapter.distribution)


def run_release(
    name: str,
    version: str,
    previous: str = "",
    *,
    pythons: Sequence[str] = ("",),
    workers: Sequence[int] = (1, 2, 4),
    binds: Sequence[str] = ("tcp",),
    with_catalog: bool = True,
    with_downstream: bool = True,
    results_dir: str = "results",
    jobs: int = 1,
    work_dir: str = "",
    capsule_dir: str = "",
    base_timeout: float = BASE_TIMEOUT_S,
    lookup: Optional[ProjectLookup] = None,
    progress: Optional[Callable[[int], Progress]] = None,
    notify: Callable[[str], None] = lambda line: None,
    confirm: int = DEFAULT_CONFIRM,
) -> ReleaseRun:
    """Check both versions on the index (check_release: nothing runs for a version it does not have),
    then run both sides (each side's JSONL under `results_dir`); `notify` gets one line per step."""
    version = check_version(version)
    if previous:
        previous = check_version(previous, "--previous")
    server, dist = resolve(name)

    def scenarios_at(ver: str) -> List[Tuple[str, Scenario, Dict[str, str]]]:
        return item_pairs(dist, ver, pythons=pythons, workers=workers, binds=binds, with_catalog=with_catalog,
                          with_downstream=with_downstream, server=server)  # fmt: skip

    if not scenarios_at(version):  # pure: said before the index is asked
        raise UsageError(f"nothing runs with {dist} here (no server, catalog entry or downstream of it)")
    try:
        project = (lookup or fetch_release_project)(dist)
    except UsageError:
        raise
    except HarnessError as exc:
        raise HarnessError(f"cannot check {dist} {version} on the index: {exc}") from None
    check_release(project, version)
    if previous:
        check_release(project, previous, "--previous ")
    else:
        previous = previous_release(project, version)
        notify(f"harness release: previous {dist} release: {previous}")
    if previous == version:
        raise UsageError(f"--previous {previous} is the version itself")
    per_side: Dict[str, List[Scenario]] = {}
    tags: Dict[str, Dict[str, str]] = {}
    route: Dict[str, str] = {}
    for ver in (previous, version):
        triples = scenarios_at(ver)
        per_side[ver] = [sc for _, sc, _ in triples]
        tags.update({sc.scenario_id: tag for _, sc, tag in triples if tag})
        results = os.path.join(results_dir, f"{_file_part(dist)}-{_file_part(ver)}.jsonl")
        route.update({sc.scenario_id: results for sc in per_side[ver]})
        n_down = sum(1 for role, _, _ in triples if role == "downstream")
        n_cat = sum(1 for _, _, tag in triples if tag)
        counts = f"{n_cat} from the catalog, {n_down} downstream"
        notify(f"{dist} {ver}: {len(per_side[ver])} scenario(s) ({counts}) -> {results}")
    ids = [sc.scenario_id for side in per_side.values() for sc in side]
    if len(set(ids)) != len(ids):  # both sides pin the item, so their ids differ; said, never mixed up
        raise HarnessError(f"the scenarios of {dist} {previous} and {version} share an id: cannot tell apart")
    order = paired(per_side[previous], per_side[version])
    notify(f"both sides in one pool: {len(order)} scenario(s), {jobs} at a time, the longest first")
    records = run_matrix(
        order,
        results=route[order[0].scenario_id],
        route=route,
        jobs=jobs,
        work_dir=work_dir,
        capsule_dir=capsule_dir or os.path.join(results_dir, "capsules"),
        base_timeout=base_timeout,
        progress=progress(len(order)) if progress else None,
        catalog=tags,
        confirm=confirm,
    )
    sides: Dict[str, List[ResultRecord]] = {}
    for ver in (previous, version):
        mine = {sc.scenario_id for sc in per_side[ver]}
        sides[ver] = [r for r in records if r.scenario_id in mine]
        notify(f"{dist} {ver}: " + summary(mark_degraded(sides[ver])))  # as the page judges them
    return ReleaseRun(server or dist, dist, version, previous, sides)


def _cost(scenario: Scenario) -> int:
    """A rank of how long a run of the scenario takes, from what it does (measured in bench_release's
    job: a plain cell 1.5-5 s, a runtime fault 6-13 s - its recovery window and fault-window load -,
    stop-worker waits out a heartbeat timeout of 10-40 s); a launch or app fault is a plain cell."""
    fault = scenario.fault.split(":", 1)[0]
    if fault == "stop-worker":
        return 3
    if fault in ("kill-worker", "kill-workers", "kill-master", "term-master-only", "signal-master"):
        return 2
    return 1


def paired(before: Sequence[Scenario], after: Sequence[Scenario]) -> List[Scenario]:
    """Both sides' scenarios for one pool: the two sides of a cell next to each other (they run at about
    the same time, on the same machine load), the costliest cells first, so a long cell never starts last
    while the other job slot idles (longest-processing-time-first); ties keep the given order."""
    rows: List[Scenario] = []
    for i in range(max(len(before), len(after))):
        rows.extend(side[i] for side in (before, after) if i < len(side))
    return [sc for _, sc in sorted(enumerate(rows), key=lambda p: (-_cost(p[1]), p[0]))]
