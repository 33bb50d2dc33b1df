"""records -> one static, self-contained HTML page (inline CSS, JS and SVG; no network resources).

`render()` is a pure function of the records: no file, clock or network access (template text ships with
the package and is read once). `write_report()` does the I/O.

Everything that came from a server or a machine (stderr, signatures, reasons, commands, env values, pids,
paths) is untrusted: the Jinja2 environment autoescapes every expression, and its `finalize` hook strips
ANSI escape sequences and shows control characters (NUL, ...) as visible symbols. Nothing from a record is
ever marked safe; only the SVG builders in reports.svg return Markup, and they escape their text inputs.

Known-issue catalog cases are records whose `catalog` field names the entry ({"id", "role"}). The card's
text comes from `cards` ({id: harness.catalog.Entry.card()}, given by the face that renders); records of
older harnesses carried the id as a scenario option ("known_issue", "<id>") and these keys beside it, and
are still read (all data, no code per issue):

* title - what broke, one line; url (or link) - the upstream issue; trigger - what makes it happen
* fixed_in - first fixed version: "0.15.0", or "<distribution> <version>" ("uvicorn-worker 0.4.0") when the
  fix is not in the scenario's server; without it the card shows the first passing version it observed
* expect - the failure class that counts as "reproduced" (default: any failing class)
* role - affected | fixed | unaffected: which catalog case the run is (else: compared with fixed_in)
"""

import datetime
import os
import re
import shlex
import subprocess
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import jinja2
from markupsafe import Markup

from harness.model import classes
from harness.model.classes import FAILURE_CLASSES
from harness.model.classes import rank as class_rank
from harness.model.files import write_atomic
from harness.model.records import ResultRecord, Scenario
from harness.model.text import clean_text

from . import svg
from .faults import fault_table
from .issues import issue_view
from .merge import PLATFORM_NAMES, Cell, MergedView, merge, version_key
from .perf import performance

__all__ = [
    "CLASS_HELP",
    "build_environment",
    "clean_text",
    "known_issues",
    "render",
    "render_issue_index",
    "render_issue_page",
    "shell_command",
    "write_issue_pages",
    "write_report",
]

#: the legend: every failure class's meaning (harness.model.classes), plus the report's own cell state
CLASS_HELP: Dict[str, str] = {
    **classes.CLASS_HELP,
    "flaky": "runs of one cell disagree (a confirmation re-run, another job): every verdict is listed",
}
INCONCLUSIVE = classes.INCONCLUSIVE
OK_CLASSES = classes.OK_CLASSES

# one cleaning for the terminal, the capsule and this page: harness.model.text.clean_text


def _finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    if isinstance(value, str):
        return clean_text(value)
    return value


def shell_command(record: ResultRecord) -> str:
    """The record's command as one copy-pasteable line for its own platform (cwd and env included)."""
    argv = [str(a) for a in record.command]
    env = {str(k): str(v) for k, v in (record.env or {}).items()}
    windows = str(record.platform.get("sys_platform", "")) == "win32"
    cwd = str(getattr(record, "cwd", "") or "")  # not a record field yet; used once it is
    if not argv:
        return ""
    if windows:
        lines = [f'set "{k}={v}"' for k, v in sorted(env.items())]
        if cwd:
            lines.append(f'cd /d "{cwd}"')
        lines.append(subprocess.list2cmdline(argv))
        return "\n".join(lines)
    prefix = ""
    if cwd:
        prefix = f"cd {shlex.quote(cwd)} && "
    private = _private_dirs(env)
    if not private:
        assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()))
        return prefix + (assigns + " " if assigns else "") + " ".join(shlex.quote(a) for a in argv)

    # the run's private directories (HOME, TMPDIR, the event file, a UDS path) were removed after the run:
    # the line makes fresh ones under $RUN, so it runs again as it is, any time after
    def under(text: str) -> Optional[str]:
        for root, name in private:
            if text == root or text.startswith(root + "/"):
                return name + text[len(root) :]
        return None

    def quoted(text: str) -> str:
        rest = under(text)
        return shlex.quote(text) if rest is None else '"$RUN"' + (shlex.quote(rest[4:]) if rest[4:] else "")

    dirs = sorted({d for d in (under(v) for v in env.values()) if d is not None})
    dirs += sorted({os.path.dirname(d) for d in (under(a) for a in argv) if d is not None} - set(dirs))
    made = " ".join('"$RUN"' + shlex.quote(d[4:]) for d in dirs if d[4:])
    setup = "RUN=$(mktemp -d) && " + (f"mkdir -p {made} && " if made else "")
    assigns = " ".join(f"{k}={quoted(v)}" for k, v in sorted(env.items()))
    return prefix + setup + (assigns + " " if assigns else "") + " ".join(quoted(a) for a in argv)


