"""Release day, for real, through the CLI the workflow runs (.github/workflows/releases.yml).

A real package index on loopback (tests._pkgindex) serves real wheels of `awh-testserver`
(tests.servers.release_dist): a pre-fork server whose 1.0 is good, 1.1 breaks `--workers 2` (its later
workers inherit a closed socket: `OSError: [Errno 9] Bad file descriptor`), 1.2 fixes it, 1.3 is yanked
and 2.0rc1 is a pre-release. Then, as the workflow does:

1. `harness watch` with the state {awh-testserver: 1.0} plans exactly 1.1 and 1.2
2. `harness release` of each item builds envs from that index, runs both sides with a confirmation re-run
   and classifies: 1.1 regressed (the -w 2 cell, with the server's own error line), 1.2 fixed
3. `harness publish` writes both pages, the index (JSON and HTML) and one issue, for 1.1
4. `harness watch --advance` moves the state to 1.2; the next watch plans nothing

and a version the index does not have, or has yanked, runs nothing.
"""

import json
import os
import subprocess
import sys
from typing import Any, Dict, List, Tuple

import pytest

from tests._paths import ROOT
from tests.servers import release_dist as rd

pytestmark = pytest.mark.skipif(os.name != "posix", reason="awh-testserver forks its workers (POSIX only)")


