"""Cached virtual environments: one per (interpreter, requirements), built once, shared by every run.

* ensure_env(interpreter, requirements) -> Env - the env, built (uv, or venv + pip) or found in the cache
* Env - path, python (the venv's interpreter), interpreter, requirements, installed versions, build time
* env_vars_for_server(env) - the variables the runner sets for a server in that env (and ENV_VARS_TO_UNSET)
* list_versions(distribution, interpreter) - released versions on PyPI, oldest first (for bisecting)
* pin_unpinned(requirements, interpreter) - unpinned requirements pinned to their newest release now

An env lives at `<cache>/<key>/` where key hashes the interpreter's realpath + version, the normalized
sorted requirements and the project root. It is built in `<cache>/.build-<key>-*/`, finished (versions
read back, marker `harness-env.json` written) and then renamed into place, so a directory at the final
path is always a complete env; a failed build is removed. Builders of one env serialize on
`<cache>/<key>.lock` (harness._platform.locks.FileLock), so xdist workers and parallel harness processes
build it
once. The log of the last build of an env is `<cache>/logs/<key>.log`.

What an env contains does not depend on who built it: **no seed packages**, with either builder. uv
(the default; `uv venv` seeds nothing) and the fallback (`python -m venv --without-pip`, then the pip wheel
that Python bundles for ensurepip, run from the wheel file, so pip installs into the env without being
installed itself) both leave exactly the resolved
requirements - no pip, no setuptools (a `python -m venv` env would carry setuptools 65.5 on 3.11, and an
old server importing `pkg_resources` would pass there and fail in a uv env). A server that needs
setuptools says so in its requirements (`setuptools<82` for `pkg_resources`): an explicit scenario axis,
part of the scenario id. `ASGI_HARNESS_BUILDER=uv|pip` forces a builder; Env.builder names the one that
built the env ("uv 0.9.5", "pip 24.0"), recorded in every ResultRecord.builder.

The project itself (the directory holding `servers/`) is made importable through a .pth file, never
installed: the harness's own dependencies stay out of the server's env. Its `servers/` package is
byte-compiled for the env's interpreter so spawned workers do not compile it again.

Exceptions:

    EnvError - the env could not be built; str(exc) is the installer's decisive line, .log_path the full log
"""

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sysconfig
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import IO, Any, Dict, List, Optional, Sequence, Tuple

from harness import _platform
from harness._platform.locks import FileLock, LockTimeout
from harness.env import index
from harness.env.pythons import Interpreter
from harness.model.errors import HarnessError, UsageError
from harness.verdict.installer import decisive_line

#: bump when the layout of an env changes: envs of an older layout are simply never found again.
ENV_LAYOUT = 1
#: written last into a finished env: {"installed": {...}, "requirements": [...], ...}
MARKER = "harness-env.json"
#: the .pth that puts the project root on the env's sys.path
PTH_NAME = "_asgi_workers_harness_project.pth"
#: variables the runner must remove from a server's environment (they would bend its sys.path / prefix).
ENV_VARS_TO_UNSET: Tuple[str, ...] = ("PYTHONHOME", "PYTHONPATH", "__PYVENV_LAUNCHER__")

#: the oldest Python an env can be built for (the in-env helper scripts are 3.6-compatible; the reference
#: server itself needs 3.8 and says so through its probe)
MIN_PYTHON = (3, 6)


class EnvError(Exception):
    """The env could not be built.

    * line - one line: the installer's decisive line (also str(exc))
    * log_path - the full log of the attempt ("" when nothing ran)
    """

    def __init__(self, line: str, log_path: str = "") -> None:
        super().__init__(line)
        self.line = line
        self.log_path = log_path

    def __str__(self) -> str:
        return self.line


@dataclasses.dataclass(frozen=True)
class Env:
    """A finished env.

    * path - the venv directory
    * python - the venv's interpreter (bin/python, Scripts\\python.exe)
    * interpreter - the base interpreter it was made from
    * requirements - the normalized, sorted requirement strings it was built for
    * installed - {canonical distribution name: version}, read back from the env by its own python
    * build_seconds - how long the build took (the original build's figure when cached)
    * cached - True when an existing env was found (no build in this call)
    * log_path - the build log
    * builder - the installer that built it and its version ("uv 0.9.5", "pip 24.0")
    """

    path: str
    python: str
    interpreter: Interpreter
    requirements: Tuple[str, ...]
    installed: Dict[str, str]
    build_seconds: float
    cached: bool
    log_path: str = ""
    builder: str = ""

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["requirements"] = list(self.requirements)
        return d


