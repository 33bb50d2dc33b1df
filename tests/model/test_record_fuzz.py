"""Generated records and lines fed to the readers: `harness report`'s load + render, `matrix --resume`'s
done_ids and the matrix summary (issue #16 item 10). No traceback; every input line is accounted for - a
record that is rendered, or a line listed as skipped with its reason."""

import copy
import json
import os
from typing import Any, Dict, List

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.campaign.matrix import done_ids, summary
from harness.model.records import load_records
from reports import render
from reports.release import diff
from tests._paths import FIXTURES

with open(os.path.join(FIXTURES, "records", "linux.jsonl"), encoding="utf-8") as _fh:
    BASES: List[Dict[str, Any]] = [json.loads(line) for line in _fh if line.strip()][:4]

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
TOP = [
    *sorted(BASES[0]),
    *("scenario.workers", "scenario.options", "scenario.requirements", "scenario.server"),
    *("load.keepalive", "load.latency_ms", "timings.worker_ready", "failure_class"),
]


@st.composite
def line(draw: Any) -> str:
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "garbage", "torn", "json"]))
    base = copy.deepcopy(draw(st.sampled_from(BASES)))
    if kind == "garbage":
        return draw(st.text(min_size=1, max_size=40).filter(lambda t: t.strip() and "\n" not in t))
    if kind == "json":
        return json.dumps(draw(JSON))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(TOP)).split(".")
        target = base
        for key in path[:-1]:
            if not isinstance(target.get(key), dict):
                target[key] = {}
            target = target[key]
        if draw(st.booleans()) and path[-1] in target:
            del target[path[-1]]
        else:
            target[path[-1]] = draw(JSON)
    text = json.dumps(base)
    return text[: draw(st.integers(1, max(1, len(text) - 1)))] if kind == "torn" else text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line(), min_size=1, max_size=6))
def test_every_line_is_rendered_or_listed(tmp_path_factory: Any, lines: List[str]) -> None:
    path = str(tmp_path_factory.mktemp("fuzz") / "r.jsonl")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    records, skipped = load_records([path])
    # lines as a file reader sees them (universal newlines: \r and \r\n end a line too, U+0085 does not)
    text = "\n".join(lines).replace("\r\n", "\n").replace("\r", "\n")
    non_blank = sum(1 for ln in text.split("\n") if ln.strip())
    assert len(records) + sum(1 for s in skipped if not s.repaired) == non_blank
    assert all(s.reason and s.line >= 1 for s in skipped)
    html = render(records, skipped=skipped, generated_at="fuzz")
    assert "<html" in html
    for s in skipped:
        assert f">{s.line}<" in html
    done_ids(path)
    summary(records)
    diff(records, records)


NESTED = ["load", "timings", "fault", "leaks", "python", "platform", "installed", "attempt", "catalog", "env"]


@st.composite
def nested_record(draw: Any) -> str:
    """A record whose top-level types are right and whose insides are anything: it must be rendered."""
    base = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        field = draw(st.sampled_from(NESTED))
        inner = base.get(field) if isinstance(base.get(field), dict) else {}
        key = draw(st.sampled_from(sorted(inner) or ["x"]) | st.text(max_size=6))
        inner[key] = draw(JSON)
        base[field] = inner
    if draw(st.booleans()):
        keys = st.sampled_from(["phase", "processes", "listeners"])
        base["snapshots"] = draw(st.lists(st.dictionaries(keys, JSON, max_size=3), max_size=2))
    if draw(st.booleans()):
        base["events"] = draw(st.lists(JSON, max_size=3))
    base["failure_class"] = draw(
        st.sampled_from(["passed", "degraded", "startup-failure", "leak", "from-v9"])
    )
    return json.dumps(base)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(nested_record(), min_size=1, max_size=5))
def test_records_with_any_insides_are_rendered(tmp_path_factory: Any, lines: List[str]) -> None:
    path = str(tmp_path_factory.mktemp("fuzz") / "r.jsonl")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    records, skipped = load_records([path])
    assert len(records) == len(lines)  # every one of them is a record (some with a field reset)
    html = render(records, skipped=skipped, generated_at="fuzz")
    if any(r.failure_class == "from-v9" for r in records):
        assert "from-v9" in html  # a newer harness's class is shown, not fatal
    summary(records)
    diff(records, records)
