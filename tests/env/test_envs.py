"""harness.env.venvs: real envs built from PyPI (small pinned packages; uv's cache keeps them quick).

Timings are printed (run with -s to see them), never asserted.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from harness._platform.locks import FileLock, LockTimeout
from harness.env import pythons
from harness.env import venvs as envs
from harness.env.venvs import EnvError
from harness.verdict.installer import decisive_line
from tests import _paths

ROOT = _paths.ROOT


@pytest.fixture(scope="module")
def py38():
    try:
        return pythons.resolve("3.8")
    except pythons.InterpreterNotFound as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("envs"))


@pytest.fixture(scope="module")
def h11_env(py38, cache):
    start = time.monotonic()
    env = envs.ensure_env(py38, ["h11==0.14.0"], cache_dir=cache)
    print(f"\n[envs] h11==0.14.0 on {py38.version}: built in {time.monotonic() - start:.2f}s (cold)")
    return env


def _run(env, code, extra_env=None):
    child = {k: v for k, v in os.environ.items() if k not in envs.ENV_VARS_TO_UNSET}
    child.update(envs.env_vars_for_server(env))
    child.update(extra_env or {})
    return subprocess.run(
        [env.python, "-c", code], capture_output=True, text=True, timeout=60, env=child, check=False
    )


def _no_build_leftovers(cache):
    return [n for n in os.listdir(cache) if n.startswith((".build-", ".trash-"))]


def test_build_and_read_back(h11_env, py38, cache):
    assert not h11_env.cached
    assert h11_env.installed == {"h11": "0.14.0"}
    assert h11_env.requirements == ("h11==0.14.0",)
    assert h11_env.interpreter == py38
    assert os.path.dirname(h11_env.path) == cache
    assert os.path.isfile(os.path.join(h11_env.path, envs.MARKER))
    out = _run(h11_env, "import sys, h11; print(h11.__version__, '%d.%d' % sys.version_info[:2])")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0.14.0", "3.8"]
    assert not _no_build_leftovers(cache)


def test_same_call_is_cached(h11_env, py38, cache):
    start = time.monotonic()
    again = envs.ensure_env(py38, [" H11 == 0.14.0 "], cache_dir=cache)
    warm = time.monotonic() - start
    print(
        f"\n[envs] h11==0.14.0 on {py38.version}: build {h11_env.build_seconds:.2f}s, cached call {warm:.3f}s"
    )
    assert again.cached
    assert again.path == h11_env.path
    assert again.installed == h11_env.installed


def test_project_importable_without_harness_deps(h11_env):
    code = textwrap.dedent(
        """
        import importlib.util, json, os, servers.apps
        print(json.dumps({
            "apps": os.path.abspath(servers.apps.__file__),
            "jinja2": importlib.util.find_spec("jinja2") is not None,
            "httpx": importlib.util.find_spec("httpx") is not None,
            "psutil": importlib.util.find_spec("psutil") is not None,
        }))
        """
    )
    out = _run(h11_env, code)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["apps"] == os.path.join(ROOT, "servers", "apps.py")
    assert not (data["jinja2"] or data["httpx"] or data["psutil"]), data


def test_servers_precompiled_for_the_env(h11_env):
    pyc = os.path.join(ROOT, "servers", "__pycache__", "apps.cpython-38.pyc")
    assert os.path.isfile(pyc)
    # a cache hit recompiles whatever changed since the build (the tree may be under edit right now:
    # allow a few rounds before calling it stale)
    for _ in range(3):
        envs.ensure_env(
            h11_env.interpreter, list(h11_env.requirements), cache_dir=os.path.dirname(h11_env.path)
        )
        if envs._bytecode_fresh(ROOT, h11_env.interpreter):
            break
        time.sleep(1.1)
    assert envs._bytecode_fresh(ROOT, h11_env.interpreter)
    # the env's own packages were byte-compiled by the installer too
    out = _run(
        h11_env,
        "import h11, os; print(os.listdir(os.path.join(os.path.dirname(h11.__file__), '__pycache__')))",
    )
    assert "cpython-38" in out.stdout


def test_env_vars_for_server(h11_env):
    variables = envs.env_vars_for_server(h11_env)
    assert variables["VIRTUAL_ENV"] == h11_env.path
    assert variables["PATH"].split(os.pathsep)[0] == os.path.dirname(h11_env.python)
    assert not set(variables) & set(envs.ENV_VARS_TO_UNSET)


def test_nonexistent_version_is_env_error(py38, cache):
    with pytest.raises(EnvError) as info:
        envs.ensure_env(py38, ["uvicorn==0.0.999"], cache_dir=cache)
    msg = str(info.value)
    print(f"\n[envs] uvicorn==0.0.999: {msg}")
    assert "\n" not in msg
    assert "uvicorn==0.0.999" in msg
    assert "Traceback" not in msg
    assert os.path.isfile(info.value.log_path)
    assert not _no_build_leftovers(cache)
    key = envs.env_key(py38, ["uvicorn==0.0.999"])
    assert not os.path.exists(os.path.join(cache, key))


def test_requires_python_is_env_error(py38, cache):
    with pytest.raises(EnvError) as info:
        envs.ensure_env(py38, ["uvicorn==0.54.0"], cache_dir=cache)
    msg = str(info.value)
    print(f"\n[envs] uvicorn==0.54.0 on 3.8: {msg}")
    assert "\n" not in msg
    assert "Python>=3.10" in msg.replace(" ", "")
    assert not _no_build_leftovers(cache)


@pytest.mark.skipif(not shutil.which("gcc"), reason="needs a C compiler to fail")
def test_compiler_error_is_the_decisive_line(py38, cache, tmp_path):
    pkg = tmp_path / "brokenext"
    (pkg / "src").mkdir(parents=True)
    (pkg / "setup.py").write_text(
        "from setuptools import setup, Extension\n"
        "setup(name='brokenext', version='1.0', ext_modules=[Extension('brokenext', ['src/b.c'])])\n"
    )
    (pkg / "src" / "b.c").write_text("#include <Python.h>\nint broken( { this is not C\n")
    with pytest.raises(EnvError) as info:
        envs.ensure_env(py38, [f"brokenext @ {pkg.as_uri()}"], cache_dir=cache, timeout=300)
    msg = str(info.value)
    print(f"\n[envs] broken C extension: {msg}")
    assert msg.startswith("Failed to build")
    assert "b.c:2:" in msg and "error:" in msg
    assert not _no_build_leftovers(cache)


def test_empty_requirements(cache):
    env = envs.ensure_env(pythons.resolve(""), [], cache_dir=cache)
    assert env.requirements == ()
    assert "h11" not in env.installed
    out = _run(env, "import servers.apps, sys; print(sys.prefix)")
    assert out.returncode == 0, out.stderr
    assert os.path.realpath(out.stdout.strip()) == os.path.realpath(env.path)


_CONCURRENT = """
import json, sys
sys.path.insert(0, {root!r})
from harness.env import venvs as envs
from harness.env import pythons
env = envs.ensure_env(pythons.resolve({python!r}), ["h11==0.14.0"], cache_dir={cache!r})
print(json.dumps({{"path": env.path, "cached": env.cached, "installed": env.installed,
                  "build_seconds": round(env.build_seconds, 3)}}))