# -- keys and names -------------------------------------------------------------------------------


canonical_name = index.canonical


_REQ = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)(\s*\[[^\]]*\])?(.*)$")


def normalize_requirement(requirement: str) -> str:
    """ "Uvicorn[Standard] == 0.30.0" -> "uvicorn[standard]==0.30.0"; raises EnvError on options."""
    req = requirement.strip()
    if not req:
        raise EnvError("empty requirement")
    if req.startswith("-"):
        raise EnvError(f"installer options are not requirements: {req!r}")
    if "\n" in req or "\r" in req:
        raise EnvError(f"a requirement is one line: {req!r}")
    m = _REQ.match(req)
    if not m or m.group(3).lstrip().startswith(("/", "\\", ":")):
        return req  # a path or URL: kept as written
    name = canonical_name(m.group(1))
    extras = ""
    if m.group(2):
        names = sorted(canonical_name(e.strip()) for e in m.group(2).strip()[1:-1].split(",") if e.strip())
        extras = "[" + ",".join(names) + "]"
    rest = m.group(3).strip()
    marker = ""
    if ";" in rest and not rest.startswith("@"):
        rest, marker = rest.split(";", 1)
        marker = "; " + " ".join(marker.split())
    if rest.startswith("@"):
        rest = " @ " + rest[1:].strip()
    else:
        rest = re.sub(r"\s+", "", rest)
    return f"{name}{extras}{rest}{marker}"


def project_root() -> str:
    """The directory that contains the `servers` package (the .pth target)."""
    import servers  # noqa: PLC0415 - the harness and servers/ are one project; imported lazily

    return os.path.dirname(os.path.dirname(os.path.abspath(servers.__file__)))


def default_cache_dir() -> str:
    """$HARNESS_CACHE/envs, else the user cache dir (~/.cache, %LOCALAPPDATA%)/asgi-workers-harness/envs."""
    base = os.environ.get("HARNESS_CACHE")
    if base:
        return os.path.join(os.path.abspath(os.path.expanduser(base)), "envs")
    return os.path.join(_platform.user_cache_root(), "asgi-workers-harness", "envs")


def env_key(interpreter: Interpreter, requirements: Sequence[str], index_url: str = "") -> str:
    """The cache key of an env: 16 hex digits. A package index other than PyPI's is part of it (the same
    name and version from another index may be another file)."""
    payload: Dict[str, Any] = {
        "layout": ENV_LAYOUT,
        "python": os.path.normcase(os.path.realpath(interpreter.path)),
        "version": interpreter.version,
        "implementation": interpreter.implementation,
        "requirements": sorted(normalize_requirement(r) for r in requirements),
        "project": os.path.normcase(project_root()),
    }
    if index_url and not index.is_default(index_url):
        payload["index"] = index_url
    raw = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]


def _venv_python(venv: str) -> str:
    return _platform.venv_python(venv)


def _venv_bin(venv: str) -> str:
    return os.path.dirname(_venv_python(venv))


# -- the public entry points --------------------------------------------------------------------


def ensure_env(
    interpreter: Interpreter,
    requirements: Sequence[str],
    *,
    cache_dir: Optional[str] = None,
    timeout: float = 600,
) -> Env:
    """The env for (interpreter, requirements): found in the cache, or built now.

    * requirements - requirement strings ("uvicorn==0.30.0", "uvicorn[standard]==0.30.0"); may be empty
    * cache_dir - where envs live (default: default_cache_dir())
    * timeout - seconds for waiting on another builder *and* for building (each its own deadline)
    An unpinned requirement ("h11") is resolved at build time; the runner pins unpinned ones to the index's
    newest release first (pin_unpinned), so "latest" means the latest when the scenario runs.
    Raises EnvError (one line) when the env cannot be built; nothing half-made is left behind."""
    if tuple(interpreter.version_tuple[:2]) < MIN_PYTHON:
        want = ".".join(map(str, MIN_PYTHON))
        raise EnvError(f"Python {interpreter.version} is too old: the harness needs >= {want}")
    reqs = tuple(sorted({normalize_requirement(r) for r in requirements}))
    root = os.path.abspath(cache_dir or default_cache_dir())
    try:
        index_url = index.index_url()
    except UsageError as exc:
        raise EnvError(str(exc)) from None
    key = env_key(interpreter, reqs, index_url)
    final = os.path.join(root, key)
    log_path = os.path.join(root, "logs", key + ".log")

    found = _load(final, interpreter, reqs, log_path)
    if found is not None:
        _refresh_project_bytecode(found, time.monotonic() + timeout)
        return found

    os.makedirs(os.path.join(root, "logs"), exist_ok=True)
    try:
        with FileLock(os.path.join(root, key + ".lock"), timeout=timeout):
            found = _load(final, interpreter, reqs, log_path)
            if found is not None:  # another builder finished while we waited
                _refresh_project_bytecode(found, time.monotonic() + timeout)
                return found
            _remove_leftovers(root, key, final)
            return _build(
                interpreter,
                reqs,
                root=root,
                key=key,
                final=final,
                log_path=log_path,
                deadline=time.monotonic() + timeout,
                index_url=index_url,
            )
    except LockTimeout as exc:
        raise EnvError(f"another process is still building this env: {exc}", log_path) from None
    except OSError as exc:
        raise EnvError(f"cannot build the env in {root}: {exc.strerror or exc}", log_path) from None


