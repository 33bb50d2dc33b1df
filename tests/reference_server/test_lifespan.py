"""Lifespan modes (servers._lifespan) and app loading (servers._app)."""

import asyncio
import sys
import textwrap
from typing import Any, Awaitable, Callable, List, TypeVar

import pytest

from servers import apps
from servers._app import AppLoadError, load_app
from servers._lifespan import Lifespan, LifespanFailure

T = TypeVar("T")


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro_fn(), timeout=10.0)

    return asyncio.run(bounded())


class Recording:
    """A lifespan app driven by a script: what to send on startup and on shutdown."""

    def __init__(self, on_startup: str = "lifespan.startup.complete", on_shutdown: str = "") -> None:
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown or "lifespan.shutdown.complete"
        self.calls: List[str] = []
        self.scopes: List[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        while True:
            message = await receive()
            self.calls.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": self.on_startup, "message": "startup says no"})
                if self.on_startup.endswith("failed"):
                    return
            else:
                await send({"type": self.on_shutdown, "message": "shutdown says no"})
                return


def test_supported_app_runs_startup_and_shutdown_and_shares_state() -> None:
    async def go() -> Lifespan:
        lifespan = Lifespan(apps.pid, "auto")
        await lifespan.startup()
        assert lifespan.state[apps.LIFESPAN_STATE_KEY] is True
        await lifespan.shutdown()
        return lifespan

    assert run(go).supported is True


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_scope_and_messages(mode: str) -> None:
    app = Recording()

    async def go() -> None:
        lifespan = Lifespan(app, mode)
        await lifespan.startup()
        await lifespan.shutdown()

    run(go)
    assert app.calls == ["lifespan.startup", "lifespan.shutdown"]
    (scope,) = app.scopes
    assert scope["type"] == "lifespan"
    assert scope["asgi"]["version"] == "3.0"
    assert isinstance(scope["state"], dict)


def test_auto_treats_a_raising_app_as_unsupported() -> None:
    """Regression for https://github.com/encode/uvicorn/issues/514: the seed app asserts http scopes."""

    async def go() -> Lifespan:
        lifespan = Lifespan(apps.seed, "auto")
        await lifespan.startup()
        await lifespan.shutdown()  # never raises for an app without lifespan
        return lifespan

    assert run(go).supported is False


def test_on_makes_a_raising_app_a_failure() -> None:
    async def go() -> None:
        await Lifespan(apps.seed, "on").startup()

    with pytest.raises(LifespanFailure, match="AssertionError"):
        run(go)


def test_app_returning_early() -> None:
    async def returns(scope: Any, receive: Any, send: Any) -> None:
        return None

    async def auto() -> Lifespan:
        lifespan = Lifespan(returns, "auto")
        await lifespan.startup()
        await lifespan.shutdown()
        return lifespan

    assert run(auto).supported is False

    async def on() -> None:
        await Lifespan(returns, "on").startup()

    with pytest.raises(LifespanFailure, match=r"returned before lifespan\.startup\.complete"):
        run(on)


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_startup_failed_raises_with_the_message(mode: str) -> None:
    async def go() -> None:
        await Lifespan(apps.failing_lifespan, mode).startup()

    with pytest.raises(LifespanFailure) as info:
        run(go)
    assert str(info.value) == apps.FAILING_LIFESPAN_MESSAGE


def test_off_never_calls_the_app() -> None:
    app = Recording()

    async def go() -> Lifespan:
        lifespan = Lifespan(app, "off")
        await lifespan.startup()
        await lifespan.shutdown()
        return lifespan

    assert run(go).supported is False
    assert app.scopes == []


def test_shutdown_failed_raises() -> None:
    async def go() -> None:
        lifespan = Lifespan(Recording(on_shutdown="lifespan.shutdown.failed"), "auto")
        await lifespan.startup()
        await lifespan.shutdown()

    with pytest.raises(LifespanFailure, match="shutdown says no"):
        run(go)


def test_app_raising_during_shutdown_raises() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise KeyError("gone")

    async def go() -> None:
        lifespan = Lifespan(app, "auto")
        await lifespan.startup()
        await lifespan.shutdown()

    with pytest.raises(LifespanFailure, match="KeyError"):
        run(go)


def test_startup_and_shutdown_have_deadlines() -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await asyncio.Event().wait()  # never answers

    async def startup() -> None:
        await Lifespan(silent, "auto").startup(timeout=0.05)

    with pytest.raises(LifespanFailure, match="did not complete within"):
        run(startup)

    async def deaf_to_shutdown(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await asyncio.Event().wait()

    async def shutdown() -> None:
        lifespan = Lifespan(deaf_to_shutdown, "auto")
        await lifespan.startup()
        await lifespan.shutdown(timeout=0.05)

    with pytest.raises(LifespanFailure, match="shutdown did not complete within"):
        run(shutdown)


def test_wrong_message_is_an_error_for_the_app() -> None:
    async def confused(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    async def go() -> None:
        await Lifespan(confused, "on").startup()

    with pytest.raises(LifespanFailure, match="unexpected ASGI message"):
        run(go)


def test_bad_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, on, off"):
        Lifespan(apps.pid, "sometimes")


# -- load_app ------------------------------------------------------------------------------------


def test_load_app_finds_plain_and_dotted_attributes(tmp_path: Any, monkeypatch: Any) -> None:
    assert load_app("servers.apps:pid") is apps.pid
    (tmp_path / "nested_app_mod.py").write_text(
        textwrap.dedent(
            """
            class Holder:
                async def app(self, scope, receive, send):
                    pass
            holder = Holder()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_app("nested_app_mod:holder.app")
    assert callable(loaded) and loaded.__name__ == "app"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("servers.apps", "must be MODULE:ATTR"),
        (":pid", "must be MODULE:ATTR"),
        ("servers.apps:", "must be MODULE:ATTR"),
        ("servers.apps:pid..x", "must be MODULE:ATTR"),
        ("no_such_module_xyz:app", "no module named 'no_such_module_xyz'"),
        ("servers.no_such_submodule:app", "no module named 'servers.no_such_submodule'"),
        ("servers.apps:nope", "has no attribute 'nope'"),
        ("servers.apps:pid.nope", "has no attribute 'pid.nope'"),
        ("servers.apps:SEED_BODY", "bytes object is not callable"),
        ("servers.apps_broken:app", "RuntimeError: servers.apps_broken fails at import on purpose"),
    ],
)
def test_load_app_errors_are_one_line(spec: str, message: str) -> None:
    with pytest.raises(AppLoadError) as info:
        load_app(spec)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_load_app_reports_an_import_error_inside_the_module(tmp_path: Any, monkeypatch: Any) -> None:
    (tmp_path / "imports_missing_mod.py").write_text("import missing_dependency_xyz\napp = None\n")
    (tmp_path / "syntax_error_mod.py").write_text("def broken(:\n")
    (tmp_path / "exits_mod.py").write_text("import sys\nsys.exit(7)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AppLoadError, match="SystemExit: 7"):
        load_app("exits_mod:app")
    with pytest.raises(AppLoadError, match="ModuleNotFoundError: No module named 'missing_dependency_xyz'"):
        load_app("imports_missing_mod:app")
    with pytest.raises(AppLoadError, match="SyntaxError"):
        load_app("syntax_error_mod:app")
    for name in ("imports_missing_mod", "syntax_error_mod", "exits_mod"):
        sys.modules.pop(name, None)


def test_load_app_refuses_non_strings() -> None:
    with pytest.raises(AppLoadError, match="must be a string"):
        load_app(42)  # type: ignore[arg-type]
