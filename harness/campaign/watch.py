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

import configparser
import dataclasses
import html.parser
import json
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from harness.env.venvs import canonical_name as canonical
from harness.model.errors import HarnessError, UsageError

#: the servers whose releases are watched (each has an adapter)
WATCHED_SERVERS = ("uvicorn", "hypercorn", "gunicorn", "granian", "daphne")
#: dependencies that broke those servers' multi-worker startup before
WATCHED_DEPENDENCIES = ("uvicorn-worker", "uvloop", "httptools", "h11", "websockets", "click", "anyio")
WATCHED = WATCHED_SERVERS + WATCHED_DEPENDENCIES

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

DEFAULT_INDEX = "https://pypi.org/simple/"
#: PEP 691: JSON first, HTML as the fallback an index without JSON sends anyway
ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
TIMEOUT_S = 30.0
#: the most of an index answer read (a project page of PyPI's largest projects is a few MB)
MAX_ANSWER_BYTES = 64 << 20


def check_distribution(name: str) -> str:
    """The normalized name, or UsageError when it cannot be a distribution name (PEP 508)."""
    if not re.match(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$", name.strip()):
        raise UsageError(f"not a distribution name: {name!r}")
    return canonical(name)


# -- which index ---------------------------------------------------------------------------------


def _pip_config_files() -> List[str]:
    """The files pip reads its configuration from, in pip's order (later ones win): global, user, site;
    PIP_CONFIG_FILE replaces them all (pip: "os.devnull" disables them)."""
    explicit = os.environ.get("PIP_CONFIG_FILE")
    if explicit:
        return [] if explicit == os.devnull else [explicit]
    files: List[str] = []
    if sys.platform == "win32":
        program_data = os.environ.get("PROGRAMDATA", "C:\\ProgramData")
        files.append(os.path.join(program_data, "pip", "pip.ini"))
        appdata = os.environ.get("APPDATA", "")
        if appdata:
            files.append(os.path.join(appdata, "pip", "pip.ini"))
        files.append(os.path.join(os.path.expanduser("~"), "pip", "pip.ini"))
    else:
        xdg_dirs = os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
        files += [os.path.join(d, "pip", "pip.conf") for d in xdg_dirs if d]
        files.append("/etc/pip.conf")
        home = os.path.expanduser("~")
        files.append(os.path.join(home, ".pip", "pip.conf"))
        if sys.platform == "darwin":
            files.append(os.path.join(home, "Library", "Application Support", "pip", "pip.conf"))
        xdg_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        files.append(os.path.join(xdg_home, "pip", "pip.conf"))
    venv = os.environ.get("VIRTUAL_ENV") or (sys.prefix if sys.prefix != sys.base_prefix else "")
    if venv:
        files.append(os.path.join(venv, "pip.ini" if sys.platform == "win32" else "pip.conf"))
    return files


def index_url(explicit: str = "") -> str:
    """--index-url, else PIP_INDEX_URL, else the index-url pip's configuration files give (the [install]
    section over [global], later files over earlier ones), else PyPI's simple API."""
    if explicit:
        return _check_url(explicit, "--index-url")
    env = os.environ.get("PIP_INDEX_URL", "").strip()
    if env:
        return _check_url(env, "PIP_INDEX_URL")
    found = ""
    for path in _pip_config_files():
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue  # pip itself would complain; the watch falls back to the next source
        for section in ("global", "install"):
            if parser.has_option(section, "index-url"):
                value = parser.get(section, "index-url").strip()
                if value:
                    found = value
    return _check_url(found, f"pip configuration index-url {found!r}") if found else DEFAULT_INDEX


def _check_url(url: str, what: str) -> str:
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"{what}: not an http(s) index URL: {url!r}")
    return url.strip().rstrip("/") + "/"


def _shown(url: str) -> str:
    """An index URL without its credentials (an index URL may carry a token)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


# -- what the index has --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Release:
    """One version on the index: its files (name, yanked reason or None, requires-python)."""

    version: str
    files: Tuple[Tuple[str, Optional[str], str], ...]

    @property
    def yanked(self) -> bool:
        """Every file is yanked (PEP 592: a release is yanked when all its files are)."""
        return bool(self.files) and all(y is not None for _, y, _ in self.files)

    @property
    def installable(self) -> bool:
        """It has a file that is not yanked (a version listed with no file yet is still being uploaded)."""
        return any(y is None for _, y, _ in self.files)


@dataclasses.dataclass(frozen=True)
class Project:
    name: str
    index: str
    releases: Dict[str, Release]


class _Anchors(html.parser.HTMLParser):
    """PEP 503 project page: every <a> with its text and attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: List[Tuple[Dict[str, Optional[str]], str]] = []
        self._open: Optional[Dict[str, Optional[str]]] = None
        self._text: List[str] = []

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        if tag == "a":
            self._open = dict(attrs)
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.anchors.append((self._open, "".join(self._text).strip()))
            self._open = None


