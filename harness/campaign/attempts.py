"""Run one scenario more than once: confirmation reruns and repeat mode (harness.verdict.agreement).

    records = run_attempts(run_once, confirm=1, repeat=1, on_record=append)

* repeat > 1: exactly `repeat` runs, purpose "repeat" (the failure rate is the point, so a failing run is
  not re-run on top: it is one of the N)
* otherwise one run; when its verdict needs confirmation (agreement.needs_confirmation) and confirm > 0,
  `confirm` more runs, purpose "confirm". All of them are kept: agreement.Group says confirmed or flaky
* run_once(attempt) -> ResultRecord runs one attempt; `attempt` is the ResultRecord.attempt to record
  ({"group", "index", "purpose"}, or {} when the scenario runs once and is never re-run)
* on_record(record) is called as each run ends (the caller appends it to its results file), so an
  interrupted series keeps the runs it finished
"""

import uuid
from typing import Any, Callable, Dict, List, Optional

from harness.model.records import ResultRecord
from harness.verdict.agreement import needs_confirmation

RunOnce = Callable[[Dict[str, Any]], ResultRecord]


def run_attempts(
    run_once: RunOnce,
    *,
    confirm: int = 0,
    repeat: int = 1,
    on_record: Optional[Callable[[ResultRecord], None]] = None,
) -> List[ResultRecord]:
    """The records of every attempt, in the order they ran (module doc)."""
    if confirm < 0 or repeat < 1:
        raise ValueError(f"confirm must be >= 0 and repeat >= 1 (got {confirm}, {repeat})")
    group = uuid.uuid4().hex[:12]
    purpose = "repeat" if repeat > 1 else "confirm"
    grouped = repeat > 1 or confirm > 0
    out: List[ResultRecord] = []

    def once(index: int) -> ResultRecord:
        attempt = {"group": group, "index": index, "purpose": purpose} if grouped else {}
        record = run_once(attempt)
        out.append(record)
        if on_record is not None:
            on_record(record)
        return record

    first = once(1)
    if repeat > 1:
        for i in range(2, repeat + 1):
            once(i)
    elif confirm and needs_confirmation(first):
        for i in range(2, confirm + 2):
            once(i)
    return out


__all__ = ["RunOnce", "run_attempts"]
