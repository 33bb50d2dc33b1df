"""harness.env.pythons: discovery, resolution and probing of real interpreters on this machine."""

import glob
import os
import sys

import pytest

from harness.env import pythons
from harness.env.pythons import Interpreter, InterpreterNotFound


def _pyenv_versions():
    root = os.environ.get("PYENV_ROOT") or os.path.join(os.path.expanduser("~"), ".pyenv")
    found = {}
    for d in glob.glob(os.path.join(root, "versions", "*")):
        name = os.path.basename(d)
        if name.startswith("3.") and os.path.isfile(os.path.join(d, "bin", "python")):
            found[name] = os.path.join(d, "bin", "python")
    return found


def test_discover_finds_pyenv_versions():
    wanted = _pyenv_versions()
    if not wanted:
        pytest.skip("no pyenv versions on this machine")
    found = {i.version for i in pythons.discover()}
    missing = sorted(set(wanted) - found)
    assert not missing, f"pyenv versions not discovered: {missing}"


def test_discover_is_deduplicated_and_sorted():
    found = pythons.discover()
    assert found, "not even the current interpreter"
    reals = [i.realpath for i in found]
    assert len(reals) == len(set(reals))
    tuples = [i.version_tuple for i in found]
    assert tuples == sorted(tuples, reverse=True)
    assert any(i.source == "current" for i in found)
    assert all(i.source in pythons.SOURCES for i in found)


def test_resolve_empty_is_current():
    me = pythons.resolve("")
    assert me.source == "current"
    assert me.version_tuple == tuple(sys.version_info[:3])
    assert os.path.samefile(me.path, sys.executable)


def test_resolve_minor_picks_newest_patch():
    candidates = [i for i in pythons.discover() if i.version_tuple[:2] == (3, 10)]
    if not candidates:
        pytest.skip("no Python 3.10 here")
    got = pythons.resolve("3.10")
    assert got.version_tuple[:2] == (3, 10)
    assert got.version_tuple == max(i.version_tuple for i in candidates)


def test_resolve_exact_version_and_path():
    some = pythons.discover()[-1]
    exact = pythons.resolve(some.version)
    assert exact.version == some.version
    by_path = pythons.resolve(some.path)
    assert by_path.version == some.version
    assert by_path.implementation == some.implementation


def test_resolve_missing_version_is_one_line():
    with pytest.raises(InterpreterNotFound) as info:
        pythons.resolve("3.99")
    msg = str(info.value)
    assert msg.startswith("no Python 3.99 found (have: ")
    assert "\n" not in msg
    assert "{}.{}".format(*sys.version_info[:2]) in msg


def test_resolve_nonexistent_path():
    with pytest.raises(InterpreterNotFound, match=r"^no such file: .*nonexistent$"):
        pythons.resolve("/nonexistent")


@pytest.mark.skipif(sys.platform == "win32", reason="uses a POSIX shell script as the broken interpreter")
def test_resolve_broken_interpreter(tmp_path):
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\necho 'boom' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(InterpreterNotFound) as info:
        pythons.resolve(str(fake))
    assert str(info.value) == f"{fake} is not a working Python (exit 3: boom)"


def test_resolve_directory_and_unknown_command(tmp_path):
    with pytest.raises(InterpreterNotFound, match="is a directory"):
        pythons.resolve(str(tmp_path))
    with pytest.raises(InterpreterNotFound, match="not a version, a path, or a command"):
        pythons.resolve("no-such-python-command-xyz")


def test_version_tuple_and_table():
    a = Interpreter("/x/python", "3.10.13", "CPython", "pyenv")
    b = Interpreter("/y/python", "3.8.18", "PyPy", "path")
    assert a.version_tuple == (3, 10, 13)
    assert a.version_tuple >= (3, 8) > (3, 7, 16)
    table = pythons.format_table([a, b]).splitlines()
    assert table[0].split() == ["VERSION", "IMPLEMENTATION", "SOURCE", "PATH", "NOTE"]
    assert table[1].split() == ["3.10.13", "CPython", "pyenv", "/x/python"]
    assert table[2].split() == ["3.8.18", "PyPy", "path", "/y/python"]


def test_parse_py_launcher_output():
    text = (
        " -V:3.12 *        C:\\Users\\me\\AppData\\Local\\Programs\\Python\\Python312\\python.exe\n"
        " -V:3.8           C:\\Program Files\\Python38\\python.exe\n"
        " -3.7-64          C:\\Python37\\python.exe\n"
        "\n"
    )
    assert pythons._parse_py_launcher(text) == [
        "C:\\Users\\me\\AppData\\Local\\Programs\\Python\\Python312\\python.exe",
        "C:\\Program Files\\Python38\\python.exe",
        "C:\\Python37\\python.exe",
    ]


def test_parse_uv_text_output():
    text = (
        "cpython-3.11.7-linux-x86_64-gnu    /root/.pyenv/versions/3.11.7/bin/python3.11\n"
        "cpython-3.11.7-linux-x86_64-gnu    /root/.pyenv/versions/3.11.7/bin/python3 -> python3.11\n"
        "cpython-3.13.0-linux-x86_64-gnu    <download available>\n"
    )
    assert pythons._parse_uv_text(text) == [
        "/root/.pyenv/versions/3.11.7/bin/python3.11",
        "/root/.pyenv/versions/3.11.7/bin/python3",
    ]
