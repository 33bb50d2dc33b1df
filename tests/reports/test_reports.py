"""Tests of reports/: the matrix page, merging, release diff, escaping of untrusted server output.

The record fixtures in tests/fixtures/records/*.jsonl are built by `build_fixtures()` below, so that what
they contain is readable here; `test_fixture_files_are_current` keeps the files and the builder in step
(regenerate with `python -m tests.reports.test_reports`).
"""

import dataclasses
import json
import os
import re
import sys
import zlib
from html.parser import HTMLParser
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest

from harness.model.records import FAILURE_CLASSES, ResultRecord, Scenario, read_records
from reports import clean_text, diff, merge, render, render_release, write_report
from reports.release import OUTCOMES
from reports.svg import timeline, worker_bars
from tests import _paths

pytest_plugins = ("pytester",)

FIXTURES = os.path.join(_paths.FIXTURES, "records")

HOSTILE_STDERR = (
    "Traceback (most recent call last):\n"
    '  File "x.py", line 1\n'
    "\x1b[31mERROR\x1b[0m: <script>alert(1)</script> </td></tr></table>\x00NUL\r\n"
    "\x1b]0;title\x07OSC done & \"quoted\" 'single'\n"
)
# what the server prints, and the normalized signature the classifier records for it (harness/signature.py)
WSAEINVAL = "OSError: [WinError 10022] An invalid argument was supplied"
SIG_WSAEINVAL = "OSError: [WSAEINVAL] An invalid argument was supplied"
WINERROR87 = "OSError: [WinError 87] The parameter is incorrect"
SIG_WINERROR87 = "OSError: [ERROR_INVALID_PARAMETER] The parameter is incorrect"

PLATFORMS = {
    "linux": {"system": "Linux", "release": "6.18.0", "machine": "x86_64", "sys_platform": "linux"},
    "win32": {"system": "Windows", "release": "10", "machine": "AMD64", "sys_platform": "win32"},
    "darwin": {"system": "Darwin", "release": "23.6.0", "machine": "arm64", "sys_platform": "darwin"},
}
PATCH = {"3.8": "3.8.10", "3.10": "3.10.11", "3.11": "3.11.9", "3.12": "3.12.7", "3.13": "3.13.1"}


