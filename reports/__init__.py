"""Reports: pure functions from ResultRecords to HTML (matrix page, release page) plus merging.

* render(records) -> str - the matrix report; write_report(records, path) writes it
* merge(record_lists) -> MergedView - cells by ResultRecord.key; disagreeing runs are conflicts
* diff(previous, current) -> ReleaseDiff; render_release(diff, server, version, previous) -> str
"""

from .merge import Cell, MergedView, Verdict, merge
from .release import DiffEntry, ReleaseDiff, diff, render_release
from .render import clean_text, render, write_report

__all__ = [
    "Cell",
    "DiffEntry",
    "MergedView",
    "ReleaseDiff",
    "Verdict",
    "clean_text",
    "diff",
    "merge",
    "render",
    "render_release",
    "write_report",
]
