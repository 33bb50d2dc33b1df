"""POSIX (Linux, macOS, BSD): sessions, process groups and signals; venv and cache layout.

Imported by the facade (harness._platform) everywhere but Windows.
"""

import os
import signal
import subprocess
import sys
from typing import Any, Dict, List, Sequence

import psutil

assert sys.platform != "win32"  # mypy: this module is POSIX's

STOP_SIGNAL_NAME = "SIGTERM"
#: sockets reach a child as numbered file descriptors (bind=fd:N, pass_fds)
FD_PASSING = True
#: the `py` launcher is Windows's
HAS_PY_LAUNCHER = False


class StdinUnsupported(ValueError):
    """The stdin mode cannot be expressed here; str(exc) is the one-line reason."""


def new_session_kwargs() -> Dict[str, Any]:
    """Popen kwargs for a process that owns its own session: a new session is a new group (pgid == pid),
    so a group kill never hits the harness, and a terminal's Ctrl-C (sent to the foreground group) does
    not reach the server behind our back."""
    return {"start_new_session": True}


def send_stop(pid: int, mode: str) -> str:
    """SIGTERM to the server's group (mode "group"; pgid == pid) or to its master only ("master")."""
    if mode not in ("group", "master"):
        raise ValueError(f"stop mode must be 'group' or 'master', not {mode!r}")
    try:
        if mode == "group":
            os.killpg(pid, signal.SIGTERM)  # pgid == pid: started with start_new_session=True
        else:
            os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return ""
    return STOP_SIGNAL_NAME


def signal_unavailable(name: str) -> str:
    """ "" when SIG<name> exists on this OS, else the one-line reason it cannot be sent."""
    if getattr(signal, f"SIG{name}", None) is None:
        return f"SIG{name} does not exist on {sys.platform}"
    return ""


def send_signal(pid: int, name: str) -> str:
    """SIG<name> to `pid` alone (the signal-master fault); "" when the process was already gone."""
    try:
        os.kill(pid, getattr(signal, f"SIG{name}"))
    except ProcessLookupError:
        return ""
    return f"SIG{name}"


def open_handles(proc: psutil.Process) -> int:
    """The process's open file descriptors (psutil num_fds)."""
    return int(proc.num_fds())


def kill_group(pgid: int) -> bool:
    """SIGKILL every member of process group `pgid`; True when the signal was delivered to someone."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def session_members(sid: int) -> List[int]:
    """Pids in session `sid`: catches processes that left the tree (their parent died) but stayed."""
    found = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == sid:
                found.append(pid)
        except OSError:
            continue
    return found


def closed_stdin_argv(argv: Sequence[str]) -> List[str]:
    """An argv that runs `argv` with fd 0 closed and the same pid.

    Popen cannot do it by itself: the child always gets *something* on fd 0 (the parent's stdin, a pipe
    or /dev/null), close_fds only closes fds >= 3, and preexec_fn is banned (unsafe with threads). A POSIX
    shell's `exec "$@" 0<&-` closes fd 0 and execs in place: the pid Popen returns *is* the server's pid,
    passed fds survive (the shell opens no fds of its own with -c), and it costs ~1 ms.
    """
    return ["/bin/sh", "-c", 'exec "$@" 0<&-', "sh", *argv]


def kill_tree(proc: "subprocess.Popen[bytes]") -> None:
    """SIGKILL the group of a process started with new_session_kwargs() (an installer and its builds)."""
    kill_group(proc.pid)


def user_cache_root() -> str:
    """$XDG_CACHE_HOME, else ~/.cache."""
    return os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")


def exe(name: str) -> str:
    """The file name of an executable: the bare name here."""
    return name


def venv_python(venv: str) -> str:
    return os.path.join(venv, "bin", "python")
