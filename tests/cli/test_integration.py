"""The `harness` console script end to end, as a user runs it: real subprocesses, servers, sockets, files."""

import glob
import json
import os
import subprocess
import sys
from typing import Any, Dict, List, Optional

from harness.model.records import read_records

LIGHT = ["--requests", "20", "--concurrency", "4", "--keepalive-requests", "5"]


def _harness(
    args: List[str], cwd: str, timeout: float = 300, env: Optional[Dict[str, str]] = None
) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_run_prints_the_verdict_line_and_appends_the_record(tmp_path: Any) -> None:
    results = os.path.join(str(tmp_path), "r.jsonl")
    proc = _harness(["run", "--workers", "2", "--results", results, *LIGHT], str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "passed"
    failing = _harness(
        [
            "run",
            "--workers",
            "2",
            "--app",
            "servers.apps:failing_lifespan",
            "--results",
            results,
            "--capsule-dir",
            os.path.join(str(tmp_path), "capsules"),
            *LIGHT,
        ],
        str(tmp_path),
    )
    assert failing.returncode == 4, failing.stderr  # a failing verdict: exit 4 (README "Exit codes")
    cls, _, signature = failing.stdout.strip().partition(" ")
    assert cls == "startup-failure" and "LifespanFailure" in signature
    records = list(read_records([results]))
    assert [r.failure_class for r in records] == ["passed", "startup-failure"]
    assert records[1].capsule and os.path.isdir(records[1].capsule)
    assert "capsule:" in failing.stderr


def test_run_json_is_the_whole_record(tmp_path: Any) -> None:
    proc = _harness(["run", "--bind", "uds", "--workers", "2", "--json", *LIGHT], str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["failure_class"] == "passed"
    assert record["scenario"]["bind"] == "uds"
    assert len(record["worker_pids"]) == 2


def test_matrix_from_a_file_in_parallel_with_report_and_resume(tmp_path: Any) -> None:
    config = os.path.join(str(tmp_path), "m.toml")
    with open(config, "w", encoding="utf-8") as fh:
        fh.write(
            "[defaults]\nrequests = 20\nconcurrency = 4\nkeepalive_requests = 5\n\n"
            '[[scenario]]\nserver = "reference"\nstrategy = ["inherit", "reuseport"]\nworkers = [1, 2]\n\n'
            '[[scenario]]\nserver = "reference"\napp = "servers.apps:failing_lifespan"\nworkers = 2\n'
        )
    results = os.path.join(str(tmp_path), "out", "m.jsonl")
    report = os.path.join(str(tmp_path), "out", "report.html")
    args = ["matrix", "--config", config, "--results", results, "--report", report, "-n", "2"]
    # a temp dir of this matrix's own (TMPDIR): other tests' matrices run beside it under xdist
    own_tmp = os.path.join(str(tmp_path), "tmp")
    os.makedirs(own_tmp)
    proc = _harness(args, str(tmp_path), timeout=600, env={"TMPDIR": own_tmp})
    # issue #16 item 17: a matrix with a failing cell leaves no temp dir; the evidence is beside the results
    assert glob.glob(os.path.join(own_tmp, "awh-matrix-*")) == []
    assert glob.glob(os.path.join(str(tmp_path), "out", "runs", "*", "server.stderr"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert sum(1 for ln in lines if ln.startswith("[")) == 5  # one progress line per finished scenario
    # the failing cell is re-run once (--confirm 1, the matrix default) and both runs agree
    assert "5 scenario(s): 4 passed, 1 startup-failure (6 runs)" in proc.stdout
    row = next(ln for ln in lines if ln.startswith("startup-failure") and "failing_lifespan" in ln)
    assert row.endswith("(confirmed, 2 runs)"), row
    assert os.path.getsize(report) > 0 and f"report: {report}" in proc.stdout
    records = list(read_records([results]))
    assert len(records) == 6
    confirm = [r for r in records if r.failure_class == "startup-failure"]
    assert [r.attempt["index"] for r in confirm] == [1, 2] and len({r.attempt["group"] for r in confirm}) == 1
    again = _harness([*args, "--resume"], str(tmp_path), timeout=600)
    assert again.returncode == 0, again.stderr
    assert "0 scenario(s)" in again.stdout
    assert len(list(read_records([results]))) == 6
