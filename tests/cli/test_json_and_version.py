"""`harness --version` and the --json outputs of the CLI (issue #15), through real subprocesses."""

import json
import os
import subprocess
import sys
from typing import Any, List

import pytest

import harness
from harness.cli import main
from harness.cli._args import scenario_from_args
from harness.model.records import Scenario
from tests._paths import ROOT


def _harness(args: List[str], cwd: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": ROOT}, check=False,
    )  # fmt: skip


def test_version(tmp_path: Any) -> None:
    proc = _harness(["--version"], str(tmp_path))
    assert proc.returncode == 0 and proc.stdout.strip() == f"harness {harness.__version__}"
    assert "exit codes: 0 done" in _harness(["--help"], str(tmp_path)).stdout


def test_pythons_json_marks_old_interpreters(tmp_path: Any) -> None:
    proc = _harness(["pythons", "--json"], str(tmp_path))
    rows = json.loads(proc.stdout)
    assert proc.returncode == 0 and rows
    for row in rows:
        major_minor = tuple(int(x) for x in row["version"].split(".")[:2])
        assert (row["note"] == "") == (major_minor >= (3, 8)), row


def test_catalog_json_lists_every_entry(tmp_path: Any) -> None:
    proc = _harness(["catalog", "--json", "--results", str(tmp_path / "none.jsonl")], str(tmp_path))
    entries = json.loads(proc.stdout)
    assert proc.returncode == 0 and {"uvicorn-514", "gunicorn-pkg-resources"} <= {e["id"] for e in entries}
    assert all(c["role"] in ("affected", "fixed", "unaffected") for e in entries for c in e["cases"])


def test_matrix_json_is_one_object_on_stdout(tmp_path: Any) -> None:
    config = tmp_path / "m.json"
    config.write_text(json.dumps({"scenario": [{"server": "reference", "workers": 1, "requests": 5,
                                                "keepalive_requests": 0}]}))  # fmt: skip
    proc = _harness(["matrix", "--config", str(config), "--results", str(tmp_path / "r.jsonl"), "--json"],
                    str(tmp_path))  # fmt: skip
    data = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stderr
    assert (data["scenarios"], data["runs"], data["classes"]) == (1, 1, {"passed": 1})
    assert data["cells"][0]["status"] == "single" and "[1/1] passed" in proc.stderr


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario(),
        Scenario(server="uvicorn", requirements=("uvicorn==0.14.0",), python="3.8", workers=4, bind="uds"),
        Scenario(
            strategy="share",
            start_method="spawn",
            app="servers.apps:failing_lifespan",
            stop="master",
            stdin="closed",
            requests=10,
            concurrency=2,
            keepalive_requests=0,
        ),
        Scenario(
            server="gunicorn",
            requirements=("gunicorn==23.0.0", "uvicorn-worker==0.3.0"),
            fault="signal-master:HUP",
            fault_repeat=10,
            fault_interval=0.5,
            options=(("worker", "x"),),
            server_args=("--graceful-timeout", "2"),
        ),
    ],
)
def test_harness_argv_parses_back_to_the_same_scenario(scenario: Scenario) -> None:
    """The `harness run` line a report prints for a cell is that cell's scenario, flag for flag."""
    argv = scenario.harness_argv()
    assert argv[:2] == ["harness", "run"]
    args = main.build_parser().parse_args(argv[1:])
    assert scenario_from_args(args, args.requirement) == scenario