def env_vars_for_server(env: Env) -> Dict[str, str]:
    """Variables to set for a server running in `env`: VIRTUAL_ENV, PATH with the env's bin first.

    Also remove ENV_VARS_TO_UNSET from the server's environment. PYTHONDONTWRITEBYTECODE may stay:
    the env and the project's servers/ are byte-compiled at build time."""
    path = os.environ.get("PATH", "")
    bindir = _venv_bin(env.path)
    return {
        "VIRTUAL_ENV": env.path,
        "PATH": bindir + (os.pathsep + path if path else ""),
    }


def list_versions(
    distribution: str,
    interpreter: Optional[Interpreter] = None,
    *,
    include_prereleases: bool = False,
    python_compatible: bool = False,
    timeout: float = 30.0,
) -> List[str]:
    """Every released version of `distribution` on the index, oldest first (PEP 440 order).

    Releases whose files are all yanked, and releases without files, are left out; pre-releases too unless
    `include_prereleases`. With `python_compatible`, only releases with a file whose Requires-Python
    admits `interpreter.version`. Asks PyPI's JSON API, or the simple API of the index that
    index.index_url() names when it is another (the one the env builder installs from). Raises EnvError
    (one line)."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet  # noqa: PLC0415 - only here
    from packaging.version import InvalidVersion, Version  # noqa: PLC0415

    name = canonical_name(distribution.strip())
    if not name or not re.match(r"^[a-z0-9][a-z0-9-]*$", name):
        raise EnvError(f"not a distribution name: {distribution!r}")
    if python_compatible and interpreter is None:
        raise EnvError("python_compatible needs an interpreter")
    try:
        where = index.index_url()
    except UsageError as exc:
        raise EnvError(str(exc)) from None
    # {version: [(yanked, requires_python) per file]}
    releases = _pypi_releases(name, distribution, timeout) if index.is_default(where) else {}
    if not index.is_default(where):
        try:
            project = index.fetch_project(where, name, timeout=timeout)
        except HarnessError as exc:
            raise EnvError(str(exc)) from None
        releases = {v: [(y is not None, rp) for _, y, rp in r.files] for v, r in project.releases.items()}

    result: List[Tuple[Any, str]] = []
    for raw, files in releases.items():
        live = [rp for yanked, rp in files if not yanked]
        if not live:
            continue
        try:
            version = Version(raw)
        except InvalidVersion:
            continue
        if version.is_prerelease and not include_prereleases:
            continue
        if python_compatible and interpreter is not None:
            ok = False
            for spec in live:
                try:
                    if not spec or SpecifierSet(spec).contains(interpreter.version, prereleases=True):
                        ok = True
                        break
                except InvalidSpecifier:
                    ok = True
                    break
            if not ok:
                continue
        result.append((version, raw))
    result.sort(key=lambda item: item[0])
    return [raw for _, raw in result]


def _pypi_releases(name: str, distribution: str, timeout: float) -> Dict[str, List[Tuple[bool, str]]]:
    """PyPI's JSON API: {version: [(yanked, requires_python) per file]}."""
    url = "https://pypi.org/pypi/" + urllib.parse.quote(name) + "/json"
    request = urllib.request.Request(
        url, headers={"Accept": "application/json", "User-Agent": "asgi-workers-harness"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise EnvError(f"no distribution named {distribution!r} on PyPI") from None
        raise EnvError(f"PyPI answered HTTP {exc.code} for {name}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EnvError(f"could not reach PyPI for {name}: {reason}") from None
    except ValueError:
        raise EnvError(f"PyPI sent an unreadable answer for {name}") from None
    out: Dict[str, List[Tuple[bool, str]]] = {}
    for raw, files in (data.get("releases") or {}).items() if isinstance(data, dict) else ():
        out[str(raw)] = [
            (bool(f.get("yanked")), str(f.get("requires_python") or ""))
            for f in files or ()
            if isinstance(f, dict)
        ]
    return out


#: how long a looked-up "latest release" is trusted (a matrix of many cells asks the index once)
LATEST_TTL_S = 900.0


def pin_unpinned(
    requirements: Sequence[str], interpreter: Interpreter, *, cache_dir: Optional[str] = None
) -> Tuple[Tuple[str, ...], Dict[str, str]]:
    """(requirements with every unpinned one pinned to its newest release for `interpreter`, {name: why
    it stayed unpinned}). A requirement without a version ("uvicorn", "uvicorn[standard]") is resolved
    against the index when the scenario runs - so a new release gets a new env instead of the env built for
    "latest" on some earlier day being reused forever. The answer is cached for LATEST_TTL_S in
    `<cache>/latest.json`. A requirement with a specifier, a URL, or one whose index lookup fails stays as
    written (the second item says why: the env is then resolved at build time, as before)."""
    from packaging.requirements import InvalidRequirement, Requirement  # noqa: PLC0415 - only here

    root = os.path.abspath(cache_dir or default_cache_dir())
    cache_path = os.path.join(root, "latest.json")
    try:
        with open(cache_path, encoding="utf-8") as fh:
            cache: Dict[str, Any] = json.load(fh)
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    now = time.time()
    out: List[str] = []
    kept: Dict[str, str] = {}
    changed = False
    for raw in requirements:
        try:
            req = Requirement(raw)
        except InvalidRequirement:
            out.append(raw)
            continue
        if req.specifier or req.url:
            out.append(raw)
            continue
        key = f"{canonical_name(req.name)}|{interpreter.version}"
        hit = cache.get(key)
        if isinstance(hit, dict) and now - float(hit.get("t", 0)) < LATEST_TTL_S and hit.get("v"):
            latest = str(hit["v"])
        else:
            try:
                versions = list_versions(req.name, interpreter, python_compatible=True, timeout=15.0)
            except EnvError as exc:
                kept[req.name] = str(exc)
                out.append(raw)
                continue
            if not versions:
                kept[req.name] = "no release installs on this Python"
                out.append(raw)
                continue
            latest = versions[-1]
            cache[key] = {"v": latest, "t": now}
            changed = True
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        marker = f"; {req.marker}" if req.marker else ""
        out.append(f"{req.name}{extras}=={latest}{marker}")
    if changed:
        try:
            os.makedirs(root, exist_ok=True)
            tmp = cache_path + f".{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(cache, fh)
            os.replace(tmp, cache_path)
        except OSError:
            pass
    return tuple(out), kept


# -- loading a finished env -------------------------------------------------------------------------


def _load(final: str, interpreter: Interpreter, reqs: Tuple[str, ...], log_path: str) -> Optional[Env]:
    marker = os.path.join(final, MARKER)
    python = _venv_python(final)
    try:
        with open(marker, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    # the venv's python points at the base interpreter: gone or replaced -> the env is not usable.
    if not os.path.exists(python) or not isinstance(data, dict):
        return None
    # an env from the time the pip fallback seeded pip + setuptools is not what this harness builds
    if data.get("installer") != "uv" and data.get("seed") != "none":
        return None
    return Env(
        path=final,
        python=python,
        interpreter=interpreter,
        requirements=reqs,
        installed={str(k): str(v) for k, v in (data.get("installed") or {}).items()},
        build_seconds=float(data.get("build_seconds") or 0.0),
        cached=True,
        log_path=log_path,
        builder=str(data.get("builder") or data.get("installer") or ""),
    )


def _remove_leftovers(root: str, key: str, final: str) -> None:
    """Under the lock: remove temp dirs of crashed builders and an unusable env at the final path."""
    prefix = ".build-" + key + "-"
    for name in os.listdir(root):
        if name.startswith(prefix):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    if os.path.lexists(final):
        trash = tempfile.mkdtemp(prefix=".trash-" + key + "-", dir=root)
        os.rename(final, os.path.join(trash, "env"))
        shutil.rmtree(trash, ignore_errors=True)


# -- building -------------------------------------------------------------------------------------------


def _build(
    interpreter: Interpreter,
    reqs: Tuple[str, ...],
    *,
    root: str,
    key: str,
    final: str,
    log_path: str,
    deadline: float,
    index_url: str = index.DEFAULT_INDEX,
) -> Env:
    start = time.monotonic()
    tmp = tempfile.mkdtemp(prefix=".build-" + key + "-", dir=root)
    venv = os.path.join(tmp, "env")
    try:
        with open(log_path, "w", encoding="utf-8", errors="replace") as log:
            log.write(f"# env {key}: {interpreter.path} ({interpreter.version}) {' '.join(reqs)}\n")
            uv = _find_uv() if os.environ.get(BUILDER_VAR, "") != "pip" else None
            if os.environ.get(BUILDER_VAR, "") == "uv" and not uv:
                raise EnvError(f"{BUILDER_VAR}=uv, but no uv was found", log_path)
            installer = _create_venv(interpreter, venv, uv, log=log, log_path=log_path, deadline=deadline)
            python = _venv_python(venv)
            builder = _builder_version(installer, uv)
            if reqs:
                builder = _install(
                    installer,
                    uv,
                    python,
                    reqs,
                    interpreter_version=interpreter.version_tuple,
                    log=log,
                    log_path=log_path,
                    deadline=deadline,
                    index_url=index_url,
                )
            info = _read_back(python, log, log_path, deadline)
            root_dir = project_root()
            with open(os.path.join(str(info["purelib"]), PTH_NAME), "w", encoding="utf-8") as fh:
                fh.write(root_dir + "\n")
            _compile_project(python, root_dir, log, log_path, deadline, verify=True)
            _retarget_scripts(venv, final)
            seconds = time.monotonic() - start
            installed = {canonical_name(str(k)): str(v) for k, v in dict(info["installed"]).items()}
            marker = {
                "layout": ENV_LAYOUT,
                "interpreter": interpreter.to_dict(),
                "requirements": list(reqs),
                "installed": installed,
                "installer": installer,
                "builder": builder,
                "index": index.shown(index_url),
                "seed": "none",
                "build_seconds": round(seconds, 3),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "project": root_dir,
            }
            with open(os.path.join(venv, MARKER), "w", encoding="utf-8") as fh:
                json.dump(marker, fh, indent=1, sort_keys=True)
            log.write(f"# done in {seconds:.2f}s\n")
        os.rename(venv, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Env(
        path=final,
        python=_venv_python(final),
        interpreter=interpreter,
        requirements=reqs,
        installed=installed,
        build_seconds=seconds,
        cached=False,
        log_path=log_path,
        builder=builder,
    )


#: forces the builder: "uv" (fail when there is none) or "pip" (the fallback even when uv is there)
BUILDER_VAR = "ASGI_HARNESS_BUILDER"
_VERSIONS: Dict[str, str] = {}


def _builder_version(installer: str, uv: Optional[str]) -> str:
    """ "uv 0.9.5" / "pip 24.0": the first line of the installer's --version, asked once per process."""
    if installer != "uv" or not uv:
        return "venv"  # nothing installed: `python -m venv --without-pip` alone
    argv = [uv, "--version"]
    key = " ".join(argv)
    if key not in _VERSIONS:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        words = out.split()
        _VERSIONS[key] = " ".join(words[:2]) if len(words) >= 2 else installer
    return _VERSIONS[key]


def _find_uv() -> Optional[str]:
    # the uv next to the harness's interpreter first (the `uv` dependency), then PATH.
    scripts = sysconfig.get_path("scripts")
    name = _platform.exe("uv")
    if scripts and os.path.isfile(os.path.join(scripts, name)):
        return os.path.join(scripts, name)
    return shutil.which("uv")


#: what one builder would read and the other not: the index comes from index.index_url() instead
INDEX_VARS = (
    "UV_INDEX",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
)


def _child_env(*, bytecode: bool = True) -> Dict[str, str]:
    env = dict(os.environ)
    for var in (*ENV_VARS_TO_UNSET, "VIRTUAL_ENV", "CONDA_PREFIX"):
        env.pop(var, None)
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # the build is exactly where .pyc must be written
    for var in INDEX_VARS:  # the index is given on the command line, the same to both builders
        env.pop(var, None)
    env["NO_COLOR"] = "1"
    env["UV_NO_PROGRESS"] = "1"
    env["UV_PYTHON_DOWNLOADS"] = "never"  # use the interpreter we were given, never fetch another
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _run(argv: Sequence[str], log: IO[str], log_path: str, deadline: float, what: str) -> Tuple[int, str]:
    """Run argv with output appended to the log; returns (exit code, this step's output)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise EnvError(f"timed out before {what}", log_path)
    shown = (
        index.shown(a) if a.startswith(("http://", "https://"))  # an index URL may carry a token
        else a if "\n" not in a else f"<{a.count(chr(10))}-line script>"
        for a in argv
    )  # fmt: skip
    log.write("$ " + " ".join(shown) + "\n")
    log.flush()
    offset = log.tell()
    # own process group / session, so a timeout kills the installer's build subprocesses too.
    kwargs = _platform.new_session_kwargs()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_child_env(),
            cwd=os.path.dirname(log_path),
            **kwargs,
        )
    except OSError as exc:
        raise EnvError(f"cannot run {argv[0]}: {exc.strerror or exc}", log_path) from None
    try:
        code = proc.wait(timeout=remaining)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        raise EnvError(f"{what} timed out after {remaining:.0f}s", log_path) from None
    log.flush()
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        fh.seek(offset)
        output = fh.read()
    log.seek(0, os.SEEK_END)
    return code, output


def _kill_tree(proc: "subprocess.Popen[bytes]") -> None:
    _platform.kill_tree(proc)
    try:
        proc.kill()
    except OSError:
        pass
    proc.wait(timeout=30)


def _create_venv(
    interpreter: Interpreter, venv: str, uv: Optional[str], *, log: IO[str], log_path: str, deadline: float
) -> str:
    """Create the venv; returns the installer to use with it: "uv" or "pip"."""
    uv_line = ""
    if uv:
        argv = [uv, "venv", "--no-config", "--color", "never", "--relocatable", "--python"]
        code, out = _run([*argv, interpreter.path, venv], log, log_path, deadline, "uv venv")
        if code == 0 and os.path.exists(_venv_python(venv)):
            return "uv"
        uv_line = decisive_line(out) or f"uv venv exited {code}"
        shutil.rmtree(venv, ignore_errors=True)
        log.write("# uv could not create the venv; trying python -m venv\n")
    # --without-pip: the env gets no seed packages (module doc); the harness's pip installs into it
    argv = [interpreter.path, "-m", "venv", "--without-pip", venv]
    code, out = _run(argv, log, log_path, deadline, "python -m venv")
    if code == 0 and os.path.exists(_venv_python(venv)):
        return "pip"
    venv_line = decisive_line(out) or f"python -m venv exited {code}"
    if uv_line:
        raise EnvError(f"cannot create a venv: {uv_line} (python -m venv: {venv_line})", log_path)
    raise EnvError(f"cannot create a venv: {venv_line}", log_path)


def _install(
    installer: str,
    uv: Optional[str],
    python: str,
    reqs: Tuple[str, ...],
    *,
    interpreter_version: Tuple[int, ...],
    log: IO[str],
    log_path: str,
    deadline: float,
    index_url: str = index.DEFAULT_INDEX,
) -> str:
    """Install `reqs` from `index_url`; returns the builder that did ("uv 0.9.5", "pip 23.0.1").

    Both builders are given the index on the command line: uv reads neither PIP_INDEX_URL nor pip.conf
    (and with --no-config not its own files either), pip reads both, so without it the same requirements
    would come from two indexes depending on the builder."""
    # uv's bytecode compiler script needs Python >= 3.7 (py_compile.PycInvalidationMode): for older
    # interpreters install without it and run compileall over site-packages ourselves.
    old = interpreter_version < (3, 7)
    if installer == "uv" and uv:
        argv = [uv, "pip", "install", "--no-config", "--color", "never", "--python", python]
        argv += ["--index-url", index_url]
        argv += [*([] if old else ["--compile-bytecode"]), *reqs]
        what = "uv pip install"
        builder = _builder_version("uv", uv)
    else:
        # pip run from the wheel that the env's own Python bundles (ensurepip): it installs into the
        # interpreter running it - the seedless env - and is not installed itself
        wheel = _bundled_pip(python, log, log_path, deadline)
        argv = [python, os.path.join(wheel, "pip"), "install", "--disable-pip-version-check"]
        argv += ["--no-input", "--index-url", index_url, "--compile", *reqs]
        what = "pip install"
        builder = "pip " + os.path.basename(wheel).split("-")[1]
    code, out = _run(argv, log, log_path, deadline, what)
    if code != 0:
        raise EnvError(decisive_line(out) or f"{what} exited {code}", log_path)
    if old and installer == "uv":
        script = (
            "import compileall, sysconfig; compileall.compile_dir(sysconfig.get_paths()['purelib'], quiet=1)"
        )
        _run([python, "-c", script], log, log_path, deadline, "compiling site-packages")
    return builder


_BUNDLED_PIP = r"""
import glob, os, ensurepip
found = sorted(glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl")))
print(found[-1] if found else "")
"""


def _bundled_pip(python: str, log: IO[str], log_path: str, deadline: float) -> str:
    """The pip wheel of the env's Python (ensurepip/_bundled): a pip that supports that Python."""
    code, out = _run([python, "-c", _BUNDLED_PIP], log, log_path, deadline, "finding ensurepip's pip")
    lines = out.strip().splitlines()
    wheel = lines[-1].strip() if code == 0 and lines else ""
    if not wheel.endswith(".whl") or not os.path.isfile(wheel):
        raise EnvError("this Python bundles no pip wheel (ensurepip) for the pip fallback: use uv", log_path)
    return wheel


# Runs under the env's python (3.6+): what is installed *in the env* (not the project, not the base).
_READ_BACK = r"""
import glob, json, os, sys, sysconfig
prefix = os.path.realpath(sys.prefix)
paths = [p for p in sys.path if p and os.path.realpath(p).startswith(prefix)]
out = {}
try:
    from importlib import metadata
    for d in metadata.distributions(path=paths):
        name = d.metadata["Name"]
        if name and name not in out:
            out[name] = d.version
except ImportError:  # Python < 3.8: read the metadata files directly
    for p in paths:
        files = glob.glob(os.path.join(p, "*.dist-info", "METADATA"))
        files += glob.glob(os.path.join(p, "*.egg-info", "PKG-INFO"))
        for md in files:
            name = version = None
            with open(md, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if not line.strip():
                        break
                    if line.startswith("Name:") and name is None:
                        name = line[5:].strip()
                    elif line.startswith("Version:") and version is None:
                        version = line[8:].strip()
            if name and version and name not in out:
                out[name] = version
print(json.dumps({"installed": out, "purelib": sysconfig.get_paths()["purelib"]}))
"""


def _read_back(python: str, log: IO[str], log_path: str, deadline: float) -> Dict[str, Any]:
    code, out = _run([python, "-c", _READ_BACK], log, log_path, deadline, "reading the env back")
    if code != 0:
        raise EnvError(decisive_line(out) or f"the env's python exited {code}", log_path)
    try:
        data = json.loads(out.strip().splitlines()[-1])
        if not isinstance(data, dict) or not data.get("purelib"):
            raise ValueError(data)
        return data
    except (ValueError, IndexError):
        raise EnvError("the env's python printed no package list", log_path) from None


# Runs under the env's python (3.6+). compileall alone is not enough: before 3.9 its "up to date" test
# compares only the mtime, while the import system also compares the size, so a same-second edit leaves a
# .pyc that every worker would recompile. Compile each source whose .pyc header does not match exactly.
_COMPILE = r"""
import compileall, importlib.util, json, os, sys
root = sys.argv[1]
at = 8 if sys.version_info >= (3, 7) else 4
ok = True
for dirpath, dirnames, filenames in os.walk(os.path.join(root, "servers")):
    dirnames[:] = [d for d in dirnames if d != "__pycache__"]
    for name in sorted(filenames):
        if not name.endswith(".py"):
            continue
        src = os.path.join(dirpath, name)
        st = os.stat(src)
        want = (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
        want += (st.st_size & 0xFFFFFFFF).to_bytes(4, "little")
        try:
            with open(importlib.util.cache_from_source(src), "rb") as fh:
                head = fh.read(at + 8)
            fresh = head[:4] == importlib.util.MAGIC_NUMBER and head[at:at + 8] == want
        except OSError:
            fresh = False
        if not fresh:
            ok = bool(compileall.compile_file(src, force=True, quiet=1)) and ok
where = ""
if sys.argv[2] == "1":
    import servers
    where = os.path.dirname(os.path.dirname(os.path.abspath(servers.__file__)))
print(json.dumps({"ok": ok, "where": where}))
"""


def _compile_project(
    python: str, root_dir: str, log: IO[str], log_path: str, deadline: float, *, verify: bool
) -> None:
    """compileall the project's servers/ for this interpreter (version-tagged __pycache__).

    Files that do not compile under an old interpreter are logged, not fatal: only the modules that
    interpreter really imports (servers.apps runs on 3.7+) have to. With `verify`, also check that the
    .pth makes `import servers` find this project."""
    argv = [python, "-c", _COMPILE, root_dir, "1" if verify else "0"]
    code, out = _run(argv, log, log_path, deadline, "compiling servers/")
    data: Dict[str, Any] = {}
    try:
        data = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        pass
    if code != 0 or not isinstance(data, dict) or "ok" not in data:
        raise EnvError(
            "the project is not importable in the env: " + (decisive_line(out) or f"exit {code}"), log_path
        )
    if verify:
        where = str(data.get("where") or "")
        if os.path.normcase(os.path.realpath(where)) != os.path.normcase(os.path.realpath(root_dir)):
            raise EnvError(f"the env imports servers from {where}, not from {root_dir}", log_path)


def _retarget_scripts(venv: str, final: str) -> None:
    """Point scripts (shebangs, activate) at the final path; uv's relocatable venv needs none of it,
    `python -m venv` + pip writes absolute paths of the temp dir."""
    bindir = _venv_bin(venv)
    old = venv.encode()
    new = final.encode()
    for name in os.listdir(bindir):
        path = os.path.join(bindir, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        try:
            if os.path.getsize(path) > 1_000_000:
                continue
            with open(path, "rb") as fh:
                data = fh.read()
            if old in data:
                with open(path, "wb") as fh:
                    fh.write(data.replace(old, new))
        except OSError:
            continue


def _cache_tag(interpreter: Interpreter) -> str:
    v = interpreter.version_tuple
    if interpreter.implementation == "CPython" and len(v) >= 2:
        return f"cpython-{v[0]}{v[1]}"
    return ""


def _bytecode_fresh(root_dir: str, interpreter: Interpreter) -> bool:
    """Every servers/**/*.py has a .pyc for this interpreter whose header matches the source."""
    tag = _cache_tag(interpreter)
    if not tag:
        return False
    header_at = 8 if interpreter.version_tuple[:2] >= (3, 7) else 4  # PEP 552 added a flags word
    for dirpath, dirnames, filenames in os.walk(os.path.join(root_dir, "servers")):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if not name.endswith(".py"):
                continue
            pyc = os.path.join(dirpath, "__pycache__", f"{name[:-3]}.{tag}.pyc")
            try:
                st = os.stat(os.path.join(dirpath, name))
                with open(pyc, "rb") as fh:
                    head = fh.read(header_at + 8)
            except OSError:
                return False
            if len(head) < header_at + 8:
                return False
            mtime = int.from_bytes(head[header_at : header_at + 4], "little")
            size = int.from_bytes(head[header_at + 4 : header_at + 8], "little")
            if mtime != int(st.st_mtime) & 0xFFFFFFFF or size != st.st_size & 0xFFFFFFFF:
                return False
    return True


def _refresh_project_bytecode(env: Env, deadline: float) -> None:
    """A cached env: recompile servers/ only if a source changed since (a cheap header check first)."""
    root_dir = project_root()
    if _bytecode_fresh(root_dir, env.interpreter):
        return
    log_path = os.path.join(os.path.dirname(env.path), "logs", os.path.basename(env.path) + ".compile.log")
    try:
        with open(log_path, "a", encoding="utf-8", errors="replace") as log:
            _compile_project(env.python, root_dir, log, log_path, deadline, verify=False)
    except OSError as exc:
        raise EnvError(f"cannot compile servers/ for {env.path}: {exc.strerror or exc}", log_path) from None


# -- the decisive line ---------------------------------------------------------------------------------

__all__ = [
    "ENV_LAYOUT",
    "ENV_VARS_TO_UNSET",
    "MARKER",
    "Env",
    "EnvError",
    "canonical_name",
    "default_cache_dir",
    "ensure_env",
    "env_key",
    "env_vars_for_server",
    "list_versions",
    "normalize_requirement",
    "pin_unpinned",
    "project_root",
]