def rec(  # noqa: PLR0917 - fixtures read best as rec(server, version, python, platform, class, signature)
    server: str,
    version: str,
    py: str,
    plat: str,
    failure_class: str = "passed",
    signature: str = "",
    *,
    workers: int = 2,
    strategy: str = "",
    start_method: str = "",
    bind: str = "tcp",
    options: Sequence[Tuple[str, str]] = (),
    extra_reqs: Sequence[str] = (),
    run_id: str = "",
    started_at: str = "2026-11-20T10:00:00Z",
    reason: str = "",
    stderr: str = "",
    leaks: Optional[Dict[str, Any]] = None,
    exit_code: Optional[int] = 0,
    serving: bool = True,
) -> ResultRecord:
    """One realistic record; `serving` fills in load, timings and snapshots as a run that got that far."""
    reqs = (f"{server}=={version}", *extra_reqs) if server != "reference" else tuple(extra_reqs)
    sc = Scenario(
        server=server,
        requirements=reqs,
        workers=workers,
        strategy=strategy,
        start_method=start_method,
        bind=bind,
        options=tuple(options),
    )
    seed = "|".join((server, version, py, plat, strategy, start_method, str(workers), bind, run_id))
    base = 41000 + (zlib.crc32(seed.encode()) % 2000) * 10
    pids = [str(base + 1 + i) for i in range(workers)]
    exe = "C:\\hostedtoolcache\\Python\\python.exe" if plat == "win32" else f"/usr/bin/python{py}"
    argv = {
        "reference": [
            exe,
            "-m",
            "servers.reference",
            "--workers",
            str(workers),
            "--strategy",
            strategy or "auto",
        ],
        "uvicorn": [exe, "-m", "uvicorn", "servers.apps:pid", "--workers", str(workers), "--port", "0"],
        "hypercorn": [exe, "-m", "hypercorn", "-w", str(workers), "servers.apps:pid"],
        "gunicorn": [
            exe,
            "-m",
            "gunicorn",
            "-w",
            str(workers),
            "-k",
            "uvicorn_worker.UvicornWorker",
            "servers.apps:pid",
        ],
        "granian": [
            exe,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--workers",
            str(workers),
            "servers.apps:pid",
        ],
    }[server]
    if bind == "uds":
        argv += ["--uds", "/tmp/harness-x/s.sock"]
    timings: Dict[str, Any] = {}
    load: Dict[str, Any] = {}
    snapshots: List[Dict[str, Any]] = []
    worker_pids: List[int] = []
    if serving and failure_class not in ("env-error", "unsupported", "startup-failure", "not-serving"):
        ready = {pid: round(0.12 + 0.09 * i, 3) for i, pid in enumerate(pids)}
        answered = pids if failure_class != "partial-workers" else pids[:1]
        split = [0.62, 0.38] if workers == 2 else [0.31, 0.27, 0.24, 0.18][:workers]
        counts = (
            {pid: round(200 * split[i]) for i, pid in enumerate(pids)}
            if len(answered) > 1
            else {pids[0]: 200}
        )
        total = sum(counts.values())
        shares = [n / total for n in counts.values()]
        jain = sum(counts.values()) ** 2 / (len(counts) * sum(n * n for n in counts.values()))
        timings = {
            "first_response": ready[pids[0]] + 0.02,
            "all_workers": max(ready.values()) + 0.03,
            "load_done": max(ready.values()) + 0.61,
            "stop_sent": max(ready.values()) + 0.65,
            "stopped": max(ready.values()) + 0.83,
            "worker_ready": ready,
        }
        load = {
            "requests": 200,
            "ok": 200 if failure_class != "request-errors" else 181,
            "errors": {} if failure_class != "request-errors" else {"RemoteProtocolError": 19},
            "status": {"200": 200},
            "per_worker": counts,
            "max_share": round(max(shares), 3),
            "jain": round(jain, 3),
            "latency_ms": {"p50": 2.4, "p90": 4.1, "p99": 9.8, "max": 14.2},
            "rate": 812.5,
            "keepalive": {
                "requests": 50,
                "ok": 50,
                "per_worker": {pids[0]: 50},
                "latency_ms": {"p50": 0.61, "p90": 0.9, "p99": 1.7, "max": 2.2},
                "by_worker": {pids[0]: {"p50": 0.61, "p99": 1.7}},
            },
        }
        worker_pids = [int(p) for p in answered]
        snapshots = [
            {
                "phase": "ready",
                "processes": [{"pid": base, "ppid": 1, "name": "python", "cmdline": argv, "role": "master"}]
                + [
                    {
                        "pid": int(p),
                        "ppid": base,
                        "name": "python",
                        "cmdline": [exe, "-c", "spawn_main()"],
                        "role": "worker",
                    }
                    for p in pids
                ],
                "listeners": [
                    {"pid": base, "family": "AF_INET", "address": "127.0.0.1", "port": 41873, "path": ""}
                ],
            }
        ]
    elif failure_class in ("startup-failure", "not-serving"):
        timings = {"stop_sent": 2.1, "stopped": 2.3, "worker_ready": {pids[0]: 0.21}}
        load = {"requests": 0, "ok": 0, "per_worker": {}}
    installed = {server: version} if server != "reference" else {"asgi-workers-harness": "0.1.0"}
    for req in extra_reqs:
        name, _, ver = req.partition("==")
        installed[name] = ver
    installed.update({"h11": "0.14.0"})
    return ResultRecord(
        scenario=sc.to_dict(),
        failure_class=failure_class,
        signature=signature,
        reason=reason
        or {
            "passed": f"all {workers} workers answered; load clean; stopped clean",
            "startup-failure": "the master exited before any worker answered",
            "env-error": "the environment could not be built",
        }.get(failure_class, failure_class),
        exit_code=exit_code,
        platform=PLATFORMS[plat],
        python={"requested": py, "executable": exe, "version": PATCH[py], "implementation": "CPython"},
        installed=installed,
        server_version=version,
        timings=timings,
        load=load,
        snapshots=snapshots,
        leaks=leaks or {},
        worker_pids=worker_pids,
        command=argv,
        env={"HOME": "/tmp/harness-home", "PYTHONUNBUFFERED": "1"}
        if plat != "win32"
        else {"PYTHONUNBUFFERED": "1"},
        stderr_tail=stderr,
        capsule=f"results/capsules/{zlib.crc32(f'{sc.scenario_id}-{plat}-{py}'.encode()):08x}",
        started_at=started_at,
        duration_s=3.2,
        run_id=run_id,
        harness_version="0.1.0",
    )


