"""harness.campaign.sweep and `harness catalog sweep` / `catalog pages`.

The pure parts (which releases, the outcome of a run, the boundaries) are unit tests. The sweep itself runs
for real: a loopback package index (tests._pkgindex) serves the real wheels of `awh-testserver`
(tests.servers.release_dist: 1.0 good, 1.1 breaks `--workers 2` with EBADF, 1.2 fixed, 1.3 yanked, 2.0rc1 a
pre-release), a catalog entry in a temp dir names 1.1 affected and 1.2 fixed, and the CLI sweeps, caches,
and writes the entry's page.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from harness.campaign import sweep
from harness.catalog import parse_entry
from harness.model.records import ResultRecord, read_records
from tests._paths import ROOT
from tests.servers import release_dist as rd

#: the test server's registered name (tests/servers/__init__.py: ADAPTER_SPECS)
SERVER = "tests.servers.release_dist:ADAPTER"
ENTRY = {
    "id": "awh-testserver-ebadf",
    "title": "awh-testserver 1.1 -w 2: later workers inherit a closed socket (EBADF)",
    "links": ["https://example.invalid/awh-testserver/1"],
    "platforms": ["linux", "darwin"],
    "symptom": "only the first worker serves; the others die with EBADF",
    "mechanism": "1.1 closes the listening socket after the first fork",
    "sweep": rd.DIST,
    "scenario": {"server": SERVER, "workers": 2},
    "expect": {"failure_class": "partial-workers", "signature": "EBADF"},
    "affected": [{"requirements": [f"{rd.DIST}==1.1"]}],
    "fixed": {"requirements": [f"{rd.DIST}==1.2"]},
}


def _record(failure_class: str, signature: str = "", exit_code: Any = None) -> ResultRecord:
    return ResultRecord(scenario={}, failure_class=failure_class, signature=signature, exit_code=exit_code)


def test_outcome_of_a_run_is_the_entrys_expectation() -> None:
    entry = parse_entry(ENTRY, "awh-testserver-ebadf.toml")
    assert (
        sweep.outcome_of(entry, _record("partial-workers", "OSError: [EBADF] Bad file descriptor"))
        == "reproduced"
    )
    assert sweep.outcome_of(entry, _record("partial-workers", "OSError: [EINVAL]")) == "other"
    assert sweep.outcome_of(entry, _record("startup-failure", "EBADF")) == "other"
    assert sweep.outcome_of(entry, _record("passed")) == "passed"
    assert sweep.outcome_of(entry, _record("degraded")) == "passed"
    assert sweep.outcome_of(entry, _record("env-error", "Failed to build")) == "inconclusive"


def test_known_points_and_range() -> None:
    versions = [
        "0.9.1",
        "0.10.0",
        "0.10.9",
        "0.11.0",
        "0.12.0",
        "0.12.3",
        "0.13.0",
        "0.14.0",
        "0.15.0",
        "1.0.0",
    ]
    assert sweep.in_range(versions, "0.12.0") == ["0.12.0", "0.12.3", "0.13.0", "0.14.0", "0.15.0", "1.0.0"]
    assert sweep.in_range(versions, "") == versions
    # first, last, the entry's own, the newest of every minor series
    assert sweep.known_points(versions, ["0.14.0", "0.15.0", "9.9"]) == [
        "0.9.1", "0.10.9", "0.11.0", "0.12.3", "0.13.0", "0.14.0", "0.15.0", "1.0.0",
    ]  # fmt: skip
    entry = parse_entry(ENTRY, "awh-testserver-ebadf.toml")
    assert sweep.known_versions(entry) == ["1.1", "1.2"]
    assert sweep.swept_distribution(entry) == rd.DIST
    sc = sweep.scenario_at(entry, "1.0", "3.11")
    assert sc.requirements == (f"{rd.DIST}==1.0",) and sc.python == "3.11" and sc.workers == 2


def test_measured_boundaries() -> None:
    order = ["1.0", "1.1", "1.2", "1.3", "1.4"]
    seen = {"1.0": "passed", "1.1": "reproduced", "1.2": "reproduced", "1.3": "inconclusive", "1.4": "passed"}
    assert sweep.measured_boundaries(seen, order) == ("1.1", "1.4")
    assert sweep.measured_boundaries({"1.0": "passed"}, order) == ("", "")
    assert sweep.measured_boundaries({"1.0": "reproduced", "1.1": "other"}, order) == ("1.0", "")


def test_beyond_max_every_known_points_then_bisection(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """More than 60 releases: the known points run first, then a bisection pins the change to two
    neighbours; the releases between the unmeasurable oldest points and the first measured one are run.
    run_matrix is replaced by an oracle (the test is about which releases are asked for, not running them)."""
    versions = [f"0.{minor}.{patch}" for minor in range(10) for patch in range(8)]  # 80 releases
    broken = set(versions[: versions.index("0.6.3")])  # broken up to 0.6.2, fixed in 0.6.3
    asked = []

    def run_matrix(scenarios: Any, **kwargs: Any) -> Any:
        out = []
        for sc in scenarios:
            v = sc.requirements[0].split("==")[1]
            asked.append(v)
            if v.startswith("0.0."):  # the oldest releases do not build here
                rec = _record("env-error", "Failed to build")
            elif v in broken:
                rec = _record("partial-workers", "OSError: [EBADF] Bad file descriptor")
            else:
                rec = _record("passed")
            out.append(dataclasses.replace(rec, scenario=sc.to_dict()))
        return out

    monkeypatch.setattr(sweep, "run_matrix", run_matrix)
    entry = parse_entry({**ENTRY, "affected": [{"requirements": [f"{rd.DIST}==0.3.0"]}], "fixed": {
        "requirements": [f"{rd.DIST}==0.9.0"]}}, "x")  # fmt: skip
    result = sweep.run_sweep(entry, versions, python="", results=str(tmp_path / "r.jsonl"))
    assert not result.full
    assert sweep.measured_boundaries(result.outcomes, versions) == ("0.1.0", "0.6.3")
    assert result.outcomes["0.6.2"] == "reproduced" and result.outcomes["0.6.3"] == "passed"
    assert len(asked) == len(set(asked)) < 30  # each release once; far fewer than 80
    # beside the unmeasurable oldest points (0.0.0, 0.0.7), the releases up to the first measured one
    assert {f"0.1.{p}" for p in range(8)} <= set(asked) and "0.0.3" not in asked


def _harness(index: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_INDEX_URL", "PIP_CONFIG_FILE")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=index)
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.timeout(600)
@pytest.mark.skipif(os.name != "posix", reason="awh-testserver forks its workers (POSIX only)")
def test_sweep_for_real_then_cached_then_the_page(index: str, tmp_path: Any) -> None:
    catalog_dir = tmp_path / "catalog"
    catalog_dir.mkdir()
    lines = [f"{k} = {json.dumps(v)}" for k, v in ENTRY.items() if not isinstance(v, dict) or k == "fixed"]
    toml = "\n".join(line for line in lines if not line.startswith(("fixed", "affected"))) + "\n"
    toml += f'[scenario]\nserver = "{SERVER}"\nworkers = 2\n'
    toml += '[expect]\nfailure_class = "partial-workers"\nsignature = "EBADF"\n'
    toml += f'[[affected]]\nrequirements = ["{rd.DIST}==1.1"]\n[fixed]\nrequirements = ["{rd.DIST}==1.2"]\n'
    (catalog_dir / "awh-testserver-ebadf.toml").write_text(toml)
    results = tmp_path / "sweep.jsonl"
    args = ("catalog", "sweep", "awh-testserver-ebadf", "--dir", str(catalog_dir), "--results", str(results),
            "--work-dir", str(tmp_path / "runs"), "-n", "2")  # fmt: skip

    proc = _harness(index, *args)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    # every final release that is not yanked, no pre-release: 1.0 passes, 1.1 reproduces, 1.2 is fixed
    assert f"{rd.DIST} 1.0 .. 1.2 (3 releases, every one)" in proc.stdout, proc.stdout
    summary = (
        r"3 releases measured \(2 passed, 1 reproduced\); first reproducing 1\.1, first fixed after it 1\.2"
    )
    assert re.search(summary, proc.stdout), proc.stdout
    records = list(read_records([str(results)]))
    assert sorted(r.server_version for r in records) == ["1.0", "1.1", "1.2"]
    assert {r.catalog["id"] for r in records} == {"awh-testserver-ebadf"}
    broken = next(r for r in records if r.server_version == "1.1")
    assert (broken.failure_class, broken.signature) == (
        "partial-workers",
        "OSError: [EBADF] Bad file descriptor",
    )

    # a second sweep runs nothing: every release is cached
    proc = _harness(index, *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("(cached: run ") == 3 and len(list(read_records([str(results)]))) == 3

    # the page: the entry's words, the measured table, both boundaries labelled, a reproduction
    out = tmp_path / "pages"
    proc = _harness(
        index, "catalog", "pages", "--dir", str(catalog_dir), "--results", str(results), "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    page = (out / "awh-testserver-ebadf.html").read_text()
    assert "only the first worker serves; the others die with EBADF" in page  # symptom: the entry's
    assert "1.1 closes the listening socket after the first fork" in page  # mechanism
    assert re.search(
        r"first reproducing awh-testserver <b>1\.1</b> \(after 1\.0 passed\),\s*first fixed <b>1\.2</b>", page
    )
    assert "fixed in awh-testserver 1.2" in page  # the catalog's own claim, labelled as such
    assert page.count('class="o-reproduced"') == 1 and page.count('class="o-passed"') == 2
    assert f"python -m pip install {rd.DIST}==1.1" in page
    assert f"harness run --server {SERVER} --requirement awh-testserver==1.1" in page
    assert re.search(
        r'<span class="word yes">yes</span> on Linux, Python 3\.\d+, \d{4}-\d\d-\d\d: awh-testserver 1\.1',
        page,
    )
    assert "waits for a macOS runner" in page  # nothing ran there: never "not reproduced"
    assert (out / "index.html").exists()
