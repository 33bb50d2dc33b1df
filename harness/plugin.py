"""pytest plugin of the harness (registered by the `pytest11` entry point "harness").

Built like pytest-xdist / pytest-html:

* options in the "asgi-workers-harness" group, every one prefixed so it never collides with another
  plugin's (a bare --workers crashed every session beside pytest-parallel): --harness-server,
  --harness-python, --harness-workers, --harness-strategy (select what the scenario suite runs),
  --harness-results FILE.jsonl (every record appended, one line each), --harness-report FILE.html,
  --harness-timeout SECONDS, --harness-capsule-dir DIR; ini keys harness_results, harness_timeout,
  harness_capsule_dir give the defaults a project keeps in its pytest config
* markers declared in pytest_configure (so --strict-markers accepts them): worker_count(n) (not
  `workers`: -k matches substrings of marker names, and -k workers would pull in every catalog case),
  known_issue(id),
  fixed_port(*ports) - the plugin's own; no generic marker is added to every project
* the hook pytest_harness_record(item, record): called with every record a test's run_scenario produced
  (harness.plugin_hooks), for a conftest or plugin that wants the records as they come
* disable it with `-p no:harness` (the pytest11 entry point's name)
* the `run_scenario` fixture: `run_scenario(Scenario(...))` or `run_scenario(server=..., workers=...)` ->
  ResultRecord. Each call gets a fresh run directory under the test's own tmp_path (xdist-safe).
* `assert_passed(record)` - fails the test with a JUnit-friendly message (class, signature, reason,
  stderr tail) unless the record passed
* with pytest-html installed (and enabled), every test that ran scenarios gets each record as an extra
  (JSON) plus its verdict line, attached to the test's report in pytest_runtest_makereport
* the HTML report is written only on the controller (`not hasattr(config, "workerinput")`) at session
  end, from the records appended during this session; its path is printed in the terminal summary

Data flows one way: workers append records to the results file (O_APPEND, one write per line); the
controller only reads that file after the last test. When --harness-report is given without --results,
the controller picks a session file and hands its path to xdist workers through `workerinput`.
"""

import contextlib
import dataclasses
import json
import os
import tempfile
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

from harness.model.records import ResultRecord, Scenario
from harness.run import BASE_TIMEOUT_S

_RESULTS_KEY = "asgi_workers_harness_results"
#: the records a test's run_scenario calls produced, for the pytest-html extras
_RECORDS = pytest.StashKey[List[ResultRecord]]()


