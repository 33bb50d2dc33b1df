"""The pytest plugin, through pytester: options, markers, the run_scenario fixture with real servers,
JUnit-friendly failures, records appended per test, and the HTML report written by the controller only."""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from harness.env import venvs as envs
from harness.model.records import read_records
from tests._paths import ROOT

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
    for name in ("server", "python", "workers", "strategy", "results", "report", "timeout", "capsule-dir"):
        assert f"--harness-{name}" in help_text
    for bare in ("  --server ", "  --workers ", "  --python ", "  --results ", "  --strategy "):
        assert bare not in help_text  # never a bare name another plugin may own (pytest-parallel: --workers)
    markers = pytester.runpytest_subprocess("--markers").stdout.str()
    for marker in ("@pytest.mark.worker_count(n)", "@pytest.mark.known_issue(id)"):
        assert marker in markers
    assert "@pytest.mark.slow" not in markers  # no generic marker pushed onto every project
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.worker_count(2)
        @pytest.mark.known_issue("uvicorn#514")
        def test_marked():
            pass
        """
    )
    pytester.runpytest_subprocess("--strict-markers").assert_outcomes(passed=1)


def test_another_plugins_bare_workers_option_does_not_collide(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        def pytest_addoption(parser):
            parser.addoption("--workers", default="")  # what pytest-parallel declares
            parser.addoption("--server", default="")
        """
    )
    pytester.makepyfile("def test_ok():\n    pass\n")
    pytester.runpytest_subprocess("--workers", "2").assert_outcomes(passed=1)


def test_p_no_harness_disables_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:harness", "--help")
    assert "--harness-results" not in result.stdout.str()


def test_ini_keys_and_the_record_hook(pytester: pytest.Pytester) -> None:
    results = pytester.path / "ini" / "r.jsonl"
    pytester.makeini(f"[pytest]\nharness_results = {results}\nharness_timeout = 30\n")
    pytester.makeconftest(
        """
        SEEN = []

        def pytest_harness_record(item, record):
            SEEN.append((item.name, record.failure_class))

        def pytest_sessionfinish(session):
            print("hook saw:", SEEN)
        """
    )
    pytester.makepyfile(
        f"""
        def test_one(run_scenario):
            assert run_scenario(server="reference", workers=1, {LIGHT}).failure_class == "passed"
        """
    )
    result = pytester.runpytest_subprocess("-s")
    result.assert_outcomes(passed=1)
    assert "hook saw: [('test_one', 'passed')]" in result.stdout.str()
    assert [r.failure_class for r in read_records([str(results)])] == ["passed"]  # the ini path


def test_a_bad_ini_timeout_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nharness_timeout = nan\n")
    pytester.makepyfile(
        f"""
        def test_one(run_scenario):
            run_scenario(server="reference", workers=1, {LIGHT})
        """
    )
    result = pytester.runpytest_subprocess()
    assert "harness_timeout: must be a finite number of seconds" in result.stdout.str() + result.stderr.str()


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
        "-n", "2", "-p", "xdist", f"--harness-results={results}", f"--harness-report={report}"
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


def _collect(*args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "scenarios",
         *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn", "gunicorn", "granian"])
def test_harness_server_selects_every_upstream_server(server: str) -> None:
    proc = _collect("--harness-server", server, "-k", "workers")
    ids = [ln for ln in proc.stdout.splitlines() if "::test_workers[" in ln]
    assert proc.returncode == 0 and ids, proc.stdout + proc.stderr
    assert all(f"test_workers[{server}-" in ln for ln in ids), ids


def test_an_unknown_server_is_an_error_not_an_empty_green_run() -> None:
    proc = _collect("--harness-server", "nginx")
    assert proc.returncode != 0 and "unknown server(s) nginx" in proc.stdout + proc.stderr


def test_k_workers_does_not_pull_in_the_catalog() -> None:
    proc = _collect("-k", "workers")
    assert proc.returncode == 0 and "test_known_issue" not in proc.stdout
