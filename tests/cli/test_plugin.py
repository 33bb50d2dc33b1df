"""The pytest plugin, through pytester: options, markers, the run_scenario fixture with real servers,
JUnit-friendly failures, records appended per test, and the HTML report written by the controller only."""

import os
import xml.etree.ElementTree as ET

import pytest

from harness.env import venvs as envs
from harness.model.records import read_records

pytest_plugins = ("pytester",)

#: pytester gives each inner session its own HOME; keep using the real env cache (no rebuilds)
_ENV_CACHE_ROOT = os.path.dirname(envs.default_cache_dir())


@pytest.fixture(autouse=True)
def _shared_env_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", os.environ.get("HARNESS_CACHE") or _ENV_CACHE_ROOT)


LIGHT = "requests=20, concurrency=4, keepalive_requests=5"


def test_options_and_markers_are_declared(pytester: pytest.Pytester) -> None:
    help_text = pytester.runpytest_subprocess("--help").stdout.str()
    assert "asgi-workers-harness" in help_text
    for option in ("--server", "--python", "--workers", "--strategy", "--results", "--harness-report"):
        assert option in help_text
    markers = pytester.runpytest_subprocess("--markers").stdout.str()
    for marker in ("@pytest.mark.workers(n)", "@pytest.mark.known_issue(id)", "@pytest.mark.slow"):
        assert marker in markers
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.workers(2)
        @pytest.mark.known_issue("uvicorn#514")
        @pytest.mark.slow
        def test_marked():
            pass
        """
    )
    pytester.runpytest_subprocess("--strict-markers").assert_outcomes(passed=1)


def test_fixture_records_and_report_under_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        f"""
        import pytest
        from harness.plugin import assert_passed

        @pytest.mark.parametrize("workers", [1, 2])
        def test_serves(run_scenario, workers):
            record = run_scenario(server="reference", workers=workers, {LIGHT})
            assert_passed(record)
            assert len(record.worker_pids) == workers
        """
    )
    results = pytester.path / "out" / "r.jsonl"
    report = pytester.path / "out" / "report.html"
    result = pytester.runpytest_subprocess(
        "-n", "2", "-p", "xdist", f"--results={results}", f"--harness-report={report}"
    )
    result.assert_outcomes(passed=2)
    records = list(read_records([str(results)]))
    assert sorted(r.scenario["workers"] for r in records) == [1, 2]
    assert all(r.failure_class == "passed" for r in records)
    homes = {r.env["HOME"] for r in records}
    assert len(homes) == 2  # each run its own HOME, under its own test's tmp_path
    result.stdout.fnmatch_lines(["*2 scenario record(s): 2 passed*", f"*harness report: {report}*"])
    assert "<html" in report.read_text(encoding="utf-8").lower()


def test_failure_message_is_junit_friendly(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        f"""
        from harness.plugin import assert_passed

        def test_lifespan(run_scenario):
            assert_passed(run_scenario(server="reference", workers=2, app="servers.apps:failing_lifespan",
                                       {LIGHT}))
        """
    )
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(f"--junitxml={junit}")
    result.assert_outcomes(failed=1)
    failure = ET.parse(str(junit)).getroot().find(".//failure")
    assert failure is not None
    assert "startup-failure" in failure.get("message", "")
    text = failure.text or ""
    for needle in (
        "reason:",
        "scenario: reference-w2-servers.apps:failing_lifespan",
        "command:",
        "stderr tail:",
    ):
        assert needle in text
    assert "def test_lifespan" not in text  # pytrace=False: the message is the evidence, not our test's code


def test_no_report_option_means_no_report_and_no_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert "scenario record(s)" not in result.stdout.str()
    assert not [p for p in os.listdir(str(pytester.path)) if p.endswith(".html")]
