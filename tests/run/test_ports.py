"""Fixed-port serialization: harness._platform.locks.port_lock and the fixed_port marker (harness.plugin; the
catalog marks its cases in scenarios/test_known_issues.py). uvicorn <=0.14 binds 127.0.0.1:8000 whatever
--uds/--fd say: two such tests in two xdist workers must take turns, not fail each other with EADDRINUSE."""

import importlib.util
import os
import subprocess
import sys

import pytest

from harness._platform.locks import port_lock
from tests import _paths

ROOT = _paths.ROOT
PORT = 1  # a lock name only: nothing binds it

_TRY = (
    "import sys; from harness._platform.locks import LockTimeout, port_lock\n"
    "try:\n"
    "    port_lock(int(sys.argv[1]), timeout=0.2).acquire()\n"
    "except LockTimeout:\n"
    "    sys.exit(7)\n"
)


def _other_process_gets(port: int, tmp_path) -> bool:
    """Can another process (another TMPDIR, as another pytest run would have) take the port's lock?"""
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=ROOT)
    argv = [sys.executable, "-c", _TRY, str(port)]
    code = subprocess.run(argv, env=env, cwd=ROOT, timeout=60, check=False).returncode
    assert code in (0, 7), code
    return code == 0


def test_port_lock_is_machine_wide(tmp_path):
    with port_lock(PORT + 1):
        assert not _other_process_gets(PORT + 1, tmp_path)
    assert _other_process_gets(PORT + 1, tmp_path)


@pytest.mark.fixed_port(PORT)
def test_the_marker_holds_the_lock_while_the_test_runs(tmp_path):
    assert not _other_process_gets(PORT, tmp_path)


def test_catalog_cases_that_bind_8000_hold_its_lock():
    spec = importlib.util.spec_from_file_location(
        "_known_issues_params", os.path.join(ROOT, "scenarios", "test_known_issues.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    locked = {}
    for param in module._params():
        ports = [p for m in param.marks if m.name == "fixed_port" for p in m.args]
        locked[param.id] = ports
    affected_1009 = [i for i in locked if i.startswith("uvicorn-1009-") and "-affected-" in i]
    assert len(affected_1009) == 2, sorted(locked)
    assert all(locked[i] == [8000] for i in affected_1009), locked
    assert not any(ports for i, ports in locked.items() if "uvicorn==0.1" not in i), locked
