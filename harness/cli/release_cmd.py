"""`harness release SERVER VERSION [--previous V]`: run both sides (harness.campaign.release), diff them
(reports.diff), write the page (reports.render_release) and say what changed.

* release(server, version, previous="", *, output, out=None, **run_release kwargs) -> exit code:
  EXIT_NEWLY_BROKEN when a cell that was ok at `previous` is broken at `version` in every run, its
  failure confirmed by a re-run (--confirm, default 1); a cell that failed once or whose runs disagree is
  listed as unconfirmed and does not set the exit status; 1 when the harness failed a run
  (harness-error), else 0
"""

import json
import os
import time
from typing import IO, Any, Dict, Optional

from harness.campaign.release import run_release
from reports import ReleaseDiff, diff, render_release

#: exit status of `harness release` when something newly broke (1 = harness failure, 2 = usage)
EXIT_NEWLY_BROKEN = 3


def diff_summary(release_diff: ReleaseDiff) -> str:
    """Counts per bucket (newly broken / fixed always, the others when not empty), then one line per
    newly broken / newly fixed cell with the verdict worth reading."""
    names = ("newly_broken", "unconfirmed", "newly_fixed", "unchanged", "inconclusive", "added", "removed")
    buckets = {n: getattr(release_diff, n) for n in names}
    counts = [f"{len(v)} {n.replace('_', ' ')}" for n, v in buckets.items() if v or n.startswith("newly")]
    lines = [", ".join(counts)]
    for name in ("newly_broken", "unconfirmed", "newly_fixed"):
        for e in buckets[name]:
            shown = e.shown
            verdict = shown.verdict if len(shown.verdict) < 140 else shown.verdict[:137] + "..."
            lines.append(
                f"  {name.replace('_', ' ')}: {e.label} · {e.platform_name} {e.python}  -> {verdict}"
            )
            if e.decisive and e.decisive != shown.signature:
                lines.append(f"    decisive line (not logged by the passing runs before): {e.decisive[:140]}")
    return "\n".join(lines)


def diff_json(release_diff: ReleaseDiff) -> Dict[str, Any]:
    """The diff as plain data: per bucket, each cell's scenario, platform, python and both sides' verdicts."""

    def side(s: Any) -> Any:
        return None if s is None else {"state": s.state, "verdicts": list(s.verdicts), "runs": len(s.records)}

    names = ("newly_broken", "unconfirmed", "newly_fixed", "unchanged", "inconclusive", "added", "removed")
    return {
        n: [
            {"scenario": e.scenario, "label": e.label, "platform": e.platform, "python": e.python,
             "previous": side(e.previous), "current": side(e.current), "decisive": e.decisive}
            for e in getattr(release_diff, n)
        ]
        for n in names
    }  # fmt: skip


def release(
    server: str,
    version: str,
    previous: str = "",
    *,
    output: str,
    out: Optional[IO[str]] = None,
    as_json: bool = False,
    **kw: Any,
) -> int:
    """Run, diff, write the page to `output`, print a summary (as_json: the diff as one JSON object on
    `out`, the progress on stderr); returns the exit status."""
    import sys  # noqa: PLC0415

    json_out = (out or sys.stdout) if as_json else None
    stream = sys.stderr if as_json else (out or sys.stdout)

    def notify(line: str) -> None:
        print(line, file=stream, flush=True)

    ran = run_release(server, version, previous, notify=notify, **kw)
    release_diff = diff(ran.sides[ran.previous], ran.sides[ran.version], server=ran.distribution)
    page = render_release(
        release_diff,
        server,
        ran.version,
        ran.previous,
        generated_at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        records=ran.records,
    )
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8") as fh:
        fh.write(page)
    notify(f"\n{server} {ran.previous} -> {ran.version}: " + diff_summary(release_diff))
    notify(f"release page: {os.path.abspath(output)}")
    if json_out is not None:
        payload = {"server": server, "version": ran.version, "previous": ran.previous,
                   "page": os.path.abspath(output), **diff_json(release_diff)}  # fmt: skip
        json_out.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    if release_diff.newly_broken:
        return EXIT_NEWLY_BROKEN
    if any(r.failure_class == "harness-error" for r in ran.records):
        return 1
    return 0


__all__ = ["EXIT_NEWLY_BROKEN", "diff_json", "diff_summary", "release"]