"""


def test_concurrent_builders_build_once(py38, tmp_path):
    cache = str(tmp_path / "envs")
    code = _CONCURRENT.format(root=ROOT, python=py38.path, cache=cache)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert len({r["path"] for r in results}) == 1
    assert sorted(r["cached"] for r in results) == [False, True, True]
    assert all(r["installed"] == {"h11": "0.14.0"} for r in results)
    assert not _no_build_leftovers(cache)
    assert len({r["build_seconds"] for r in results}) == 1  # the waiters read the builder's marker


def test_concurrent_threads_build_once(py38, tmp_path):
    cache = str(tmp_path / "envs")
    got = []

    def build():
        got.append(envs.ensure_env(py38, ["h11==0.14.0"], cache_dir=cache))

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(got) == 2
    assert sorted(e.cached for e in got) == [False, True]
    assert got[0].path == got[1].path


def test_pip_fallback_without_uv(py38, tmp_path, monkeypatch):
    monkeypatch.setattr(envs, "_find_uv", lambda: None)
    start = time.monotonic()
    env = envs.ensure_env(py38, ["h11==0.14.0", "wheel==0.42.0"], cache_dir=str(tmp_path))
    print(f"\n[envs] venv+pip fallback, h11==0.14.0 on 3.8: {time.monotonic() - start:.2f}s")
    assert env.installed == {"h11": "0.14.0", "wheel": "0.42.0"}  # no seed: no pip, no setuptools
    assert env.builder.startswith("pip 2")
    out = _run(env, "import servers.apps, h11")
    assert out.returncode == 0, out.stderr
    # scripts were retargeted from the temp build dir to the final path (wheel's console script)
    with open(os.path.join(os.path.dirname(env.python), "wheel")) as fh:
        assert fh.readline().strip() == "#!" + env.python


def test_list_versions(py38):
    versions = envs.list_versions("h11", py38)
    assert "0.14.0" in versions and "0.8.0" in versions
    assert versions.index("0.8.0") < versions.index("0.14.0")
    assert all("rc" not in v and "a" not in v and "b" not in v for v in versions)
    compatible = envs.list_versions("uvicorn", py38, python_compatible=True)
    assert "0.33.0" in compatible and "0.54.0" not in compatible
    with pytest.raises(EnvError, match="no distribution named"):
        envs.list_versions("no-such-distribution-qq-zz", py38)


def test_normalize_requirement():
    n = envs.normalize_requirement
    assert n(" Uvicorn == 0.30.0 ") == "uvicorn==0.30.0"
    assert n("Uvicorn[Standard , H2]>=0.30,<0.31") == "uvicorn[h2,standard]>=0.30,<0.31"
    assert n("typing_extensions") == "typing-extensions"
    assert n('h11==0.14.0 ; python_version < "3.8"') == 'h11==0.14.0; python_version < "3.8"'
    assert n("pkg @ file:///tmp/x") == "pkg @ file:///tmp/x"
    for bad in ("", "--pre", "-e .", "a\nb"):
        with pytest.raises(EnvError):
            n(bad)


@pytest.mark.parametrize(
    "output, expected",
    [
        (
            "Using Python 3.8.18 environment at: a\nerror: No solution found when resolving dependencies\n"
            "  cause: Because the current Python version (3.8.18) does not satisfy Python>=3.10 and "
            "uvicorn==0.54.0 depends on Python>=3.10, we can conclude that uvicorn==0.54.0 cannot be used.\n"
            "         And because only uvicorn<=0.54.0 is available and you require uvicorn==0.54.0, we can "
            "conclude that your requirements are unsatisfiable.\n",
            "No solution found when resolving dependencies: Because the current Python version (3.8.18) does "
            "not satisfy Python>=3.10 and uvicorn==0.54.0 depends on Python>=3.10, we can conclude that "
            "uvicorn==0.54.0 cannot be used.",
        ),
        (
            "error: Failed to build `brk @ file:///tmp/brk`\n  cause: The build backend returned an error\n"
            "  cause: Call to `setuptools.build_meta:__legacy__.build_wheel` failed (exit status: 1)\n\n"
            "         [stderr]\n"
            "         src/brk.c:2:8: error: expected declaration specifiers before '{' token\n"
            "         error: command '/usr/bin/gcc' failed with exit code 1\n\nhint: Build failures ...\n",
            "Failed to build `brk @ file:///tmp/brk`: src/brk.c:2:8: error: expected declaration specifiers "
            "before '{' token",
        ),
        (
            "ERROR: Ignored the following versions that require a different python version: 0.34.0 "
            "Requires-Python >=3.9; 0.54.0 Requires-Python >=3.10\n"
            "ERROR: Could not find a version that satisfies the requirement uvicorn==0.54.0 (from versions: "
            "0.1.0, 0.2.0)\nERROR: No matching distribution found for uvicorn==0.54.0\n",
            "Could not find a version that satisfies the requirement uvicorn==0.54.0 "
            "(0.54.0 Requires-Python >=3.10)",
        ),
        (
            "ERROR: Package 'uvicorn' requires a different Python: 3.8.18 not in '>=3.10'\n",
            "Package 'uvicorn' requires a different Python: 3.8.18 not in '>=3.10'",
        ),
        (
            "Traceback (most recent call last):\n  File x\nModuleNotFoundError: No module named 'venv'\n",
            "ModuleNotFoundError: No module named 'venv'",
        ),
        ("", ""),
    ],
)
def test_decisive_line(output, expected):
    assert decisive_line(output) == expected


def test_file_lock_times_out(tmp_path):
    path = str(tmp_path / "x.lock")
    with FileLock(path, timeout=1):
        other = FileLock(path, timeout=0.2)
        start = time.monotonic()
        with pytest.raises(LockTimeout, match="waiting for the lock"):
            other.acquire()
        assert time.monotonic() - start >= 0.2
    with FileLock(path, timeout=0.2) as lock:  # free again after release
        assert lock.waited < 0.2


def test_crashed_builder_leftovers_are_replaced(py38, tmp_path):
    cache = str(tmp_path)
    key = envs.env_key(py38, ["h11==0.14.0"])
    os.makedirs(os.path.join(cache, ".build-" + key + "-crashed", "env", "bin"))
    os.makedirs(os.path.join(cache, key, "bin"))  # a half env at the final path: no marker
    env = envs.ensure_env(py38, ["h11==0.14.0"], cache_dir=cache)
    assert not env.cached
    assert env.installed == {"h11": "0.14.0"}
    assert os.path.isfile(os.path.join(cache, key, envs.MARKER))
    assert not _no_build_leftovers(cache)


def test_build_timeout_is_env_error(py38, tmp_path):
    cache = str(tmp_path)
    with pytest.raises(EnvError, match="timed out") as info:
        envs.ensure_env(py38, ["h11==0.14.0"], cache_dir=cache, timeout=0.05)
    assert "\n" not in str(info.value)
    assert not _no_build_leftovers(cache)
    assert not os.path.exists(os.path.join(cache, envs.env_key(py38, ["h11==0.14.0"])))


@pytest.mark.parametrize("python", ["3.8", "3.11", "3.12"])
def test_the_env_is_the_same_whoever_builds_it(python, tmp_path, monkeypatch):
    """uv and the pip fallback give the same env: the requirements and nothing else (no pip, no
    setuptools: `python -m venv` alone would seed setuptools 65.5 on 3.11 and pkg_resources with it)."""
    try:
        interp = pythons.resolve(python)
    except pythons.InterpreterNotFound as exc:
        pytest.skip(str(exc))
    built = {}
    for builder in ("uv", "pip"):
        monkeypatch.setenv(envs.BUILDER_VAR, builder)
        env = envs.ensure_env(interp, ["h11==0.14.0"], cache_dir=str(tmp_path / builder), timeout=300)
        assert env.builder.split()[0] == builder and len(env.builder.split()) == 2, env.builder
        built[builder] = env
        probe = _run(env, "import importlib.util as u; print(u.find_spec('pkg_resources') is None)")
        assert probe.stdout.strip() == "True", probe.stderr  # no setuptools smuggled in by the builder
    assert built["uv"].installed == built["pip"].installed == {"h11": "0.14.0"}


def test_the_builder_is_recorded(tmp_path):
    from harness.model.records import Scenario  # noqa: PLC0415
    from harness.run.runner import run_scenario  # noqa: PLC0415

    record = run_scenario(Scenario(workers=1, requests=5, keepalive_requests=0), work_dir=str(tmp_path))
    assert record.failure_class == "passed", record.reason
    assert record.builder.split()[0] in ("uv", "pip") and "pip" not in record.installed


def test_unpinned_requirements_are_pinned_to_the_latest_when_the_run_starts(py38, tmp_path):
    cache = str(tmp_path)
    latest = envs.list_versions("h11", py38, python_compatible=True)[-1]
    reqs, kept = envs.pin_unpinned(["h11", "uvicorn[standard]>=0.30", "wheel==0.42.0"], py38, cache_dir=cache)
    assert reqs == (f"h11=={latest}", "uvicorn[standard]>=0.30", "wheel==0.42.0") and kept == {}
    # the answer is cached for a while (one index lookup per matrix, not per cell) ...
    with open(os.path.join(cache, "latest.json"), encoding="utf-8") as fh:
        data = json.load(fh)
    data[f"h11|{py38.version}"]["v"] = "0.9.0"
    with open(os.path.join(cache, "latest.json"), "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    assert envs.pin_unpinned(["h11"], py38, cache_dir=cache)[0] == ("h11==0.9.0",)
    # ... and asked again once it is older than LATEST_TTL_S: a new release gets a new env
    data[f"h11|{py38.version}"]["t"] = time.time() - envs.LATEST_TTL_S - 1
    with open(os.path.join(cache, "latest.json"), "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    assert envs.pin_unpinned(["h11"], py38, cache_dir=cache)[0] == (f"h11=={latest}",)


def test_an_index_that_does_not_answer_leaves_the_requirement_as_written(py38, tmp_path):
    reqs, kept = envs.pin_unpinned(["no-such-dist-awh-xyz"], py38, cache_dir=str(tmp_path))
    assert reqs == ("no-such-dist-awh-xyz",) and "no-such-dist-awh-xyz" in kept