def _harness(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_INDEX_URL", "PIP_CONFIG_FILE")}
    env["PIP_CONFIG_FILE"] = os.devnull  # the index comes from --index-url only
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _release(index: str, out: Any, version: str, previous: str) -> Tuple[int, Dict[str, Any], str]:
    results = out / "results" / version
    proc = _harness(
        "release", f"{rd.DIST}=={version}", "--previous", previous, "--index-url", index, "--workers", "1,2",
        "--results-dir", str(results), "-o", str(out / f"local-{version}.html"), "--json",
        "--work-dir", str(out / "runs"), "-n", "2",
    )  # fmt: skip
    return proc.returncode, json.loads(proc.stdout or "{}"), proc.stderr


def _cells(data: Dict[str, Any], outcome: str) -> List[Tuple[str, str]]:
    return [(c["label"], c["current"]["verdicts"][-1]) for c in data["outcomes"][outcome]]


@pytest.mark.timeout(900)  # two releases, both sides, with confirmation re-runs: ~2 min quiet
def test_release_day_watch_release_publish_advance(index: str, tmp_path: Any) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({rd.DIST: "1.0"}))

    # 1. the watch: exactly the two new final releases (not the yanked 1.3, not the pre-release)
    proc = _harness("watch", "--state", str(state), "--index-url", index, "--distribution", rd.DIST, "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    items = [(i["distribution"], i["version"], i["previous"]) for i in plan["items"]]
    assert items == [(rd.DIST, "1.1", "1.0"), (rd.DIST, "1.2", "1.1")]
    assert plan["yanked"] == [{"distribution": rd.DIST, "version": "1.3"}]
    roles = {s["role"] for s in plan["items"][0]["scenarios"]}
    assert roles == {"release-set"}  # no catalog entry and no downstream server for this distribution

    # 2. each item, as its job runs it
    code, data, err = _release(index, tmp_path, "1.1", "1.0")
    assert code == 3, err  # EXIT_NEWLY_BROKEN: a confirmed regression
    (regressed,) = data["outcomes"]["regressed"]
    assert " w2" in regressed["label"] and regressed["current"]["state"] == "broken"
    assert regressed["current"]["runs"] >= 2  # the failure was re-run before it was called
    # the exact class and signature: the server's own error line (errno by name, the same on every OS)
    assert regressed["current"]["verdicts"] == ["partial-workers OSError: [EBADF] Bad file descriptor"]
    assert regressed["decisive"] == "OSError: [EBADF] Bad file descriptor"
    assert [c["label"] for c in data["outcomes"]["still-passing"]] == [regressed["label"].replace("w2", "w1")]
    assert data["counts"]["spurious-regressed"] == 0 and data["counts"]["inconclusive"] == 0

    code, data, err = _release(index, tmp_path, "1.2", "1.1")
    assert code == 0, err
    (fixed,) = data["outcomes"]["fixed"]
    assert (
        " w2" in fixed["label"]
        and fixed["previous"]["state"] == "broken"
        and fixed["current"]["state"] == "ok"
    )
    assert data["counts"]["regressed"] == 0

    # 3. publish both, from the jobs' result directories
    site = tmp_path / "site"
    issues, published = tmp_path / "issues.json", tmp_path / "published.txt"
    proc = _harness(
        "publish", str(tmp_path / "results"), "--site", str(site), "--issues", str(issues),
        "--published", str(published), "--site-url", "https://example.invalid/h", "--run-url", "https://x/run/1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    pages = sorted(p.name for p in (site / "releases").iterdir())
    assert pages == ["awh-testserver-1.1.html", "awh-testserver-1.2.html", "index.html", "index.json"]
    entries = json.loads((site / "releases" / "index.json").read_text())
    assert [(e["version"], e["totals"]["regressed"], e["totals"]["fixed"]) for e in entries] in (
        [("1.2", 0, 1), ("1.1", 1, 0)],
        [("1.1", 1, 0), ("1.2", 0, 1)],  # published in the same minute: by version then
    )
    assert entries[0]["platforms"]["Linux"]["regressed"] + entries[1]["platforms"]["Linux"]["regressed"] == 1
    html = (site / "releases" / "index.html").read_text()
    assert 'href="awh-testserver-1.1.html"' in html and "1 release(s) with confirmed regressions" in html
    page = (site / "releases" / "awh-testserver-1.1.html").read_text()
    assert "Bad file descriptor" in page and '<section id="regressed">' in page
    (issue,) = json.loads(issues.read_text())
    assert issue["key"] == f"{rd.DIST}==1.1" and "Bad file descriptor" in issue["body"]
    assert "https://example.invalid/h/releases/awh-testserver-1.1.html" in issue["body"]
    assert published.read_text().split() == [f"{rd.DIST}==1.1", f"{rd.DIST}==1.2"]

    # publishing again keeps one entry per release (a re-run replaces, never duplicates)
    assert _harness("publish", str(tmp_path / "results"), "--site", str(site)).returncode == 0
    assert len(json.loads((site / "releases" / "index.json").read_text())) == 2

    # 4. after the deploy: advance, and the next watch has nothing to do
    args = [a for line in published.read_text().split() for a in ("--advance", line)]
    proc = _harness("watch", "--state", str(state), *args)
    assert proc.returncode == 0 and json.loads(state.read_text()) == {rd.DIST: "1.2"}, proc.stderr
    proc = _harness("watch", "--state", str(state), "--index-url", index, "--distribution", rd.DIST, "--json")
    assert json.loads(proc.stdout)["items"] == []


@pytest.mark.parametrize(
    ("version", "message"),
    [("9.9", "awh-testserver 9.9 is not on the index"), ("1.3", "awh-testserver 1.3 is yanked")],
)
def test_a_release_the_index_does_not_offer_runs_nothing(
    index: str, tmp_path: Any, version: str, message: str
) -> None:
    results = tmp_path / "results"
    proc = _harness(
        "release", f"{rd.DIST}=={version}", "--previous", "1.0", "--index-url", index,
        "--results-dir", str(results), "-o", str(tmp_path / "r.html"), timeout=60,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert not results.exists() or not list(results.iterdir())  # nothing ran


def test_publish_bad_input_is_one_line_and_writes_nothing(tmp_path: Any) -> None:
    site = tmp_path / "site"
    (tmp_path / "empty").mkdir()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x-1.0.item.json").write_text("{not json")
    missing = tmp_path / "missing"
    missing.mkdir()
    item = {
        "distribution": "x",
        "version": "1.0",
        "previous": "0.9",
        "sides": {"0.9": "a.jsonl", "1.0": "b.jsonl"},
    }
    (missing / "x-1.0.item.json").write_text(json.dumps(item))
    for inputs, message in (
        ([str(tmp_path / "empty")], "nothing to publish"),
        ([str(bad)], "unreadable release item"),
        ([str(missing)], "the results of x 0.9 are missing"),
        ([str(tmp_path / "nope")], "neither a directory"),
    ):
        proc = _harness("publish", *inputs, "--site", str(site), timeout=60)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and message in lines[0], proc.stderr
    assert not site.exists()