def build_fixtures() -> Dict[str, List[ResultRecord]]:
    """Every fixture file's records, by file name."""
    lin = "ci-linux-1"
    win = "ci-windows-1"
    mac = "ci-macos-1"
    issue_514 = (
        ("known_issue", "uvicorn-514"),
        ("title", "every worker after the first dies with WSAEINVAL on Windows"),
        ("url", "https://github.com/encode/uvicorn/issues/514"),
        (
            "trigger",
            "uvicorn --workers 2 on Windows: the child calls listen() on a socket shared to the parent's pid",
        ),
        ("fixed_in", "0.12.2"),
        ("expect", "startup-failure"),
    )
    issue_1009 = (
        ("known_issue", "uvicorn-1009"),
        ("title", "--workers 2 --uds PATH silently binds TCP 127.0.0.1:8000"),
        ("fixed_in", "0.15.0"),
        ("expect", "wrong-listener"),
    )
    issue_uw = (
        ("known_issue", "uvicorn-worker-setup-event-loop"),
        ("title", "UvicornWorker fails to boot: Config has no setup_event_loop"),
        ("fixed_in", "uvicorn-worker 0.4.0"),
    )
    linux: List[ResultRecord] = []
    for py in ("3.8", "3.11", "3.13"):
        for strategy, sm in (("inherit", "spawn"), ("reuseport", "spawn"), ("scm-rights", "forkserver")):
            linux.append(
                rec("reference", "0.1.0", py, "linux", strategy=strategy, start_method=sm, run_id=lin)
            )
        linux.append(
            rec(
                "reference",
                "0.1.0",
                py,
                "linux",
                "startup-failure",
                "OSError: [EBADF] Bad file descriptor",
                strategy="pickle-fd",
                start_method="forkserver",
                run_id=lin,
                exit_code=3,
                reason="every worker exited before ready (STARTUP_FAILURE)",
                stderr="Process SpawnProcess-1:\nOSError: [Errno 9] Bad file descriptor\n",
            )
        )
    for py in ("3.11", "3.13"):
        linux.append(rec("uvicorn", "0.54.0", py, "linux", run_id=lin))
        linux.append(rec("uvicorn", "0.54.0", py, "linux", workers=4, run_id=lin))
    linux.append(rec("uvicorn", "0.33.0", "3.8", "linux", run_id=lin))
    linux.append(
        rec(
            "uvicorn",
            "0.54.0",
            "3.8",
            "linux",
            "env-error",
            "uvicorn==0.54.0 requires Python>=3.10",
            run_id=lin,
            exit_code=None,
            serving=False,
            stderr="\u00d7 No solution found when resolving dependencies:\n"
            "  uvicorn==0.54.0 requires Python>=3.10\n",
        )
    )
    linux.append(
        rec(
            "uvicorn",
            "0.14.0",
            "3.11",
            "linux",
            "wrong-listener",
            "listening on tcp 127.0.0.1:8000, asked uds",
            bind="uds",
            options=issue_1009,
            run_id=lin,
            reason="the workers answered on 127.0.0.1:8000 while the UDS path was never created",
        )
    )
    linux.append(rec("uvicorn", "0.15.0", "3.11", "linux", bind="uds", options=issue_1009, run_id=lin))
    linux.append(
        rec(
            "gunicorn",
            "23.0.0",
            "3.11",
            "linux",
            "startup-failure",
            "AttributeError: 'Config' object has no attribute 'setup_event_loop'",
            extra_reqs=("uvicorn-worker==0.3.0", "uvicorn==0.36.0"),
            options=issue_uw,
            run_id=lin,
            exit_code=3,
            stderr="[ERROR] Exception in worker process\nAttributeError: 'Config' object has no attribute "
            "'setup_event_loop'\n[INFO] Worker failed to boot.\n",
        )
    )
    linux.append(
        rec(
            "gunicorn",
            "23.0.0",
            "3.11",
            "linux",
            extra_reqs=("uvicorn-worker==0.4.0", "uvicorn==0.36.0"),
            options=issue_uw,
            run_id=lin,
        )
    )
    linux.append(rec("hypercorn", "0.18.0", "3.11", "linux", run_id=lin))
    linux.append(
        rec(
            "granian",
            "2.8.0",
            "3.11",
            "linux",
            "leak",
            "leaked 1 process, 1 listener",
            run_id=lin,
            reason="a worker process and its listening socket survived the stop",
            leaks={
                "processes": [{"pid": 48213, "name": "granian", "cmdline": ["granian", "--workers", "2"]}],
                "listeners": [{"pid": 48213, "family": "AF_INET", "address": "127.0.0.1", "port": 41873}],
                "uds": [],
            },
        )
    )

    windows: List[ResultRecord] = []
    windows.append(
        rec(
            "uvicorn",
            "0.11.0",
            "3.8",
            "win32",
            "startup-failure",
            SIG_WSAEINVAL,
            options=issue_514,
            run_id=win,
            exit_code=1,
            started_at="2026-11-21T09:12:00Z",
            reason="the second worker died before it answered; WinError 10022 from listen()",
            stderr="Process SpawnProcess-2:\nTraceback (most recent call last):\n"
            '  File "asyncio\\base_events.py", '
            f"line 1405, in create_server\n    sock.listen(backlog)\n{WSAEINVAL}\n",
        )
    )
    windows.append(rec("uvicorn", "0.12.2", "3.8", "win32", options=issue_514, run_id=win))
    windows.append(
        rec(
            "uvicorn",
            "0.17.6",
            "3.10",
            "win32",
            "startup-failure",
            SIG_WINERROR87,
            run_id=win,
            exit_code=1,
            stderr=f"Accept failed on a socket\n{WINERROR87}\n",
        )
    )
    windows.append(rec("uvicorn", "0.18.0", "3.10", "win32", run_id=win))
    windows.append(rec("uvicorn", "0.54.0", "3.12", "win32", run_id=win))
    windows.append(
        rec(
            "reference",
            "0.1.0",
            "3.12",
            "win32",
            "unsupported",
            "SO_REUSEPORT absent on win32",
            strategy="reuseport",
            start_method="spawn",
            run_id=win,
            exit_code=None,
            serving=False,
            reason="strategy reuseport: socket.SO_REUSEPORT does not exist on Windows",
        )
    )
    windows.append(
        rec("reference", "0.1.0", "3.12", "win32", strategy="inherit", start_method="spawn", run_id=win)
    )
    windows.append(rec("hypercorn", "0.18.0", "3.12", "win32", run_id=win))

    macos = [
        rec("uvicorn", "0.54.0", "3.12", "darwin", run_id=mac),
        rec(
            "reference",
            "0.1.0",
            "3.12",
            "darwin",
            "partial-workers",
            "1 of 2 workers answered",
            strategy="reuseport",
            start_method="spawn",
            run_id=mac,
            reason="SO_REUSEPORT on macOS does not balance: the last binder took every connection",
        ),
        rec("reference", "0.1.0", "3.12", "darwin", strategy="inherit", start_method="spawn", run_id=mac),
        rec("uvicorn", "0.11.0", "3.8", "darwin", options=issue_514, run_id=mac),
    ]

    # the same cells run again by two CI jobs: one disagrees (conflict), one agrees (merges, x2)
    rerun_a = [
        rec(
            "uvicorn",
            "0.54.0",
            "3.12",
            "win32",
            workers=4,
            run_id="ci-windows-2",
            started_at="2026-11-22T08:00:00Z",
        ),
        rec("hypercorn", "0.18.0", "3.11", "linux", run_id="ci-linux-2", started_at="2026-11-22T08:00:00Z"),
    ]
    rerun_b = [
        rec(
            "uvicorn",
            "0.54.0",
            "3.12",
            "win32",
            "not-serving",
            "ConnectTimeout: no worker answered",
            workers=4,
            run_id="ci-windows-3",
            started_at="2026-11-22T09:30:00Z",
            exit_code=None,
            reason="the master stayed alive with the port bound; every probe timed out",
        ),
        rec("hypercorn", "0.18.0", "3.11", "linux", run_id="ci-linux-3", started_at="2026-11-22T09:30:00Z"),
    ]
    hostile = [
        rec(
            "uvicorn",
            "0.30.0",
            "3.11",
            "linux",
            "startup-failure",
            "<img src=x onerror=alert(2)> \x1b[1mbold\x1b[0m",
            run_id="hostile-1",
            exit_code=1,
            stderr=HOSTILE_STDERR,
            reason='reason with "quotes" and <b>markup</b>',
            options=(("url", "javascript:alert(3)"), ("known_issue", "hostile<i>")),
        )
    ]
    return {
        "linux.jsonl": linux,
        "windows.jsonl": windows,
        "macos.jsonl": macos,
        "rerun_a.jsonl": rerun_a,
        "rerun_b.jsonl": rerun_b,
        "hostile.jsonl": hostile,
    }


