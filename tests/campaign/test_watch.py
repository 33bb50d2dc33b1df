"""`harness watch` against a real package index on loopback (harness.campaign.watch, harness.cli.watch_cmd).

The index is a small PEP 503 / PEP 691 simple API served by http.server in this process: real wheels of a
test distribution (1.0, 1.1, 1.2, a yanked 1.3, a pre-release 2.0rc1, and 1.4 listed with no file yet, as
an upload under way looks), answered as JSON or HTML by content negotiation as PyPI does. pip installs
from it (checked once), and the watch, its state file and its bad-input answers are checked through the
real CLI in a subprocess.
"""

import json
import os
import subprocess
import sys
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from harness.campaign import watch
from tests._paths import ROOT
from tests._pkgindex import PackageIndex, wheel

DIST = "awh-testserver"
FILES_VERSIONS = ("1.0", "1.1", "1.2", "1.3", "2.0rc1")
YANKED = {"1.3": "broke every worker"}
LISTED_ONLY = ("1.4",)  # PEP 700 `versions`: listed, no file yet


def _index_content() -> PackageIndex:
    state = PackageIndex()
    for v in FILES_VERSIONS:
        mod = "awh_testserver"
        state.add(
            DIST, *wheel(DIST, v, {f"{mod}/__init__.py": f"VERSION = {v!r}\n".encode()}), yanked=YANKED.get(v)
        )
    state.listed_only[DIST] = list(LISTED_ONLY)
    return state


@pytest.fixture
def index() -> Iterator[Tuple[str, PackageIndex]]:
    state = _index_content()
    with state.serve() as url:
        yield url, state


def _watch(*args: str, env_extra: Dict[str, str] = {}) -> subprocess.CompletedProcess:  # noqa: B006
    env = {k: v for k, v in os.environ.items() if k != "PIP_INDEX_URL"}  # the index comes from the test
    env.update(PYTHONPATH=ROOT, **env_extra)
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "watch", *args],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip


def _items(plan: Dict[str, Any]) -> List[Tuple[str, str]]:
    return [(i["version"], i["previous"]) for i in plan["items"]]


