"""harness.verdict.signature on real output: fixtures in tests/fixtures/outputs (sources in SOURCES.md)."""

import os
from typing import Any, Dict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.verdict.signature import (
    decisive_line,
    errno_symbol,
    normalize,
    signature_for,
    winerror_symbol,
)
from tests import _paths

FIXTURES = os.path.join(_paths.FIXTURES, "outputs")


def _read(name: str) -> str:
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as fh:
        return fh.read()


def _platform_of(name: str) -> str:
    prefix = name.split("_", 1)[0]
    return {"win": "win32", "darwin": "darwin", "linux": "linux"}[prefix]


# fixture -> expected signature (read with the platform its name says it came from)
EXPECTED = {
    "linux_accept_not_listening_py38.txt": "OSError: [EINVAL] Invalid argument",
    "linux_accept_not_listening_py311.txt": "OSError: [EINVAL] Invalid argument",
    "linux_mp_spawn_two_workers_einval_py310.txt": "OSError: [EINVAL] Invalid argument",
    "linux_taskgroup_eaddrinuse_py312.txt": (
        "OSError: [EADDRINUSE] error while attempting to bind on address (<addr>): address already in use"
    ),
    "linux_uvicorn054_workers2_eaddrinuse.txt": "[EADDRINUSE] Address already in use",
    "linux_uvicorn054_workers2_lifespan_fails.txt": "RuntimeError: database unreachable",
    "linux_hypercorn0112_two_workers_a.txt": "TypeError: gather() got an unexpected keyword argument 'loop'",
    "linux_hypercorn0112_two_workers_b.txt": "TypeError: gather() got an unexpected keyword argument 'loop'",
    "linux_gunicorn27_uvicornworker_import_error.txt": (
        "ModuleNotFoundError: No module named 'nonexistent_mod'"
    ),
    "linux_asyncio_eaddrinuse_py312.txt": (
        "OSError: [EADDRINUSE] error while attempting to bind on address (<addr>): address already in use"
    ),
    "darwin_changedetection_2925_errno48_py313.txt": "OSError: [EADDRINUSE] Address already in use",
    "darwin_continue_372_uvicorn_errno48.txt": (
        "[EADDRINUSE] error while attempting to bind on address (<addr>): address already in use"
    ),
    "win_uvicorn_342_winerror87_py39.txt": "OSError: [ERROR_INVALID_PARAMETER] The parameter is incorrect",
    "win_uvicorn_509_winerror87_scoop.txt": "OSError: [ERROR_INVALID_PARAMETER] The parameter is incorrect",
    "win_px_267_winerror87_py313_frozen.txt": "OSError: [ERROR_INVALID_PARAMETER] The parameter is incorrect",
    "win_cpython_94337_winerror87_russian.txt": (
        "OSError: [ERROR_INVALID_PARAMETER] The parameter is incorrect"
    ),
    "win_sanic_1545_winerror10022_py36.txt": "OSError: [WSAEINVAL] An invalid argument was supplied",
    "win_uvicorn_488_winerror10022_oneline.txt": "OSError: [WSAEINVAL] An invalid argument was supplied",
    "win_uvicorn_435_winerror10048_french.txt": (
        "OSError: [WSAEADDRINUSE] Only one usage of each socket address (protocol/network address/port)"
        " is normally permitted"
    ),
    "win_fastapi_4362_errno10048_uvicorn_log.txt": (
        "[WSAEADDRINUSE] error while attempting to bind on address (<addr>): only one usage of each socket"
        " address (protocol/network address/port) is normally permitted"
    ),
    "linux_gunicorn_351_worker_failed_to_boot.txt": "Reason: Worker failed to boot.",
    "linux_gunicorn_2103_haltserver.txt": "Reason: Worker failed to boot.",
    "linux_uvicorn_worker_35_setup_event_loop.txt": (
        "AttributeError: The `setup_event_loop` method was replaced by `get_loop_factory` in uvicorn 0.36.0."
    ),
    "linux_granian_491_unexpected_exit.txt": "Unexpected exit from worker-<n>",
}


def test_every_fixture_has_an_expectation() -> None:
    on_disk = {n for n in os.listdir(FIXTURES) if n.endswith(".txt")}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_signature(name: str) -> None:
    assert signature_for(_read(name), _platform_of(name)) == EXPECTED[name]


def test_same_windows_failure_two_machines_same_signature() -> None:
    # uvicorn #342 (Python 3.9, C:\Users\username, fd=824) and #509 (scoop Python, fd=696, other line numbers)
    a = signature_for(_read("win_uvicorn_342_winerror87_py39.txt"), "win32")
    b = signature_for(_read("win_uvicorn_509_winerror87_scoop.txt"), "win32")
    c = signature_for(_read("win_px_267_winerror87_py313_frozen.txt"), "win32")
    assert a == b == c
    assert "87" not in a and "ERROR_INVALID_PARAMETER" in a


