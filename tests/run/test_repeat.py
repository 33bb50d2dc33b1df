"""--repeat and --confirm on a real server whose startup fails with a seeded probability.

The server (tests.servers.seeded_flaky) decides each start's fate from Random("SEED:COUNT"), so a series'
failures are known before it runs: the harness must count exactly those, in real processes."""

import json
import os
import subprocess
import sys
from typing import Any, Dict, List

import pytest

from harness.verdict.agreement import wilson
from tests._paths import ROOT
from tests.servers.seeded_flaky import expected_failures, fails

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the seeded test server forks (POSIX)")

SERVER = "tests.servers.seeded_flaky:SEEDED"
SIGNATURE = "SeededStartupError: seeded failure"


def _harness(tmp_path: Any, seed: str, p: float, *extra: str) -> "subprocess.CompletedProcess[str]":
    state = os.path.join(str(tmp_path), f"series-{seed}.count")
    argv = [sys.executable, "-m", "harness.cli", "run", "--server", SERVER, "--workers", "1"]
    argv += ["--option", f"seed={seed}", "--option", f"p={p}", "--option", f"state={state}"]
    argv += ["--requests", "10", "--keepalive-requests", "0", "--capsule-dir", str(tmp_path / "caps")]
    return subprocess.run([*argv, *extra], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_repeat_counts_every_seeded_failure_and_keeps_every_run(tmp_path: Any) -> None:
    seed, p, runs = "7", 0.3, 12
    want = expected_failures(seed, p, runs)
    assert 0 < want < runs  # the series has both outcomes, so the count is informative
    results = tmp_path / "r.jsonl"
    proc = _harness(tmp_path, seed, p, "--repeat", str(runs), "--json", "--results", str(results))
    out: Dict[str, Any] = json.loads(proc.stdout)
    assert proc.returncode == 4, proc.stderr  # some run failed
    assert out["runs"] == runs and out["status"] == "flaky"
    fail = out["rates"]["startup-failure"]
    assert (fail["count"], fail["runs"]) == (want, runs)
    low, high = wilson(want, runs)
    assert fail["ci95"] == [round(low, 6), round(high, 6)]
    records: List[Dict[str, Any]] = out["records"]
    assert [r["attempt"]["index"] for r in records] == list(range(1, runs + 1))
    assert len({r["attempt"]["group"] for r in records}) == 1
    assert {r["attempt"]["purpose"] for r in records} == {"repeat"}
    # each run's verdict is the one its seed decided, and the failures name the server's own error line
    for n, r in enumerate(records, start=1):
        assert r["failure_class"] == ("startup-failure" if fails(seed, n, p) else "passed")
        if r["failure_class"] != "passed":
            assert r["signature"] == SIGNATURE
    assert len(results.read_text().splitlines()) == runs  # every run reached --results
    capsules = {r["capsule"] for r in records if r["capsule"]}
    assert len(capsules) == want  # one capsule per failing run, none overwritten


@pytest.mark.parametrize(("seed", "verdict"), [("3", "flaky"), ("0", "confirmed")])
def test_confirm_reruns_a_failure_and_reports_disagreement(tmp_path: Any, seed: str, verdict: str) -> None:
    assert fails(seed, 1, 0.5) and fails(seed, 2, 0.5) == (verdict == "confirmed")
    proc = _harness(tmp_path, seed, 0.5, "--confirm", "1")
    assert proc.returncode == 4, proc.stderr
    if verdict == "flaky":
        assert proc.stdout.startswith("flaky passed x1 | startup-failure " + SIGNATURE + " x1")
        assert "1 run(s): passed" in proc.stderr and f"1 run(s): startup-failure {SIGNATURE}" in proc.stderr
    else:
        assert proc.stdout.strip() == f"startup-failure {SIGNATURE}"
        assert "confirmed: 2 runs gave the same verdict" in proc.stderr


def test_a_passing_run_is_not_rerun(tmp_path: Any) -> None:
    assert not fails("1", 1, 0.5)
    proc = _harness(tmp_path, "1", 0.5, "--confirm", "3", "--json")
    record = json.loads(proc.stdout)
    assert proc.returncode == 0 and record["failure_class"] == "passed"
    assert record["attempt"]["index"] == 1  # a group of one: nothing to confirm


def test_measured_rate_interval_covers_the_true_rate_in_19_of_20_seeds(tmp_path: Any) -> None:
    """20 real series of 20 starts at p = 0.2: the measured count must be the seeded one, and the 95%
    Wilson interval of the measured count must hold the true rate in at least 19 of the 20 seeds."""
    p, runs, covered = 0.2, 20, 0
    for seed in range(20):
        proc = _harness(tmp_path, f"cov{seed}", p, "--repeat", str(runs), "--json")
        out = json.loads(proc.stdout)
        got = out["rates"].get("startup-failure", {"count": 0})["count"]
        assert got == expected_failures(f"cov{seed}", p, runs), (seed, proc.stderr[-2000:])
        assert out["runs"] == runs
        low, high = wilson(got, runs)
        covered += low <= p <= high
    assert covered >= 19


@pytest.mark.parametrize(
    ("adapter", "failure_class", "signature"),
    [
        ("NO_MAIN", "harness-error", "No module named email.__main__; 'email' is a package and cannot be"),
        ("MISSING", "harness-error", "No module named no_such_server_module"),
        ("BAD_FLAG", "unsupported", "error: unrecognized arguments: --no-such-flag"),
    ],
)
def test_a_refused_launch_is_never_the_servers_startup_failure(
    tmp_path: Any, adapter: str, failure_class: str, signature: str
) -> None:
    from harness.model.records import Scenario  # noqa: PLC0415
    from harness.run.runner import run_scenario  # noqa: PLC0415

    sc = Scenario(server=f"tests.servers.bad_launch:{adapter}", workers=2, requests=5, keepalive_requests=0)
    record = run_scenario(sc, work_dir=str(tmp_path))
    assert record.failure_class == failure_class, record.reason
    assert signature in record.signature and "exit 1" not in record.signature
    assert "refused" in record.reason or "no such flag" in record.reason
