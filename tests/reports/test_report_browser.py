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
    visible = re.findall(
        r'<tr class="member(?: ok)?" data-server="[^"]*">', dom
    )  # a hidden one has hidden=""
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


# --- layout at 1400 px, measured in the browser ------------------------------------------------------

#: appended to a copy of the page: after load, the page's own geometry as JSON in <pre id="awh-metrics">
METRICS_JS = """
window.addEventListener("load", function () {
  var bad = null, ok = ["passed", "degraded", "unsupported", "env-error", "harness-error"];
  var cells = document.querySelectorAll("table.matrix td.cell");
  Array.prototype.forEach.call(cells, function (td) {
    if (bad || td.classList.contains("empty")) { return; }
    var cls = (td.getAttribute("data-classes") || td.className || "").split(/\\s+/).filter(Boolean);
    if (cls.some(function (c) { return c !== "cell" && ok.indexOf(c) < 0; })) { bad = td; }
  });
  var firstBad = bad || document.querySelector("#regressed, #broken table.broken tr.b-startup-failure");
  var wide = [];
  Array.prototype.forEach.call(document.querySelectorAll("body *"), function (el) {
    var r = el.getBoundingClientRect();
    var scrolls = el.closest(".matrix-wrap, .wide-wrap, .vtable-wrap");  // boxes that scroll themselves
    if (r.width > 0 && r.right > window.innerWidth + 1 && !scrolls) {
      wide.push(el.tagName.toLowerCase() + "." + el.className);
    }
  });
  var folded = document.querySelectorAll("details.cell-detail");
  var m = {
    innerWidth: window.innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
    scrollHeight: document.documentElement.scrollHeight,
    firstFailingTop: firstBad ? Math.round(firstBad.getBoundingClientRect().top + window.scrollY) : null,
    firstFailingIsMatrixCell: !!bad,
    passingCells: document.querySelectorAll(".cell-detail.passed, .cell-detail.degraded").length,
    passingFolded: Array.prototype.filter.call(folded, function (d) {
      return !d.open && (d.classList.contains("passed") || d.classList.contains("degraded"));
    }).length,
    foldedGroups: document.querySelectorAll("table.matrix tbody.grp.collapsed").length,
    wide: wide.slice(0, 5)
  };
  var pre = document.createElement("pre");
  pre.id = "awh-metrics";
  pre.textContent = JSON.stringify(m);
  document.body.appendChild(pre);
});
"""


def recorded(name: str) -> List[Any]:
    """Records of a real run, kept as they were (tests/fixtures/recorded/)."""
    from harness.model.records import read_records  # noqa: PLC0415

    return list(read_records([os.path.join(ROOT, "tests", "fixtures", "recorded", name)]))


def layout(html: str, tmp_path: Any, name: str) -> Any:
    """The page's geometry in headless Chromium at 1400 px wide, and a screenshot under artifacts/."""
    import json  # noqa: PLC0415

    page = tmp_path / f"{name}.html"
    page.write_text(html, encoding="utf-8")
    probe = tmp_path / f"{name}-metrics.html"
    probe.write_text(html.replace("</body>", f"<script>{METRICS_JS}</script></body>", 1), encoding="utf-8")
    dom, stderr = chromium(file_url(str(probe)), str(tmp_path / f"profile-{name}"), "--dump-dom",
                           "--window-size=1400,1000")  # fmt: skip
    assert not console_errors(stderr), console_errors(stderr)
    found = re.search(r'<pre id="awh-metrics">([^<]*)</pre>', dom)
    assert found, dom[-2000:]
    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, f"layout-{name}.png")
    _, stderr = chromium(file_url(str(page)), str(tmp_path / f"profile-shot-{name}"), f"--screenshot={shot}",
                         "--window-size=1400,1000", "--hide-scrollbars")  # fmt: skip
    assert not console_errors(stderr), console_errors(stderr)
    assert os.path.getsize(shot) > 20_000
    metrics = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    print(name, metrics)  # the figures, for the record (pytest -s)
    return metrics


def test_default_report_layout(tmp_path: Any) -> None:
    """Today's default matrix (a real `bash dev.sh matrix` run, 45 cells, all passed): one screen wide,
    under 8,000 px tall, every passing drill-down folded, every all-passing group folded."""
    from reports import render  # noqa: PLC0415

    records = recorded("default_matrix.jsonl")
    m = layout(render(records, generated_at="browser test"), tmp_path, "default")
    assert m["scrollWidth"] <= m["innerWidth"] and not m["wide"], m
    assert m["scrollHeight"] < 8000, m
    assert m["passingCells"] == len(records) == m["passingFolded"], m
    assert m["foldedGroups"] >= 5, m  # reference@..., and each upstream server


def test_default_report_with_failures_shows_them_first(tmp_path: Any) -> None:
    """The default matrix plus real failing cells: the first failing matrix cell is within the first
    1000 px (above the fold), and 'What is broken' lists it before the matrix."""
    from reports import render  # noqa: PLC0415

    html = render([*recorded("default_matrix.jsonl"), *load("linux.jsonl")], generated_at="browser test")
    m = layout(html, tmp_path, "default-failing")
    assert m["scrollWidth"] <= m["innerWidth"] and not m["wide"], m
    assert m["firstFailingIsMatrixCell"] and m["firstFailingTop"] < 1000, m
    assert html.index('id="broken"') < html.index('<table class="matrix">')


def test_merged_report_layout(tmp_path: Any) -> None:
    """Linux, Windows and macOS jobs merged, with re-runs that disagree: still one screen wide, the first
    failing cell above the fold."""
    from reports import render  # noqa: PLC0415

    m = layout(
        render([*load(*ALL), *recorded("default_matrix.jsonl")], generated_at="browser test"),
        tmp_path,
        "merged",
    )
    assert m["scrollWidth"] <= m["innerWidth"] and not m["wide"], m
    assert m["firstFailingIsMatrixCell"] and m["firstFailingTop"] < 1000, m
    assert m["passingCells"] == m["passingFolded"] > 0, m


def test_release_page_layout(tmp_path: Any) -> None:
    prev, cur = release_pair()
    html = render_release(diff(prev, cur), "uvicorn", "0.55.0", "0.54.0", records=[*prev, *cur])
    m = layout(html, tmp_path, "release")
    assert m["scrollWidth"] <= m["innerWidth"] and not m["wide"], m
    assert m["firstFailingTop"] is not None and m["firstFailingTop"] < 1000, m  # the regressed section


def test_known_issue_page_layout(tmp_path: Any) -> None:
    from harness import catalog  # noqa: PLC0415
    from reports.issues import issue_view  # noqa: PLC0415
    from reports.render import render_issue_page  # noqa: PLC0415

    page = next(e for e in catalog.entries() if e.id == "uvicorn-514").page()
    html = render_issue_page(issue_view(page, load(*ALL)))
    m = layout(html, tmp_path, "known-issue")
    assert m["scrollWidth"] <= m["innerWidth"] and not m["wide"], m
