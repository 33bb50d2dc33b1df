"""Known-issue pages: one static page per catalog entry, from the runs this harness executed.

`issue_view(page, records)` is pure: `page` is the entry's own text and cases (harness.catalog.Entry.page(),
plain data: reports never import the catalog), `records` every run of any kind (the entry's are those whose
ResultRecord.catalog names it: its catalog cases and `harness catalog sweep` runs). What it answers:

* symptom, trigger, mechanism, fix, links - the entry's words, never a run's reason text
* the signature to search for - the entry's regex and the decisive lines the runs logged
* reproduced - per platform the entry names: yes (where, when, which versions) / no (which versions ran) /
  waits for a runner of that OS (nothing ran there: never "not reproduced"); platforms the entry does
  not name are "not on this platform"
* first bad / first fixed as measured (per OS x Python column of the version table), beside the catalog's
  own `fixed_in`, each labelled with where it comes from
* the version table - every release a run measured x every OS x Python that ran it; a cell is the latest
  run's outcome (reproduced / passed / other failure / inconclusive, or flaky when runs disagree) and links
  to its run (`link(record)`: the page's run list, or the report's drill-down)
* a minimal reproduction - the app file, `pip install` of the exact pins the reproducing run had, the
  server command as the run started it (harness paths taken out), what to look for; the same as a
  `harness run` line; the environment in a fold

reports.render.write_issue_pages(pages, records, out_dir, app_sources) writes `<out_dir>/<id>.html` per
entry and `<out_dir>/index.html`.
"""

import os
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from harness.model import classes
from harness.model.records import ResultRecord, Scenario
from harness.verdict.versions import (
    FIXED,
    INCONCLUSIVE_OUTCOME,
    OTHER,
    PASSED,
    REPRODUCED,
    boundaries,
    outcome,
)

from .merge import PLATFORM_NAMES, version_key

FLAKY = "flaky"

#: the interpreter of the server's env in a recorded command: shown as plain `python`
_ENV_PYTHON = re.compile(r"^.*[/\\](?:python[0-9.]*|pythonw?)(?:\.exe)?$", re.IGNORECASE)


def _minor(version: str) -> str:
    m = re.match(r"(\d+)\.(\d+)", version or "")
    return f"{m.group(1)}.{m.group(2)}" if m else (version or "?")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", str(name).strip().lower())


def entry_of(record: ResultRecord) -> str:
    tag = record.catalog if isinstance(record.catalog, dict) else {}
    return str(tag.get("id") or "")


def version_of(record: ResultRecord, distribution: str) -> str:
    """The installed version of `distribution` in the run's env, else the version it pinned."""
    for name, ver in (record.installed or {}).items():
        if _norm(name) == distribution:
            return str(ver)
    if _norm(record.scenario.get("server", "")) == distribution and record.server_version:
        return record.server_version
    for req in record.scenario.get("requirements") or ():
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*(\S+)\s*$", str(req))
        if m and _norm(m.group(1)) == distribution:
            return m.group(2)
    return ""


def _platform(record: ResultRecord) -> str:
    return str(record.platform.get("sys_platform", "") or "?")


def _date(record: ResultRecord) -> str:
    return str(record.started_at or "")[:10] or "?"


def _ranges(versions: Sequence[str], order: Sequence[str]) -> str:
    """'0.6.0 - 0.11.2, 0.14.0' : runs of consecutive releases (in `order`) joined."""
    idx = sorted(order.index(v) for v in set(versions) if v in order)
    out: List[str] = []
    start = prev = None
    for i in idx:
        if start is None:
            start = prev = i
        elif i == prev + 1:  # type: ignore[operator]
            prev = i
        else:
            out.append(order[start] if start == prev else f"{order[start]} - {order[prev]}")  # type: ignore[index]
            start = prev = i
    if start is not None:
        out.append(order[start] if start == prev else f"{order[start]} - {order[prev]}")  # type: ignore[index]
    return ", ".join(out)