def write_fixtures() -> None:
    os.makedirs(FIXTURES, exist_ok=True)
    for name, records in build_fixtures().items():
        with open(os.path.join(FIXTURES, name), "w", encoding="utf-8") as fh:
            for r in records:
                fh.write(r.to_json() + "\n")


def load(*names: str) -> List[ResultRecord]:
    return list(read_records([os.path.join(FIXTURES, n) for n in names]))


ALL = ("linux.jsonl", "windows.jsonl", "macos.jsonl", "rerun_a.jsonl", "rerun_b.jsonl")


def section(html: str, anchor: str) -> str:
    """The drill-down section with this id (up to the next one)."""
    start = html.index(f'id="{anchor}"')
    end = html.find('class="cell-detail', start)  # the next section, or a folded (<details>) one
    return html[start : end if end > 0 else len(html)]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: List[Tuple[str, Dict[str, Optional[str]]]] = []

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parse_tags(html: str) -> List[Tuple[str, Dict[str, Optional[str]]]]:
    """Every start tag the browser would see, with its attributes (entity-decoded)."""
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser.tags


def key_of(records: Sequence[ResultRecord], server: str, version: str, plat: str, **fields: Any) -> str:
    for r in records:
        sc = r.scenario
        if (
            sc["server"] == server
            and r.server_version == version
            and r.platform["sys_platform"] == plat
            and all(sc.get(k) == v for k, v in fields.items())
        ):
            return r.key
    raise LookupError((server, version, plat, fields))


# --- fixtures ----------------------------------------------------------------------------------------


def test_fixture_files_are_current() -> None:
    built = build_fixtures()
    assert sorted(built) == sorted(n for n in os.listdir(FIXTURES) if n.endswith(".jsonl"))
    for name, records in built.items():
        assert [r.to_dict() for r in load(name)] == [json.loads(r.to_json()) for r in records], name


# --- matrix and drill-down -----------------------------------------------------------------------


def test_render_matrix_rows_columns_and_cells() -> None:
    records = load(*ALL)
    html = render(records, title="T", generated_at="2026-11-24")
    assert html.startswith("<!DOCTYPE html>") or html.lstrip().startswith("<!DOCTYPE html>")
    assert '<table class="matrix">' in html
    # rows: server@version x strategy/start method (x bind) x workers
    assert "uvicorn@0.11.0" in html and "uvicorn@0.54.0" in html and "reference@0.1.0" in html
    assert "pickle-fd / forkserver" in html
    assert re.search(r"default · uds · w2", html)
    # columns: platform groups, python versions
    for name in ("Linux", "Windows", "macOS"):
        assert f">{name}</th>" in html
    # the Windows WSAEINVAL cell: class as CSS class, class name and signature in the cell, linked
    key = key_of(records, "uvicorn", "0.11.0", "win32")
    m = re.search(r'<td class="cell startup-failure"[^>]*>\s*<a class="v" href="#cell-' + key + '"', html)
    assert m, "WSAEINVAL cell missing or not linked"
    cell_html = html[m.start() : html.index("</td>", m.start())]
    assert "startup-failure" in cell_html and "[WSAEINVAL]" in cell_html
    # summary counts per class
    counts = merge([records]).class_counts()
    assert counts["flaky"] == 1 and counts["startup-failure"] >= 3
    assert re.search(r'data-class="flaky"[^>]*>\s*<span class="dot"></span>flaky <b>1</b>', html)
    # filters exist but are hidden until the script runs (no dead controls without JS)
    assert re.search(r'<div class="filters" id="filters" hidden>', html)