def _private_dirs(env: Mapping[str, str]) -> List[Tuple[str, str]]:
    """The run's private directories as (path, its name under $RUN): the run directory (HOME is
    `<run dir>/home`, harness.run.runner) as $RUN, its temp root (TMPDIR is `<root>/tmp`) as $RUN/t."""
    out: List[Tuple[str, str]] = []
    home, tmp = str(env.get("HOME", "")).rstrip("/"), str(env.get("TMPDIR", "")).rstrip("/")
    if home.startswith("/") and os.path.basename(home) == "home" and os.path.dirname(home) != "/":
        out.append((os.path.dirname(home), "$RUN"))
    if tmp.startswith("/") and os.path.basename(tmp) == "tmp" and os.path.dirname(tmp) not in ("/", ""):
        root = os.path.dirname(tmp)
        if not any(root == r or root.startswith(r + "/") for r, _ in out):
            out.append((root, "$RUN/t"))
    return sorted(out, key=lambda p: -len(p[0]))  # the longest first: a path is matched to its own root


def harness_command(record: ResultRecord) -> str:
    """`harness run ...` for the record's scenario (its python as it ran): the way to run the cell again,
    whatever became of its server command (an env-error has none)."""
    try:
        sc = Scenario.from_dict(dict(record.scenario))
    except (TypeError, ValueError):
        return ""
    return " ".join(shlex.quote(a) for a in sc.harness_argv())


def _fmt_s(value: Any) -> str:
    n = svg.number(value)
    if n is None:
        return "—"
    return f"{n:.3f} s" if n < 10 else f"{n:.1f} s"


def _fmt_ms(value: Any) -> str:
    n = svg.number(value)
    if n is None:
        return "—"
    return f"{n:.1f} ms" if n < 100 else f"{n:.0f} ms"


def _fmt_pct(value: Any) -> str:
    n = svg.number(value)
    if n is None:
        return "—"
    return f"{n * 100:.1f}%" if n <= 1 else f"{n:.1f}%"


def _fmt_num(value: Any, digits: int = 3) -> str:
    n = svg.number(value)
    if n is None:
        return "—"
    return f"{n:.{digits}f}"


def _http_url(value: Any) -> str:
    """Only http(s) links reach an href (a record could carry `javascript:`)."""
    text = str(value or "")
    return text if re.match(r"https?://", text, re.IGNORECASE) else ""


def _is_mapping(value: Any) -> bool:
    return isinstance(value, Mapping)


def _items(value: Any) -> List[Tuple[str, Any]]:
    if not isinstance(value, Mapping):
        return []
    return sorted(((str(k), v) for k, v in value.items()), key=lambda kv: kv[0])