def _version_of(filename: str, project: str) -> Optional[str]:
    """The version a distribution file name carries (wheel or sdist), normalized; None if unreadable."""
    from packaging.utils import (  # noqa: PLC0415 - only here
        InvalidSdistFilename,
        InvalidWheelFilename,
        parse_sdist_filename,
        parse_wheel_filename,
    )
    from packaging.version import InvalidVersion  # noqa: PLC0415

    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        elif filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
        else:
            return None  # eggs, .exe installers: not what pip installs for these servers
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return str(version) if canonical(str(name)) == canonical(project) else None


def _yank(value: Any) -> Optional[str]:
    """PEP 592 / 691: False or absent -> not yanked; True or a reason string -> yanked (the reason)."""
    if value is None or value is False:
        return None
    return value if isinstance(value, str) else ""


def parse_project(body: bytes, content_type: str, name: str, index: str) -> Project:
    """A project page (PEP 691 JSON or PEP 503 HTML) -> Project; HarnessError when it is neither."""
    where = f"{_shown(index)}{canonical(name)}/"
    files: List[Tuple[str, Optional[str], str]] = []
    listed: List[str] = []
    if "json" in content_type:
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise HarnessError(f"the index sent unreadable JSON for {where}") from None
        if not isinstance(data, dict) or not isinstance(data.get("files"), list):
            raise HarnessError(f"the index sent JSON without a files list for {where} (not PEP 691)")
        for f in data["files"]:
            if isinstance(f, dict) and isinstance(f.get("filename"), str):
                rp = f.get("requires-python")
                files.append((f["filename"], _yank(f.get("yanked")), rp if isinstance(rp, str) else ""))
        versions = data.get("versions")  # PEP 700: every version, also one whose files are not up yet
        if isinstance(versions, list):
            listed = [v for v in versions if isinstance(v, str)]
    else:
        parser = _Anchors()
        try:
            parser.feed(body.decode("utf-8", "replace"))
            parser.close()
        except (ValueError, AssertionError):
            raise HarnessError(f"the index sent an unreadable page for {where}") from None
        if "<html" not in body[:4096].decode("utf-8", "replace").lower() and not parser.anchors:
            raise HarnessError(f"the index sent neither PEP 691 JSON nor a PEP 503 page for {where}")
        for attrs, text in parser.anchors:
            href = attrs.get("href") or ""
            filename = text or urllib.parse.unquote(urllib.parse.urlsplit(href).path.rsplit("/", 1)[-1])
            yanked = attrs.get("data-yanked")
            files.append((filename, None if "data-yanked" not in attrs else (yanked or ""), attrs.get(
                "data-requires-python") or ""))  # fmt: skip
    by_version: Dict[str, List[Tuple[str, Optional[str], str]]] = {}
    for f in files:
        version = _version_of(f[0], name)
        if version is not None:
            by_version.setdefault(version, []).append(f)
    for raw in listed:
        version = _normal_version(raw)
        if version is not None:
            by_version.setdefault(version, [])
    releases = {v: Release(v, tuple(fs)) for v, fs in by_version.items()}
    return Project(canonical(name), index, releases)


def _normal_version(raw: str) -> Optional[str]:
    from packaging.version import InvalidVersion, Version  # noqa: PLC0415 - only here

    try:
        return str(Version(raw))
    except InvalidVersion:
        return None