@pytest.mark.parametrize("mode", ["ok", "html-only"])
def test_watch_finds_exactly_the_new_releases(
    tmp_path: Any, index: Tuple[str, PackageIndex], mode: str
) -> None:
    url, state = index
    state.mode = mode
    path = tmp_path / "state.json"
    path.write_text(json.dumps({DIST: "1.0"}))
    proc = _watch("--state", str(path), "--index-url", url, "--distribution", DIST, "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    # 1.3 is yanked, 2.0rc1 a pre-release; 1.4 has no file yet (only the JSON API can say so)
    assert _items(plan) == [("1.1", "1.0"), ("1.2", "1.1")]
    assert plan["yanked"] == [{"distribution": DIST, "version": "1.3"}]
    assert plan["waiting"] == ([{"distribution": DIST, "version": "1.4"}] if mode == "ok" else [])
    assert json.loads(path.read_text()) == {DIST: "1.0"}  # a watch never advances the state
    assert state.requests == [f"/simple/{DIST}/"]  # one request per distribution


def test_pre_releases_are_opt_in(tmp_path: Any, index: Tuple[str, PackageIndex]) -> None:
    url, _ = index
    path = tmp_path / "state.json"
    path.write_text(json.dumps({DIST: "1.2"}))
    plain = json.loads(
        _watch("--state", str(path), "--index-url", url, "--distribution", DIST, "--json").stdout
    )
    assert _items(plain) == []
    pre = _watch("--state", str(path), "--index-url", url, "--distribution", DIST, "--json", "--pre")
    assert _items(json.loads(pre.stdout)) == [("2.0rc1", "1.2")]


def test_a_first_watch_seeds_and_plans_nothing_then_advance_moves_it(
    tmp_path: Any, index: Tuple[str, PackageIndex]
) -> None:
    url, _ = index
    path = tmp_path / "state.json"
    proc = _watch("--state", str(path), "--index-url", url, "--distribution", DIST)
    assert proc.returncode == 0, proc.stderr
    assert "0 new release(s)" in proc.stdout and f"seeded {DIST} at 1.2" in proc.stdout
    assert json.loads(path.read_text()) == {DIST: "1.2"}
    path.write_text(json.dumps({DIST: "1.0"}))
    assert _watch("--state", str(path), "--advance", f"{DIST}==1.1").returncode == 0
    assert json.loads(path.read_text()) == {DIST: "1.1"}
    plan = json.loads(
        _watch("--state", str(path), "--index-url", url, "--distribution", DIST, "--json").stdout
    )
    assert _items(plan) == [("1.2", "1.1")]
    back = _watch("--state", str(path), "--advance", f"{DIST}==1.0")
    assert back.returncode == 2 and "never goes back" in back.stderr
    assert json.loads(path.read_text()) == {DIST: "1.1"}


def test_the_index_is_one_pip_installs_from(tmp_path: Any, index: Tuple[str, PackageIndex]) -> None:
    url, _ = index
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
         "--index-url", url, "-d", str(tmp_path), f"{DIST}==1.2"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if "No module named pip" in proc.stderr:
        pytest.skip("this interpreter has no pip")
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(tmp_path) == ["awh_testserver-1.2-py3-none-any.whl"]


def test_pip_configuration_names_the_index(tmp_path: Any, index: Tuple[str, PackageIndex]) -> None:
    url, _ = index
    conf = tmp_path / "pip.conf"
    conf.write_text(f"[global]\nindex-url = {url}\n")
    path = tmp_path / "state.json"
    path.write_text(json.dumps({DIST: "1.1"}))
    proc = _watch(
        "--state", str(path), "--distribution", DIST, "--json", env_extra={"PIP_CONFIG_FILE": str(conf)}
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["index"] == url and _items(json.loads(proc.stdout)) == [("1.2", "1.1")]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("down", "the index is unreachable"),
        ("404", "the index has no project 'no-such-dist'"),
        ("500", "the index answered HTTP 500"),
        ("bad-json", "the index sent unreadable JSON"),
        ("corrupt-state", "is not JSON"),
        ("state-not-object", "must hold a JSON object"),
        ("state-bad-version", "is not a version"),
    ],
)
def test_bad_input_is_one_line_and_changes_no_state(
    tmp_path: Any, index: Tuple[str, PackageIndex], setup: str, message: str
) -> None:
    url, state = index
    path = tmp_path / "state.json"
    content = {
        "corrupt-state": '{"awh-testserver": "1.0"',
        "state-not-object": '["awh-testserver"]',
        "state-bad-version": '{"awh-testserver": "one"}',
    }.get(setup, json.dumps({DIST: "1.0"}))
    path.write_text(content)
    dist = "no-such-dist" if setup == "404" else DIST
    if setup in ("500", "bad-json"):
        state.mode = setup
    if setup == "down":
        import socket  # noqa: PLC0415 - a port nothing listens on: bound, never listening

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/simple/"
            proc = _watch("--state", str(path), "--index-url", url, "--distribution", dist, "--timeout", "5")
    else:
        proc = _watch("--state", str(path), "--index-url", url, "--distribution", dist)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert path.read_text() == content  # unchanged


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--index-url", "ftp://x/simple/"], "not an http(s) index URL"),
        (["--distribution", "../x"], "not a distribution name"),
        (["--advance", "uvicorn"], "expected DISTRIBUTION==VERSION"),
        (["--advance", "uvicorn==0.1"], "--advance needs --state"),
        (["--timeout", "0", "--distribution", "uvicorn"], "--timeout must be > 0"),
    ],
)
def test_usage_errors_exit_2(args: List[str], message: str) -> None:
    proc = _watch(*args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2 and "Traceback" not in proc.stderr


def test_plan_items_carry_the_release_set_the_catalog_and_downstream() -> None:
    # pure planning on a fixed index answer: a new uvicorn runs its matrix, its catalog entries re-pinned
    # and gunicorn + uvicorn-worker with it; a dependency (h11) runs the h11 servers with it pinned
    def project(name: str, versions: Tuple[str, ...]) -> watch.Project:
        files = {v: watch.Release(v, ((f"{name}-{v}.tar.gz", None, ""),)) for v in versions}
        return watch.Project(name, "https://i/", files)

    projects = {
        "uvicorn": project("uvicorn", ("0.54.0", "0.55.0")),
        "h11": project("h11", ("0.14.0", "0.16.0")),
    }
    plan = watch.make_plan({"uvicorn": "0.54.0", "h11": "0.14.0"}, projects)
    uv, h11 = plan.items
    assert (uv.version, uv.previous, h11.version, h11.previous) == ("0.55.0", "0.54.0", "0.16.0", "0.14.0")
    roles = {s.role for s in uv.scenarios}
    assert roles == {"release-set", "catalog", "downstream"}
    for s in uv.scenarios:  # every one runs the new uvicorn (an extra kept: uvicorn[standard]==0.55.0)
        assert any(r.split("[")[0].startswith("uvicorn=") or r.startswith("uvicorn[") for r in s.requirements)
        assert any(r.startswith("uvicorn") and r.endswith("==0.55.0") for r in s.requirements), s
    down = [s for s in uv.scenarios if s.role == "downstream"]
    assert {s.server for s in down} == {"gunicorn"} and all("uvicorn-worker" in s.requirements for s in down)
    assert {s.server for s in h11.scenarios} == {"uvicorn", "hypercorn"}
    assert all("h11==0.16.0" in s.requirements for s in h11.scenarios)
    assert any(s.catalog_id == "uvicorn-worker-35" for s in uv.scenarios)
