"""The report in a real browser: headless Chromium opens it from disk (file://), runs its script without a
console error, shows the matrix and the drill-down, and leaves screenshots under artifacts/ (gitignored).

Skips only when no Chromium binary exists (CI installs the Debian `chromium` package).
"""

import os
import re
import shutil
import subprocess
from typing import Any, List, Optional, Tuple

import pytest

from reports import diff, merge, render_release, write_report
from tests import _paths

from .test_reports import ALL, load, release_pair

ROOT = _paths.ROOT
ARTIFACTS = os.path.join(ROOT, "artifacts")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def _browser() -> Optional[str]:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = _browser()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason=f"no Chromium binary on PATH (looked for {', '.join(BROWSERS)}); apt-get install chromium",
)

#: console output Chromium prints with --enable-logging=stderr: uncaught exceptions and console.error lines
CONSOLE_ERROR = re.compile(
    r"Uncaught|CONSOLE\(\d+\)\].*(error|Error)|:ERROR:CONSOLE|net::ERR_", re.IGNORECASE
)


def chromium(url: str, profile: str, *extra: str, timeout: float = 120.0) -> Tuple[str, str]:
    """Run headless Chromium on `url`; (stdout, stderr)."""
    assert CHROMIUM is not None
    argv = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *extra,
        url,
    ]
    proc = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False
    )
    return proc.stdout, proc.stderr


def console_errors(stderr: str) -> List[str]:
    return [line for line in stderr.splitlines() if CONSOLE_ERROR.search(line)]


def file_url(path: str) -> str:
    return "file://" + os.path.abspath(path)


@pytest.fixture(scope="module")
def report(tmp_path_factory: Any) -> str:
    out = tmp_path_factory.mktemp("report") / "report.html"
    return write_report(load(*ALL, "hostile.jsonl"), str(out), generated_at="browser test")


def test_console_error_detection_is_real(tmp_path: Any) -> None:
    """The check below would see a failing script: a page that throws is caught."""
    page = tmp_path / "throws.html"
    page.write_text("<!DOCTYPE html><p>x</p><script>null.boom();</script>", encoding="utf-8")
    _, stderr = chromium(file_url(str(page)), str(tmp_path / "profile"), "--dump-dom")
    assert console_errors(stderr), stderr[-2000:]


def test_report_dom_after_scripts(report: str, tmp_path: Any) -> None:
    dom, stderr = chromium(file_url(report), str(tmp_path / "profile"), "--dump-dom")
    assert not console_errors(stderr), console_errors(stderr)
    assert '<table class="matrix">' in dom
    assert re.search(r'<section class="cell-detail [a-z-]+" id="cell-[0-9a-f]{16}"', dom)
    assert '<svg class="chart timeline"' in dom and '<svg class="chart bars"' in dom
    assert '<section id="performance">' in dom and '<svg class="chart lines"' in dom  # ready time vs N
    # the script ran to its end: it marked <html>, revealed the filter bar and counted the rows
    assert re.search(r'<html lang="en" class="[^"]*\bjs\b', dom)
    assert '<div class="filters" id="filters">' in dom
    assert re.search(r'id="f-shown">(\d+) of \1 rows<', dom)
    # hostile server output is still text in the live DOM
    assert "<script>alert(1)</script>" not in dom and "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert dom.count("<script>") == 1


def test_filters_from_query_string(report: str, tmp_path: Any) -> None:
    """The filter script really filters: ?class=...&platform=... leaves only the matching rows and columns."""
    view = merge([load(*ALL, "hostile.jsonl")])
    expected = {
        c.row.id for c in view.cells if c.column.platform == "win32" and "startup-failure" in c.css_class
    }
    assert expected  # the fixtures have Windows startup failures
    url = file_url(report) + "?class=startup-failure&platform=win32"
    dom, stderr = chromium(url, str(tmp_path / "profile"), "--dump-dom")
    assert not console_errors(stderr), console_errors(stderr)
    assert f'id="f-shown">{len(expected)} of {len(view.rows)} rows<' in dom
    visible = re.findall(r'<tr class="member" data-server="[^"]*">', dom)  # a hidden one has hidden=""
    assert len(visible) == len(expected)
    linux_cells = re.findall(r'<td class="cell[^>]*data-platform="linux"[^>]*>', dom)
    assert linux_cells and all('hidden=""' in td for td in linux_cells)  # other platforms' columns hidden


