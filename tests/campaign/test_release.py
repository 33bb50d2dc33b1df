"""harness.campaign.release and harness.cli.release_cmd: which scenarios a release check runs, the default
previous version, and the exit status (the runs themselves are harness.campaign.matrix's, exercised for
real in test_harness_cli)."""

import dataclasses
import io
import json
import sys
from typing import Any, List, Sequence

import pytest

from harness.campaign import release
from harness.catalog import entries, parse_entry
from harness.cli import release_cmd
from harness.env.index import Project, Release
from harness.model.errors import UsageError
from harness.model.records import ResultRecord, Scenario
from tests.reports.test_reports import rec


def test_previous_version_is_the_newest_older_final_release() -> None:
    versions = ["0.9.0", "0.10.0", "0.53.0", "0.54.0rc1", "0.54.0", "0.55.0", "not-a-version"]
    assert release.previous_version("0.55.0", versions) == "0.54.0"
    assert release.previous_version("0.54.0", versions) == "0.53.0"
    assert release.previous_version("0.56.0", versions) == "0.55.0"  # unreleased version: newest older
    with pytest.raises(UsageError, match=r"no release older than 0\.9\.0"):
        release.previous_version("0.9.0", versions)


def test_pinned_replaces_the_distribution_and_keeps_extras() -> None:
    assert release._pinned(["uvicorn[standard]==0.30.0", "httptools"], "uvicorn", "0.54.0") == (
        "uvicorn[standard]==0.54.0",
        "httptools",
    )
    assert release._pinned(["gunicorn==27.0.1", "Uvicorn_Worker==0.4.0"], "uvicorn-worker", "0.5.0") == (
        "gunicorn==27.0.1",
        "Uvicorn_Worker==0.5.0",
    )
    assert release._pinned([], "uvicorn", "1.0") == ("uvicorn==1.0",)


def test_release_scenarios_are_the_matrix_and_the_servers_catalog_at_that_version() -> None:
    pairs = release.release_scenarios("uvicorn", "0.54.0", workers=(1, 2, 4))
    matrix = [s for s, tag in pairs if not tag]
    assert [(s.server, s.workers, s.requirements) for s in matrix] == [
        ("uvicorn", n, ("uvicorn==0.54.0",)) for n in (1, 2, 4)
    ]
    issues = {tag["id"]: s for s, tag in pairs if tag}
    # every catalog entry that concerns uvicorn and runs here, each at the new version
    expected = {
        e.id
        for e in entries()
        if not e.skip and not e.platform_skip(sys.platform) and release.concerns(e, "uvicorn", "uvicorn")
    }
    # entries that come down to the same scenario run once
    unique = {
        dataclasses.replace(s, options=()).scenario_id
        for e in entries()
        if e.id in expected
        for s, _ in e.scenarios()[:1]
    }
    assert set(issues) <= expected and len(issues) <= len(unique)
    assert issues, "the catalog has uvicorn entries; none was picked"
    for sc in issues.values():
        assert any(r.startswith("uvicorn==0.54.0") for r in sc.requirements), sc.requirements
        assert not any(r.startswith("uvicorn==") and r != "uvicorn==0.54.0" for r in sc.requirements)
    assert not any(s.server == "hypercorn" for s, _ in pairs)
    assert all(tag["role"] in ("affected", "fixed", "unaffected") for _, tag in pairs if tag)
    # a gunicorn entry that pins uvicorn concerns a uvicorn release
    if "uvicorn-worker-35" in issues:
        assert issues["uvicorn-worker-35"].server == "gunicorn"
        assert "uvicorn-worker==0.4.0" in issues["uvicorn-worker-35"].requirements  # the fixed case


def _entry(**extra: Any) -> Any:
    data = {
        "id": "x-1",
        "title": "t",
        "links": ["https://example.invalid/1"],
        "python": ">=3.12",
        "scenario": {"server": "uvicorn", "workers": 2},
        "expect": {"failure_class": "startup-failure"},
        "affected": [{"requirements": ["uvicorn==0.1.0"]}],
        **extra,
    }
    return parse_entry(data, "x-1.toml")


def test_catalog_scenarios_respect_skip_platform_and_python_range() -> None:
    entry = _entry()
    sc = release.catalog_scenarios("uvicorn", "0.54.0", pythons=("3.11", "3.12"), entries=[entry])
    assert [(s.python, s.requirements, tag) for s, tag in sc] == [
        ("3.12", ("uvicorn==0.54.0",), {"id": "x-1", "role": "affected"})
    ]
    assert release.catalog_scenarios("uvicorn", "0.54.0", entries=[_entry(skip="needs a fault")]) == []
    windows_only = _entry(platforms=["win32"])
    assert release.catalog_scenarios("uvicorn", "1", entries=[windows_only], sys_platform="linux") == []
    assert release.catalog_scenarios("hypercorn", "1", entries=[entry]) == []


