"""Upstream adapters: the argv each one builds per installed version, Unsupported reasons, and the
start-method launcher run for real under the oldest interpreters here."""

import importlib
import os
import shutil
import subprocess
import sys
from typing import Dict, Optional, Sequence

import pytest

from harness.adapters import ADAPTERS, LaunchContext, Unsupported
from harness.adapters._versions import at_least, below, parse
from harness.adapters.daphne import DaphneAdapter
from harness.adapters.granian import GranianAdapter
from harness.adapters.gunicorn import GunicornAdapter
from harness.adapters.hypercorn import HypercornAdapter
from harness.adapters.uvicorn import UvicornAdapter
from servers.launcher import command
from tests import _paths

PY = "/envs/x/bin/python"
ROOT = _paths.ROOT


def ctx(
    version: str,
    *,
    workers: int = 2,
    uds: str = "",
    fd: Optional[int] = None,
    start_method: str = "",
    installed: Optional[Dict[str, str]] = None,
    options: Sequence[Sequence[str]] = (),
) -> LaunchContext:
    return LaunchContext(
        python=PY,
        python_version="3.11.7",
        server_version=version,
        installed=dict(installed or {}),
        app="servers.apps:pid",
        workers=workers,
        uds=uds,
        fd=fd,
        start_method=start_method,
        run_dir="/tmp/run",
        options=tuple((k, v) for k, v in options),
    )


# --- versions -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("0.9.1", "0.10.0"),
        ("0.14.0", "0.15.0"),
        ("1.0.0rc1", "1.0.0"),
        ("1.0.0.dev1", "1.0.0a1"),
        ("0.27.0", "0.27.0.post1"),
        ("2.4.9", "2.5"),
        ("19.10.0", "20.0.0"),
    ],
)
def test_version_order(a: str, b: str) -> None:
    assert parse(a) < parse(b)
    assert below(a, b) and at_least(b, a)


def test_version_equalities_and_errors() -> None:
    assert parse("1.0") == parse("1.0.0") == parse("1.0.0.0")
    assert at_least("", "99.0")  # unknown installed version counts as the newest
    with pytest.raises(ValueError, match="not a version"):
        parse("latest")


# --- uvicorn ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "kwargs", "tail"),
    [
        ("0.10.0", {}, ["--workers", "2", "--host", "127.0.0.1", "--port", "0", "--log-level", "info"]),
        ("0.14.0", {"uds": "/tmp/s.sock"}, ["--workers", "2", "--uds", "/tmp/s.sock", "--log-level", "info"]),
        ("0.54.0", {"fd": 3}, ["--workers", "2", "--fd", "3", "--log-level", "info"]),
        ("0.30.0", {"workers": 4, "options": [("lifespan", "off"), ("log_level", "debug")]},
         ["--workers", "4", "--host", "127.0.0.1", "--port", "0", "--log-level", "debug",
          "--lifespan", "off"]),
    ],
)  # fmt: skip
def test_uvicorn_argv(version: str, kwargs: Dict[str, object], tail: Sequence[str]) -> None:
    spec = UvicornAdapter().build(ctx(version, **kwargs))  # type: ignore[arg-type]
    assert spec.argv == (PY, "-m", "uvicorn", "servers.apps:pid", *tail)


def test_uvicorn_too_old_has_no_module_entry_point() -> None:
    with pytest.raises(Unsupported, match=r"uvicorn 0\.9\.0 has no `python -m uvicorn` \(added in 0\.9\.1\)"):
        UvicornAdapter().build(ctx("0.9.0"))
    assert UvicornAdapter().build(ctx("0.9.1")).argv[:3] == (PY, "-m", "uvicorn")


def test_gunicorn_floor_is_the_first_release_with_a_main_module() -> None:
    installed = {"gunicorn": "20.0.4", "uvicorn": "0.20.0"}
    with pytest.raises(
        Unsupported, match=r"gunicorn 20\.0\.4 has no `python -m gunicorn` \(added in 20\.1\.0\)"
    ):
        GunicornAdapter().build(ctx("20.0.4", installed=installed))


