"""Decisive signatures against a passing twin, and the launch-refusal lines (harness.verdict.signature)."""

import pytest

from harness.verdict.signature import distinguishing_line, launch_problem

# uvicorn-style logs: both runs log the same start-up lines; only the failing one has the error
PASSING = """INFO:     Uvicorn running on http://127.0.0.1:40001 (Press CTRL+C to quit)
INFO:     Started parent process [101]
INFO:     Started server process [102]
INFO:     Waiting for application startup.
WARNING:  ASGI 'lifespan' protocol appears unsupported.
INFO:     Application startup complete."""

FAILING = """INFO:     Uvicorn running on http://127.0.0.1:40002 (Press CTRL+C to quit)
INFO:     Started parent process [201]
WARNING:  ASGI 'lifespan' protocol appears unsupported.
ERROR:    Exception in ASGI application
INFO:     Started server process [202]
ERROR:    [Errno 9] Bad file descriptor"""


def test_the_decisive_line_is_one_the_twin_does_not_log() -> None:
    # the run's own decisive line (a known fatal pattern), as the twin does not log it
    assert distinguishing_line(FAILING, [PASSING], "linux") == "[EBADF] Bad file descriptor"
    # a line both runs log is never the signature: then the first error line only the failing run logs
    twin_with_it = PASSING + "\nERROR:    [Errno 9] Bad file descriptor"
    assert distinguishing_line(FAILING, [twin_with_it], "linux") == "Exception in ASGI application"


def test_a_traceback_line_wins_when_the_twin_lacks_it() -> None:
    failing = PASSING + '\nTraceback (most recent call last):\n  File "x.py", line 3\n'
    failing += "OSError: [Errno 24] Too many open files"
    assert distinguishing_line(failing, [PASSING], "linux") == "OSError: [EMFILE] Too many open files"
    assert distinguishing_line(PASSING, [PASSING], "linux") == ""  # nothing tells them apart


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("/v/bin/python: No module named gunicorn.__main__; 'gunicorn' is a package and cannot be directly "
         "executed", "entry-point"),
        ("/v/bin/python3.8: No module named hypercorn", "entry-point"),
        ("C:\\v\\Scripts\\python.exe: No module named uvicorn", "entry-point"),
        ("/v/bin/python: can't open file '/x/run.py': [Errno 2] No such file or directory", "entry-point"),
        ("Usage: python -m uvicorn [OPTIONS] APP\nTry 'python -m uvicorn --help' for help.\n\n"
         "Error: No such option: --fd", "flag"),
        ("Error: no such option: --h11-max-incomplete-event-size", "flag"),
        ("usage: __main__.py [-h] [--workers W] application\n"
         "__main__.py: error: unrecognized arguments: --uds x", "flag"),
        ("Error: Got unexpected extra argument (servers.apps:pid)", "flag"),
    ],
)  # fmt: skip
def test_launch_refusals(text: str, kind: str) -> None:
    found = launch_problem(text)
    assert found is not None and found[0] == kind


@pytest.mark.parametrize(
    "text",
    [
        "ModuleNotFoundError: No module named 'servers'",  # the app's import: not the launch
        'ERROR:    Error loading ASGI app. Could not import module "x".',
        "ValueError: invalid literal for int()",
        "",
    ],
)
def test_not_launch_refusals(text: str) -> None:
    assert launch_problem(text) is None


def test_two_workers_interleaved_tracebacks_give_one_signature() -> None:
    """Measured: hypercorn 0.11.2 --workers 2 wrote its two chained tracebacks interleaved differently in
    two runs; the decisive line was create_server() in one and gather() in the other (a flaky verdict)."""
    import os  # noqa: PLC0415

    from harness.verdict.signature import decisive_line  # noqa: PLC0415
    from tests._paths import FIXTURES  # noqa: PLC0415

    lines = set()
    for name in "ab":
        with open(os.path.join(FIXTURES, "outputs", f"linux_hypercorn0112_two_workers_{name}.txt")) as fh:
            lines.add(decisive_line(fh.read()))
    assert lines == {"TypeError: gather() got an unexpected keyword argument 'loop'"}


def test_a_chain_cut_by_interleaving_is_not_an_end() -> None:
    """The third interleaving bench_contention met (a tie: one broken chain, one whole): the first link,
    which the output shows chained onward elsewhere, is not the failure."""
    from harness.verdict.signature import decisive_line  # noqa: PLC0415

    a = "TypeError: BaseEventLoop.create_server() got an unexpected keyword argument 'loop'"
    b = "TypeError: gather() got an unexpected keyword argument 'loop'"
    text = "\n".join([
        "Process Process-1:", "Process Process-2:",
        "Traceback (most recent call last):", '  File "run.py", line 128, in worker_serve',
        a,  # worker 1's first link, cut from its chain by worker 2's header
        "Traceback (most recent call last):", '  File "run.py", line 128, in worker_serve',
        a, "", "During handling of the above exception, another exception occurred:", "",
        "Traceback (most recent call last):", '  File "run.py", line 248, in _cancel_all_tasks',
        b,
    ])  # fmt: skip
    assert decisive_line(text) == b