def _listify(value: Any) -> List[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    return [] if value in (None, "", {}) else [value]


def _date(started_at: Any) -> str:
    return str(started_at or "")[:10] or "date unknown"


def _platform_name(record: ResultRecord) -> str:
    plat = str(record.platform.get("sys_platform", "") or "")
    return PLATFORM_NAMES.get(plat, plat or "?")


def _has_leaks(record: ResultRecord) -> bool:
    return any(_listify(v) for v in (record.leaks or {}).values())


def build_environment() -> jinja2.Environment:
    """The Jinja2 environment: autoescape on for every template, untrusted text cleaned by `finalize`."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=True,
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        fmt_s=_fmt_s,
        fmt_ms=_fmt_ms,
        fmt_pct=_fmt_pct,
        fmt_num=_fmt_num,
        items=_items,
        http_url=_http_url,
        listify=_listify,
        date=_date,
        shell=shell_command,
        harness_cmd=harness_command,
        platform_name=_platform_name,
        has_leaks=_has_leaks,
        timeline=lambda timings: svg.timeline(timings if isinstance(timings, Mapping) else {}),
        bars=lambda per_worker: svg.worker_bars(per_worker if isinstance(per_worker, Mapping) else {}),
    )
    env.tests["mapping"] = _is_mapping
    return env


_ENV: Optional[jinja2.Environment] = None


def _env() -> jinja2.Environment:
    global _ENV  # noqa: PLW0603 - one environment per process, templates compiled once
    if _ENV is None:
        _ENV = build_environment()
    return _ENV


# --- known issues ---------------------------------------------------------------------------------


def _options(record: ResultRecord) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for kv in record.scenario.get("options") or ():
        if isinstance(kv, (list, tuple)) and len(kv) == 2:
            out.setdefault(str(kv[0]), str(kv[1]))
    return out


def _fixed_in(spec: str, default_dist: str) -> Tuple[str, str]:
    """ "0.15.0" -> (default_dist, "0.15.0"); "uvicorn-worker 0.4.0" / "uvicorn-worker==0.4.0" -> split."""
    m = re.match(r"\s*([A-Za-z][A-Za-z0-9_.\-\[\]]*)\s*(?:==|\s)\s*(\S+)\s*$", spec)
    if m:
        return m.group(1), m.group(2)
    return default_dist, spec.strip()


def _installed_version(record: ResultRecord, dist: str) -> str:
    if dist == str(record.scenario.get("server", "")) and record.server_version:
        return record.server_version
    norm = re.sub(r"[-_.]+", "-", dist.lower())
    for name, ver in (record.installed or {}).items():
        if re.sub(r"[-_.]+", "-", str(name).lower()) == norm:
            return str(ver)
    return record.server_version if dist == str(record.scenario.get("server", "")) else ""


def _reproduced(record: ResultRecord, expect: str) -> Optional[bool]:
    """True/False: did this run show the bug; None: the run could not tell (unsupported, env-error...)."""
    if record.failure_class in INCONCLUSIVE:
        return None
    if expect:
        return record.failure_class == expect
    return record.failure_class not in OK_CLASSES


def _issue_of(record: ResultRecord) -> Tuple[str, str]:
    """(catalog entry id, role) of a record: its catalog field, else the options of older records."""
    tag = record.catalog if isinstance(record.catalog, dict) else {}
    if tag.get("id"):
        return str(tag["id"]), str(tag.get("role") or "")
    opts = _options(record)
    return opts.get("known_issue", ""), opts.get("role", "")


def known_issues(
    cells: Sequence[Cell], cards: Optional[Mapping[str, Mapping[str, str]]] = None
) -> List[Dict[str, Any]]:
    """One issue-verification card (a plain dict for the template) per catalog entry in the records."""
    by_issue: Dict[str, List[Tuple[ResultRecord, Cell]]] = {}
    for cell in cells:
        for rec in cell.records:
            issue = _issue_of(rec)[0]
            if issue:
                by_issue.setdefault(issue, []).append((rec, cell))
    out_cards: List[Dict[str, Any]] = []
    for issue, pairs in sorted(by_issue.items()):
        opts: Dict[str, str] = {str(k): str(v) for k, v in ((cards or {}).get(issue) or {}).items() if v}
        for rec, _ in pairs:
            for k, v in _options(rec).items():
                opts.setdefault(k, v)
        first = pairs[0][0]
        server = str(first.scenario.get("server", ""))
        expect = opts.get("expect", "")
        dist, fixed = _fixed_in(opts.get("fixed_in", ""), server) if opts.get("fixed_in") else (server, "")

        def on_fixed(rec: ResultRecord, dist: str = dist, fixed: str = fixed) -> bool:
            role = _issue_of(rec)[1]
            if role:  # the catalog says which case this run is (affected | fixed | unaffected)
                return role == "fixed"
            ver = _installed_version(rec, dist)
            return bool(fixed and ver) and version_key(ver) >= version_key(fixed)

        executions: List[Dict[str, Any]] = []
        for rec, cell in sorted(
            pairs, key=lambda p: (str(p[0].platform.get("sys_platform") or ""), str(p[0].started_at or ""))
        ):
            fixed_run = on_fixed(rec)
            executions.append(
                {
                    "record": rec,
                    "anchor": cell.anchor,
                    "platform": _platform_name(rec),
                    "python": str(rec.python.get("version", "") or "?"),
                    "date": _date(rec.started_at),
                    "version": _installed_version(rec, dist) or rec.server_version or "?",
                    "on_fixed": fixed_run,
                    "reproduced": _reproduced(rec, expect),
                }
            )
        observed_fix = ""
        if not fixed:
            broken = [e for e in executions if e["reproduced"]]
            passing = [e for e in executions if e["reproduced"] is False]
            top_broken = max((version_key(e["version"]) for e in broken), default=None)
            candidates = sorted(
                (
                    e["version"]
                    for e in passing
                    if top_broken is None or version_key(e["version"]) > top_broken
                ),
                key=version_key,
            )
            observed_fix = candidates[0] if candidates else ""
        platforms: Dict[str, Dict[str, Any]] = {}
        for e in executions:
            p = platforms.setdefault(e["platform"], {"name": e["platform"], "bug": [], "fix": []})
            (p["fix"] if e["on_fixed"] else p["bug"]).append(e)
        for p in platforms.values():
            verdicts = [e["reproduced"] for e in p["bug"]]
            p["reproduced"] = "yes" if any(verdicts) else ("no" if False in verdicts else "not run")
            fix_verdicts = [e["reproduced"] for e in p["fix"]]
            p["fix_holds"] = (
                ""
                if not fix_verdicts
                else ("no" if any(fix_verdicts) else ("yes" if False in fix_verdicts else "?"))
            )
        failing = [rec for rec, _ in pairs if rec.failure_class not in OK_CLASSES + INCONCLUSIVE]
        shown = failing[0] if failing else first
        sc = Scenario.from_dict(shown.scenario)
        trigger = opts.get("trigger") or (
            f"{sc.server} with {sc.workers} workers"
            + (f", strategy {sc.strategy}" if sc.strategy else "")
            + (f", start method {sc.start_method}" if sc.start_method else "")
            + (f", bind {sc.bind}" if sc.bind != "tcp" else "")
            + (f", fault {sc.fault}" if sc.fault else "")
        )
        envs = sorted(
            {
                f"{_platform_name(r)} {r.platform.get('release', '')} {r.platform.get('machine', '')}".strip()
                + f" · Python {r.python.get('version', '?')}"
                for r, _ in pairs
            }
        )
        out_cards.append(
            {
                "id": issue,
                "title": opts.get("title") or (shown.reason or issue),
                "what_broke": shown.reason or shown.verdict,
                "url": opts.get("url") or opts.get("link") or opts.get("links", ""),
                "trigger": trigger,
                "signatures": sorted({r.signature for r in failing if r.signature}),
                "classes": sorted({r.failure_class for r in failing}, key=class_rank),
                "expect": expect,
                "environments": envs,
                "installed": sorted({f"{k}=={v}" for k, v in (shown.installed or {}).items()}),
                "repro": shown,
                "repro_anchor": next(c.anchor for r, c in pairs if r is shown),
                "fixed_dist": dist,
                "fixed_in": fixed,
                "observed_fix": observed_fix,
                "platforms": sorted(platforms.values(), key=lambda p: p["name"]),
                "executions": executions,
            }
        )
    return out_cards


# --- page ---------------------------------------------------------------------------------------


def _signature_groups(view: MergedView) -> List[Dict[str, Any]]:
    """Failing (class, signature) pairs with where they occur, most widespread first."""
    groups: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for cell in view.cells:
        for verdict in cell.verdicts:
            if verdict.failure_class in OK_CLASSES:
                continue
            g = groups.setdefault(
                (verdict.failure_class, verdict.signature),
                {
                    "failure_class": verdict.failure_class,
                    "signature": verdict.signature,
                    "cells": [],
                    "platforms": set(),
                    "pythons": set(),
                    "rows": [],
                },
            )
            g["cells"].append(cell)
            g["platforms"].add(cell.column.platform_name)
            g["pythons"].add(cell.column.python)
            g.setdefault("flaky", 0)
            g["flaky"] += int(cell.conflict)
            g.setdefault("dates", []).extend(
                str(r.started_at or "")[:10] for r in verdict.records if r.started_at
            )
            if cell.row.issue:
                g.setdefault("issues", set()).add(cell.row.issue)
            if cell.row.title not in g["rows"]:
                g["rows"].append(cell.row.title)
    out = []
    for g in groups.values():
        g["platforms"] = sorted(g["platforms"])
        g["pythons"] = sorted(g["pythons"], key=version_key)
        dates = sorted(g.pop("dates", []))
        g["since"], g["last"] = (dates[0], dates[-1]) if dates else ("", "")
        g["issues"] = sorted(g.get("issues", ()))
        out.append(g)
    out.sort(key=lambda g: (g["failure_class"] in INCONCLUSIVE, -len(g["cells"]), g["failure_class"]))
    return out


def _failing(cell: Cell) -> bool:
    return cell.conflict or any(v.failure_class not in OK_CLASSES + INCONCLUSIVE for v in cell.verdicts)


def _matrix_groups(view: MergedView) -> List[Dict[str, Any]]:
    """The matrix's row groups (one per server at one version, Row.group): the groups with failing or
    flaky cells first (worst class first), then inconclusive ones, then the passing ones. Every group
    starts folded to its failing rows (a passing group to its header); its button unfolds the rest.
    Within a group the rows keep their order."""
    groups: Dict[str, Dict[str, Any]] = {}
    for row in view.rows:
        g = groups.setdefault(row.group, {"title": row.group, "server": row.server, "rows": [], "cells": []})
        g["rows"].append(row)
    for cell in view.cells:
        groups[cell.row.group]["cells"].append(cell)
    out = []
    for order, g in enumerate(groups.values()):
        cells = g["cells"]
        g["failing"] = sum(1 for c in cells if _failing(c))
        g["flaky"] = sum(1 for c in cells if c.conflict)
        g["inconclusive"] = sum(1 for c in cells if not _failing(c) and c.css_class in INCONCLUSIVE)
        g["passing"] = sum(1 for c in cells if c.css_class in OK_CLASSES)
        worst = max((class_rank(c.worst.failure_class) for c in cells if _failing(c)), default=-1)
        # a row whose every cell passed (or is inconclusive) is folded with its group; failing rows stay
        bad_rows = {c.row.id for c in cells if _failing(c)}
        g["ok_rows"] = {r.id for r in g["rows"] if r.id not in bad_rows}
        g["collapsed"] = bool(g["ok_rows"])
        g["id"] = "g-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", g["title"])[:100]
        g["key"] = (0 if g["failing"] else 1 if g["inconclusive"] else 2, -worst, order)
        out.append(g)
    out.sort(key=lambda g: g["key"])
    return out


def _column_failing(view: MergedView) -> Dict[str, Tuple[int, int]]:
    """column id -> (cells with a failing verdict, cells run), for the matrix footer."""
    out: Dict[str, Tuple[int, int]] = {}
    for cell in view.cells:
        bad, total = out.get(cell.column.id, (0, 0))
        failing = any(v.failure_class not in OK_CLASSES + INCONCLUSIVE for v in cell.verdicts)
        out[cell.column.id] = (bad + int(failing), total + 1)
    return out


def _header_groups(view: MergedView) -> List[Tuple[str, str, int]]:
    """(platform key, platform name, colspan) for the first header row."""
    out: List[Tuple[str, str, int]] = []
    for col in view.columns:
        if out and out[-1][0] == col.platform:
            out[-1] = (out[-1][0], out[-1][1], out[-1][2] + 1)
        else:
            out.append((col.platform, col.platform_name, 1))
    return out


def render(
    records: Sequence[ResultRecord],
    *,
    title: str = "ASGI multi-worker socket sharing: results",
    generated_at: Optional[str] = None,
    record_lists: Optional[Iterable[Iterable[ResultRecord]]] = None,
    bench: Sequence[Tuple[str, Any]] = (),
    cards: Optional[Mapping[str, Mapping[str, str]]] = None,
    skipped: Sequence[Any] = (),
    pages: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> str:
    """The whole report as one HTML string. Pure: the same records give the same page.

    * records - the runs to show (any order, any machines)
    * title - page title
    * generated_at - shown in the header; default: the newest record's started_at (not the clock)
    * record_lists - alternatively, one list per source (machine / CI job); merged with `records`
    * bench - (source name, decoded bench/results/<name>.json) pairs for the performance section
    * cards - {catalog entry id: its card text (harness.catalog.Entry.card())}, for entries without a page
    * pages - {catalog entry id: harness.catalog.Entry.page()}: the known-issue card of an entry with a
      page is reports.issues.issue_view of it, its version table linking to this page's cells
    * skipped - lines of the input that were not records, or were shown without a field of the wrong type
      (harness.model.records.Skipped): listed on the page with the reason, never dropped silently
    """
    lists: List[List[ResultRecord]] = [list(records)]
    if record_lists is not None:
        lists.extend(list(rl) for rl in record_lists)
    view = merge(lists)
    all_records = view.records
    if generated_at is None:
        generated_at = max((str(r.started_at or "") for r in all_records), default="") or "unknown"
    counts = view.class_counts()
    newer = sorted({r.failure_class for r in all_records} - set(FAILURE_CLASSES))
    help_text = dict(CLASS_HELP)
    for cls in newer:
        help_text[cls] = "a class this harness does not know (written by a newer harness): shown as recorded"
    anchors = {id(r): c.anchor for c in view.cells for r in c.records}
    seen_issues = sorted({c.row.issue for c in view.cells if c.row.issue} | {
        str(r.catalog.get("id")) for r in all_records if isinstance(r.catalog, dict) and r.catalog.get("id")
    })  # fmt: skip
    pages = pages or {}
    issue_views = [
        issue_view(pages[i], all_records, link=lambda rec: "#" + anchors.get(id(rec), ""))
        for i in seen_issues
        if i in pages
    ]
    template = _env().get_template("report.html")
    return template.render(
        title=title,
        generated_at=generated_at,
        view=view,
        counts=counts,
        class_names=[*FAILURE_CLASSES, *newer, "flaky"],
        class_help=help_text,
        skipped=list(skipped),
        header_groups=_header_groups(view),
        servers=sorted({r.server for r in view.rows}),
        platforms=[(p, PLATFORM_NAMES.get(p, p)) for p, _, _ in _header_groups(view)],
        signatures=_signature_groups(view),
        column_failing=_column_failing(view),
        issues=[c for c in known_issues(view.cells, cards) if c["id"] not in pages],
        issue_views=issue_views,
        groups=_matrix_groups(view),
        faults=fault_table(all_records),
        perf=performance([r for rl in lists for r in rl], bench),
        detail_groups=(
            (
                "Failures, flaky cells and inconclusive runs",
                [c for c in view.cells if c.css_class not in OK_CLASSES],
            ),
            ("Passing cells", [c for c in view.cells if c.css_class in OK_CLASSES]),
        ),
        n_records=len(all_records),
        n_runs=len({r.run_id for r in all_records if r.run_id}),
        harness_versions=sorted({r.harness_version for r in all_records if r.harness_version}),
    )


def render_issue_page(view: Mapping[str, Any], *, generated_at: str = "") -> str:
    return _env().get_template("known_issue.html").render(v=view, generated_at=generated_at)


def render_issue_index(views: Sequence[Mapping[str, Any]], *, generated_at: str = "") -> str:
    return _env().get_template("known_issues_index.html").render(views=views, generated_at=generated_at)


def write_issue_pages(
    pages: Sequence[Mapping[str, Any]],
    records: Sequence[ResultRecord],
    out_dir: str,
    app_sources: Optional[Mapping[str, str]] = None,
    generated_at: str = "",
) -> List[str]:
    """`<out_dir>/<id>.html` per entry and `<out_dir>/index.html`; the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    views = [issue_view(p, records, app_sources=app_sources) for p in pages]
    written = []
    for view in views:
        path = os.path.join(out_dir, f"{view['id']}.html")
        write_atomic(path, render_issue_page(view, generated_at=generated_at))
        written.append(path)
    index = os.path.join(out_dir, "index.html")
    write_atomic(index, render_issue_index(views, generated_at=generated_at))
    return [*written, index]


def write_report(
    records: Sequence[ResultRecord],
    path: str,
    *,
    title: str = "ASGI multi-worker socket sharing: results",
    generated_at: Optional[str] = None,
    bench: Sequence[Tuple[str, Any]] = (),
    cards: Optional[Mapping[str, Mapping[str, str]]] = None,
    skipped: Sequence[Any] = (),
    pages: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> str:
    """Render and write the report to `path` (UTF-8); returns the absolute path."""
    if generated_at is None:
        generated_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    html = render(
        records,
        title=title,
        generated_at=generated_at,
        bench=bench,
        cards=cards,
        skipped=skipped,
        pages=pages,
    )
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(html)
    return path