def _fake_runs(monkeypatch: pytest.MonkeyPatch, broken_at: str) -> List[Sequence[Scenario]]:
    """run_matrix replaced: each scenario 'runs' as a passed record, except at `broken_at`."""
    calls: List[Sequence[Scenario]] = []

    def run_matrix(scenarios: Sequence[Scenario], **kwargs: Any) -> List[ResultRecord]:
        calls.append(scenarios)
        out = []
        for sc in scenarios:
            version = next(r.split("==")[1] for r in sc.requirements if r.startswith("uvicorn=="))
            r = rec("uvicorn", version, "3.11", "linux", workers=sc.workers)
            r = dataclasses.replace(r, scenario=sc.to_dict())
            if version == broken_at and sc.workers == 2:
                r = dataclasses.replace(r, failure_class="startup-failure", signature="OSError: boom")
                # the matrix re-runs a failing cell `confirm` times: the same verdict each time
                out.extend(dataclasses.replace(r, run_id=f"c{i}") for i in range(kwargs["confirm"]))
            out.append(r)
        return out

    monkeypatch.setattr(release, "run_matrix", run_matrix)
    monkeypatch.setattr(release, "fetch_release_project", _project)
    return calls


def _project(name: str, versions: Sequence[str] = ("0.53.0", "0.54.0", "0.55.0"), **special: str) -> Project:
    """What the index lists: each version with one wheel; special = {version: "yanked" | "no-files"}."""
    releases = {}
    for v in (*versions, *special):
        kind = special.get(v, "")
        wheel = (f"{name}-{v}-py3-none-any.whl", "broken" if kind else None, "")
        files = () if kind == "no-files" else (wheel,)
        releases[v] = Release(v, files)
    return Project(name, "https://pypi.org/simple/", releases)


