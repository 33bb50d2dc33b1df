"""The report's copyable line of a cell runs again after the run: the run's private directories (HOME,
TMPDIR, the event file) are gone by then, and the line makes fresh ones under $RUN. Real run, real bash."""

import os
import select
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from harness.model.records import Scenario
from harness.run.runner import run_scenario
from reports.render import harness_command, shell_command
from tests import _paths

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell line")


def test_a_passing_cells_line_runs_after_its_run_dirs_are_gone(tmp_path: Any) -> None:
    record = run_scenario(
        Scenario(workers=2, requests=20, keepalive_requests=0), results=str(tmp_path / "r.jsonl"),
        work_dir=str(tmp_path / "runs"),
    )  # fmt: skip
    assert record.failure_class == "passed", record.reason
    line = shell_command(record)
    events = next(a for a in record.command if a.endswith("events.jsonl"))
    assert not os.path.exists(os.path.dirname(events)) or not os.path.exists(record.env["TMPDIR"])
    assert line.startswith("RUN=$(mktemp -d) && mkdir -p ") and '--events "$RUN"' in line, line
    assert record.env["HOME"] not in line and record.env["TMPDIR"] not in line
    proc = subprocess.Popen(
        ["bash", "-c", line], cwd=_paths.ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        seen = b""
        deadline = time.monotonic() + 60
        while b"listening on http://" not in seen and time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if ready:
                seen += os.read(proc.stdout.fileno(), 4096)  # type: ignore[union-attr]
        assert b"listening on http://" in seen, seen.decode("utf-8", "replace")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # and the harness line names the same scenario
    assert harness_command(record) == "harness run --server reference --requests 20 --keepalive-requests 0"