def clean_command(record: ResultRecord) -> List[str]:
    """The server's argv as a user would type it: the env's interpreter is `python`, the harness's app
    module `servers.apps` is the page's `app.py`, the run's private directory is `./run`, port 0 (any free
    port, as the harness asks) is 8000."""
    run_dir = ""
    home = str((record.env or {}).get("HOME", ""))
    if home.rstrip("/\\").endswith("home"):
        run_dir = os.path.dirname(home.rstrip("/\\"))
    out: List[str] = []
    for i, raw in enumerate(str(a) for a in record.command):
        text = "python" if i == 0 and _ENV_PYTHON.match(raw) else raw
        if run_dir and text.startswith(run_dir):
            text = "./run" + text[len(run_dir) :]
        text = text.replace("servers.apps:", "app:")
        if out and out[-1] in ("--port", "-p") and text == "0":
            text = "8000"  # the harness asks for port 0 (any free one); a user picks one
        out.append(re.sub(r"^((?:\d{1,3}\.){3}\d{1,3}|\[[0-9a-fA-F:]+\]):0$", r"\1:8000", text))
    if len(out) > 2 and out[1] == "-m" and out[2] == "servers.launcher":
        # the harness's start-method launcher: `python -m servers.launcher METHOD -- argv...` runs argv
        out = ["python", "-m", *out[out.index("--") + 1 :]] if "--" in out else out
    return out


def _quote(argv: Sequence[str]) -> str:
    import shlex  # noqa: PLC0415

    return " ".join(shlex.quote(a) for a in argv)


