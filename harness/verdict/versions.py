"""A known issue across releases: what one run says about it, and where that changes.

Shared by the sweep that measures it (harness.campaign.sweep) and the page that shows it (reports.issues),
so the two never disagree on what "reproduced" or "first fixed" means.

* outcome(page, record) - reproduced (the entry's expected class, signature regex and exit code) / passed
  (passed or degraded) / fixed (what the entry's fixed release does when its fix changed the failure
  rather than removing it) / other (another failure) / inconclusive (unsupported, env-error,
  harness-error: nothing the server did was judged). `page` is harness.catalog.Entry.page() (plain data).
* boundaries(order, outcomes) -> Boundaries - the first reproducing release, the first release after the
  last reproducing one that passes (or does as fixed), and the last passing one before the first bad.
"""

import re
from typing import Any, Mapping, NamedTuple, Optional, Sequence

from harness.model.classes import INCONCLUSIVE, OK_CLASSES
from harness.model.records import ResultRecord

REPRODUCED = "reproduced"
PASSED = "passed"
FIXED = "fixed"
OTHER = "other"
INCONCLUSIVE_OUTCOME = "inconclusive"
#: outcomes that say the bug is absent
ABSENT = (PASSED, FIXED)


def _meets(expect: Optional[Mapping[str, Any]], record: ResultRecord) -> bool:
    if not expect or record.failure_class != expect.get("failure_class"):
        return False
    if expect.get("signature") and not re.search(str(expect["signature"]), record.signature or ""):
        return False
    return expect.get("exit_code") is None or record.exit_code == expect.get("exit_code")


def outcome(page: Mapping[str, Any], record: ResultRecord) -> str:
    """What one run says about the entry's bug (module doc)."""
    if record.failure_class in INCONCLUSIVE:
        return INCONCLUSIVE_OUTCOME
    if _meets(page.get("expect"), record):
        return REPRODUCED
    if record.failure_class in OK_CLASSES:
        return PASSED
    return FIXED if _meets(page.get("fixed_expect"), record) else OTHER


class Boundaries(NamedTuple):
    """Where the outcome changes across releases ("" where none was seen)."""

    first_bad: str
    first_fixed: str
    last_good_before: str


def boundaries(order: Sequence[str], outcomes: Mapping[str, str]) -> Boundaries:
    """Over the releases in `order` (oldest first) that have an outcome (module doc)."""
    versions = [v for v in order if v in outcomes]
    bad = [v for v in versions if outcomes[v] == REPRODUCED]
    if not bad:
        return Boundaries("", "", "")
    after = versions[versions.index(bad[-1]) + 1 :]
    before = versions[: versions.index(bad[0])]
    return Boundaries(
        bad[0],
        next((v for v in after if outcomes[v] in ABSENT), ""),
        next((v for v in reversed(before) if outcomes[v] in ABSENT), ""),
    )


__all__ = [
    "ABSENT",
    "FIXED",
    "INCONCLUSIVE_OUTCOME",
    "OTHER",
    "PASSED",
    "REPRODUCED",
    "Boundaries",
    "boundaries",
    "outcome",
]
