"""Running the known-issue catalog: every case of the chosen entries that runs on this OS and Python.

* run_catalog(chosen, *, results, progress, confirm=1, ...) -> ([(entry, expectation, Group)], skipped) -
  each case is reported to progress(entry, expectation, scenario, outcome) as it ends: outcome is its runs
  (harness.verdict.agreement.Group: a verdict that is not `passed` is re-run `confirm` times before it is
  called), or the reason it was skipped (harness.catalog.case_skip: what the pytest collector skips too)
* mismatch(expectation, group) -> "" or what differs: runs that disagree never meet an expectation
"""

import platform
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from harness.campaign.attempts import run_attempts
from harness.catalog import Entry, Expectation, case_skip
from harness.model.records import ResultRecord, Scenario
from harness.run.runner import BASE_TIMEOUT_S, run_scenario
from harness.verdict.agreement import FLAKY, Group

#: progress(entry, expectation, scenario, the case's runs or its skip reason)
Progress = Callable[[Entry, Expectation, Scenario, Union[Group, str]], None]


def mismatch(expectation: Expectation, group: Group) -> str:
    """ "" when the case's runs meet the expectation; runs that disagree (flaky) never do."""
    if group.status == FLAKY:
        return "its runs disagree (flaky): " + group.signature
    first = group.first
    return expectation.mismatch(first.failure_class, first.signature, first.exit_code)


def run_catalog(
    chosen: Sequence[Entry],
    *,
    results: str,
    progress: Optional[Progress] = None,
    work_dir: str = "",
    capsule_dir: str = "",
    base_timeout: Optional[float] = None,
    confirm: int = 1,
) -> Tuple[List[Tuple[Entry, Expectation, Group]], int]:
    """Run every case of `chosen` that runs here, every run's record appended to `results`."""
    done: List[Tuple[Entry, Expectation, Group]] = []
    skipped = 0
    for entry in chosen:
        for scenario, expectation in entry.scenarios():
            reason = case_skip(entry, scenario, expectation, sys.platform, platform.python_version())
            if reason:
                skipped += 1
                if progress is not None:
                    progress(entry, expectation, scenario, reason)
                continue
            case_tag = entry.tag(expectation.role)

            def once(
                attempt: Dict[str, Any],
                scenario: Scenario = scenario,
                tag: Dict[str, str] = case_tag,
            ) -> ResultRecord:
                return run_scenario(
                    scenario,
                    results=results,
                    work_dir=work_dir or None,
                    capsule_dir=capsule_dir or None,
                    base_timeout=base_timeout if base_timeout is not None else BASE_TIMEOUT_S,
                    catalog=tag,
                    attempt=attempt,
                )

            group = Group(tuple(run_attempts(once, confirm=confirm)))
            done.append((entry, expectation, group))
            if progress is not None:
                progress(entry, expectation, scenario, group)
    return done, skipped


__all__ = ["Progress", "mismatch", "run_catalog"]