def issue_view(
    page: Mapping[str, Any],
    records: Sequence[ResultRecord],
    link: Optional[Callable[[ResultRecord], str]] = None,
    app_sources: Optional[Mapping[str, str]] = None,
) -> Dict[str, Any]:
    """Everything one known-issue page (or report card) shows (module doc)."""
    link = link or (lambda rec: f"#run-{rec.run_id}")
    dist = str(page.get("distribution") or "")
    mine = [r for r in records if entry_of(r) == page.get("id")]
    mine.sort(key=lambda r: (str(r.started_at or ""), str(r.run_id or "")))
    said = {id(r): outcome(page, r) for r in mine}  # each run's outcome, read once

    # the version table: release x (platform, python minor), the latest run's outcome per cell
    cells: Dict[Tuple[str, Tuple[str, str]], List[ResultRecord]] = {}
    for rec in mine:
        ver = version_of(rec, dist) or "?"
        col = (_platform(rec), _minor(str(rec.python.get("version", ""))))
        cells.setdefault((ver, col), []).append(rec)
    superseded: Set[int] = set()
    for key, runs in cells.items():  # a run alone supersedes the parallel sweep runs (harness.campaign.sweep)
        alone = [r for r in runs if (r.catalog or {}).get("role") != "sweep"]
        if alone and len(alone) < len(runs):
            superseded.update(id(r) for r in runs if (r.catalog or {}).get("role") == "sweep")
            cells[key] = alone
    mine = [r for r in mine if id(r) not in superseded]
    columns = sorted({col for _, col in cells}, key=lambda c: (c[0], version_key(c[1])))
    versions = sorted({ver for ver, _ in cells}, key=version_key)
    table_rows = []
    for ver in reversed(versions):  # newest first
        row: List[Optional[Dict[str, Any]]] = []
        for col in columns:
            runs = cells.get((ver, col), [])
            if not runs:
                row.append(None)
                continue
            seen = {said[id(r)] for r in runs} - {INCONCLUSIVE_OUTCOME}
            latest = runs[-1]
            word = FLAKY if len(seen) > 1 else (seen.pop() if seen else INCONCLUSIVE_OUTCOME)
            row.append(
                {
                    "outcome": word,
                    "runs": len(runs),
                    "href": link(latest),
                    "title": f"{latest.failure_class} {latest.signature}".strip() + f" · {_date(latest)}",
                    "record": latest,
                }
            )
        table_rows.append({"version": ver, "cells": row})

    # measured boundaries per column, oldest to newest
    measured = []
    for col in columns:
        by_ver = {}
        for ver in versions:
            outs = {said[id(r)] for r in cells.get((ver, col), [])} - {INCONCLUSIVE_OUTCOME}
            if len(outs) == 1:
                by_ver[ver] = outs.pop()
        found = boundaries(versions, by_ver)
        newest = next((v for v in reversed(versions) if v in by_ver), "")
        measured.append(
            {
                "platform": PLATFORM_NAMES.get(col[0], col[0]),
                "python": col[1],
                "releases": len(by_ver),
                "first_bad": found.first_bad,
                "first_fixed": found.first_fixed,
                "oldest": next((v for v in versions if v in by_ver), ""),
                "newest": newest,
                "last_good_before": found.last_good_before,
                "still_bad": by_ver.get(newest) == REPRODUCED,
            }
        )

    # reproduced: per platform the entry names (every platform when it names none)
    named = list(page.get("platforms") or []) or sorted({_platform(r) for r in mine} or {"linux"})
    status = []
    for plat in named:
        here = [r for r in mine if _platform(r) == plat]
        name = PLATFORM_NAMES.get(plat, plat)
        concl = [r for r in here if said[id(r)] != INCONCLUSIVE_OUTCOME]
        hits = [r for r in concl if said[id(r)] == REPRODUCED]
        if not concl:
            status.append({"platform": name, "word": "waiting",
                           "text": f"not run on {name} yet: it waits for a {name} runner"
                           + (" (only inconclusive runs so far)" if here else "")})  # fmt: skip
            continue
        pys = sorted({_minor(str(r.python.get("version", ""))) for r in (hits or concl)}, key=version_key)
        dates = sorted({_date(r) for r in (hits or concl)})
        when = dates[0] if len(dates) == 1 else f"{dates[0]} - {dates[-1]}"
        if hits:
            vers = _ranges([version_of(r, dist) for r in hits], versions)
            text = f"on {name}, Python {', '.join(pys)}, {when}: {dist} {vers}"
            status.append({"platform": name, "word": "yes", "text": text})
        else:
            vers = _ranges([version_of(r, dist) for r in concl], versions)
            text = f"not on {name}, Python {', '.join(pys)}, {when}: {dist} {vers} ran"
            status.append({"platform": name, "word": "no", "text": text})
    elsewhere = sorted({PLATFORM_NAMES.get(p, p) for p in ("linux", "darwin", "win32")} - {
        PLATFORM_NAMES.get(p, p) for p in named
    }) if page.get("platforms") else []  # fmt: skip

    # the reproduction: the latest reproducing run of the catalog's own affected case, else any
    hits = [r for r in mine if said[id(r)] == REPRODUCED]
    own = [r for r in hits if (r.catalog or {}).get("role") == "affected"]
    shown: Optional[ResultRecord] = (own or hits)[-1] if (own or hits) else None
    cases = list(page.get("cases") or [])
    affected: Dict[str, Any] = next((c for c in cases if c.get("role") == "affected"), {"requirements": []})
    sc_data = dict(page.get("scenario") or {})
    sc_data["requirements"] = list(affected.get("requirements") or [])
    if affected.get("python"):
        sc_data["python"] = affected["python"]
    scenario = Scenario.from_dict(sc_data)
    app = scenario.app.split(":", 1)
    repro: Dict[str, Any] = {
        "harness": _quote(scenario.harness_argv()),
        "app_name": "app.py" if app[0] == "servers.apps" else app[0].replace(".", "/") + ".py",
        "app_source": (app_sources or {}).get(app[0], ""),
        "bind_note": _bind_note(scenario.bind),
        "fault_step": fault_step(scenario),
    }
    if shown is not None:
        pins = sorted(f"{k}=={v}" for k, v in (shown.installed or {}).items())
        repro.update(
            pip="python -m pip install " + _quote(pins or list(scenario.requirements)),
            command=_quote(clean_command(shown)) if shown.command else "",
            python=str(shown.python.get("version", "")),
            platform=PLATFORM_NAMES.get(_platform(shown), _platform(shown)),
            signature=shown.signature,
            reason=shown.reason,
            record=shown,
            href=link(shown),
            env=sorted((str(k), str(v)) for k, v in (shown.env or {}).items()),
            builder=shown.builder,
        )
    else:
        repro.update(
            dict.fromkeys(("command", "signature", "reason", "python", "platform", "href", "builder"), "")
        )
        repro.update(pip="python -m pip install " + _quote(list(scenario.requirements)), record=None, env=[])
    expect = page.get("expect") or {}
    signatures = sorted({r.signature for r in hits if r.signature})
    return {
        "page": page,
        "id": page.get("id", ""),
        "records": mine,
        "columns": [{"platform": PLATFORM_NAMES.get(p, p), "python": py} for p, py in columns],
        "rows": table_rows,
        "measured": measured,
        "status": status,
        "elsewhere": elsewhere,
        "signatures": signatures,
        "expect_help": classes.CLASS_HELP.get(str(expect.get("failure_class", "")), ""),
        "repro": repro,
        "counts": {
            k: sum(1 for r in mine if said[id(r)] == k)
            for k in (REPRODUCED, PASSED, FIXED, OTHER, INCONCLUSIVE_OUTCOME)
        },
    }


