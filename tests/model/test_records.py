"""harness.model.records: Scenario / ResultRecord round trips, JSONL append and a torn last line."""

import json
import os
from pathlib import Path
from typing import Any, Dict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.model.records import (
    FAILURE_CLASSES,
    ResultRecord,
    Scenario,
    append_record,
    read_records,
)


def _record(**kw: Any) -> ResultRecord:
    base: Dict[str, Any] = dict(
        scenario=Scenario(server="uvicorn", requirements=("uvicorn==0.10.8",), workers=2).to_dict(),
        failure_class="startup-failure",
        signature="OSError: [WSAEINVAL] An invalid argument was supplied",
        reason="The server exited (exit 1) before 2 workers answered (1 did).",
        exit_code=1,
        platform={"system": "Windows", "sys_platform": "win32"},
        python={"version": "3.8.10"},
        installed={"uvicorn": "0.10.8"},
        worker_pids=[4242],
        command=["python", "-m", "uvicorn", "servers.apps:pid", "--workers", "2"],
        env={"HOME": "C:\\tmp\\home"},
        stderr_tail="Traceback (most recent call last):\nOSError: [WinError 10022] ...\n\u00e9\u2502",
        leaks={"processes": [{"pid": 1}], "listeners": [], "uds": []},
    )
    base.update(kw)
    return ResultRecord(**base)


def test_scenario_round_trip_and_id() -> None:
    sc = Scenario(server="reference", strategy="share", workers=4, bind="uds", options=(("a", "1"),))
    again = Scenario.from_dict(json.loads(json.dumps(sc.to_dict())))
    assert again == sc
    assert again.scenario_id == sc.scenario_id == "reference-share-w4-uds-a=1"


def test_scenario_from_dict_ignores_unknown_keys() -> None:
    d = Scenario().to_dict()
    d["future_field"] = 1
    assert Scenario.from_dict(d) == Scenario()


def test_record_round_trip_dict_and_json() -> None:
    r = _record()
    assert ResultRecord.from_dict(r.to_dict()) == r
    assert ResultRecord.from_dict(json.loads(r.to_json())) == r
    assert r.verdict == "startup-failure OSError: [WSAEINVAL] An invalid argument was supplied"
    assert r.scenario_obj.requirements == ("uvicorn==0.10.8",)


def test_record_key_is_stable_and_depends_on_platform_and_python() -> None:
    a, b = _record(), _record(reason="other words")
    assert a.key == b.key
    assert a.key != _record(python={"version": "3.9.0"}).key
    assert a.key != _record(platform={"sys_platform": "linux"}).key


def test_a_class_of_a_newer_harness_is_kept_but_not_garbage() -> None:
    assert _record(failure_class="exploded").failure_class == "exploded"  # shown, not fatal (issue #16)
    for bad in ("", None, 3):
        with pytest.raises(ValueError):
            _record(failure_class=bad)


def test_jsonl_append_and_read(tmp_path: Path) -> None:
    path = str(tmp_path / "sub" / "results.jsonl")
    records = [_record(), _record(failure_class="passed", signature="", leaks={})]
    for r in records:
        append_record(path, r)
    assert list(read_records([path])) == records
    with open(path, encoding="utf-8") as fh:
        assert len(fh.read().splitlines()) == 2


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = str(tmp_path / "results.jsonl")
    good = _record()
    append_record(path, good)
    line = _record(failure_class="leak").to_json()
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line[: len(line) // 2])  # a crash mid-write: no newline, half a JSON object
    assert list(read_records([path])) == [good]


def test_blank_and_foreign_lines_are_skipped(tmp_path: Path) -> None:
    path = str(tmp_path / "results.jsonl")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('\n[1, 2]\n{"no": "class"}\n')
    append_record(path, _record())
    assert [r.failure_class for r in read_records([path])] == ["startup-failure"]


def test_several_files_in_order(tmp_path: Path) -> None:
    a, b = str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")
    append_record(a, _record(failure_class="leak"))
    append_record(b, _record(failure_class="passed"))
    assert [r.failure_class for r in read_records([a, b])] == ["leak", "passed"]
    assert os.path.getsize(a) > 0


_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)


@settings(max_examples=50, deadline=None)
@given(
    fields=st.fixed_dictionaries(
        {
            "failure_class": st.sampled_from(FAILURE_CLASSES),
            "signature": _text,
            "stderr_tail": _text,
            "exit_code": st.one_of(st.none(), st.integers(-64, 255)),
            "worker_pids": st.lists(st.integers(1, 2**22), max_size=5),
            "env": st.dictionaries(_text, _text, max_size=3),
        }
    )
)
def test_round_trip_property(fields: Dict[str, Any]) -> None:
    r = _record(**fields)
    assert ResultRecord.from_dict(json.loads(r.to_json())) == r