def test_localized_winerror_message_is_canonical() -> None:
    ru = signature_for(_read("win_cpython_94337_winerror87_russian.txt"), "win32")
    en = signature_for(_read("win_uvicorn_342_winerror87_py39.txt"), "win32")
    assert ru == en


def test_same_failure_linux_and_macos_same_signature() -> None:
    linux = normalize("OSError: [Errno 98] Address already in use", "linux")
    mac = signature_for(_read("darwin_changedetection_2925_errno48_py313.txt"), "darwin")
    assert linux == mac == "OSError: [EADDRINUSE] Address already in use"


def test_errno_is_read_with_the_platform_of_the_text() -> None:
    # 48 is EADDRINUSE on macOS but unknown on Linux; 98 the other way round
    assert normalize("OSError: [Errno 48] x", "darwin") == "OSError: [EADDRINUSE] x"
    assert normalize("OSError: [Errno 98] x", "linux") == "OSError: [EADDRINUSE] x"
    assert normalize("OSError: [Errno 98] x", "darwin") == "OSError: [Errno 98] x"
    assert normalize("OSError: [Errno 10048] x", "win32") == "OSError: [WSAEADDRINUSE] x"
    assert errno_symbol(88, "linux") == "ENOTSOCK" and errno_symbol(38, "darwin") == "ENOTSOCK"
    assert errno_symbol(95, "linux") == "EOPNOTSUPP" and errno_symbol(102, "darwin") == "EOPNOTSUPP"
    assert errno_symbol(111, "linux") == "ECONNREFUSED" and errno_symbol(61, "darwin") == "ECONNREFUSED"
    assert errno_symbol(9, "win32") == "EBADF" and errno_symbol(22, "darwin") == "EINVAL"


@pytest.mark.parametrize(
    "code, symbol",
    [
        (10022, "WSAEINVAL"),
        (87, "ERROR_INVALID_PARAMETER"),
        (10048, "WSAEADDRINUSE"),
        (10038, "WSAENOTSOCK"),
        (10057, "WSAENOTCONN"),
        (10013, "WSAEACCES"),
        (10054, "WSAECONNRESET"),
        (6, "ERROR_INVALID_HANDLE"),
        (5, "ERROR_ACCESS_DENIED"),
    ],
)
def test_winerror_symbols(code: int, symbol: str) -> None:
    assert winerror_symbol(code) == symbol
    assert normalize(f"OSError: [WinError {code}] whatever", "win32").startswith(f"OSError: [{symbol}] ")


def test_brief_example() -> None:
    line = "OSError: [WinError 10022] An invalid argument was supplied"
    assert normalize(line, "win32") == "OSError: [WSAEINVAL] An invalid argument was supplied"
    # a WinError is a Windows code whatever platform label the caller passes
    assert normalize(line, "linux") == normalize(line, "win32")


def test_rust_os_error_granian_style() -> None:
    assert normalize("Address already in use (os error 98)", "linux") == (
        "Address already in use (os error EADDRINUSE)"
    )
    assert normalize("Address already in use (os error 48)", "darwin") == (
        "Address already in use (os error EADDRINUSE)"
    )


@pytest.mark.parametrize(
    "raw, expected",
    [
        (
            "FileNotFoundError: [Errno 2] No such file or directory: '/tmp/tmpk2j1x9/h.sock'",
            "FileNotFoundError: [ENOENT] No such file or directory: '<path>'",
        ),
        (
            "ValueError: bad value at C:\\Users\\bob\\AppData\\Local\\Temp\\tmp8x\\app.py",
            "ValueError: bad value at <path>",
        ),
        ("Listening at: http://127.0.0.1:43121 (23845)", "Listening at: http://<addr> (<pid>)"),
        ("Listening at: http://[::1]:8000 (1234)", "Listening at: http://<addr> (<pid>)"),
        ("bind failed on ::1 port 8000", "bind failed on <addr> port <port>"),
        ("conn to fe80::1%eth0 failed", "conn to <addr> failed"),
        ("Worker (pid:4242) was sent SIGKILL", "Worker (pid:<pid>) was sent SIGKILL"),
        ("Started server process [17848]", "Started server process [<pid>]"),
        ("<object at 0x7f3a2b1c9d00> died", "<object at <hex>> died"),
        ('File "x.py", line 294, in accept', 'File "x.py", line <n>, in accept'),
        ("2025-09-30 08:44:34 -0400 boom", "<time> boom"),
        ("[2019-04-03 10:16:35 +0200] [11836] [ERROR] x", "[<time>] [<pid>] [ERROR] x"),
        ("socket fd=3552 closed", "socket fd=<fd> closed"),
        ("\x1b[31mERROR\x1b[0m:    boom", "ERROR: boom"),
        ("HTTP/1.1 400 Bad Request", "HTTP/1.1 400 Bad Request"),
        ("partial-workers: 1/2", "partial-workers: 1/2"),
    ],
)
def test_normalize_strips_machine_specific_parts(raw: str, expected: str) -> None:
    assert normalize(raw, "linux") == expected