def test_uvicorn_start_method_goes_through_the_launcher() -> None:
    spec = UvicornAdapter().build(ctx("0.10.0", start_method="forkserver"))
    assert spec.argv[:7] == (
        PY,
        "-m",
        "servers.launcher",
        "--start-method",
        "forkserver",
        "--",
        "uvicorn",
    )
    assert spec.argv[7] == "servers.apps:pid"


# --- hypercorn ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "kwargs", "args"),
    [
        ("0.7.2", {}, ["--workers", "2", "--bind", "127.0.0.1:0"]),
        ("0.6.0", {"uds": "/tmp/h.sock"}, ["--workers", "2", "--bind", "unix:/tmp/h.sock"]),
        ("0.14.2", {"fd": 5},
         ["--workers", "2", "--bind", "fd://5", "--log-level", "info", "--error-logfile", "-"]),
        ("0.18.0", {"options": [("worker_class", "trio")]},
         ["--workers", "2", "--bind", "127.0.0.1:0", "--log-level", "info", "--error-logfile", "-",
          "--worker-class", "trio"]),
    ],
)  # fmt: skip
def test_hypercorn_argv(version: str, kwargs: Dict[str, object], args: Sequence[str]) -> None:
    spec = HypercornAdapter().build(ctx(version, **kwargs))  # type: ignore[arg-type]
    assert spec.argv == (PY, "-m", "hypercorn", *args, "servers.apps:pid")


def test_hypercorn_too_old() -> None:
    with pytest.raises(Unsupported, match=r"0\.5\.4 speaks ASGI 2 only \(ASGI 3 apps from 0\.6\.0\)"):
        HypercornAdapter().build(ctx("0.5.4"))


# --- gunicorn -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("installed", "options", "worker"),
    [
        ({"uvicorn-worker": "0.4.0", "uvicorn": "0.36.0"}, [], "uvicorn_worker.UvicornWorker"),
        ({"uvicorn_worker": "0.3.0"}, [], "uvicorn_worker.UvicornWorker"),
        ({"uvicorn": "0.29.0"}, [], "uvicorn.workers.UvicornWorker"),
        ({}, [("worker_class", "my.Worker")], "my.Worker"),
    ],
)
def test_gunicorn_worker_class(
    installed: Dict[str, str], options: Sequence[Sequence[str]], worker: str
) -> None:
    spec = GunicornAdapter().build(ctx("23.0.0", installed=installed, options=options))
    assert spec.argv[spec.argv.index("--worker-class") + 1] == worker


@pytest.mark.parametrize(
    ("kwargs", "bind"),
    [({}, "127.0.0.1:0"), ({"uds": "/tmp/g.sock"}, "unix:/tmp/g.sock"), ({"fd": 0}, "fd://0")],
)
def test_gunicorn_argv(kwargs: Dict[str, object], bind: str) -> None:
    spec = GunicornAdapter().build(ctx("27.0.1", installed={"uvicorn-worker": "0.4.0"}, **kwargs))  # type: ignore[arg-type]
    assert spec.argv == (
        PY, "-m", "gunicorn", "--workers", "2", "--worker-class", "uvicorn_worker.UvicornWorker",
        "--bind", bind, "--log-level", "info", "--error-logfile", "-", "servers.apps:pid",
    )  # fmt: skip
    assert spec.env == {}  # HOME/XDG_RUNTIME_DIR (gunicorn >= 25.1 control socket) are the runner's


def test_gunicorn_unsupported() -> None:
    with pytest.raises(Unsupported, match=r"added in 20\.1\.0"):
        GunicornAdapter().build(ctx("19.9.0", installed={"uvicorn": "0.29.0"}))
    with pytest.raises(Unsupported, match="install uvicorn-worker"):
        GunicornAdapter().build(ctx("23.0.0", installed={"gunicorn": "23.0.0"}))


# --- granian ------------------------------------------------------------------------------------------


