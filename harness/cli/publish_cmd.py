"""`harness publish RESULTS... --site DIR`: the release pages and the index of every release tested, from
the results of `harness release` jobs (any number of them: one per OS x Python, merged).

    harness publish results/ --site site [--issues issues.json] [--published published.txt]
                    [--site-url URL] [--run-url URL]

* every `<dist>-<version>.item.json` under RESULTS (harness.cli.release_cmd.write_item) names a release
  compared on one platform and Python, and its two JSONL files beside it. The jobs of one release are
  merged: both sides' records of every job, diffed once (reports.diff), so the page has a row per cell
  per platform x Python.
* writes `DIR/releases/<dist>-<version>.html` (a stable address), `DIR/releases/index.json` (every release
  ever published there: the old entries are kept, a release published again replaces its entry) and
  `DIR/releases/index.html` (reports.releases.render_index), each written whole (temp file + rename)
* --issues FILE: a JSON list with one issue per release that regressed (confirmed cells): title, body
  (Markdown: the cells, both sides' signatures, the decisive line, the page and the run's artifacts), a
  marker that `harness notify` finds it by; [] when nothing regressed
* --published FILE: one `DIST==VERSION` line per release published (the workflow advances the watch state
  with them after the deploy: `harness watch --state F --advance DIST==VERSION`)

Bad input (no item file, an item file or JSONL that is unreadable, a corrupt index.json) is a one-line
error, and nothing is written.
"""

import argparse
import json
import os
import time
from typing import IO, Any, Dict, List, Optional, Sequence, Tuple

from harness.cli.release_cmd import ITEM_SUFFIX
from harness.model.errors import HarnessError
from harness.model.files import write_atomic
from harness.model.records import ResultRecord, read_records
from reports import ReleaseDiff, diff, render_release
from reports.releases import merge_entries, render_index, summarize

#: the label every regression issue carries, and the marker in its body that identifies its release
ISSUE_LABEL = "release-regression"
MARKER = "<!-- asgi-workers-harness release: {key} -->"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("publish", help="write the release pages and the release index from release results")
    p.add_argument(
        "inputs", nargs="+", metavar="RESULTS", help="directories (or item files) of `harness release`"
    )
    p.add_argument("--site", required=True, metavar="DIR", help="the site: pages go to DIR/releases/")
    p.add_argument("--issues", default="", metavar="FILE", help="write the regression issues (JSON) here")
    p.add_argument("--published", default="", metavar="FILE", help="write DIST==VERSION per release here")
    p.add_argument("--site-url", default="", metavar="URL", help="where DIR is served (links in issues)")
    p.add_argument("--run-url", default="", metavar="URL", help="the CI run holding the capsules (artifacts)")
    p.set_defaults(func=run)


def _item_files(inputs: Sequence[str]) -> List[str]:
    found: List[str] = []
    for path in inputs:
        if os.path.isfile(path) and path.endswith(ITEM_SUFFIX):
            found.append(path)
        elif os.path.isdir(path):
            for folder, dirs, files in os.walk(path):
                dirs.sort()
                found += [os.path.join(folder, f) for f in sorted(files) if f.endswith(ITEM_SUFFIX)]
        else:
            raise HarnessError(f"{path}: neither a directory nor a {ITEM_SUFFIX} file")
    return found


def _read_item(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            item = json.load(fh)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise HarnessError(f"{path}: unreadable release item: {exc}") from None
    keys = ("distribution", "version", "previous", "sides")
    if not isinstance(item, dict) or not all(k in item for k in keys) or not isinstance(item["sides"], dict):
        raise HarnessError(f"{path}: not a release item (needs {', '.join(keys)})")
    return item


class Release:
    """One release as published: its jobs' records merged."""

    def __init__(self, distribution: str, server: str, version: str, previous: str) -> None:
        self.distribution, self.server, self.version, self.previous = distribution, server, version, previous
        self.sides: Dict[str, List[ResultRecord]] = {previous: [], version: []}
        self.jobs: List[str] = []

    @property
    def key(self) -> str:
        return f"{self.distribution}=={self.version}"

    @property
    def page_name(self) -> str:
        from harness.campaign.release import _file_part  # noqa: PLC0415

        return f"{_file_part(self.distribution)}-{_file_part(self.version)}.html"


def collect(inputs: Sequence[str]) -> List[Release]:
    """The releases the item files under `inputs` name, each with every job's records of both sides."""
    files = _item_files(inputs)
    if not files:
        raise HarnessError(f"no {ITEM_SUFFIX} file under {', '.join(inputs)}: nothing to publish")
    releases: Dict[Tuple[str, str], Release] = {}
    for path in files:
        item = _read_item(path)
        dist, version, previous = str(item["distribution"]), str(item["version"]), str(item["previous"])
        rel = releases.get((dist, version))
        if rel is None:
            rel = releases[(dist, version)] = Release(
                dist, str(item.get("server") or dist), version, previous
            )
        elif rel.previous != previous:
            raise HarnessError(
                f"{path}: {dist} {version} compared with {previous} here, {rel.previous} elsewhere"
            )
        for side in (previous, version):
            name = item["sides"].get(side)
            jsonl = os.path.join(os.path.dirname(path), os.path.basename(str(name or "")))
            if not name or not os.path.isfile(jsonl):
                raise HarnessError(f"{path}: the results of {dist} {side} are missing ({jsonl})")
            try:
                rel.sides[side] += list(read_records([jsonl]))
            except (OSError, ValueError) as exc:
                raise HarnessError(f"{jsonl}: unreadable results: {exc}") from None
        rel.jobs.append(f"{item.get('sys_platform', '?')} {item.get('python', '?')}")
    return list(releases.values())


def load_entries(path: str) -> List[Dict[str, Any]]:
    """The entries of an index.json; [] when the file does not exist. ValueError (one line) when it is
    not a JSON list of objects."""
    if not os.path.exists(path):
        return []
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"the release index {path} is unreadable: {exc}") from None
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        raise ValueError(f"the release index {path} is not a JSON list of releases")
    return data


