"""The package index: which one, and what it has (the simple API: PEP 503 HTML, PEP 691 JSON).

* index_url(explicit="") -> the index to use: --index-url, else PIP_INDEX_URL, else the index-url of pip's
  configuration files (later ones winning), else https://pypi.org/simple/. The env builder passes the same
  URL to uv and to pip (harness.env.venvs), so an env does not depend on which builder read which
  configuration.
* is_default(url) -> whether it is PyPI's own index
* fetch_project(index, name) -> Project: every release on the index with its files (PEP 592 yanking,
  PEP 700 `versions`: a version listed before its files are up)
* shown(url) -> the URL without its credentials (an index URL may carry a token)
"""

import configparser
import dataclasses
import functools
import html.parser
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

from harness.model.errors import HarnessError, UsageError


def canonical(name: str) -> str:
    """PEP 503 normalization: "Typing_Extensions" -> "typing-extensions"."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def is_default(url: str) -> bool:
    """Whether `url` is PyPI's own simple index (what uv and pip use when told nothing)."""
    return url.rstrip("/") + "/" == DEFAULT_INDEX


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
    return _configured(tuple(os.environ.get(v, "") for v in _WHERE_FROM))


#: the variables that decide which index is configured (and where pip's files are)
_WHERE_FROM = ("PIP_INDEX_URL", "PIP_CONFIG_FILE", "HOME", "XDG_CONFIG_HOME", "XDG_CONFIG_DIRS",
               "VIRTUAL_ENV", "APPDATA", "PROGRAMDATA")  # fmt: skip


@functools.lru_cache(maxsize=8)
def _configured(where_from: Tuple[str, ...]) -> str:
    """The configured index, read once per value of those variables: every env lookup asks for it, and
    pip's files do not change under a running harness."""
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


def shown(url: str) -> str:
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
    where = f"{shown(index)}{canonical(name)}/"
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
        version = normal_version(raw)
        if version is not None:
            by_version.setdefault(version, [])
    releases = {v: Release(v, tuple(fs)) for v, fs in by_version.items()}
    return Project(canonical(name), index, releases)


def normal_version(raw: str) -> Optional[str]:
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
    where = shown(url)
    request = urllib.request.Request(url, headers={"Accept": ACCEPT, "User-Agent": "asgi-workers-harness"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_ANSWER_BYTES + 1)
            content_type = response.headers.get("Content-Type", "") or ""
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise HarnessError(f"the index has no project {name!r} ({where} answered 404)") from None
        raise HarnessError(f"the index answered HTTP {exc.code} for {where}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HarnessError(f"the index is unreachable ({where}): {reason}") from None
    if len(body) > MAX_ANSWER_BYTES:
        raise HarnessError(f"the index sent more than {MAX_ANSWER_BYTES >> 20} MiB for {where}")
    return parse_project(body, content_type.lower(), name, index)


__all__ = [
    "DEFAULT_INDEX",
    "Project",
    "Release",
    "canonical",
    "check_distribution",
    "fetch_project",
    "index_url",
    "is_default",
    "normal_version",
    "parse_project",
    "shown",
]
