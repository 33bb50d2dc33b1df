"""`harness release DIST==VERSION | SERVER VERSION [--previous V]`: check that both versions are on the
index, run both sides (harness.campaign.release), diff them (reports.diff), write the page
(reports.render_release) and the item file, and say what changed.

* parse_target(target, version="") -> (name, version): a plan item (`uvicorn==0.55.0`, `h11==0.16.0`)
  or a server and a version
* release(name, version, previous="", *, output, out=None, **run_release kwargs) -> exit code:
  EXIT_NEWLY_BROKEN when a cell regressed - ok at `previous`, broken at `version` in every run, its
  failure confirmed by a re-run (--confirm, default 1); a cell that failed once or whose runs disagree is
  spurious-regressed and does not set the exit status; 1 when the harness failed a run (harness-error),
  else 0
* write_item(results_dir, ran, files) - `<dist>-<version>.item.json` beside the two JSONL files: what
  was compared on which platform and Python (`harness publish` groups a release's jobs by it)
"""

import json
import os
import time
from typing import IO, Any, Dict, Optional, Tuple

from harness.campaign.release import run_release
from harness.model.errors import UsageError
from harness.model.files import write_atomic
from reports import ReleaseDiff, diff, render_release

#: exit status of `harness release` when something newly broke (1 = harness failure, 2 = usage)
EXIT_NEWLY_BROKEN = 3


#: the outcomes a summary always counts; the others when a cell has them
ALWAYS_COUNTED = ("regressed", "fixed")
#: the outcomes whose cells a summary lists one per line
LISTED = ("regressed", "spurious-regressed", "fixed", "spurious-fixed")


def diff_summary(release_diff: ReleaseDiff) -> str:
    """Counts per outcome (crater's names: regressed and fixed always, the others when not empty), then
    one line per regressed / spurious / fixed cell with the verdict worth reading, and the signature diff
    of a still-broken cell whose failure changed."""
    outcomes = release_diff.outcomes()
    counts = [f"{len(v)} {n}" for n, v in outcomes.items() if v or n in ALWAYS_COUNTED]
    lines = [", ".join(counts)]
    for name in (*LISTED, "still-broken"):
        for e in outcomes[name]:
            gone, new = e.signature_diff
            if name == "still-broken" and not (gone or new):
                continue
            shown = e.shown
            verdict = shown.verdict if len(shown.verdict) < 140 else shown.verdict[:137] + "..."
            lines.append(f"  {name}: {e.label} · {e.platform_name} {e.python}  -> {verdict}")
            if name == "still-broken":
                lines += [f"    - {v[:140]}" for v in gone] + [f"    + {v[:140]}" for v in new]
            if e.decisive and e.decisive != shown.signature:
                lines.append(f"    decisive line (not logged by the passing runs before): {e.decisive[:140]}")
    return "\n".join(lines)


def diff_json(release_diff: ReleaseDiff) -> Dict[str, Any]:
    """The diff as plain data: {"counts": {outcome: n}, "outcomes": {outcome: [cell]}}, each cell with its
    scenario, platform, python, both sides' state and verdicts, the signature diff and the decisive line."""

    def side(s: Any) -> Any:
        return None if s is None else {"state": s.state, "verdicts": list(s.verdicts), "runs": len(s.records)}

    def cell(e: Any) -> Dict[str, Any]:
        gone, new = e.signature_diff
        return {"scenario": e.scenario, "label": e.label, "platform": e.platform, "python": e.python,
                "outcome": e.outcome, "previous": side(e.previous), "current": side(e.current),
                "signature_diff": {"gone": list(gone), "new": list(new)}, "decisive": e.decisive}  # fmt: skip

    outcomes = release_diff.outcomes()
    return {
        "counts": {n: len(v) for n, v in outcomes.items()},
        "outcomes": {n: [cell(e) for e in v] for n, v in outcomes.items()},
    }


def parse_target(target: str, version: str = "") -> Tuple[str, str]:
    """(name, version) of `harness release TARGET [VERSION]`: `DIST==VERSION` (a plan item: a server's
    or a dependency's distribution) or `SERVER VERSION`. UsageError when neither or both give a version."""
    name, sep, pinned = target.partition("==")
    if sep:
        if version:
            raise UsageError(f"{target!r} already names its version; leave out {version!r}")
        return name.strip(), pinned.strip()
    if not version:
        raise UsageError(f"which version of {target}? give `{target}==VERSION` or `{target} VERSION`")
    return target.strip(), version


#: beside the JSONL of both sides: what was compared (harness publish reads it)
ITEM_SUFFIX = ".item.json"


def write_item(results_dir: str, ran: Any, files: Dict[str, str]) -> str:
    """`<results_dir>/<dist>-<version>.item.json`: the release compared, where, and each side's JSONL."""
    import platform  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from harness.campaign.release import _file_part  # noqa: PLC0415

    path = os.path.join(results_dir, f"{_file_part(ran.distribution)}-{_file_part(ran.version)}{ITEM_SUFFIX}")
    data = {"distribution": ran.distribution, "server": ran.server, "version": ran.version,
            "previous": ran.previous, "sides": files, "sys_platform": sys.platform,
            "python": platform.python_version(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n", "the release item")
    return path


def release(
    name: str,
    version: str,
    previous: str = "",
    *,
    output: str,
    out: Optional[IO[str]] = None,
    as_json: bool = False,
    **kw: Any,
) -> int:
    """Check, run, diff, write the page to `output` and the item file beside the results, print a
    summary (as_json: the diff as one JSON object on `out`, the progress on stderr); returns the exit
    status: EXIT_NEWLY_BROKEN when a cell regressed (confirmed), 1 when a run was a harness-error."""
    import sys  # noqa: PLC0415

    from harness.campaign.release import _file_part  # noqa: PLC0415

    json_out = (out or sys.stdout) if as_json else None
    stream = sys.stderr if as_json else (out or sys.stdout)

    def notify(line: str) -> None:
        print(line, file=stream, flush=True)

    ran = run_release(name, version, previous, notify=notify, **kw)
    release_diff = diff(ran.sides[ran.previous], ran.sides[ran.version], server=ran.distribution)
    page = render_release(
        release_diff,
        ran.distribution,  # the page is about a release of it, whichever adapter ran it
        ran.version,
        ran.previous,
        generated_at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        records=ran.records,
    )
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8") as fh:
        fh.write(page)
    results_dir = str(kw.get("results_dir") or "results")
    files = {v: f"{_file_part(ran.distribution)}-{_file_part(v)}.jsonl" for v in (ran.previous, ran.version)}
    item = write_item(results_dir, ran, files)
    notify(f"\n{ran.distribution} {ran.previous} -> {ran.version}: " + diff_summary(release_diff))
    notify(f"release page: {os.path.abspath(output)}")
    notify(f"release item: {os.path.abspath(item)}")
    if json_out is not None:
        payload = {"server": ran.server, "distribution": ran.distribution, "version": ran.version,
                   "previous": ran.previous, "page": os.path.abspath(output),
                   **diff_json(release_diff)}  # fmt: skip
        json_out.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    if release_diff.outcomes()["regressed"]:
        return EXIT_NEWLY_BROKEN
    if any(r.failure_class == "harness-error" for r in ran.records):
        return 1
    return 0


__all__ = [
    "EXIT_NEWLY_BROKEN",
    "ITEM_SUFFIX",
    "diff_json",
    "diff_summary",
    "parse_target",
    "release",
    "write_item",
]
