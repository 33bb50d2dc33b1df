"""Running the known-issue catalog: every case of the chosen entries that runs on this OS and Python.

* run_catalog(chosen, *, results, progress, ...) -> ([(entry, expectation, record)], skipped) - each case
  is reported to progress(entry, expectation, scenario, outcome) as it ends: outcome is the record, or the
  reason it was skipped (harness.catalog.case_skip: what the pytest collector skips too)
"""

import platform
import sys
from typing import Callable, List, Optional, Sequence, Tuple, Union

from harness.catalog import Entry, Expectation, case_skip
from harness.model.records import ResultRecord, Scenario
from harness.run.runner import BASE_TIMEOUT_S, run_scenario

#: progress(entry, expectation, scenario, record or skip reason)
Progress = Callable[[Entry, Expectation, Scenario, Union[ResultRecord, str]], None]


def run_catalog(
    chosen: Sequence[Entry],
    *,
    results: str,
    progress: Optional[Progress] = None,
    work_dir: str = "",
    capsule_dir: str = "",
    base_timeout: Optional[float] = None,
) -> Tuple[List[Tuple[Entry, Expectation, ResultRecord]], int]:
    """Run every case of `chosen` that runs here, records appended to `results`."""
    done: List[Tuple[Entry, Expectation, ResultRecord]] = []
    skipped = 0
    for entry in chosen:
        for scenario, expectation in entry.scenarios():
            reason = case_skip(entry, scenario, expectation, sys.platform, platform.python_version())
            if reason:
                skipped += 1
                if progress is not None:
                    progress(entry, expectation, scenario, reason)
                continue
            record = run_scenario(
                scenario,
                results=results,
                work_dir=work_dir or None,
                capsule_dir=capsule_dir or None,
                base_timeout=base_timeout if base_timeout is not None else BASE_TIMEOUT_S,
                catalog=entry.tag(expectation.role),
            )
            done.append((entry, expectation, record))
            if progress is not None:
                progress(entry, expectation, scenario, record)
    return done, skipped


__all__ = ["Progress", "run_catalog"]
