"""The command line contract: defaults, resolution of strategy/start method, and one-line errors with
named exit codes (USAGE, STRATEGY_UNSUPPORTED) before anything is bound."""

import json
import subprocess
import sys
from typing import List

import pytest

from servers import exitcodes
from servers._cli import Unsupported, UsageError, main, parse
from servers.strategies import STRATEGIES, resolve
from servers.strategies._platform import default_start_method
from tests._refserver import ROOT

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "APP"),
        (["servers.apps:pid", "--workers", "0"], "--workers"),
        (["servers.apps:pid", "--workers", "-3"], "--workers"),
        (["servers.apps:pid", "--workers", "two"], "--workers"),
        (["servers.apps:pid", "--strategy", "telepathy"], "unknown strategy"),
        (["servers.apps:pid", "--start-method", "vfork"], "unknown start method"),
        (["servers.apps:pid", "--strategy", "pickle", "--start-method", "exec"], "does not work with"),
        (["servers.apps:pid", "--strategy", "systemd", "--start-method", "fork"], "does not work with"),
        (["servers.apps:pid", "--strategy", "scm-rights", "--start-method", "spawn"], "does not work with"),
        (["servers.apps:pid", "--strategy", "inherit", "--start-method", "spawn"], "does not work with"),
        (["servers.apps:pid", "--port", "8000", "--uds", "/tmp/x.sock"], "not allowed with"),
        (["servers.apps:pid", "--port", "70000"], "--port"),
        (["servers.apps:pid", "--fd", "-1"], "--fd"),
        (["servers.apps:pid", "--lifespan", "maybe"], "--lifespan"),
        (["servers.apps:pid", "--graceful-timeout", "-1"], "--graceful-timeout"),
        (["servers.apps:pid", "--strategy", "reuseport", "--fd", "3"], "reuseport"),
        (["servers.apps:pid", "--bogus"], "--bogus"),
        (["servers.apps:pid", "servers.apps:seed"], "servers.apps:seed"),
    ],
)
def test_usage_errors_are_one_line_and_usage_exit(
    argv: List[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == exitcodes.USAGE
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("servers: error: ") and needle in lines[0], lines


def test_probe_takes_no_other_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--probe", "servers.apps:pid"]) == exitcodes.USAGE
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_probe_is_json_and_exit_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--probe"]) == exitcodes.OK
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {
        "platform",
        "python",
        "default_strategy",
        "default_start_method",
        "default_strategy_for",
        "strategies",
    }
    for method, strategy in data["default_strategy_for"].items():
        assert resolve("", method) == (strategy, method)
    for name, info in data["strategies"].items():
        assert resolve(name, "") == (name, info["default_start_method"])


@pytest.mark.skipif(sys.platform == "win32", reason="Windows-only strategies are available there")
@pytest.mark.parametrize("strategy", ["share", "duplicate-handle"])
def test_windows_only_strategy_is_unsupported_not_usage(
    strategy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(Unsupported, match="Windows"):
        parse(["servers.apps:pid", "--strategy", strategy])
    assert main(["servers.apps:pid", "--strategy", strategy]) == exitcodes.STRATEGY_UNSUPPORTED
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    # naming a start method the strategy never works with is a usage error, even here
    assert main(["servers.apps:pid", "--strategy", strategy, "--start-method", "fork"]) == exitcodes.USAGE


def test_defaults() -> None:
    config = parse(["servers.apps:pid"])
    assert (config.workers, config.bind.host, config.bind.port, config.bind.uds, config.bind.fd) == (
        1,
        "127.0.0.1",
        0,
        "",
        None,
    )
    assert (config.lifespan, config.events) == ("auto", "")
    assert config.start_method == default_start_method()
    assert config.strategy == resolve("", "")[0]
    if sys.platform == "linux" and sys.version_info < (3, 14):
        assert (config.strategy, config.start_method) == ("inherit", "fork")


@pytest.mark.skipif(sys.platform != "linux", reason="Linux defaults")
@pytest.mark.parametrize(
    ("strategy", "start_method", "expected"),
    [
        ("", "spawn", ("pickle", "spawn")),
        ("", "forkserver", ("pickle", "forkserver")),
        ("", "exec", ("inherit", "exec")),
        ("scm-rights", "", ("scm-rights", "exec")),
        ("systemd", "", ("systemd", "exec")),
        ("reuseport", "", ("reuseport", "fork")),
        ("share", "", ("share", "spawn")),
    ],
)
def test_resolution_of_what_was_not_given(strategy: str, start_method: str, expected: object) -> None:
    assert resolve(strategy, start_method) == expected


def test_every_strategy_names_start_methods_it_supports() -> None:
    for name, module in STRATEGIES.items():
        assert module.name == name
        assert module.start_methods, name
        reason = module.supported()
        assert reason is None or (isinstance(reason, str) and reason and "\n" not in reason)


def test_command_line_errors_through_the_real_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "servers", "servers.apps:pid", "--workers", "0"],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == exitcodes.USAGE
    assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1


def test_usage_error_class_is_one_line() -> None:
    with pytest.raises(UsageError):
        parse(["servers.apps:pid", "--workers", "0"])


def test_it_says_where_it_listens_on_stderr() -> None:
    """A person running `python -m servers` sees the address (the harness reads the `bound` event)."""
    from tests._refserver import RefServer  # noqa: PLC0415

    with RefServer(["servers.apps:pid", "--workers", "1", "--port", "0"]) as server:
        bound = server.wait_for("bound")
        server.wait_for("ready")
        text = server.stderr()
    assert f"servers: listening on http://127.0.0.1:{bound['port']} (1 workers, strategy " in text