def _issue(rel: Release, d: ReleaseDiff, page_url: str, run_url: str) -> Optional[Dict[str, Any]]:
    cells = d.outcomes()["regressed"]
    if not cells:
        return None
    lines = [
        MARKER.format(key=rel.key),
        f"`{rel.distribution} {rel.version}` breaks multi-worker cells that passed at `{rel.previous}`: "
        f"{len(cells)} cell(s), each confirmed by a re-run (asgi-workers-harness release check).",
        "",
        "| cell | platform | python | " + rel.previous + " | " + rel.version + " |",
        "|---|---|---|---|---|",
    ]
    for e in cells:
        before = "<br>".join(e.previous.verdicts) if e.previous else "not run"
        after = "<br>".join(e.current.verdicts) if e.current else "not run"
        row = [e.label, e.platform_name, e.python, before, after]
        lines.append("| " + " | ".join(x.replace("|", "\\|").replace("\n", " ") for x in row) + " |")
    lines.append("")
    for e in cells:
        shown = e.shown
        lines.append(f"- **{e.label} · {e.platform_name} {e.python}**: `{shown.verdict[:200]}`")
        if e.decisive:
            lines.append(f"  - decisive line (not logged at {rel.previous}): `{e.decisive[:200]}`")
        if shown.command:
            lines.append(f"  - command: `{' '.join(shown.command)[:300]}`")
        if shown.capsule:
            lines.append(f"  - capsule: `{os.path.basename(shown.capsule)}` (in the run's artifacts)")
    lines.append("")
    if page_url:
        lines.append(f"Release page: {page_url}")
    if run_url:
        lines.append(f"Run, with the capsules and every record as artifacts: {run_url}")
    lines.append(f"Ran on: {', '.join(sorted(set(rel.jobs)))}.")
    title = f"{rel.distribution} {rel.version}: multi-worker startup regressed in {len(cells)} cell(s)"
    return {"key": rel.key, "title": title, "body": "\n".join(lines), "labels": [ISSUE_LABEL]}


def publish(
    inputs: Sequence[str],
    site: str,
    *,
    site_url: str = "",
    run_url: str = "",
    out: Optional[IO[str]] = None,
) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]], List[str]]:
    """Write the pages and the index; returns (index entries of this publish, issues, DIST==VERSION)."""
    import sys  # noqa: PLC0415

    stream = out or sys.stdout
    releases = collect(inputs)
    folder = os.path.join(site, "releases")
    index_json = os.path.join(folder, "index.json")
    try:
        existing = load_entries(index_json)
    except ValueError as exc:
        raise HarnessError(str(exc)) from None
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    pages: List[Tuple[str, str]] = []
    entries: List[Dict[str, Any]] = []
    issues: List[Dict[str, Any]] = []
    for rel in releases:
        d = diff(rel.sides[rel.previous], rel.sides[rel.version], server=rel.distribution)
        records = [*rel.sides[rel.previous], *rel.sides[rel.version]]
        html = render_release(
            d, rel.distribution, rel.version, rel.previous, generated_at=now, records=records
        )
        pages.append((os.path.join(folder, rel.page_name), html))
        entries.append(summarize(d, distribution=rel.distribution, server=rel.server, version=rel.version,
                                 previous=rel.previous, page=rel.page_name, published_at=now))  # fmt: skip
        page_url = f"{site_url.rstrip('/')}/releases/{rel.page_name}" if site_url else ""
        issue = _issue(rel, d, page_url, run_url)
        if issue:
            issues.append(issue)
        counts = ", ".join(
            f"{n} {k}" for k, n in entries[-1]["totals"].items() if n or k in ("regressed", "fixed")
        )
        what = f"{rel.distribution} {rel.version} (vs {rel.previous}, {len(rel.jobs)} job(s))"
        stream.write(f"published {what}: {counts} -> {os.path.join(folder, rel.page_name)}\n")
    merged = merge_entries(existing, entries)
    for path, html in pages:
        write_atomic(path, html)
    write_atomic(index_json, json.dumps(merged, indent=1, sort_keys=True) + "\n")
    write_atomic(os.path.join(folder, "index.html"), render_index(merged, generated_at=now))
    stream.write(f"release index: {os.path.join(folder, 'index.html')} ({len(merged)} release(s))\n")
    return entries, issues, [rel.key for rel in releases]


def run(args: argparse.Namespace, out: Optional[IO[str]] = None) -> int:
    _, issues, keys = publish(args.inputs, args.site, site_url=args.site_url, run_url=args.run_url, out=out)
    if args.issues:
        write_atomic(args.issues, json.dumps(issues, indent=1) + "\n")
    if args.published:
        write_atomic(args.published, "".join(k + "\n" for k in keys))
    return 0


__all__ = ["ISSUE_LABEL", "MARKER", "add_parser", "collect", "publish", "run"]