def _timeout(text: str) -> float:
    from harness.run import check_timeout  # noqa: PLC0415 - harness.run's __init__ is free to import

    return check_timeout(text)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from harness import plugin_hooks  # noqa: PLC0415

    pluginmanager.add_hookspecs(plugin_hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("asgi-workers-harness", "asgi-workers-harness (multi-worker socket sharing)")
    parser.addini("harness_results", "append every scenario's record to this JSONL file", default="")
    parser.addini("harness_timeout", "base timeout (seconds) scenario deadlines are scaled from", default="")
    parser.addini("harness_capsule_dir", "reproduction capsules of non-passing scenarios go here", default="")
    group.addoption(
        "--harness-server",
        action="append",
        default=[],
        dest="harness_servers",
        metavar="NAME",
        help="run scenarios of this server only (repeatable): reference, uvicorn, ...",
    )
    group.addoption(
        "--harness-python",
        default="",
        dest="harness_python",
        metavar="SPEC",
        help='interpreter the servers run under: "3.10", a path (default: this one)',
    )
    group.addoption(
        "--harness-workers",
        default="",
        dest="harness_workers",
        metavar="LIST",
        help="worker counts to run, comma-separated (default: the suite's own, e.g. 1,2,4)",
    )
    group.addoption(
        "--harness-strategy",
        action="append",
        default=[],
        dest="harness_strategies",
        metavar="NAME",
        help="reference server strategies to run (repeatable; default: every one available)",
    )
    group.addoption(
        "--harness-results",
        default="",
        dest="harness_results",
        metavar="FILE.jsonl",
        help="append every scenario's record to this JSONL file",
    )
    group.addoption(
        "--harness-report",
        default="",
        dest="harness_report",
        metavar="PATH",
        help="write the HTML report of this session's records here (controller only)",
    )
    group.addoption(
        "--harness-timeout",
        type=_timeout,
        default=None,
        dest="harness_timeout",
        metavar="SECONDS",
        help="the base timeout every scenario deadline is scaled from",
    )
    group.addoption(
        "--harness-capsule-dir",
        default="",
        dest="harness_capsule_dir",
        metavar="DIR",
        help="write reproduction capsules of non-passing scenarios here",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "worker_count(n): the scenario runs the server with n worker processes"
    )
    config.addinivalue_line(
        "markers", "known_issue(id): the test reproduces a catalogued upstream issue (harness.catalog)"
    )
    config.addinivalue_line(
        "markers", "fixed_port(*ports): the test can bind these fixed TCP ports; it holds a lock on each"
    )
    if not hasattr(config, "workerinput"):
        reporter = HarnessReporter(config)
        config.pluginmanager.register(reporter, "asgi-workers-harness-reporter")


@pytest.fixture(autouse=True)
def _fixed_port_locks(request: pytest.FixtureRequest) -> Iterator[None]:
    """`@pytest.mark.fixed_port(8000)`: a test that can make a server bind a fixed TCP port (uvicorn <=0.14
    binds 127.0.0.1:8000 whatever it is told in some modes) holds the machine-wide lock on it while it runs
    (harness._platform.locks.port_lock), so parallel tests take turns, with or without xdist."""
    ports = sorted({int(p) for mark in request.node.iter_markers("fixed_port") for p in mark.args})
    if not ports:
        yield
        return
    from harness._platform.locks import port_lock  # noqa: PLC0415 - the OS layer only for such tests

    with contextlib.ExitStack() as stack:
        for port in ports:  # always in the same order: two tests never wait for each other's second lock
            stack.enter_context(port_lock(port))
        yield


def setting(config: pytest.Config, name: str) -> str:
    """The --harness-X option when given, else the harness_X ini key of the project's pytest config."""
    value = config.getoption(name)
    if value in (None, ""):
        try:
            value = config.getini(name)
        except ValueError:  # not an ini key
            value = ""
    return str(value or "")


def base_timeout(config: pytest.Config) -> float:
    text = setting(config, "harness_timeout")
    if not text:
        return BASE_TIMEOUT_S
    try:
        return _timeout(text)
    except ValueError as exc:
        raise pytest.UsageError(f"harness_timeout: {exc}") from None


def results_path(config: pytest.Config) -> str:
    """Where records of this session go ("" = nowhere): --results, or the controller's session file."""
    workerinput: Optional[Dict[str, Any]] = getattr(config, "workerinput", None)
    if workerinput is not None:
        return str(workerinput.get(_RESULTS_KEY, "") or "")
    reporter = config.pluginmanager.get_plugin("asgi-workers-harness-reporter")
    if isinstance(reporter, HarnessReporter):
        return reporter.results
    return setting(config, "harness_results")


class HarnessReporter:
    """Controller-only: remembers where this session's records start, writes the HTML report at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.report_path = str(config.getoption("harness_report") or "")
        self.results = setting(config, "harness_results")
        self._own_results = ""
        if self.report_path and not self.results:
            fd, self._own_results = tempfile.mkstemp(prefix="awh-session-", suffix=".jsonl")
            os.close(fd)
            self.results = self._own_results
        self.offset = os.path.getsize(self.results) if self.results and os.path.exists(self.results) else 0
        self.records: List[ResultRecord] = []
        self.written = ""
        self.error = ""

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist: hand every worker the results path (one file, O_APPEND lines)."""
        node.workerinput[_RESULTS_KEY] = self.results

    def _session_records(self) -> List[ResultRecord]:
        if not self.results or not os.path.exists(self.results):
            return []
        out: List[ResultRecord] = []
        with open(self.results, "rb") as fh:
            fh.seek(self.offset)
            for raw in fh.read().decode("utf-8", "replace").splitlines():
                try:
                    data = json.loads(raw)
                except ValueError:
                    continue  # a torn line from a killed worker
                if isinstance(data, dict) and "failure_class" in data:
                    out.append(ResultRecord.from_dict(data))
        return out

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.records = self._session_records()
        if self.report_path:
            try:
                from harness import catalog  # noqa: PLC0415
                from reports import write_report  # noqa: PLC0415 - Jinja2 only when a report is asked for

                self.written = str(
                    write_report(self.records, self.report_path, cards=catalog.cards(), pages=catalog.pages())
                )
            except Exception as exc:  # the report must not turn a green session red silently: say it
                self.error = f"{type(exc).__name__}: {exc}"
        if self._own_results:
            os.unlink(self._own_results)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.records and not self.report_path:
            return
        counts: Dict[str, int] = {}
        for r in self.records:
            counts[r.failure_class] = counts.get(r.failure_class, 0) + 1
        terminalreporter.write_sep("-", "asgi-workers-harness")
        text = ", ".join(f"{n} {c}" for c, n in sorted(counts.items())) or "no scenario records"
        terminalreporter.write_line(f"{len(self.records)} scenario record(s): {text}")
        if self.results and not self._own_results:
            terminalreporter.write_line(f"results: {os.path.abspath(self.results)}")
        if self.written:
            terminalreporter.write_line(f"harness report: {self.written}")
        elif self.error:
            terminalreporter.write_line(f"harness report NOT written: {self.error}", red=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    """pytest-html, when installed and enabled: each record of the test as an extra (JSON + verdict)."""
    outcome = yield
    records = item.stash.get(_RECORDS, [])
    if not records or call.when != "call" or not item.config.pluginmanager.hasplugin("html"):
        return
    try:
        from pytest_html import extras as html_extras  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415
    except ImportError:
        return
    report = outcome.get_result()
    extras = list(getattr(report, "extras", None) or [])
    for record in records:
        extras.append(html_extras.text(record.verdict, name=f"harness verdict: {record.scenario_id}"))
        extras.append(html_extras.json(record.to_dict(), name=f"harness record: {record.scenario_id}"))
    report.extras = extras


def failure_message(record: ResultRecord, tail_lines: int = 25) -> str:
    """One JUnit-friendly message: class, signature, reason, where, then the stderr tail."""
    lines = [
        f"{record.failure_class}: {record.signature}".rstrip(": ").rstrip(),
        f"reason: {record.reason}",
        f"scenario: {record.scenario_id}",
    ]
    if record.exit_code is not None:
        lines.append(f"exit code: {record.exit_code} {record.exit_name}".rstrip())
    if record.command:
        lines.append("command: " + " ".join(record.command))
    if record.capsule:
        lines.append(f"capsule: {record.capsule}")
    tail = [ln for ln in (record.stderr_tail or "").splitlines() if ln.strip()][-tail_lines:]
    if tail:
        lines.append("stderr tail:")
        lines.extend("  " + ln for ln in tail)
    return "\n".join(lines)


def assert_passed(record: ResultRecord) -> None:
    """Fail the current test (no Python traceback: the message is the evidence) unless it passed."""
    if record.failure_class != "passed":
        pytest.fail(failure_message(record), pytrace=False)


def assert_served(record: ResultRecord) -> None:
    """Fail the current test unless every worker served: passed, or degraded - only when the record's own
    evidence is the delayed-ACK stall signature (harness.verdict.degraded), never another class."""
    from harness.verdict.degraded import STALL_SIGNATURE  # noqa: PLC0415 - pure and small

    if record.failure_class == "degraded" and record.signature == STALL_SIGNATURE:
        return
    assert_passed(record)


@pytest.fixture
def run_scenario(request: pytest.FixtureRequest, tmp_path: Any) -> Callable[..., ResultRecord]:
    """Run one scenario: `run_scenario(Scenario(...), **overrides)` or `run_scenario(workers=4, ...)`.

    --harness-python applies when the scenario names none. Records go to --harness-results (or the
    session file), and to the pytest_harness_record hook."""
    config = request.config
    counter = [0]

    def run(
        scenario: Optional[Scenario] = None, *, catalog: Optional[Dict[str, str]] = None, **fields: Any
    ) -> ResultRecord:
        sc = scenario if scenario is not None else Scenario()
        if fields:
            sc = dataclasses.replace(sc, **fields)
        python = str(config.getoption("harness_python") or "")
        if python and not sc.python:
            sc = dataclasses.replace(sc, python=python)
        counter[0] += 1
        work = os.path.join(str(tmp_path), f"run{counter[0]}")
        from harness.run.runner import run_scenario as _run  # noqa: PLC0415 - the runner only when used

        record = _run(
            sc,
            results=results_path(config) or None,
            work_dir=work,
            capsule_dir=setting(config, "harness_capsule_dir") or None,
            base_timeout=base_timeout(config),
            catalog=catalog,
        )
        request.node.stash.setdefault(_RECORDS, []).append(record)
        request.node.ihook.pytest_harness_record(item=request.node, record=record)
        request.node.user_properties.append(("harness_scenario", sc.scenario_id))
        request.node.user_properties.append(("harness_verdict", record.verdict))
        return record

    return run


__all__ = [
    "HarnessReporter",
    "assert_passed",
    "assert_served",
    "failure_message",
    "results_path",
    "run_scenario",
]