def fetch_project(index: str, name: str, *, timeout: float = TIMEOUT_S) -> Project:
    """Ask the index for one project's page. HarnessError (one line, credentials left out) when the index
    is unreachable, answers with an error status, or sends something that is not a simple-API page."""
    name = check_distribution(name)
    url = index + urllib.parse.quote(name) + "/"
    shown = _shown(url)
    request = urllib.request.Request(url, headers={"Accept": ACCEPT, "User-Agent": "asgi-workers-harness"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_ANSWER_BYTES + 1)
            content_type = response.headers.get("Content-Type", "") or ""
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise HarnessError(f"the index has no project {name!r} ({shown} answered 404)") from None
        raise HarnessError(f"the index answered HTTP {exc.code} for {shown}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HarnessError(f"the index is unreachable ({shown}): {reason}") from None
    if len(body) > MAX_ANSWER_BYTES:
        raise HarnessError(f"the index sent more than {MAX_ANSWER_BYTES >> 20} MiB for {shown}")
    return parse_project(body, content_type.lower(), name, index)


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
        version = _normal_version(value)
        if version is None:
            raise HarnessError(f"the state file {path}: {key}: {value!r} is not a version")
        state[name] = version
    return state


def save_state(path: str, state: Mapping[str, str]) -> None:
    """Write the state atomically (a reader sees the old file or the new one, never half of one)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".json", dir=directory)
    except OSError as exc:
        raise HarnessError(f"cannot write the state file {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(dict(sorted(state.items())), fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise HarnessError(f"cannot write the state file {path}: {exc.strerror or exc}") from None


def advance(state: Mapping[str, str], distribution: str, version: str) -> Dict[str, str]:
    """The state with `distribution` at `version` (a tested and published release); an older version than
    the state's is refused (UsageError): the state never goes back."""
    from packaging.version import Version  # noqa: PLC0415 - only here

    name = check_distribution(distribution)
    new = _normal_version(version)
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
            "index": _shown(self.index),
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


def _server_of(distribution: str) -> str:
    """The adapter name whose distribution this is ("" when it is no server's)."""
    from harness.adapters import get_adapter, known_servers  # noqa: PLC0415 - the adapters import much

    for name in known_servers():
        try:
            if canonical(get_adapter(name).distribution or "") == distribution:
                return name
        except (KeyError, ValueError, UsageError):
            continue
    return ""


def item_scenarios(
    distribution: str, version: str, *, pythons: Sequence[str] = ("",)
) -> List[PlannedScenario]:
    """What one plan item runs: the server's release set (its default matrix and its catalog entries,
    re-pinned), else (a dependency) the catalog entries that pin it, re-pinned; then DOWNSTREAM."""
    from harness import catalog  # noqa: PLC0415 - only here
    from harness.adapters import get_adapter  # noqa: PLC0415
    from harness.campaign.config import expand  # noqa: PLC0415
    from harness.campaign.matrix import UPSTREAM_WORKERS, merge_requirements  # noqa: PLC0415
    from harness.campaign.release import _dist_of, _pinned, release_scenarios  # noqa: PLC0415

    out: List[PlannedScenario] = []
    seen = set()

    def add(role: str, scenario: Any, catalog_id: str = "") -> None:
        if scenario.scenario_id in seen:
            return
        seen.add(scenario.scenario_id)
        out.append(PlannedScenario(role, scenario.scenario_id, scenario.server, tuple(scenario.requirements),
                                   catalog_id))  # fmt: skip

    server = _server_of(distribution)
    if server:
        for sc, tag in release_scenarios(server, version, pythons=pythons):
            add("catalog" if tag else "release-set", sc, tag.get("id", ""))
    else:
        for entry in catalog.entries():
            if entry.skip or entry.platform_skip(sys.platform):
                continue
            cases = [c for c in entry.cases if any(_dist_of(r) == distribution for r in c.requirements)]
            if not cases:
                continue
            fixed = [c for c in cases if c.expectation.role == "fixed"]
            case = fixed[0] if fixed else cases[-1]
            sc = dataclasses.replace(entry.scenario, requirements=_pinned(case.requirements, distribution,
                                     version), python=case.python or entry.scenario.python)  # fmt: skip
            add("catalog", sc, entry.tag(case.expectation.role).get("id", ""))
    for downstream, extra in DOWNSTREAM.get(distribution, ()):
        adapter = get_adapter(downstream)
        base = merge_requirements(adapter.default_requirements, extra)
        reqs = merge_requirements(base, [f"{distribution}=={version}"])
        combo: Dict[str, Any] = {"server": downstream, "requirements": reqs}
        combo["workers"] = list(UPSTREAM_WORKERS)
        for sc in expand([combo], {"python": list(pythons) or [""]}):
            add("downstream", sc)
    return out


def fetch_all(index: str, names: Sequence[str], *, timeout: float = TIMEOUT_S) -> Dict[str, Project]:
    """fetch_project for each name, in order; the first failure is raised (nothing is half-planned)."""
    return {check_distribution(n): fetch_project(index, n, timeout=timeout) for n in names}


__all__ = [
    "DOWNSTREAM",
    "WATCHED",
    "Item",
    "Plan",
    "PlannedScenario",
    "Project",
    "Release",
    "advance",
    "fetch_all",
    "fetch_project",
    "index_url",
    "item_scenarios",
    "load_state",
    "make_plan",
    "parse_project",
    "save_state",
]