def test_granian_argv_tcp_and_uds() -> None:
    spec = GranianAdapter().build(ctx("2.8.7", options=[("respawn_failed_workers", "1")]))
    assert spec.argv == (
        PY, "-m", "granian", "--interface", "asgi", "--workers", "2", "--host", "127.0.0.1", "--port", "0",
        "--log-level", "info", "--respawn-failed-workers", "servers.apps:pid",
    )  # fmt: skip
    uds = GranianAdapter().build(ctx("2.5.0", uds="/tmp/g.sock"))
    assert uds.argv[uds.argv.index("--uds") + 1] == "/tmp/g.sock"


@pytest.mark.parametrize(
    ("version", "kwargs", "reason"),
    [
        (
            "2.4.2",
            {"uds": "/tmp/g.sock"},
            r"granian 2\.4\.2 cannot bind a unix socket \(--uds from 2\.5\.0\)",
        ),
        ("2.8.7", {"fd": 3}, r"granian 2\.8\.7 cannot serve an inherited fd \(no --fd\)"),
        ("0.7.6", {}, r"granian 0\.7\.6 is older than 1\.0\.2"),
    ],
)
def test_granian_unsupported(version: str, kwargs: Dict[str, object], reason: str) -> None:
    with pytest.raises(Unsupported, match=reason):
        GranianAdapter().build(ctx(version, **kwargs))  # type: ignore[arg-type]


# --- daphne -------------------------------------------------------------------------------------------


def test_daphne_one_process_only() -> None:
    spec = DaphneAdapter().build(ctx("4.2.3", workers=1, fd=0))
    assert spec.argv == (PY, "-m", "daphne", "--fd", "0", "-v", "1", "servers.apps:pid")
    tcp = DaphneAdapter().build(ctx("3.0.0", workers=1))
    assert tcp.argv[3:7] == ("-b", "127.0.0.1", "-p", "0")
    with pytest.raises(Unsupported, match="daphne is one process with no --workers; 2 workers"):
        DaphneAdapter().build(ctx("4.2.3", workers=2))
    with pytest.raises(Unsupported, match=r"added in 3\.0\.0"):
        DaphneAdapter().build(ctx("2.5.0", workers=1))


def test_registry_names_resolve_to_adapters_with_matching_names() -> None:
    for name in ("uvicorn", "hypercorn", "gunicorn", "granian", "daphne"):
        module, attr = ADAPTERS[name].split(":")
        adapter = getattr(importlib.import_module(module), attr)
        assert adapter.name == name and adapter.distribution == name
        assert adapter.default_requirements


# --- the launcher, for real ---------------------------------------------------------------------------

PROBE = """
import multiprocessing, sys
print(multiprocessing.get_start_method(), *sys.argv)
"""


def _python(version: str) -> str:
    path = f"/root/.pyenv/versions/{version}/bin/python"
    found = path if os.path.exists(path) else shutil.which(f"python{version[:3]}")
    if not found:
        pytest.skip(f"no Python {version} here")
    return found


@pytest.mark.parametrize("version", ["3.7.16", "3.8.18"])
@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_launcher_sets_start_method_and_argv(tmp_path: object, version: str, method: str) -> None:
    pkg = os.path.join(str(tmp_path), "probe_mod")
    os.makedirs(pkg)
    with open(os.path.join(pkg, "__init__.py"), "w") as fh:
        fh.write("")
    with open(os.path.join(pkg, "__main__.py"), "w") as fh:
        fh.write(PROBE)
    argv = command(_python(version), "probe_mod", ["--workers", "2"], method)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, str(tmp_path)]))
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=True)
    got_method, argv0, *rest = out.stdout.split()
    assert got_method == method
    # as with `python -m probe_mod`, argv[0] is the module's file (runpy alter_sys=True)
    assert argv0.endswith(os.path.join("probe_mod", "__main__.py")) and rest == ["--workers", "2"]


def test_launcher_rejects_bad_usage() -> None:
    base = [sys.executable, "-m", "servers.launcher"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    for extra in (["--start-method", "nope", "--", "x"], ["--start-method", "spawn", "--"]):
        out = subprocess.run(base + extra, check=False, env=env, capture_output=True, text=True, timeout=30)
        assert out.returncode == 2, out.stderr