def test_normalize_is_idempotent_on_fixtures() -> None:
    for name in EXPECTED:
        sig = signature_for(_read(name), _platform_of(name))
        assert normalize(sig, _platform_of(name)) == sig


def test_decisive_line_first_fatal_traceback_not_the_log_noise() -> None:
    text = _read("linux_uvicorn_worker_35_setup_event_loop.txt")
    assert decisive_line(text).startswith("AttributeError:")


def test_decisive_line_chained_takes_last_meaningful_link() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "a.py", line 1, in <module>\n'
        "OSError: [Errno 98] Address already in use\n"
        "\n"
        "During handling of the above exception, another exception occurred:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "b.py", line 2, in <module>\n'
        "RuntimeError: could not bind\n"
    )
    assert decisive_line(text) == "RuntimeError: could not bind"
    wrapped = text.replace("RuntimeError: could not bind", "SystemExit: 3")
    assert decisive_line(wrapped) == "OSError: [Errno 98] Address already in use"


def test_decisive_line_skips_shutdown_tracebacks() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "x.py", line 3, in run\n'
        "KeyboardInterrupt\n"
        "Traceback (most recent call last):\n"
        '  File "w.py", line 9, in serve\n'
        "OSError: [WinError 10038] An operation was attempted on something that is not a socket\n"
    )
    assert decisive_line(text).startswith("OSError: [WinError 10038]")


def test_decisive_line_log_lines_without_traceback() -> None:
    assert decisive_line("INFO: Waiting\nERROR:    Application startup failed. Exiting.\n") == (
        "Application startup failed. Exiting."
    )
    assert decisive_line("INFO: Started server process [1]\nINFO: Waiting for application startup.\n") == ""
    assert decisive_line("") == ""


def test_decisive_line_ignores_log_lines_that_look_like_exceptions() -> None:
    text = "socket: <asyncio.TransportSocket fd=8>\nINFO:     Application startup complete.\n"
    assert decisive_line(text) == ""


def test_reference_server_one_line_reason() -> None:
    text = "servers: error: worker 1 exited before ready (exit 3)\n"
    assert decisive_line(text) == "servers: error: worker 1 exited before ready (exit 3)"


def test_traceback_header_behind_a_log_prefix() -> None:
    text = (
        "ERROR:    Traceback (most recent call last):\n"
        '  File "/srv/app.py", line 12, in startup\n'
        "RuntimeError: database unreachable at 10.0.0.5:5432\n"
        "ERROR:    Application startup failed. Exiting.\n"
    )
    assert signature_for(text, "linux") == "RuntimeError: database unreachable at <addr>"


_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12)


@settings(max_examples=100, deadline=None)
@given(
    m=st.fixed_dictionaries(
        {
            "pid": st.integers(10, 4_000_000),
            "port": st.integers(1024, 65535),
            "fd": st.integers(3, 9999),
            "user": _name,
            "tmp": _name,
            "ip": st.tuples(*[st.integers(0, 255)] * 4),
        }
    )
)
def test_machine_details_never_change_the_signature(m: Dict[str, Any]) -> None:
    pid, port, fd, user, tmp, ip = (m[k] for k in ("pid", "port", "fd", "user", "tmp", "ip"))
    addr = ".".join(map(str, ip))
    text = (
        f"INFO:     Started server process [{pid}]\n"
        f"Process SpawnProcess-2:\n"
        "Traceback (most recent call last):\n"
        f'  File "C:\\Users\\{user}\\AppData\\Local\\Temp\\{tmp}\\w.py", line {fd}, in run\n'
        f"OSError: [WinError 10022] socket fd={fd} on ('{addr}', {port}) pid {pid} at 0x{pid:x}\n"
    )
    assert signature_for(text, "win32") == ("OSError: [WSAEINVAL] An invalid argument was supplied")
    posix = (
        "Traceback (most recent call last):\n"
        f'  File "/home/{user}/x.py", line 3, in <module>\n'
        f"FileNotFoundError: [Errno 2] No such file or directory: '/tmp/{tmp}/{user}.sock' (pid {pid}, "
        f"{addr}:{port}, fd={fd})\n"
    )
    assert signature_for(posix, "linux") == (
        "FileNotFoundError: [ENOENT] No such file or directory: '<path>' (pid <pid>, <addr>, fd=<fd>)"
    )


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["linux", "darwin", "win32", "freebsd13"]))
def test_normalize_total_and_idempotent(text: str, platform: str) -> None:
    once = normalize(text, platform)
    assert "\n" not in once and len(once) <= 300
    assert normalize(once, platform) == once
