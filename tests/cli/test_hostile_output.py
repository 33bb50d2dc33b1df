"""Untrusted text never escapes (issue #16 items 1, 2): a real server run whose output carries every payload
of tests/_payloads.py, seen on the terminal, in the capsule README and in the HTML report."""

import glob
import json
import os
import subprocess
import sys
from typing import Any, List

import pytest
from markdown_it import MarkdownIt

from harness.model.records import read_records
from reports import write_report
from tests._paths import ROOT
from tests._payloads import PAYLOADS, raw_controls

APP = "tests.servers.hostile_app:app"


def _harness(args: List[str], cwd: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": ROOT}, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: Any) -> Any:
    tmp = tmp_path_factory.mktemp("hostile")
    results = str(tmp / "r.jsonl")
    proc = _harness(
        ["run", "--app", APP, "--workers", "1", "--requests", "5", "--results", results], str(tmp)
    )
    return tmp, results, proc


def test_the_terminal_gets_no_escape_sequences(hostile_run: Any) -> None:
    _, results, proc = hostile_run
    assert proc.returncode == 4, proc.stderr
    out = proc.stdout + proc.stderr
    assert out.startswith("startup-failure RuntimeError: hostile app:")
    assert raw_controls(out) == ()
    (record,) = list(read_records([results]))
    # the record keeps the evidence as it was (data, not display): the payloads are in it
    assert PAYLOADS["osc-title"] in record.stderr_tail


def test_matrix_progress_and_summary_are_clean(tmp_path: Any) -> None:
    config = tmp_path / "m.json"
    config.write_text(json.dumps({"scenario": [{"server": "reference", "workers": 1, "app": APP,
                                                "requests": 5, "keepalive_requests": 0}]}))  # fmt: skip
    proc = _harness(
        ["matrix", "--config", str(config), "--results", str(tmp_path / "m.jsonl")], str(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    assert "startup-failure" in proc.stdout and raw_controls(proc.stdout + proc.stderr) == ()


def test_the_capsule_readme_is_inert(hostile_run: Any) -> None:
    _, results, _ = hostile_run
    (record,) = list(read_records([results]))
    with open(os.path.join(record.capsule, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    assert raw_controls(readme) == ()
    html = MarkdownIt("commonmark").render(readme)
    # every payload line is text inside a code block: the fence in the output did not close ours
    assert "<script" not in html and "<img" not in html and "javascript:" not in html.split("<code")[0]
    assert "&lt;script&gt;alert('fence')&lt;/script&gt;" in html
    tokens = MarkdownIt("commonmark").parse(readme)
    fences = [t for t in tokens if t.type == "fence"]
    output = fences[-1].content
    for name in ("fence", "html", "markdown"):
        assert PAYLOADS[name].splitlines()[0] in output, name  # inside the Output block, as text


def test_the_html_report_is_inert(hostile_run: Any, tmp_path: Any) -> None:
    _, results, _ = hostile_run
    page = str(write_report(list(read_records([results])), str(tmp_path / "r.html")))
    with open(page, encoding="utf-8") as fh:
        html = fh.read()
    assert raw_controls(html) == ()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_no_capsule_is_left_outside_its_dir(hostile_run: Any) -> None:
    tmp, _, _ = hostile_run
    assert glob.glob(str(tmp / "capsules" / "*" / "README.md"))
