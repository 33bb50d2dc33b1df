"""Find Python interpreters on this machine and pick one by a spec ("", "3.10", "3.10.13", a path).

* Interpreter - a probed interpreter: path, version "3.11.7", implementation "CPython", source
* discover() - every interpreter found (current, PATH, pyenv, uv, Windows `py -0p`), deduplicated by realpath
* resolve(spec) - one interpreter for a spec, or InterpreterNotFound with a one-line message
* format_table(interpreters) - the text table `harness pythons` prints

Every candidate is *run* (a tiny `-c` that prints JSON, with a timeout, in parallel): a file that looks
like Python but does not start (a pyenv shim for a version that is not selected, a Windows Store stub) is
left out. Whether an interpreter is recent enough for a purpose is the caller's decision (`version_tuple`).

Exceptions:

    InterpreterNotFound (LookupError) - no interpreter matches the spec, or the path is not a working Python
"""

import concurrent.futures
import dataclasses
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from harness import _platform

#: how long one probe (`python -c ...`) may take; pyenv shims and cold disks are slow, not 10 s slow.
PROBE_TIMEOUT = 10.0

#: sources, in the order of preference when the same interpreter is found twice.
SOURCES: Tuple[str, ...] = ("current", "pyenv", "path", "uv", "py-launcher")

# Runs under every Python we might meet (2.7 included): prints what we need as one JSON line.
_PROBE_CODE = (
    "import json, platform, sys\n"
    "print(json.dumps({'executable': sys.executable,"
    " 'version': '%d.%d.%d' % tuple(sys.version_info[:3]),"
    " 'implementation': platform.python_implementation()}))\n"
)


class InterpreterNotFound(LookupError):
    """No interpreter matches the spec; str(exc) is one line that says what exists instead.

    `signature` is the same line without what only this machine has (the interpreters it found), so
    records of one missing version agree across machines."""

    def __init__(self, message: str, signature: str = "") -> None:
        super().__init__(message)
        self.signature = signature or message


@dataclasses.dataclass(frozen=True)
class Interpreter:
    """One interpreter that was run and answered.

    * path - absolute path of the executable (sys.executable as the interpreter itself reported it)
    * version - "3.11.7"
    * implementation - "CPython", "PyPy", ...
    * source - how it was found: current | path | pyenv | uv | py-launcher
    """

    path: str
    version: str
    implementation: str = "CPython"
    source: str = "path"

    @property
    def version_tuple(self) -> Tuple[int, ...]:
        """(3, 11, 7): compare with `>= (3, 8)` to decide whether it is recent enough."""
        return _version_tuple(self.version)

    @property
    def realpath(self) -> str:
        return os.path.realpath(self.path)

    def to_dict(self) -> Dict[str, str]:
        return dataclasses.asdict(self)


def _version_tuple(version: str) -> Tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def current() -> Interpreter:
    """The interpreter running the harness (no subprocess needed)."""
    return Interpreter(
        path=os.path.abspath(sys.executable),
        version="{}.{}.{}".format(*sys.version_info[:3]),
        implementation=platform.python_implementation(),
        source="current",
    )


