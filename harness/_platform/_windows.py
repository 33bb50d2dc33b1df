"""Windows: process groups and console events; venv and cache layout.

Imported by the facade (harness._platform) on Windows only. Windows cannot run on the project's machine:
this module is typed by construction (mypy --platform win32) and exercised by the CI workflow's runners.
"""

import os
import signal
import subprocess
import sys
from typing import Any, Dict, List, Sequence

import psutil

assert sys.platform == "win32"  # mypy: this module is Windows's

STOP_SIGNAL_NAME = "CTRL_BREAK_EVENT"
#: a SOCKET is a handle, not a numbered fd: inheritance goes through STARTUPINFO handle lists, which
#: `--fd N` cannot express
FD_PASSING = False
#: the `py` launcher (py -0p lists the installed interpreters)
HAS_PY_LAUNCHER = True


class StdinUnsupported(ValueError):
    """The stdin mode cannot be expressed here; str(exc) is the one-line reason."""


def new_session_kwargs() -> Dict[str, Any]:
    """CTRL_BREAK_EVENT reaches only a process group created with this flag (CTRL_C is ignored there)."""
    return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}


def send_stop(pid: int, mode: str) -> str:
    """CTRL_BREAK_EVENT: Windows has no per-process console signal, an event aimed at a pid is delivered
    to the process group that pid leads, so "master" and "group" are the same thing here."""
    if mode not in ("group", "master"):
        raise ValueError(f"stop mode must be 'group' or 'master', not {mode!r}")
    try:
        os.kill(pid, signal.CTRL_BREAK_EVENT)
    except OSError:
        return ""
    return STOP_SIGNAL_NAME


def signal_unavailable(name: str) -> str:
    """Windows delivers no POSIX signal to another process: os.kill(pid, SIGTERM) is TerminateProcess and
    console events reach a whole process group, so no signal-master fault can be expressed here."""
    return (
        f"SIG{name} cannot be sent to one process on Windows (os.kill is TerminateProcess; console events "
        "reach a whole process group)"
    )


def send_signal(pid: int, name: str) -> str:
    raise OSError(signal_unavailable(name))


def open_handles(proc: "psutil.Process") -> int:
    """The process's open handles (psutil num_handles: files, sockets, events, threads...)."""
    return int(proc.num_handles())


def kill_group(pgid: int) -> bool:
    """No group kill primitive here: False (the callers kill the tree they snapshot)."""
    return False


def session_members(sid: int) -> List[int]:
    """No sessions here: []."""
    return []


def closed_stdin_argv(argv: Sequence[str]) -> List[str]:
    """No fd 0 to close: a Windows child always gets a standard input handle from CreateProcess when
    output is redirected, and an exec shim there would change the pid (os.execv spawns anew)."""
    raise StdinUnsupported("stdin=closed cannot be expressed on Windows without changing the pid")


def kill_tree(proc: "subprocess.Popen[bytes]") -> None:
    """taskkill /T: the process and everything it started."""
    subprocess.run(
        ["taskkill", "/F", "/T", "/PID", str(proc.pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=30,
        check=False,
    )


def user_cache_root() -> str:
    """Windows keeps caches under LOCALAPPDATA, not ~/.cache."""
    return os.environ.get("LOCALAPPDATA") or os.path.expanduser("~")


def exe(name: str) -> str:
    """The file name of an executable: with .exe here."""
    return name + ".exe"


def venv_python(venv: str) -> str:
    """Windows venvs keep executables in Scripts\\ with .exe."""
    return os.path.join(venv, "Scripts", "python.exe")