def test_drill_down_has_everything_for_one_cell() -> None:
    records = load(*ALL)
    html = render(records)
    key = key_of(records, "uvicorn", "0.54.0", "linux", workers=4)
    body = section(html, f"cell-{key}")
    assert "/usr/bin/python3.11 -m uvicorn servers.apps:pid --workers 4" in body  # the command
    assert "PYTHONUNBUFFERED" in body and "HOME" in body  # environment variables
    assert "uvicorn" in body and "0.54.0" in body and "h11" in body  # installed versions
    assert '<svg class="chart timeline"' in body and "first response" in body and "all workers" in body
    assert body.count('class="ready"') == 4  # one dot per worker
    assert '<svg class="chart bars"' in body and "max share" in body and "Jain" in body
    assert "p99" in body and "keep-alive" in body
    assert "process snapshots" in body and "master" in body
    assert "results/capsules/" in body and 'class="copy"' in body  # capsule + copy button


def test_leak_and_env_error_drill_down() -> None:
    records = load("linux.jsonl")
    html = render(records)
    leak = section(html, "cell-" + key_of(records, "granian", "2.8.0", "linux"))
    assert "Leaks (survived the stop)" in leak and "48213" in leak
    env_key = next(r.key for r in records if r.failure_class == "env-error")
    env_sec = section(html, f"cell-{env_key}")
    assert "env-error" in env_sec and "requires Python&gt;=3.10" in env_sec
    assert "no worker answered the load" in env_sec


def test_render_is_pure_and_self_contained() -> None:
    records = load(*ALL, "hostile.jsonl")
    a = render(records)
    b = render(list(reversed(records)))
    assert a == b  # same records, any order -> same page; no clock
    assert "2026-11-22T09:30:00Z" in a  # default generated_at: the newest record
    tags = parse_tags(a)
    names = [t for t, _ in tags]
    for tag in ("link", "img", "iframe", "object", "embed", "base", "frame"):
        assert tag not in names, tag
    assert names.count("script") == 1  # ours, inline
    for tag, attrs in tags:
        assert "src" not in attrs and "srcset" not in attrs, (tag, attrs)
        if "href" in attrs:
            assert tag == "a" and re.match(r"#|https?://", attrs["href"] or ""), attrs
        assert not any(k.startswith("on") for k in attrs), (
            tag,
            attrs,
        )  # no inline handlers, ours or injected
    style = a[a.index("<style>") : a.index("</style>")]
    assert "url(" not in style and "@import" not in style


def test_empty_records_render() -> None:
    html = render([])
    assert "No records." in html


# --- untrusted output --------------------------------------------------------------------------------


def test_hostile_output_is_text() -> None:
    records = load("hostile.jsonl")
    html = render(records)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;" in html
    assert "<img" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<b>markup</b>" not in html and "&lt;b&gt;markup&lt;/b&gt;" in html
    assert "\x1b" not in html and "[31m" not in html and "]0;title" not in html
    assert "\x00" not in html and "\u2400NUL" in html
    assert 'href="javascript' not in html
    # the structure survived: the only script is ours, no injected element or attribute appeared
    tags = parse_tags(html)
    assert [t for t, _ in tags].count("script") == 1
    assert not any(t in ("img", "i") for t, _ in tags)  # the template itself uses neither
    assert not any(k.startswith("on") for _, attrs in tags for k in attrs)
    body = section(html, f"cell-{records[0].key}")
    assert "ERROR" in body and "OSC done &amp; &#34;quoted&#34; &#39;single&#39;" in body


def test_odd_shapes_from_other_machines_do_not_break_the_page() -> None:
    """Records are JSON from many machines and harness versions: wrong types degrade to "—", never crash."""
    odd = ResultRecord(
        scenario=Scenario(options=(("known_issue", "odd"), ("fixed_in", "not a version !!"))).to_dict(),
        failure_class="startup-failure",
        timings={"worker_ready": [1, 2], "first_response": "soon", "stopped": float("inf")},
        load={"per_worker": "x", "latency_ms": 5, "keepalive": [], "errors": "boom", "status": None},
        snapshots=[
            "x",  # type: ignore[list-item]
            {"processes": "y", "listeners": [1, None]},
            {"phase": None, "processes": [{"cmdline": None}]},
        ],
        leaks={"processes": "str", "uds": [None]},
        events=["x", {"event": None}],  # type: ignore[list-item]
        env={"A": None},  # type: ignore[dict-item]
        installed={"u": None},  # type: ignore[dict-item]
        platform={"sys_platform": None},
        python={"version": None},
        command=["a", None],  # type: ignore[list-item]
        stderr_tail=None,  # type: ignore[arg-type]
        started_at=None,  # type: ignore[arg-type]
    )
    twin = dataclasses.replace(odd, failure_class="passed", started_at="2026-01-01")
    html = render([odd, twin])
    assert "FLAKY" in html and "startup-failure" in html
    d = diff([odd], [twin])
    assert len(d.newly_fixed) == 1
    heading = 'Spuriously fixed (its failure at 1 was never confirmed) <span class="count">1</span>'
    assert heading in render_release(d, "reference", "2", "1")  # one failing run: never confirmed