def fault_step(scenario: Scenario) -> str:
    """What to do, once every worker answers, to inject the scenario's fault by hand ("" for none); the
    harness's own faults are harness.run.faults."""
    name, _, arg = scenario.fault.partition(":")
    load = "while requests keep coming (e.g. a loop of curl)"
    if name == "signal-master":
        times = (
            f"{scenario.fault_repeat} times, {scenario.fault_interval:g} s apart"
            if scenario.fault_repeat > 1
            else "once"
        )
        return f"send SIG{arg} to the master process only (`kill -{arg} MASTER_PID`) {times}, {load}"
    steps = {
        "kill-worker": f"SIGKILL one worker (a child of the master: `kill -9 WORKER_PID`) {load}",
        "kill-workers": f"SIGKILL {'every' if arg == 'all' else arg} worker(s) at the same instant {load}",
        "stop-worker": "SIGSTOP one worker (`kill -STOP WORKER_PID`): a hung worker",
        "kill-master": "SIGKILL the master (`kill -9 MASTER_PID`) and watch its workers",
        "term-master-only": "send SIGTERM to the master alone (not its process group)",
        "port-in-use": "before starting it, hold the port with another listening socket",
        "stale-uds": 'before starting it, leave a stale socket file at the path: `python -c "import socket; '
        "socket.socket(socket.AF_UNIX).bind('PATH')\"` (bound, never listening, closed)",
        "import-error": "use an app module that fails to import",
        "lifespan-failure": "use an app whose lifespan startup fails (app:failing_lifespan)",
    }
    return steps.get(name, f"inject {scenario.fault}" if scenario.fault else "")


def _bind_note(bind: str) -> str:
    if bind.startswith("fd:"):
        n = bind.split(":", 1)[1]
        return (f"the server is handed an already listening TCP socket as file descriptor {n} (as systemd or "
                f"a process manager would); e.g. `systemd-socket-activate -l 127.0.0.1:8001 ...` or a small "
                f"wrapper that binds, listens and execs the command with fd {n} inherited")  # fmt: skip
    if bind == "uds":
        return "the server listens on a Unix domain socket path (./run/… in the command)"
    return ""


__all__ = [
    "FLAKY",
    "clean_command",
    "entry_of",
    "issue_view",
    "version_of",
]