def test_run_release_exit_status_and_default_previous(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    calls = _fake_runs(monkeypatch, broken_at="0.55.0")
    out = io.StringIO()
    page = tmp_path / "release.html"
    code = release_cmd.release(
        "uvicorn",
        "0.55.0",
        workers=(1, 2),
        with_catalog=False,
        with_downstream=False,
        results_dir=str(tmp_path),
        output=str(page),
        out=out,
    )
    assert code == release_cmd.EXIT_NEWLY_BROKEN
    # both sides in one pool, each cell's two sides next to each other (run on the same machine load)
    assert [[r for s in c for r in s.requirements] for c in calls] == [
        ["uvicorn==0.54.0", "uvicorn==0.55.0", "uvicorn==0.54.0", "uvicorn==0.55.0"],
    ]
    text = out.getvalue()
    assert "previous uvicorn release: 0.54.0" in text and "1 regressed" in text
    assert "OSError: boom" in page.read_text(encoding="utf-8")

    _fake_runs(monkeypatch, broken_at="0.54.0")  # broken before, fixed now
    code = release_cmd.release(
        "uvicorn", "0.55.0", "0.54.0", workers=(1, 2), with_catalog=False, with_downstream=False,
        results_dir=str(tmp_path),
        output=str(page), out=io.StringIO(),
    )  # fmt: skip
    heading = 'Fixed (failed at 0.54.0, confirmed; passes at 0.55.0) <span class="count">1</span>'
    assert code == 0 and heading in page.read_text(encoding="utf-8")

    # --confirm 0: the failure is seen once, never confirmed: spurious-regressed (crater's name), exit 0
    _fake_runs(monkeypatch, broken_at="0.55.0")
    out = io.StringIO()
    code = release_cmd.release(
        "uvicorn", "0.55.0", "0.54.0", workers=(1, 2), with_catalog=False, with_downstream=False,
        results_dir=str(tmp_path),
        output=str(page), out=out, confirm=0,
    )  # fmt: skip
    assert code == 0 and "0 regressed, 1 spurious-regressed" in out.getvalue()
    heading = 'Spurious regressions (failed once at 0.55.0, or its runs disagree) <span class="count">'
    assert heading in page.read_text(encoding="utf-8")


def test_run_release_refuses_servers_without_releases(tmp_path: Any) -> None:
    with pytest.raises(UsageError, match="no released versions"):
        release_cmd.release("reference", "1.0", "0.9", output=str(tmp_path / "x.html"), out=io.StringIO())


def test_cli_release_usage_errors(tmp_path: Any, capsys: Any) -> None:
    from harness.cli.main import main  # noqa: PLC0415

    out = str(tmp_path / "r.html")
    assert main(["release", "reference", "1.0", "--previous", "0.9", "-o", out]) == 2
    assert "no released versions" in capsys.readouterr().err
    assert main(["release", "uvicorn", "0.54.0", "--previous", "0.53.0", "--workers", "two", "-o", out]) == 2
    assert main(["release", "uvicorn", "0.54.0", "--previous", "0.54.0", "-o", out, "--no-catalog"]) == 2


@pytest.mark.slow
def test_cli_release_for_real(tmp_path: Any, capsys: Any) -> None:
    """Two real uvicorn releases, one worker count, no catalog: the page and both JSONL files exist, the
    records carry per-worker keep-alive latency, and nothing newly broke (exit 0)."""
    from harness.cli.main import main  # noqa: PLC0415
    from harness.model.records import read_records  # noqa: PLC0415

    page = tmp_path / "release.html"
    argv = ["release", "uvicorn", "0.54.0", "--previous", "0.53.0", "--workers", "1", "--no-catalog"]
    argv.append("--no-downstream")
    code = main([*argv, "--results-dir", str(tmp_path), "-o", str(page)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "uvicorn 0.53.0 -> 0.54.0: 0 regressed" in text and "0 fixed" in text
    html = page.read_text(encoding="utf-8")
    assert "uvicorn 0.54.0" in html and 'id="performance"' in html
    for version in ("0.53.0", "0.54.0"):
        (record,) = read_records([str(tmp_path / f"uvicorn-{version}.jsonl")])
        assert record.server_version == version and record.failure_class == "passed"
        by_worker = record.load["keepalive"]["by_worker"]
        assert by_worker and set(by_worker) == set(record.load["keepalive"]["per_worker"])
        assert all(v["p50"] > 0 and v["p99"] >= v["p50"] for v in by_worker.values())


@pytest.mark.parametrize("version", ["../../x", "../x", "0.54.0/../..", "latest", " "])
def test_a_version_that_is_not_pep440_runs_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: Any, version: str
) -> None:
    from harness.cli.main import main  # noqa: PLC0415

    calls = _fake_runs(monkeypatch, broken_at="")
    out = tmp_path / "sub" / "r.html"
    results = tmp_path / "res"
    for argv in (
        ["release", "uvicorn", version, "--previous", "0.53.0"],
        ["release", "uvicorn", "0.54.0", "--previous", version],
    ):
        code = main([*argv, "-o", str(out), "--results-dir", str(results), "--no-catalog"])
        err = capsys.readouterr().err
        assert code == 2 and "is not a version" in err and len(err.strip().splitlines()) == 1, err
    assert calls == []  # nothing ran
    assert not list(tmp_path.rglob("uvicorn-*"))  # and no file or folder named after the version


def test_release_file_names_never_escape_the_results_dir() -> None:
    assert release._file_part("../x") == "_._x" and release._file_part(".hidden") == "_hidden"
    assert release._file_part("0.55.0rc1") == "0.55.0rc1"


def test_release_json_is_the_diff(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    _fake_runs(monkeypatch, broken_at="0.55.0")
    out = io.StringIO()
    code = release_cmd.release(
        "uvicorn", "0.55.0", "0.54.0", workers=(1, 2), with_catalog=False, with_downstream=False,
        results_dir=str(tmp_path),
        output=str(tmp_path / "r.html"), out=out, as_json=True,
    )  # fmt: skip
    data = json.loads(out.getvalue())
    assert code == release_cmd.EXIT_NEWLY_BROKEN
    assert (data["version"], data["previous"]) == ("0.55.0", "0.54.0")
    (cell,) = data["outcomes"]["regressed"]
    assert data["counts"]["regressed"] == 1 and cell["outcome"] == "regressed"
    assert cell["current"]["state"] == "broken" and cell["previous"]["state"] == "ok"


def test_a_distribution_nothing_runs_with_is_refused_before_the_index_is_asked(tmp_path: Any) -> None:
    asked: List[str] = []

    def lookup(name: str) -> Project:
        asked.append(name)
        return _project(name)

    with pytest.raises(UsageError, match="nothing runs with no-such-dist here"):
        release.run_release("no-such-dist", "1.0", "0.9", results_dir=str(tmp_path), lookup=lookup)
    assert asked == [] and not list(tmp_path.iterdir())


def test_paired_puts_both_sides_of_a_cell_together_and_the_costliest_first() -> None:
    def sc(version: str, fault: str = "", workers: int = 2) -> Scenario:
        return Scenario(server="uvicorn", requirements=(f"uvicorn=={version}",), workers=workers, fault=fault)

    cells = [("", 1), ("kill-worker", 2), ("stop-worker", 2), ("port-in-use", 2)]
    before = [sc("1.0", fault, w) for fault, w in cells]
    after = [sc("1.1", fault, w) for fault, w in cells]
    order = [(s.requirements[0].split("==")[1], s.fault, s.workers) for s in release.paired(before, after)]
    assert order == [
        ("1.0", "stop-worker", 2), ("1.1", "stop-worker", 2),  # waits out a heartbeat timeout
        ("1.0", "kill-worker", 2), ("1.1", "kill-worker", 2),  # a runtime fault
        ("1.0", "", 1), ("1.1", "", 1),  # plain cells and launch faults keep their order
        ("1.0", "port-in-use", 2), ("1.1", "port-in-use", 2),
    ]  # fmt: skip
    # a side with a cell more (a catalog entry only one version has) keeps it, after its pairs
    assert [s.requirements[0] for s in release.paired(before[:1], [after[0], after[3]])] == [
        "uvicorn==1.0", "uvicorn==1.1", "uvicorn==1.1",
    ]  # fmt: skip