def probe(path: str, source: str = "path", timeout: float = PROBE_TIMEOUT) -> Interpreter:
    """Run `path` and ask it what it is. Raises InterpreterNotFound with a one-line reason."""
    if not os.path.exists(path):
        raise InterpreterNotFound(f"no such file: {path}")
    if os.path.isdir(path):
        raise InterpreterNotFound(f"{path} is a directory, not a Python executable")
    env = dict(os.environ)
    for var in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__"):
        env.pop(var, None)
    try:
        proc = subprocess.run(
            [path, "-E", "-s", "-c", _PROBE_CODE],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InterpreterNotFound(f"{path} did not answer within {timeout:g}s") from None
    except OSError as exc:
        raise InterpreterNotFound(f"{path} is not a working Python: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        last = err[-1].strip() if err else ""
        raise InterpreterNotFound(
            f"{path} is not a working Python (exit {proc.returncode}{': ' + last if last else ''})"
        )
    try:
        lines = proc.stdout.decode("utf-8", "replace").strip().splitlines()
        data = json.loads(lines[-1])
        executable = str(data.get("executable") or path)
        return Interpreter(
            path=os.path.abspath(executable if os.path.exists(executable) else path),
            version=str(data["version"]),
            implementation=str(data.get("implementation") or "CPython"),
            source=source,
        )
    except (ValueError, KeyError, IndexError, TypeError):
        raise InterpreterNotFound(f"{path} is not a working Python (unexpected probe output)") from None


# -- candidates -------------------------------------------------------------------------------------


def _exe(name: str) -> str:
    return _platform.exe(name)


def _path_candidates() -> List[str]:
    pattern = re.compile(r"^python(3(\.\d+t?)?)?(\.exe)?$", re.IGNORECASE)
    found: List[str] = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not os.path.isdir(directory):
            continue
        # The Microsoft Store "python.exe" stubs open the Store instead of running: never a candidate.
        if "windowsapps" in directory.lower():
            continue
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if pattern.match(name):
                full = os.path.join(directory, name)
                if os.path.isfile(full) and os.access(full, os.X_OK):
                    found.append(full)
    return found


def _pyenv_roots() -> List[str]:
    roots: List[str] = []
    if os.environ.get("PYENV_ROOT"):
        roots.append(os.environ["PYENV_ROOT"])
    roots.append(os.path.join(os.path.expanduser("~"), ".pyenv"))
    # pyenv-win keeps its versions one level down.
    roots.append(os.path.join(os.path.expanduser("~"), ".pyenv", "pyenv-win"))
    pyenv = shutil.which("pyenv")
    if pyenv:
        out = _quiet_output([pyenv, "root"])
        if out.strip():
            roots.append(out.strip().splitlines()[0].strip())
    return _unique(roots)


def _pyenv_candidates() -> List[str]:
    found: List[str] = []
    for root in _pyenv_roots():
        for version_dir in sorted(glob.glob(os.path.join(root, "versions", "*"))):
            # pyenv: versions/X/bin/python; pyenv-win: versions\X\python.exe
            for rel in (os.path.join("bin", "python"), os.path.join("bin", "python3"), _exe("python")):
                full = os.path.join(version_dir, rel)
                if os.path.isfile(full):
                    found.append(full)
                    break
    return found


def _uv_candidates() -> List[str]:
    uv = shutil.which("uv")
    if not uv:
        return []
    out = _quiet_output([uv, "python", "list", "--only-installed", "--output-format", "json"])
    try:
        data = json.loads(out)
        return [str(item["path"]) for item in data if item.get("path")]
    except (ValueError, TypeError, KeyError, AttributeError):
        pass
    # Older uv: no JSON output; lines are "<key>    <path>[ -> <target>]".
    out = _quiet_output([uv, "python", "list", "--only-installed"])
    return _parse_uv_text(out)


def _parse_uv_text(text: str) -> List[str]:
    found = []
    for line in text.splitlines():
        m = re.match(r"^\S+-\d+\.\d+\S*\s+(.+?)(?:\s+->\s+.*)?$", line.strip())
        if m and not m.group(1).startswith("<"):
            found.append(m.group(1).strip())
    return found


def _py_launcher_candidates() -> List[str]:
    if not _platform.HAS_PY_LAUNCHER:
        return []
    py = shutil.which("py")
    if not py:
        return []
    return _parse_py_launcher(_quiet_output([py, "-0p"]))


def _parse_py_launcher(text: str) -> List[str]:
    """`py -0p` lines: ` -V:3.12 *        C:\\Python312\\python.exe` (new) or ` -3.8-64   C:\\...` (old)."""
    found = []
    for line in text.splitlines():
        m = re.match(r"^\s*-\S+\s+(?:\*\s+)?(.+?\.exe)\s*$", line, re.IGNORECASE)
        if m:
            found.append(m.group(1))
    return found


def _quiet_output(argv: Sequence[str], timeout: float = PROBE_TIMEOUT) -> str:
    try:
        proc = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.decode("utf-8", "replace") if proc.returncode == 0 else ""


def _unique(items: Iterable[str]) -> List[str]:
    seen = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


# -- discovery ----------------------------------------------------------------------------------------

_CACHE: Dict[Tuple[str, ...], List[Interpreter]] = {}


def discover(*, refresh: bool = False) -> List[Interpreter]:
    """Every working interpreter found, newest version first, one per realpath.

    Results are cached per process (keyed by PATH and PYENV_ROOT); `refresh=True` probes again."""
    key = (os.environ.get("PATH", ""), os.environ.get("PYENV_ROOT", ""))
    if not refresh and key in _CACHE:
        return list(_CACHE[key])
    me = current()
    candidates: List[Tuple[str, str]] = []
    gatherers = (
        ("pyenv", _pyenv_candidates),
        ("path", _path_candidates),
        ("uv", _uv_candidates),
        ("py-launcher", _py_launcher_candidates),
    )
    # the gatherers run commands (`uv python list` probes everything it sees): run them side by side.
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(gatherers)) as pool:
        lists = list(pool.map(lambda g: g[1](), gatherers))
    for (source, _), paths in zip(gatherers, lists):
        candidates.extend((path, source) for path in paths)
    # dedupe candidates before running them: by realpath, first source wins (SOURCES order).
    seen = {os.path.realpath(me.path)}
    unique: List[Tuple[str, str]] = []
    for path, source in candidates:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            unique.append((path, source))

    def _try(item: Tuple[str, str]) -> Optional[Interpreter]:
        try:
            return probe(item[0], item[1])
        except InterpreterNotFound:
            return None

    found: List[Interpreter] = [me]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for interp in pool.map(_try, unique):
            if interp is not None:
                found.append(interp)
    # dedupe again by what the interpreters say they are (shims resolve to a real binary).
    result: List[Interpreter] = []
    reals = set()
    for interp in found:
        if interp.realpath not in reals:
            reals.add(interp.realpath)
            result.append(interp)
    rank = {s: i for i, s in enumerate(SOURCES)}
    result.sort(key=lambda i: (tuple(-n for n in i.version_tuple), rank.get(i.source, 99), i.path))
    _CACHE[key] = list(result)
    return result


_VERSION_SPEC = re.compile(r"^(?:python|py|cpython)?(\d+(?:\.\d+){0,2})$", re.IGNORECASE)


def resolve(spec: str) -> Interpreter:
    """One interpreter for a spec.

    * "" - the harness's own interpreter
    * "3.10" - the newest 3.10.x found (CPython preferred on a tie); "3" - the newest 3.x
    * "3.10.13" - exactly that version
    * a path (or a command on PATH) - that file, probed
    Raises InterpreterNotFound with a one-line message."""
    spec = (spec or "").strip()
    if not spec:
        return current()
    m = _VERSION_SPEC.match(spec)
    if m:
        wanted = _version_tuple(m.group(1))
        interpreters = discover()
        matches = [i for i in interpreters if i.version_tuple[: len(wanted)] == wanted]
        if not matches:
            have = ", ".join(sorted({i.version for i in interpreters}, key=_version_tuple)) or "none"
            missing = f"no Python {m.group(1)} found"
            raise InterpreterNotFound(f"{missing} (have: {have})", signature=missing)
        rank = {s: i for i, s in enumerate(SOURCES)}
        matches.sort(
            key=lambda i: (
                tuple(-n for n in i.version_tuple),
                i.implementation != "CPython",
                rank.get(i.source, 99),
            )
        )
        return matches[0]
    path = os.path.expanduser(spec)
    is_path = os.sep in path or "/" in path or (os.altsep is not None and os.altsep in path)
    if not is_path and not os.path.exists(path):
        found = shutil.which(path)
        if not found:
            raise InterpreterNotFound(f"no Python {spec!r}: not a version, a path, or a command on PATH")
        path = found
    return probe(os.path.abspath(path), "path")


#: the oldest Python the harness and the reference server run under (an upstream server may still be
#: tested under an older one: its env can be built down to 3.6, see harness.env.venvs.MIN_PYTHON)
HARNESS_MIN = (3, 8)


def usable(interp: Interpreter) -> str:
    """ "" when the reference server and every upstream server can run under it, else why not."""
    if tuple(interp.version_tuple[:2]) < (3, 6):
        return "unusable: the harness builds envs for Python 3.6 and later"
    if tuple(interp.version_tuple[:2]) < HARNESS_MIN:
        want = ".".join(map(str, HARNESS_MIN))
        return f"below {want}: upstream servers only (no reference server)"
    return ""


def format_table(interpreters: Sequence[Interpreter]) -> str:
    """A plain text table: version, implementation, source, path, and a note for those below 3.8."""
    rows = [("VERSION", "IMPLEMENTATION", "SOURCE", "PATH", "NOTE")]
    rows.extend((i.version, i.implementation, i.source, i.path, usable(i)) for i in interpreters)
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    lines = [
        f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:<{widths[3]}}  {r[4]}".rstrip()
        for r in rows
    ]
    return "\n".join(lines)


__all__ = [
    "HARNESS_MIN",
    "PROBE_TIMEOUT",
    "SOURCES",
    "Interpreter",
    "InterpreterNotFound",
    "current",
    "discover",
    "format_table",
    "probe",
    "resolve",
    "usable",
]
