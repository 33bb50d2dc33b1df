"""Progress of `harness matrix`: a rich bar on a terminal (a real pty), plain lines when piped."""

import json
import os
import pty
import select
import subprocess
import sys
import time
from typing import Any, List

import pytest

from tests._paths import ROOT

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pty")


def _config(tmp_path: Any) -> str:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"scenario": [{"server": "reference", "workers": [1, 2], "requests": 5,
                                              "keepalive_requests": 0}]}))  # fmt: skip
    return str(path)


def _argv(tmp_path: Any) -> List[str]:
    return [sys.executable, "-m", "harness.cli", "matrix", "--config", _config(tmp_path),
            "--results", str(tmp_path / "r.jsonl")]  # fmt: skip


def test_a_terminal_gets_a_live_bar(tmp_path: Any) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        _argv(tmp_path), cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "120", "PYTHONPATH": ROOT},
    )  # fmt: skip
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the pty
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(master)
    text = out.decode("utf-8", "replace")
    assert proc.returncode == 0, text[-2000:]
    assert "[1/2] passed" in text and "[2/2] passed" in text  # the lines
    assert "\x1b[" in text and "matrix" in text  # the bar, drawn with terminal control


def test_piped_output_is_plain_lines(tmp_path: Any) -> None:
    proc = subprocess.run(_argv(tmp_path), cwd=str(tmp_path), capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": ROOT}, check=False)  # fmt: skip
    assert proc.returncode == 0 and "[2/2] passed" in proc.stdout
    assert "\x1b" not in proc.stdout + proc.stderr
