"""The faults table: every fault (rows) x every server@version (columns), side by side. Pure.

* fault_table(records) -> {"faults": [name], "columns": [label], "cells": {(fault, label): cell}} or {} when
  no record carries a fault. A cell aggregates the runs of that fault on that server@version:
  {runs, handled, not_handled, unknown, css ("handled" | "not-handled" | "mixed" | "unknown"),
   why (the latest run's sentence), recovery_s (median of the runs that recovered, or None),
   failed_requests (sum), exit_codes (distinct, sorted), expected (what a good supervisor does),
   anchor (the detail section of the latest run's cell), word (what the cell says: "handled" / "NOT
   handled", or for a signal-master fault "contract kept" / "contract violated" / "unsupported"), contract
   (the expectation the server's adapter declares for the signal: reload, keep, add, ...; "" otherwise)}
  Signal faults are one row per signal (`signal-master:HUP`), so the table reads per server and signal.

All text here is untrusted (it quotes server output); the template escapes it.
"""

import statistics
from typing import Any, Dict, List, Sequence, Tuple

from harness.model.records import ResultRecord

#: the order rows appear in (faults the harness knows; others are appended by name)
ORDER = (
    "kill-worker",
    "stop-worker",
    "kill-master",
    "term-master-only",
    "port-in-use",
    "stale-uds",
    "import-error",
    "lifespan-failure",
    "kill-workers:1",
    "kill-workers:all",
    *(
        f"signal-master:{sig}"
        for sig in ("HUP", "USR1", "USR2", "TTIN", "TTOU", "WINCH", "TERM", "INT", "QUIT")
    ),
)
_WORDS = {"handled": "handled", "not-handled": "NOT handled", "mixed": "mixed", "unknown": "?"}
_CONTRACT_WORDS = {
    "handled": "contract kept",
    "not-handled": "contract violated",
    "mixed": "mixed",
    "unknown": "?",
}


def _label(record: ResultRecord) -> str:
    server = str(record.scenario.get("server", "?"))
    version = record.server_version or ""
    if server == "reference":
        return "reference"
    return f"{server} {version}".strip()


def _anchor(record: ResultRecord) -> str:
    return f"cell-{record.key}"


def fault_table(records: Sequence[ResultRecord]) -> Dict[str, Any]:
    runs: Dict[Tuple[str, str], List[ResultRecord]] = {}
    for rec in records:
        name = str(rec.scenario.get("fault") or "")
        if name:
            runs.setdefault((name, _label(rec)), []).append(rec)
    if not runs:
        return {}
    names = {k[0] for k in runs}
    faults = [f for f in ORDER if f in names] + sorted(names - set(ORDER))
    labels = sorted({k[1] for k in runs}, key=lambda lab: (lab != "reference", lab))
    cells: Dict[Tuple[str, str], Dict[str, Any]] = {}
    expected: Dict[str, str] = {}
    for key, unsorted in runs.items():
        recs = sorted(unsorted, key=lambda r: str(r.started_at or ""))
        outcomes = [r.fault or {} for r in recs]
        handled = sum(1 for o in outcomes if o.get("handled") is True)
        not_handled = sum(1 for o in outcomes if o.get("handled") is False)
        unknown = len(outcomes) - handled - not_handled
        recovery = [float(o["recovery_s"]) for o in outcomes if isinstance(o.get("recovery_s"), (int, float))]
        codes = sorted({int(c) for o in outcomes for c in [o.get("exit_code")] if isinstance(c, int)})
        if handled == len(recs):
            css = "handled"
        elif not_handled == len(recs):
            css = "not-handled"
        elif unknown == len(recs):
            css = "unknown"
        else:
            css = "mixed"
        latest = outcomes[-1]
        if latest.get("expected"):
            expected[key[0]] = str(latest["expected"])
        contract = str((latest.get("contract") or {}).get("expect") or "")
        is_signal = key[0].startswith("signal-master")
        word = (_CONTRACT_WORDS if is_signal else _WORDS)[css]
        if is_signal and recs[-1].failure_class == "unsupported":
            word = "unsupported"
        cells[key] = {
            "runs": len(recs),
            "handled": handled,
            "not_handled": not_handled,
            "unknown": unknown,
            "css": css,
            "why": str(latest.get("why") or ""),
            "recovery_s": round(statistics.median(recovery), 3) if recovery else None,
            "failed_requests": sum(int(o.get("failed_requests") or 0) for o in outcomes),
            "exit_codes": codes,
            "failure_class": recs[-1].failure_class,
            "anchor": _anchor(recs[-1]),
            "word": word,
            "contract": contract,
        }
    return {"faults": faults, "columns": labels, "cells": cells, "expected": expected}


__all__ = ["ORDER", "fault_table"]