def test_clean_text() -> None:
    assert clean_text("\x1b[1;31mred\x1b[0m") == "red"
    assert clean_text("a\x00b") == "a\u2400b"
    assert clean_text("line\r\nnext\rx") == "line\nnext\nx"
    assert clean_text("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\") == "link"
    assert clean_text("tab\tok\x7f") == "tab\tok\u2421"


def test_svg_builders_escape_and_degrade() -> None:
    svg = str(timeline({"first_response": 0.3, "worker_ready": {"<b>": 0.2}, "stopped": "nan"}))
    assert "<b>" not in svg and "&lt;b&gt;" in svg
    assert str(timeline({})) == ""
    assert str(worker_bars({})) == ""
    bars = str(worker_bars({"1": 3, "2": 1}))
    assert "75.0%" in bars and "25.0%" in bars and 'class="even"' in bars


# --- merge ---------------------------------------------------------------------------------------------


def test_merge_conflict_keeps_both_verdicts() -> None:
    a, b = load("rerun_a.jsonl"), load("rerun_b.jsonl")
    view = merge([a, b])
    conflict = [c for c in view.cells if c.conflict]
    assert len(conflict) == 1
    cell = conflict[0]
    assert cell.css_class == "flaky"
    assert {v.failure_class for v in cell.verdicts} == {"passed", "not-serving"}
    assert cell.runs == 2
    agreed = next(c for c in view.cells if not c.conflict)
    assert agreed.runs == 2 and agreed.verdicts[0].latest.run_id == "ci-linux-3"
    html = render([], record_lists=[a, b])
    assert "FLAKY" in html and "ConnectTimeout: no worker answered" in html and "\u00d72" in html
    assert "Flaky:</b> 2 runs of this cell disagree" in html


def test_degraded_is_decided_against_the_single_worker_twin() -> None:
    base = rec("uvicorn", "0.54.0", "3.11", "linux", workers=1, run_id="d")
    fast = rec("uvicorn", "0.54.0", "3.11", "linux", workers=2, run_id="d")
    slow = rec("uvicorn", "0.54.0", "3.11", "linux", workers=4, run_id="d")
    slow = dataclasses.replace(
        slow,
        load={**slow.load, "keepalive": {**slow.load["keepalive"], "latency_ms": {"p50": 6.2, "p99": 40.0}}},
    )
    other_py = dataclasses.replace(slow, python={**slow.python, "version": "3.12.7"})  # no twin there
    view = merge([[base, fast, slow, other_py]])
    classes = {(c.row.workers, c.column.python): c.css_class for c in view.cells}
    assert classes == {
        (1, "3.11"): "passed",
        (2, "3.11"): "passed",
        (4, "3.11"): "degraded",
        (4, "3.12"): "passed",
    }
    cell = next(c for c in view.cells if c.css_class == "degraded")
    assert cell.verdicts[0].signature == "degraded: keep-alive p50 >= 10x the 1-worker twin"
    assert "6.2 ms is 10x its single-worker twin's 0.6 ms" in cell.verdicts[0].latest.reason
    assert "degraded" in render([base, slow])


def test_merge_counts_a_record_once_when_read_twice() -> None:
    a = load("rerun_a.jsonl")
    view = merge([a, a])
    assert all(c.runs == 1 for c in view.cells)


def test_merge_rows_and_columns_sorted() -> None:
    view = merge([load(*ALL)])
    uvicorn_versions = [r.version for r in view.rows if r.server == "uvicorn"]
    assert uvicorn_versions.index("0.11.0") < uvicorn_versions.index("0.54.0")  # 0.11 < 0.54, numerically
    assert [c.platform for c in view.columns][:1] == ["linux"]
    assert [c.python for c in view.columns if c.platform == "linux"] == ["3.8", "3.11", "3.13"]


# --- known issues ------------------------------------------------------------------------------------


def test_known_issue_cards() -> None:
    html = render(load(*ALL))
    start = html.index('id="issue-uvicorn-514"')
    card = html[start : html.index("</article>", start)]
    assert "every worker after the first dies with WSAEINVAL on Windows" in card
    assert SIG_WSAEINVAL in card and "0.12.2" in card
    assert "https://github.com/encode/uvicorn/issues/514" in card
    assert re.search(r"Windows — Reproduced: <span class=\"yes\">yes</span>", card)
    assert "executed on Windows 3.8.10 2026-11-21" in card
    assert re.search(r"macOS — Reproduced: <span class=\"no\">no</span>", card)
    # fix given as "<distribution> <version>": compared with that distribution's installed version
    start = html.index('id="issue-uvicorn-worker-setup-event-loop"')
    card = html[start : html.index("</article>", start)]
    assert "uvicorn-worker 0.4.0" in card and "fix holds" in card
    assert re.search(r"Linux — Reproduced: <span class=\"yes\">yes</span>", card)


# --- release diff ------------------------------------------------------------------------------------


def _bump(r: ResultRecord, version: str, **changes: Any) -> ResultRecord:
    sc = dict(r.scenario)
    sc["requirements"] = [
        f"{r.scenario['server']}=={version}" if q.startswith(r.scenario["server"] + "==") else q
        for q in sc["requirements"]
    ]
    return dataclasses.replace(r, scenario=sc, server_version=version, **changes)


def release_pair() -> Tuple[List[ResultRecord], List[ResultRecord]]:
    """uvicorn 0.54.0 -> a made-up 0.55.0: Windows breaks, one Linux cell is fixed, the rest stays."""
    prev = [r for r in load("linux.jsonl", "windows.jsonl") if r.server_version == "0.54.0"]
    cur = []
    for i, r in enumerate(prev):
        if r.platform["sys_platform"] == "win32":  # passed before, fails now: the first run and its re-run
            for index in (1, 2):
                cur.append(
                    _bump(
                        r,
                        "0.55.0",
                        failure_class="startup-failure",
                        signature=SIG_WSAEINVAL,
                        stderr_tail=WSAEINVAL,
                        reason="the second worker died before it answered",
                        run_id=f"win-{index}",
                        attempt={"group": "win", "index": index, "purpose": "confirm"},
                    )
                )
        elif r.scenario["workers"] == 4 and r.python["version"].startswith(
            "3.11"
        ):  # failed before, passes now
            prev[i] = dataclasses.replace(
                r, failure_class="request-errors", signature="RemoteProtocolError x19"
            )
            cur.append(_bump(r, "0.55.0"))
        else:
            cur.append(_bump(r, "0.55.0"))
    return prev, cur


def test_release_diff_and_page() -> None:
    prev, cur = release_pair()
    assert {r.failure_class for r in prev} == {"passed", "env-error", "request-errors"}
    d = diff(prev, cur)
    assert len(d.newly_broken) == 1 and d.newly_broken[0].platform == "win32"
    assert d.newly_broken[0].current is not None and d.newly_broken[0].current.state == "broken"
    assert d.newly_broken[0].current.confirmed  # two runs, both failing
    # the line the failing runs log and the passing runs of 0.54.0 do not
    assert d.newly_broken[0].decisive == SIG_WSAEINVAL
    assert len(d.newly_fixed) == 1 and d.newly_fixed[0].python == "3.11"
    assert len(d.inconclusive) == 1  # the env-error cell judges nothing
    assert len(d.unchanged) == 3 and not d.added and not d.removed
    page = render_release(d, "uvicorn", "0.55.0", "0.54.0")
    assert "uvicorn 0.55.0" in page and "vs 0.54.0" in page
    assert "decisive line (logged at 0.55.0, not by the passing runs of 0.54.0)" in page
    start = page.index('<section id="regressed"')
    broken = page[start : page.index("<section", start + 1)]
    assert [e.outcome for e in d.newly_broken] == ["regressed"]
    assert (
        SIG_WSAEINVAL in broken
        and WSAEINVAL in broken
        and "Windows" in broken
        and "-m uvicorn servers.apps:pid" in broken
    )
    assert "<script>alert" not in render_release(
        diff([], load("hostile.jsonl")), "uvicorn", "0.30.0", "0.29.0"
    )


def test_release_outcomes_as_crater_names_them() -> None:
    """Every cell gets one of the seven outcomes; `degraded` counts as a failure in a release diff, a
    failure is confirmed by a second failing run, and a still-broken cell shows its signature diff."""
    refused = "OSError: [WinError 10022] An invalid argument was supplied"

    def cell(name: str, version: str, *runs: Tuple[str, str]) -> List[ResultRecord]:
        return [rec("uvicorn", version, "3.12", "linux", c, s, options=(("cell", name),),
                    run_id=f"{version}-{i}") for i, (c, s) in enumerate(runs)]  # fmt: skip

    ok, bad = ("passed", ""), ("startup-failure", refused)
    other = ("respawn-loop", "RuntimeError: lifespan failed")
    pairs = {
        "regressed": ([ok], [bad, bad]),
        "spurious-regressed": ([ok], [bad, ok]),
        "still-broken": ([bad, bad], [other, other]),
        "fixed": ([bad, bad], [ok]),
        "spurious-fixed": ([bad], [ok]),
        "still-passing": ([ok], [ok]),
        "inconclusive": ([ok], [("env-error", "No matching distribution")]),
    }
    assert set(pairs) == set(OUTCOMES)
    prev: List[ResultRecord] = []
    cur: List[ResultRecord] = []
    for name, (before, after) in pairs.items():
        prev += cell(name, "0.54.0", *before)
        cur += cell(name, "0.55.0", *after)
    prev += cell("degraded", "0.54.0", ("degraded", "keep-alive stall"), ("degraded", "keep-alive stall"))
    cur += cell("degraded", "0.55.0", ok)
    d = diff(prev, cur)
    outcome_of = {dict(map(tuple, e.shown.scenario["options"]))["cell"]: e.outcome for e in d.entries}
    assert outcome_of == {**{name: name for name in pairs}, "degraded": "fixed"}  # never "unchanged"
    assert sum(map(len, d.outcomes().values())) == 8
    still = next(e for e in d.entries if e.outcome == "still-broken")
    gone, new = still.signature_diff
    assert gone == (f"startup-failure {refused}",) and new == ("respawn-loop RuntimeError: lifespan failed",)


def test_release_diff_abstracts_only_the_released_version() -> None:
    base = load("linux.jsonl")
    gun = [r for r in base if r.scenario["server"] == "gunicorn"]
    # gunicorn cells differ by uvicorn-worker pin: distinct identities, never matched with each other
    d = diff(gun[:1], gun[1:])
    assert len(d.added) == 1 and len(d.removed) == 1
    # a uvicorn release: uvicorn's own pin inside a gunicorn cell is abstracted when server="uvicorn"
    moved = dataclasses.replace(
        gun[1],
        scenario={
            **gun[1].scenario,
            "requirements": ["gunicorn==23.0.0", "uvicorn-worker==0.4.0", "uvicorn==0.37.0"],
        },
    )
    d = diff(gun[1:], [moved], server="uvicorn")
    assert len(d.unchanged) == 1


def test_write_report(tmp_path: Any) -> None:
    out = write_report(load("linux.jsonl"), str(tmp_path / "sub" / "report.html"))
    with open(out, encoding="utf-8") as fh:
        assert '<table class="matrix">' in fh.read()


def test_every_failure_class_has_css() -> None:
    with open(os.path.join(_paths.ROOT, "reports", "templates", "_style.css")) as fh:
        css = fh.read()
    for cls in (*FAILURE_CLASSES, "flaky"):
        assert re.search(r"^\." + re.escape(cls) + r" \{ --c:", css, re.M), cls


# --- pytest-html (optional, never a dependency) --------------------------------------------------------


def test_pytest_html_gets_each_record_as_an_extra(pytester: Any, monkeypatch: Any) -> None:
    """With pytest-html installed, a test that ran a scenario carries its record (JSON) and verdict as
    extras in pytest-html's report; under xdist too. Skips where pytest-html is not installed."""
    pytest.importorskip("pytest_html")
    from harness.env import venvs as envs  # noqa: PLC0415

    # pytester gives the inner session its own HOME; keep using the real env cache (no rebuilds)
    monkeypatch.setenv(
        "HARNESS_CACHE", os.environ.get("HARNESS_CACHE") or os.path.dirname(envs.default_cache_dir())
    )
    pytester.makepyfile(
        test_x="""
from harness.model.records import Scenario

def test_one(run_scenario):
    run_scenario(Scenario(workers=1, strategy="inherit", start_method="fork", requests=20, concurrency=4,
                          keepalive_requests=5))
"""
    )
    html = pytester.path / "ph.html"
    result = pytester.runpytest_subprocess(
        "-n", "2", "-p", "xdist", f"--html={html}", "--self-contained-html"
    )
    result.assert_outcomes(passed=1)
    page = html.read_text(encoding="utf-8")
    assert "harness record: reference-inherit-fork-w1" in page
    assert "harness verdict: reference-inherit-fork-w1" in page


if __name__ == "__main__":
    write_fixtures()
    sys.exit(0)


def test_known_issue_card_from_the_record_catalog_field_and_the_entrys_card() -> None:
    """A record of today's harness names its catalog case in `catalog` (no scenario options): the card's
    text comes from the catalog entry's card, given to render by the face."""
    failing = dataclasses.replace(
        rec("uvicorn", "0.14.0", "3.11", "linux", "wrong-listener", "wrong-listener: tcp 127.0.0.1:8000"),
        catalog={"id": "uvicorn-1009-uds", "role": "affected"},
    )
    fixed = dataclasses.replace(
        rec("uvicorn", "0.15.0", "3.11", "linux"), catalog={"id": "uvicorn-1009-uds", "role": "fixed"}
    )
    cards = {"uvicorn-1009-uds": {"title": "binds TCP 8000 instead of the UDS", "fixed_in": "uvicorn 0.15.0"}}
    html = render([failing, fixed], cards=cards)
    start = html.index('id="issue-uvicorn-1009-uds"')
    card = html[start : html.index("</article>", start)]
    assert "binds TCP 8000 instead of the UDS" in card and "0.15.0" in card
    assert re.search(r"Linux — Reproduced: <span class=\"yes\">yes</span>", card)
    assert "known_issue" not in html  # nothing of the old option form leaks into row labels


# --- row labels, env-errors and the stall column (issue #14's findings) ------------------------------


def test_pinned_and_latest_rows_of_one_version_are_told_apart() -> None:
    pinned = rec("uvicorn", "0.54.0", "3.11", "linux", workers=1)
    latest = dataclasses.replace(
        pinned, scenario={**pinned.scenario, "requirements": []}, run_id="latest"
    )  # the same version, installed as "the latest"
    view = merge([[pinned, latest]])
    assert sorted(r.title for r in view.rows) == ["uvicorn==0.54.0", "uvicorn@0.54.0"]
    html = render([pinned, latest])
    assert (
        '<span class="srv">uvicorn==0.54.0</span>' in html
        and '<span class="srv">uvicorn@0.54.0</span>' in html
    )


def test_an_env_error_keeps_its_requested_version_and_a_command() -> None:
    bad = dataclasses.replace(
        rec("uvicorn", "0.11.0", "3.8", "linux", bind="uds", serving=False),
        failure_class="env-error", signature="Failed to build `httptools==0.1.2`", server_version="",
        command=[], installed={}, exit_code=None,
    )  # fmt: skip
    (row,) = merge([[bad]]).rows
    assert row.title == "uvicorn==0.11.0"
    html = render([bad])
    assert "(no command recorded)" not in html
    assert "its environment was never built" in html
    assert "harness run --server uvicorn --requirement uvicorn==0.11.0 --bind uds" in html


def test_every_passed_row_shows_its_kept_alive_body_gap() -> None:
    ok = rec("uvicorn", "0.54.0", "3.11", "linux", workers=2)
    ka = dict(ok.load.get("keepalive") or {}, body_gap_ms={"p50": 0.7, "p25": 0.6})
    ok = dataclasses.replace(ok, load={**ok.load, "keepalive": ka})
    stalled_ka = dict(ka, body_gap_ms={"p50": 41.7})
    stall = dataclasses.replace(
        ok, failure_class="degraded", run_id="s", load={**ok.load, "keepalive": stalled_ka}
    )
    html = render([ok, dataclasses.replace(stall, scenario={**ok.scenario, "workers": 4})])
    perf = html[html.index('<section id="performance">') :]
    assert "0.7 ms" in perf and "41.7 ms" in perf
    assert perf.count('<tr class="degraded">') == 1