def test_report_without_javascript(report: str, tmp_path: Any) -> None:
    """The essentials need no script: the same page with its <script> removed still has matrix and details.

    (--dump-dom itself needs script execution in new headless, so the script is removed from the file.)"""
    html = open(report, encoding="utf-8").read()
    start, end = html.index("<script>"), html.index("</script>") + len("</script>")
    page = tmp_path / "nojs.html"
    page.write_text(html[:start] + html[end:], encoding="utf-8")
    dom, stderr = chromium(file_url(str(page)), str(tmp_path / "profile"), "--dump-dom")
    assert not console_errors(stderr), console_errors(stderr)
    assert '<table class="matrix">' in dom and 'class="cell-detail' in dom
    assert re.search(r'<a class="v" href="#cell-[0-9a-f]{16}"', dom)  # cells link to their details
    assert '<div class="filters" id="filters" hidden="">' in dom  # no dead controls without JS
    assert re.search(r'<button type="button" class="copy" data-copy="[^"]+" hidden="">', dom)


def test_screenshots(report: str, tmp_path: Any) -> None:
    os.makedirs(ARTIFACTS, exist_ok=True)
    shots = []
    html = open(report, encoding="utf-8").read()
    conflict = re.search(r'<section class="cell-detail flaky" id="(cell-[0-9a-f]+)"', html)
    wsaeinval = re.search(
        r'<section class="cell-detail startup-failure" id="(cell-[0-9a-f]+)"[^>]*data-platform="win32"', html
    )
    # headless --screenshot captures the top of the page even with a #fragment, so a drill-down is shot
    # from a copy of the page that hides everything but that section (same markup, same CSS and script)
    targets = [("report.png", "")]
    if wsaeinval:
        targets.append(("report-drilldown.png", wsaeinval.group(1)))
    if conflict:
        targets.append(("report-conflict.png", conflict.group(1)))
    targets.append(("report-issues.png", "known-issues"))
    targets.append(("report-performance.png", "performance"))
    for name, focus in targets:
        page = report
        if focus:
            hide = (
                "header.page,#summary,#filters,#matrix,#signatures,#known-issues,#performance,#details,footer.legend,"
                "section.cell-detail,h3.group{display:none!important}"
                f"#details:has(#{focus}),#{focus}{{display:block!important}}"
            )
            page = str(tmp_path / f"focus-{name}.html")
            with open(page, "w", encoding="utf-8") as fh:
                fh.write(html.replace("</head>", f"<style>{hide}</style></head>", 1))
        path = os.path.join(ARTIFACTS, name)
        if os.path.exists(path):
            os.remove(path)
        _, stderr = chromium(
            file_url(page),
            str(tmp_path / f"profile-{name}"),
            f"--screenshot={path}",
            "--window-size=1400,1000",
            "--hide-scrollbars",
        )
        assert not console_errors(stderr), console_errors(stderr)
        assert os.path.getsize(path) > 20_000, name  # a rendered page, not a blank one
        shots.append(path)
    # the release page too
    prev, cur = release_pair()
    page = tmp_path / "release.html"
    page.write_text(
        render_release(diff(prev, cur), "uvicorn", "0.55.0", "0.54.0", records=[*prev, *cur]),
        encoding="utf-8",
    )
    path = os.path.join(ARTIFACTS, "release.png")
    _, stderr = chromium(
        file_url(str(page)),
        str(tmp_path / "profile-release"),
        f"--screenshot={path}",
        "--window-size=1400,1000",
        "--hide-scrollbars",
    )
    assert not console_errors(stderr), console_errors(stderr)
    assert os.path.getsize(path) > 10_000
    shutil.copy(report, os.path.join(ARTIFACTS, "report.html"))
